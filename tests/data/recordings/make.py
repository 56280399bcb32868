"""Regenerate the committed recordings the UI snapshot tests replay.

    python tests/data/recordings/make.py

Each is a real ``memtop serve --record`` file (docs/RECORDING.md) holding the events a server
emits for a built-in scenario (``tt_memtop.sim.scenarios.reference_events``: same registry, no
sockets), cut mid-replay so the screen shows a resident TRACE buffer, gzip-compressed. Scenario
time starts at 0, so the files are byte-for-byte reproducible.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

from tt_memtop.core.devices import Inventory
from tt_memtop.recording import RecordingWriter
from tt_memtop.sim.scenarios import build, reference_events

HERE = Path(__file__).resolve().parent
#: name -> (scenario, cut at scenario second, devices)
RECORDINGS = {
    "cnn_1dev": ("cnn", 1.5, 1),
    "llama_8dev": ("llama-t3k", 3.5, 8),
    "galaxy_32dev": ("galaxy", 2.5, 32),
}


def make(name: str) -> Path:
    scenario, cut_s, devices = RECORDINGS[name]
    events = [e for e in reference_events(build(scenario)) if e.ts_ns < cut_s * 1e9]
    out = HERE / f"{name}.rec.gz"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.rec"
        with RecordingWriter(str(raw), Inventory.uniform(devices), socket_path="/tmp/tt_allocation_server.sock",
                             clock=lambda: 0, wall_clock=lambda: 0) as writer:
            for i in range(0, len(events), 512):  # one record per "socket read", as the server writes
                writer.write_events(events[i:i + 512])
        with raw.open("rb") as src, gzip.GzipFile(out, "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
    return out


if __name__ == "__main__":
    import sys

    for n in sys.argv[1:] or RECORDINGS:
        print(make(n))
