"""Cost of reading TT-Metal's shared-memory statistics: one full scan of N regions, and the CPU the
SHM source takes at its default sampling rate.

A Galaxy has 32 chips, so 32 regions (``tt_device_<id>_memory``, v4, 8576 bytes each) are written
by the simulator's writer in a temporary directory, each with ``--procs`` attached processes
holding memory. Then:

* ``scan``: :meth:`ShmSource.scan` (list the directory, copy each mapped region until two copies
  agree, parse it, check every slot's PID with ``kill(pid, 0)``, build the view), best / median of
  ``--repeat`` runs, in µs per scan and per region: with every region changed since the last scan
  (all parsed), and with none changed (an unchanged copy is not parsed again);
* ``parse``: :func:`parse_region` alone on one region's bytes;
* ``cpu``: the source's ``run()`` for ``--seconds`` at its default interval (50 ms, 20 Hz) while a
  writer keeps changing one region (so samples are emitted), as process CPU time / wall time;
* ``phases``: how well trace phases are inferred from per-process totals sampled at 20 Hz (no
  events), against the simulated scenarios' ground truth.

    python benchmarks/bench_shm.py [--regions 32] [--procs 2] [--repeat 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import anyio

from tt_memtop.core.shm_layout import parse_region
from tt_memtop.sim.shm_writer import RegionWriter, sim_chip_unique_id
from tt_memtop.sources.shm import DEFAULT_INTERVAL, ShmSource

MiB = 1024 * 1024


def make_regions(shm_dir: str, regions: int, procs: int) -> list[RegionWriter]:
    """``regions`` regions with ``procs`` live slots each: ours, then PID 1 (always alive)."""
    writers = []
    for d in range(regions):
        for p in range(procs):
            w = RegionWriter(shm_dir, sim_chip_unique_id(d), d, pid=os.getpid() if p == 0 else 1, name=f"proc{p}",
                             alive=lambda _pid: True)
            w.record(0, (p + 1) * 512 * MiB, True)
            w.record(4, 12_503_040, True)
            w.record(1, 3 * MiB, True)
            writers.append(w)
    return writers


def bench_scan(src: ShmSource, repeat: int, changed: bool) -> list[float]:
    """``changed``: every region parsed again (as when all of them changed since the last scan);
    else the steady state of quiet regions (an unchanged copy is not parsed again)."""
    src.scan()  # map everything once (the source keeps the mappings)
    out = []
    for _ in range(repeat):
        if changed:
            for m in src._maps.values():
                m.parsed = None
        t0 = time.perf_counter()
        src.scan()
        out.append(time.perf_counter() - t0)
    return out


async def bench_cpu(src: ShmSource, writer: RegionWriter, seconds: float) -> tuple[float, int]:
    emitted = 0

    def emit(_update) -> None:
        nonlocal emitted
        emitted += 1

    async def churn() -> None:
        while True:
            writer.record(0, 4096, True)
            await anyio.sleep(0.2)

    c0, t0 = time.process_time(), time.perf_counter()
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            tg.start_soon(churn)
            tg.start_soon(src.run, emit)
    # the churn task's own cost (one write every 200 ms) is included: an upper bound
    return (time.process_time() - c0) / (time.perf_counter() - t0), emitted


def phase_accuracy(name: str, period_s: float = DEFAULT_INTERVAL) -> tuple[float, float]:
    """Time-weighted agreement of phases inferred from per-process totals sampled every ``period_s``
    with the scenario's ground-truth labels: (offline segments as ``memtop analyze`` gives them,
    live segments). What the SHM source can see: totals per (pid, device), no events."""
    from tt_memtop.core.phases import PhaseTracker
    from tt_memtop.core.registry import Registry
    from tt_memtop.core.usage import ProcessUsage, TotalsEvents
    from tt_memtop.sim.scenarios import BASE_PID, build, reference_events

    sc = build(name)
    reg, conv, tracker = Registry(), TotalsEvents(), PhaseTracker()
    events = reference_events(sc)
    exits = {BASE_PID + p.slot: (p.exit_s, p.leaks) for p in sc.processes}
    i, t = 0, 0.0
    while t <= sc.duration_s + 1.0:
        ns = int(t * 1e9)
        while i < len(events) and events[i].ts_ns <= ns:
            reg.apply_event(events[i])
            i += 1
        procs = {}
        for pid, (exit_s, leaks) in exits.items():
            if t >= exit_s and not leaks:
                continue  # slot released
            devs = {d: (v[0], v[1], v[3], v[4], v[5], 0) for d, v in reg.pid_device_totals(pid).items()}
            procs[pid] = ProcessUsage(pid, "", not (t >= exit_s), devs)
        for ev in conv.events(ns, procs):
            tracker.observe(ev)
        tracker.tick(ns)
        t += period_s
    end = sc.duration_s

    def agree(segs) -> float:
        total = ok = 0.0
        for lab in sc.labels():
            hi = min(lab.end_s, end)
            total += max(0.0, hi - lab.start_s)
            for seg in segs:
                if seg.pid == BASE_PID + lab.slot and seg.phase is lab.phase:
                    ok += max(0.0, min(hi, seg.end_ns / 1e9) - max(lab.start_s, seg.start_ns / 1e9))
        return ok / total if total else 1.0

    return agree(tracker.segments(relabel_capture=True)), agree(tracker.segments())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=32)
    ap.add_argument("--procs", type=int, default=2, help="attached processes per region")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shm-") as d:
        writers = make_regions(d, args.regions, args.procs)
        src = ShmSource(d)
        for changed in (True, False):
            times = bench_scan(src, args.repeat, changed)
            best, med = min(times) * 1e6, statistics.median(times) * 1e6
            what = "all changed" if changed else "none changed"
            print(f"scan of {args.regions} regions ({args.procs} processes each, {what}): best {best:,.0f} µs, "
                  f"median {med:,.0f} µs ({med / args.regions:,.1f} µs per region)")
        data = open(os.path.join(d, os.listdir(d)[0]), "rb").read()
        t0 = time.perf_counter()
        n = 2000
        for _ in range(n):
            parse_region(data)
        print(f"parse_region alone: {(time.perf_counter() - t0) / n * 1e6:,.1f} µs per region")
        share, emitted = anyio.run(bench_cpu, ShmSource(d), writers[0], args.seconds)
        print(f"source at the default {1 / DEFAULT_INTERVAL:g} Hz for {args.seconds:g} s: {100 * share:.2f} % of one "
              f"core ({emitted} updates emitted)")
        print(f"(median scan, none changed, x {1 / DEFAULT_INTERVAL:g} Hz = "
              f"{med * 1e-6 / DEFAULT_INTERVAL * 100:.2f} % of one core)")
        for w in writers:
            w.mm.close()
            os.close(w.fd)
    for name in ("llama-t3k", "two-process", "cnn"):
        offline, live = phase_accuracy(name)
        print(f"phases from per-process totals at {1 / DEFAULT_INTERVAL:g} Hz, {name}: offline {offline:.1%}, "
              f"live segments {live:.1%} of the labelled time")


if __name__ == "__main__":
    main()
