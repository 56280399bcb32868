"""What keeping peaks, bank maps, leaks and history up to date costs (core/insight.py).

Measures, single-threaded, without the UI:

1. the churn stream (alloc/free pairs at recurring addresses, the bulk of a 200k events/s
   warm-up) through ``MonitorState.apply_events`` with insight on and with it stubbed out, and a
   query of every device's pool figures 20 times a second of event time (what a UI frame asks);
2. the same with ``--live`` (default 1 M) resident buffers (90 % DRAM, 10 % L1, at realistic
   per-bank addresses on 8 Wormhole devices): attach (snapshot load + first query, which builds
   the interval sets), then churn with queries;
3. the memory the insight structures take for those live buffers (tracemalloc).

    python benchmarks/bench_insight.py [--live 1000000] [--events 400000]

Times are CPU seconds of this process (``time.process_time``), so a busy machine inflates them less
than wall-clock figures would.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import new_state
from tt_memtop.core.registry import Buffer
from tt_memtop.sources.base import Snapshot

DEVICES = 8
RATE = 200_000  # events/s of the target
FRAME_EVENTS = RATE // 20  # a UI frame every 50 ms of event time at the target rate


def resident(live: int) -> list[Buffer]:
    """``live`` buffers: 90 % DRAM (4 KiB per bank), 10 % L1 (16 B per bank), per-bank addresses, 4 PIDs."""
    rnd = random.Random(7)
    out = []
    n_l1 = live // 10
    for i in range(live - n_l1):
        d = i % DEVICES
        out.append(Buffer(d, 0x100000 + (i // DEVICES) * 4096, 0, 12 * 4096, 1000 + i % 4, 1, i, i))
    for i in range(n_l1):
        d = i % DEVICES
        out.append(Buffer(d, 1_499_136 - 16 * (1 + i // DEVICES), 1, 64 * 16, 1000 + i % 4, 1, i, i))
    rnd.shuffle(out)
    return out


def churn(n: int, base: int = 0x30000000, t0: int = 10**9) -> list[Event]:
    """Warm-up churn: each op allocates a DRAM or L1 output and frees the previous one; addresses recur."""
    evs = []
    seq = 0
    for i in range(n // 2):
        d = i % DEVICES
        slot = (i // DEVICES) % 64
        l1 = i % 3 == 0
        addr = (1_200_000 - slot * 4096) if l1 else base + slot * 0x10000
        size = 64 * 4096 if l1 else 12 * 0x10000
        t = 1 if l1 else 0
        ts = t0 + (2 * i) * (10**9 // RATE)
        seq += 1
        evs.append(Event(EventKind.ALLOC, seq=seq, ts_ns=ts, pid=2000, device=d, buffer_type=t, buffer_id=addr,
                         size=size, ref_count=1))
        seq += 1
        evs.append(Event(EventKind.FREE, seq=seq, ts_ns=ts + 2500, pid=2000, device=d, buffer_type=t,
                         buffer_id=addr, size=size))
    return evs


def query(state) -> None:
    for d in range(DEVICES):
        state.insight.device_doc(d)


def run_stream(state, events: list[Event], batch: int = 512, with_queries: bool = True) -> tuple[float, float, int]:
    """(seconds folding, seconds querying, queries); ``state.insight_s`` gets the insight's share of the fold."""
    fold = q = 0.0
    nq = 0
    since = 0
    orig = state.insight.observe
    state.insight_s = 0.0

    def timed(evs, st=None):
        t0 = time.process_time()
        orig(evs, st)
        state.insight_s += time.process_time() - t0

    state.insight.observe = timed
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        t = time.process_time()
        state.apply_events(chunk)
        fold += time.process_time() - t
        since += len(chunk)
        if with_queries and since >= FRAME_EVENTS:
            since = 0
            t = time.process_time()
            query(state)
            q += time.process_time() - t
            nq += 1
    state.insight.observe = orig
    return fold, q, nq


def fresh():
    st = new_state()
    st.inventory = Inventory.uniform(DEVICES)
    return st


def share(st, fold: float, n: int) -> str:
    ins = st.insight_s
    return (f"fold {1e6 * fold / n:.2f} us/event ({n / fold:,.0f} ev/s), of which insight {1e6 * ins / n:.2f} us/event "
            f"({100 * ins / fold:.0f} % of the fold; {100 * ins * RATE / n:.0f} % of a core at {RATE:,} ev/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=400_000)
    args = ap.parse_args()
    gc.freeze()
    events = churn(args.events)
    n = len(events)

    print(f"1. churn, {n:,} events in batches of 512, phases on, empty start")
    st = fresh()
    fold, q, nq = run_stream(st, events)
    print(f"   {share(st, fold, n)}")
    print(f"   queries (8 devices x 4 pools, every {FRAME_EVENTS:,} events): {nq} in {q * 1e3:.1f} ms "
          f"= {1e3 * q / max(1, nq):.2f} ms a frame")

    print(f"\n2. {args.live:,} live buffers on {DEVICES} devices, then the churn")
    bufs = resident(args.live)
    st = fresh()
    t = time.process_time()
    st.apply(Snapshot(bufs, args.live, 10**9, Inventory.uniform(DEVICES)))
    load = time.process_time() - t
    t = time.process_time()
    ins_load = time.process_time()
    st.insight.load(st.registry, st.inventory, 10**9)  # again, alone, to time the insight's share
    ins_load = time.process_time() - ins_load
    t = time.process_time()
    query(st)
    first = time.process_time() - t
    print(f"   attach: snapshot applied in {load:.2f} s (registry, phase seeding, insight); the insight's "
          f"share {ins_load:.2f} s; first query (builds the interval sets) {first:.2f} s")
    # memory of the insight alone: the same load again under tracemalloc
    from tt_memtop.core.insight import Insight

    probe = Insight()
    probe.set_inventory(st.inventory)
    tracemalloc.start()
    probe.load(st.registry, st.inventory, 10**9)
    for d in range(DEVICES):
        probe.device_doc(d)
    mem, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del probe
    print(f"   insight memory for {args.live:,} live buffers: {mem / 2**20:,.0f} MiB ({mem / args.live:.0f} B per buffer)")
    gc.freeze()  # as the UI does after a large registry growth
    s = st.insight.pool_stats(0, 0)
    print(f"   device 0 DRAM: {s.free_segments:,} free segments, largest free {s.largest_free:,} B per bank")
    fold2, q2, nq2 = run_stream(st, churn(args.events, t0=2 * 10**9))
    print(f"   churn with {args.live:,} live: {share(st, fold2, n)}")
    print(f"   queries: {nq2} in {q2 * 1e3:.1f} ms = {1e3 * q2 / max(1, nq2):.2f} ms a frame")
    # a burst of distinct new buffers (loading): every alloc is a real interval insert at flush time
    burst = []
    for i in range(100_000):
        d = i % DEVICES
        burst.append(Event(EventKind.ALLOC, ts_ns=3 * 10**9 + i * 5000, pid=3000, device=d, buffer_type=0,
                           buffer_id=0x20000000 + (i // DEVICES) * 4096, size=12 * 4096, ref_count=1))
    fold3, q3, nq3 = run_stream(st, burst)
    print(f"   100k distinct new DRAM buffers (loading): {len(burst) / (fold3 + q3):,.0f} ev/s including "
          f"{nq3} queries ({1e3 * q3 / max(1, nq3):.2f} ms a frame: the inserts happen there)")


if __name__ == "__main__":
    main()
