"""What a scrape costs on a Galaxy: building the view on the event loop (the only part that holds
the loop: it reads the registry's running totals, never the buffers) and rendering it, for 32
devices, ``--pids`` processes on every device and ``--live`` buffers. Prints figures, no pass/fail.

    python benchmarks/bench_exporter.py [--live 1000000] [--pids 8] [--devices 32]
"""

from __future__ import annotations

import argparse
import random
import time

from tt_memtop.core.devices import Inventory
from tt_memtop.core.registry import Buffer, Registry
from tt_memtop.exporter.collector import render
from tt_memtop.exporter.view import view_from_ledger


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=1_000_000)
    ap.add_argument("--pids", type=int, default=8)
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    rnd = random.Random(1)
    reg = Registry()
    reg.load_snapshot([Buffer(i % a.devices, 0x1000 + i * 0x100, rnd.choice((0, 1, 3, 4, 5)), rnd.choice((4096, 65536)),
                              1000 + (i // a.devices) % a.pids) for i in range(a.live)], a.live)
    inv = Inventory.uniform(a.devices)
    names = {1000 + p: f"python{p}" for p in range(a.pids)}

    t0 = time.perf_counter()
    for _ in range(a.rounds):
        view = view_from_ledger(reg, inv, events_total=a.live, bad_frames_total=0, hostname="galaxy",
                                comm=names.get)
    build_ms = (time.perf_counter() - t0) / a.rounds * 1e3
    t0 = time.perf_counter()
    for _ in range(a.rounds):
        text = render(view)
    render_ms = (time.perf_counter() - t0) / a.rounds * 1e3
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    print(f"{a.devices} devices, {a.pids} processes, {a.live:,} live buffers")
    print(f"  view on the loop : {build_ms:8.3f} ms per scrape (holds the event loop)")
    print(f"  render           : {render_ms:8.3f} ms per scrape (HTTP thread)")
    print(f"  exposition       : {series:,} series, {len(text) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
