"""End to end, all real processes: ``memtop serve --record`` + ``memtop simulate`` + ``memtop analyze --json``.

Each scenario runs sped up (a few seconds) in a given wire layout; the phases analyze finds in
the recording — and in the server's stdout log — must be the scenario's, process by process.
No timing is asserted: only the order of phases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tt_memtop.sim.scenarios import build

MEMTOP = [sys.executable, "-m", "tt_memtop"]
CASES = [("llama-t3k", "144", 3.0), ("cnn", "72", 2.0), ("two-process", "112", 2.0), ("leaky", "144", 2.0),
         ("galaxy", "648", 2.0)]


def _wait_for_socket(path: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)


def _phases_by_process(rows: list[dict]) -> list[list[str]]:
    """Phase sequences per PID, PIDs ordered by their first segment (= slot order in our scenarios)."""
    order: dict[int, list[str]] = {}
    for row in sorted(rows, key=lambda r: r["start_s"]):
        order.setdefault(row["pid"], []).append(row["phase"])
    return list(order.values())


@pytest.mark.parametrize(("name", "protocol", "speed"), CASES, ids=[c[0] for c in CASES])
def test_simulate_serve_analyze(tmp_path, name, protocol, speed):
    sock, rec, log = str(tmp_path / "s.sock"), str(tmp_path / "rec.bin"), tmp_path / "server.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "--record", rec, "--devices", "32"],
                                  stdout=log_file, stderr=subprocess.PIPE)
        try:
            _wait_for_socket(sock, server)
            sim = subprocess.run([*MEMTOP, "simulate", "--socket", sock, "--scenario", name, "--protocol", protocol,
                                  "--speed", str(speed)], capture_output=True, text=True, timeout=120)
            assert sim.returncode == 0, sim.stderr
            time.sleep(0.5)  # the recording is flushed every 0.2 s
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)
    expected = [[lab.phase.value for lab in p.labels] for p in build(name).processes]

    out = subprocess.run([*MEMTOP, "analyze", rec, "--json", "--speed", str(speed)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert isinstance(rows, list)
    assert {"pid", "devices", "phase", "start_s", "end_s"} <= set(rows[0])
    # Real processes on a shared machine: a stall of the simulator can last long enough to look idle.
    assert [[p for p in seq if p != "idle"] for seq in _phases_by_process(rows)] == [
        [p for p in seq if p != "idle"] for seq in expected]

    out = subprocess.run([*MEMTOP, "analyze", str(log), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from_log = _phases_by_process(json.loads(out.stdout))
    # A log has no clock: a process waiting while nothing else happens cannot look idle.
    assert [[p for p in seq if p != "idle"] for seq in from_log] == [[p for p in seq if p != "idle"]
                                                                       for seq in expected]
