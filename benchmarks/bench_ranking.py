"""CPU of one refresh of the buffers pane's ranking (top 500) with many live buffers: from the
registry's rows (:meth:`BufferList.top`, a Buffer per row shown) against the Buffer per live row
that ranking made before (``compute_window`` over the Buffers, the old path, kept for plain lists).

    python benchmarks/bench_ranking.py                 # 1 M live buffers, 8 devices
    python benchmarks/bench_ranking.py --live 200000 --repeat 5

Prints the median CPU time (``time.process_time``) per refresh of each path, A B A B, for each sort
and for device / pool / PID filters, and checks that both give the same rows.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.registry import Registry
from tt_memtop.ui.buffer_query import compute_window
from tt_memtop.ui.filters import ViewFilter


def build(live: int, seed: int = 1) -> Registry:
    """``live`` buffers on 8 devices, 7 processes, DRAM and L1, sizes 4 KiB..256 KiB (many ties)."""
    rnd = random.Random(seed)
    reg = Registry()
    for i in range(live):
        reg.apply_event(Event(EventKind.ALLOC, seq=i + 1, ts_ns=i, pid=100 + i % 7, device=i % 8,
                              buffer_type=i % 2, buffer_id=0x1000 + (i // 8) * 64, size=4096 * rnd.randint(1, 64),
                              ref_count=1, name="w" if i % 1000 == 0 else ""))
    return reg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    reg = build(args.live)
    print(f"{args.live:,} live buffers; load average {os.getloadavg()[0]:.2f}")
    cases = [("size", ViewFilter(), False), ("size inverted", ViewFilter(), True), ("age", ViewFilter(), False),
             ("id", ViewFilter(), False), ("size, device 3", ViewFilter(devices=frozenset({3})), False),
             ("size, L1", ViewFilter(types=frozenset({1})), False),
             ("size, PID 101", ViewFilter(pids=frozenset({101})), False)]
    for label, filt, invert in cases:
        sort = label.split(",")[0].split()[0]
        rows_t, objs_t = [], []
        for _ in range(args.repeat):
            snap = reg.buffer_list()
            c = time.process_time()
            new = compute_window(snap, filt, sort, invert)
            rows_t.append(time.process_time() - c)
            snap = reg.buffer_list()
            c = time.process_time()
            old = compute_window(iter(snap), filt, sort, invert)  # an iterator of Buffers: the old path
            objs_t.append(time.process_time() - c)
        same = [r.key for r in new.rows] == [r.key for r in old.rows] and new.matched == old.matched
        print(f"{label:<16} from rows {statistics.median(rows_t) * 1e3:7.0f} ms   Buffer per row "
              f"{statistics.median(objs_t) * 1e3:7.0f} ms   ({statistics.median(objs_t) / statistics.median(rows_t):.1f}x)"
              f"   same rows: {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
