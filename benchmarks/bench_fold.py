"""The monitor's fold alone, deterministic: decode + ``MonitorState.apply_events`` of bench_ui's churn stream.

No sockets, no UI, no clock: EVENTS records as ``memtop serve`` sends them (bench_ui's message mix:
alloc/free pairs at the addresses of 8 Wormhole devices' DRAM and L1 banks, ``--live`` buffers
preloaded) are decoded and folded in chunks of 512, as the app's ``_fold`` does. Prints CPU
µs/event of the churn, or, with ``--profile``, cProfile's top functions.

    python benchmarks/bench_fold.py [--live 50000] [--events 200000] [--profile] [--no-phases]

For A/B on a shared machine use callgrind's instruction count, which the load does not move:
``--callgrind`` runs this script twice under ``valgrind --tool=callgrind``, once folding the churn
and once not (everything else, the records' encoding included, the same), and prints the
difference per churn event.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CHUNK = 512
PER_REC = 450  # events per EVENTS record at these rates (docs/MONITOR_SPEED.md)


def records(live: int, n: int) -> tuple[list[bytes], list[bytes]]:
    """Encoded EVENTS record bodies: the preload of ``live`` buffers, then ``n`` churn events."""
    from bench_ui import _slot

    from tt_memtop.core import eventcodec as codec
    from tt_memtop.core.events import Event, EventKind

    cycle = max(2 * live, 4096)
    slots = [_slot(0, s) for s in range(cycle)]
    pid = 4242
    seq = [0]
    ts = [10**9]

    def encode(pairs) -> list[bytes]:
        out, evs = [], []
        for kind, s in pairs:
            d, t, size, addr = slots[s]
            seq[0] += 1
            ts[0] += 5_000  # 200k events/s of server time
            evs.append(Event(kind, seq=seq[0], ts_ns=ts[0], pid=pid, device=d, buffer_type=t, buffer_id=addr,
                             size=size, ref_count=1 if kind == EventKind.ALLOC else 0))
            if len(evs) == PER_REC:
                out.append(codec.encode_events(evs)[1:])
                evs = []
        if evs:
            out.append(codec.encode_events(evs)[1:])
        return out

    pre = encode((EventKind.ALLOC, s) for s in range(live))
    churn = encode(pair for i in range(n // 2) for pair in ((EventKind.ALLOC, (live + i) % cycle),
                                                             (EventKind.FREE, i % cycle)))
    return pre, churn


def fold(state, bodies: list[bytes]) -> int:
    from tt_memtop.core.eventcodec import decode_events_body

    n = 0
    apply = state.apply_events
    for body in bodies:
        evs = decode_events_body(body)
        n += len(evs)
        for i in range(0, len(evs), CHUNK):
            apply(evs[i:i + CHUNK])
    return n


def run(args) -> None:
    from tt_memtop.core.model import new_state

    pre, churn = records(args.live, args.events)
    if args.fold_none:  # callgrind's baseline: everything but folding the churn (encoding it included)
        churn = []
    state = new_state(phases=not args.no_phases)
    fold(state, pre)
    gc.collect()
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        fold(state, churn)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
        return
    c0 = time.process_time()
    n = fold(state, churn)
    c1 = time.process_time()
    if n:
        print(f"{n:,} events folded, {(c1 - c0) / n * 1e6:.2f} µs/event CPU ({len(state.registry):,} live)")


def _instructions(args, fold: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
               "--live", str(args.live), "--events", str(args.events)] + (["--no-phases"] if args.no_phases else []) \
            + ([] if fold else ["--fold-none"])
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        m = re.search(r"Collected : (\d+)", res.stderr)
        if m is None:
            raise SystemExit(res.stderr)
        return int(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--live", type=int, default=50_000)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--no-phases", action="store_true")
    p.add_argument("--profile", action="store_true", help="cProfile the churn, top functions by own time")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--callgrind", action="store_true", help="instructions per churn event under callgrind")
    p.add_argument("--fold-none", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.callgrind:
        base = _instructions(args, False)
        full = _instructions(args, True)
        print(f"callgrind: {(full - base) / args.events:,.0f} instructions/event "
              f"(decode + fold, chunks of {CHUNK}, {args.live:,} live, "
              f"{'pure Python' if os.environ.get('MEMTOP_PURE_PYTHON') else 'compiled passes'})")
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
