"""Throughput benchmark of the memtop TUI: can it draw 20+ fps while ingesting 200k events/s?

Headless (Textual's test driver renders real frames to a null terminal). The source first loads
``--live`` buffers with a snapshot (default 1 M), then streams alloc/free churn at ``--rate``
events/s for ``--seconds``. Reported: frames/s, event-to-screen lag (time from a batch's emit to
the first frame drawn after it), ingest rate achieved, RSS.

    python benchmarks/bench_ui.py [--rate 200000] [--seconds 10] [--live 1000000] [--pane feed|buffers] [--raw]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import random
import resource
import sys
import time

import anyio

from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.registry import Buffer
from tt_memtop.sources.base import Capability, EventBatch, Snapshot, Source, Status
from tt_memtop.ui.app import MemtopApp, new_state

BATCH = 2000


class ChurnSource(Source):
    """Snapshot of ``live`` buffers over 8 devices, then alloc/free pairs keeping the live count steady."""

    description = "benchmark churn"
    local = False

    def __init__(self, rate: int, seconds: float, live: int) -> None:
        self.rate, self.seconds, self.live = rate, seconds, live
        self.emits: list[tuple[float, int]] = []  # (monotonic time, events emitted so far)
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.total = 0

    async def run(self, emit) -> None:
        rnd = random.Random(7)
        emit(Status("connected", capabilities=frozenset({Capability.EVENTS, Capability.TOTALS})))
        bufs = [Buffer(i % 8, 0x10000 + (i // 8) * 0x100, rnd.choice((0, 1, 1, 3)), rnd.choice((256, 4096, 65536)),
                       1000 + i % 4, 1, i, i) for i in range(self.live)]
        emit(Snapshot(bufs, 0, 1, Inventory.uniform(8)))
        del bufs
        self.started.set()
        seq = 0
        next_id = 0x10000 + (self.live // 8 + 1) * 0x100
        oldest = 0  # free the oldest snapshot buffers, allocate new ids: live count stays put
        t0 = time.monotonic()
        while True:
            now = time.monotonic()
            if now - t0 >= self.seconds:
                break
            due = int((now - t0) * self.rate) - self.total
            while due > 0:
                evs = []
                for _ in range(BATCH // 2):
                    seq += 1
                    d = oldest % 8
                    evs.append(Event(EventKind.ALLOC, seq=seq, ts_ns=seq * 5000, pid=1000 + seq % 4, device=d,
                                     buffer_type=1, buffer_id=next_id, size=4096, ref_count=1))
                    seq += 1
                    evs.append(Event(EventKind.FREE, seq=seq, ts_ns=seq * 5000, pid=1000 + oldest % 4, device=d,
                                     buffer_type=1, buffer_id=0x10000 + (oldest // 8) * 0x100, size=4096))
                    oldest += 1
                    next_id += 0x100
                emit(EventBatch(evs))
                self.total += len(evs)
                due -= len(evs)
                self.emits.append((time.monotonic(), self.total))
                await asyncio.sleep(0)
            await asyncio.sleep(0.002)
        self.finished.set()
        await anyio.sleep_forever()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GcTimer:
    """Time spent in cyclic garbage collections, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.total = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.longest = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            dt = time.perf_counter() - self._t0
            g = info["generation"]
            self.total[g] += dt
            self.count[g] += 1
            self.longest = max(self.longest, dt)

    def __str__(self) -> str:
        per = "  ".join(f"gen{g} {self.count[g]}x {self.total[g] * 1000:.0f} ms" for g in range(3))
        return f"GC pauses: {per}; longest {self.longest * 1000:.0f} ms"


async def main(args) -> int:
    src = ChurnSource(args.rate, args.seconds, args.live)
    gct = GcTimer()
    state = new_state(phases=not args.no_phases)
    app = MemtopApp(src, state=state, fps=args.fps, pane=args.pane, feed_grouped=not args.raw)
    frames: list[tuple[float, int]] = []
    orig_tick = app._tick

    def tick() -> None:
        orig_tick()
        frames.append((time.monotonic(), app.last_frame_events))

    app._tick = tick  # an instance attribute: on_mount's set_interval picks up the wrapper
    async with app.run_test(headless=True, size=(200, 50)) as pilot:
        await src.started.wait()
        t_load = time.monotonic()
        await src.finished.wait()
        t_end = time.monotonic()
        await pilot.pause(0.3)
        rss = rss_mb()
    t_start = src.emits[0][0] if src.emits else t_load
    span = [f for f in frames if t_start <= f[0] <= t_end]
    fps = len(span) / (t_end - t_start) if t_end > t_start else 0
    # lag of a batch: from its emit to the first frame drawn with it folded in
    fcounts = [f[1] for f in frames]  # non-decreasing
    lags = []
    for t_emit, cum in src.emits:
        i = bisect.bisect_left(fcounts, cum)
        if i < len(frames):
            lags.append(max(0.0, frames[i][0] - t_emit))
        else:
            lags.append(float("inf"))
    lags.sort()

    def pct(p: float) -> float:
        return lags[min(len(lags) - 1, int(p * len(lags)))] * 1000 if lags else float("nan")

    print(f"pane={args.pane} live={len(state.registry):,} buffers, phases={'on' if state.phases else 'off'}")
    print(f"ingested {src.total:,} events in {t_end - t_start:.1f} s = {src.total / (t_end - t_start):,.0f} ev/s "
          f"(target {args.rate:,})")
    print(f"frames/s {fps:.1f} (target >= 20)   ticks counted {len(span)}")
    print(f"event-to-screen lag ms: p50 {pct(0.5):.0f}  p90 {pct(0.9):.0f}  p99 {pct(0.99):.0f}  max {pct(1.0):.0f}"
          f" (target < 100)")
    print(f"RSS {rss:.0f} MB (target < 400)")
    print(gct)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=200_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--live", type=int, default=1_000_000)
    p.add_argument("--fps", type=float, default=20.0)
    p.add_argument("--pane", default="feed", choices=["feed", "buffers", "processes", "devices"])
    p.add_argument("--raw", action="store_true", help="the feed shows every event (default: grouped)")
    p.add_argument("--no-phases", action="store_true")
    sys.exit(asyncio.run(main(p.parse_args())))
