"""Micro-benchmark of the ingest path, without the UI: Registry.apply (server side),
Registry.apply_event (mirror side), MonitorState.apply_events with and without phase inference,
PhaseTracker.observe alone (on the churn stream and on a simulated Llama run, whose big buffers
exercise the phase rules), and the memory a registry of ``--live`` buffers takes.

Single-threaded and short, so far less noisy than ``bench_ui.py``; run it before and after a change.

    python benchmarks/bench_registry.py [--live 1000000] [--events 400000]

It also times, with ``--live`` entries, the single steps a server takes on its event loop that grow
with the registry (what can make a producer wait: issue 8.10), for the compiled table and pure
Python: ``freeze`` for a SUBSCRIBE, the worst 1024-entry snapshot slice, the whole snapshot's
encoding, and one 4096-entry slice of a dead process's cleanup (CPU time). bench_memory.py prints
bytes per live buffer of real server and monitor processes.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import MonitorState
from tt_memtop.core.phases import PhaseTracker
from tt_memtop.core.protocol import AllocMessage, MsgType
from tt_memtop.core.registry import Buffer, Registry
from tt_memtop.sim.scenarios import build, reference_events


def snapshot_buffers(live: int) -> list[Buffer]:
    """The same snapshot as bench_ui.py: ``live`` buffers over 8 devices and 4 PIDs."""
    rnd = random.Random(7)
    return [Buffer(i % 8, 0x10000 + (i // 8) * 0x100, rnd.choice((0, 1, 1, 3)), rnd.choice((256, 4096, 65536)),
                   1000 + i % 4, 1, i, i) for i in range(live)]


def churn_events(live: int, n: int) -> list[Event]:
    """Alloc/free pairs (as bench_ui.py): free the oldest snapshot buffer, allocate a new id."""
    evs = []
    next_id = 0x10000 + (live // 8 + 1) * 0x100
    seq = 0
    for oldest in range(n // 2):
        d = oldest % 8
        seq += 1
        evs.append(Event(EventKind.ALLOC, seq=seq, ts_ns=seq * 5000, pid=1000 + seq % 4, device=d, buffer_type=1,
                         buffer_id=next_id, size=4096, ref_count=1))
        seq += 1
        evs.append(Event(EventKind.FREE, seq=seq, ts_ns=seq * 5000, pid=1000 + oldest % 4, device=d, buffer_type=1,
                         buffer_id=0x10000 + (oldest // 8) * 0x100, size=4096))
        next_id += 0x100
    return evs


def churn_messages(n: int) -> list[AllocMessage]:
    """A server's diet: allocs of new ids on 4 devices, each freed 64 messages later."""
    msgs = []
    for i in range(n // 2):
        msgs.append(AllocMessage(type=MsgType.ALLOC, device_id=i % 4, size=4096, buffer_type=1, process_id=4242,
                                 buffer_id=0x1000 + i * 0x100))
        if i >= 32:
            j = i - 32
            msgs.append(AllocMessage(type=MsgType.FREE, device_id=j % 4, buffer_type=1, process_id=4242,
                                     buffer_id=0x1000 + j * 0x100))
    return msgs


def timed(label: str, n: int, fn) -> None:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"{label:<44}{n / dt:>12,.0f} ev/s {dt / n * 1e6:>8.2f} us/ev", flush=True)


def loop_steps(live: int) -> None:
    """CPU time of the registry's long steps with ``live`` entries, compiled table and pure Python."""
    for pure in (False, True):
        reg = Registry(pure)
        reg.load_snapshot(snapshot_buffers(live), live)
        label = "pure" if pure else ("native" if reg.native else "native (not built: pure)")
        gc.collect()
        c0 = time.process_time()
        fz = reg.freeze()
        c1 = time.process_time()
        pos, worst = 0, 0.0
        while pos < fz.done_at:
            s0 = time.process_time()
            _data, pos = fz.encode(pos, 1024)
            worst = max(worst, time.process_time() - s0)
        c2 = time.process_time()
        reg.thaw(fz)
        owner = 1000  # a quarter of the entries
        s0 = time.process_time()
        reg.cleanup([owner], 1, limit=4096)
        c3 = time.process_time()
        print(f"{label:<7} {live:,} live: freeze {1e3 * (c1 - c0):.1f} ms, worst snapshot slice "
              f"{1e3 * worst:.2f} ms, whole snapshot {1e3 * (c2 - c1):.0f} ms, a 4096-entry cleanup slice "
              f"{1e3 * (c3 - s0):.1f} ms (CPU)", flush=True)
        del reg, fz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=400_000)
    args = ap.parse_args()

    loop_steps(args.live)

    # memory of a registry holding `live` buffers (loaded from a snapshot, as the UI does)
    bufs = snapshot_buffers(args.live)
    gc.collect()
    tracemalloc.start()
    reg = Registry()
    t0 = time.perf_counter()
    reg.load_snapshot(bufs, 1)
    dt = time.perf_counter() - t0
    cur, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"load_snapshot of {args.live:,} buffers: {dt:.2f} s, {cur / 2**20:.0f} MiB traced "
          f"({cur / max(1, args.live):.0f} B/buffer; the compiled table's rows: {reg.nbytes() / max(1, args.live):.0f} B)")
    del bufs

    msgs = churn_messages(args.events)
    server = Registry()
    timed("Registry.apply (server)", len(msgs), lambda: [server.apply(m, 1) for m in msgs])

    evs = churn_events(args.live, args.events)
    timed("Registry.apply_event (1M live mirror)", len(evs), lambda: [reg.apply_event(e) for e in evs])
    reg = None  # free the 1M-buffer registry before the next runs

    for phases in (False, True):
        st = MonitorState(phases=PhaseTracker() if phases else None)
        st.registry.load_snapshot(snapshot_buffers(args.live), 1)

        def fold(st=st) -> None:
            for i in range(0, len(evs), 512):
                st.apply_events(evs[i:i + 512])
        timed(f"MonitorState.apply_events phases={'on' if phases else 'off'}", len(evs), fold)
        del st

    # the tracker alone, as MonitorState uses it: observe, then phase() of the event's PID
    llama = reference_events(build("llama-t3k"))
    for label, stream in (("churn", evs), ("llama-t3k", llama * max(1, args.events // len(llama)))):
        def track(stream=stream) -> None:
            tracker = PhaseTracker()
            observe, phase = tracker.observe, tracker.phase
            last = 0
            for ev in stream:
                if ev.ts_ns < last:  # a repeated run: start afresh (events must come in time order)
                    tracker = PhaseTracker()
                    observe, phase = tracker.observe, tracker.phase
                last = ev.ts_ns
                observe(ev)
                phase(ev.pid)
        timed(f"PhaseTracker.observe+phase ({label})", len(stream), track)


if __name__ == "__main__":
    main()
