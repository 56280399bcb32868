"""What one frame of the monitor costs, per pane, with many live buffers and at a high event rate.

The real :class:`MemtopApp`, headless, its state attached to ``--live`` resident buffers (a snapshot,
as when attaching to a busy server), then per pane (feed, devices, processes, buffers): ``--frames``
frames idle, and ``--frames`` frames with ``--rate`` events/s folded between them (the fold itself
not counted). Per frame period (a tick of the app's frame timer), thread CPU time of the app's tick (widgets pull from the state), of
Textual's layout and render (each compositor update also turned into the bytes a terminal gets),
and "other": the rest of the thread's CPU between frames (Textual's messages — resize, scroll,
callbacks after a refresh —, timers, the event loop). ``--profile``: cProfile of the busy frames.
Folding a frame's events takes wall time here, so the busy frames come slower than ``--fps``: the
app's periods (samples, list refreshes, sparklines) are stretched by as much ("periods x"), so that
each frame bears the share of the periodic work it has at ``--fps``.

    python benchmarks/bench_frames.py [--live 1000000] [--rate 200000] [--frames 40] [--panes feed,devices] [--no-fill]
                                      [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _resident(live: int):
    from tt_memtop.core.registry import Buffer

    out = []
    for i in range(live):
        d = i % 8
        if i % 10 == 9:
            out.append(Buffer(d, 1_499_136 - 16 * (1 + i // 80), 1, 64 * 16, 1000 + i % 4, 1, i, i))
        else:
            out.append(Buffer(d, 0x1000_0000 + (i // 8) * 4096, 0, 12 * 4096, 1000 + i % 4, 1, i, i))
    return out


def _churn(n: int, seq0: int, ts0: int) -> list:
    """``n`` events as the monitor gets them: encoded as EVENTS records, then decoded (the compiled
    decoder's events are not tracked by the garbage collector; events made here in Python would be,
    and the collections they cause would land in whichever frame allocates)."""
    from tt_memtop.core import eventcodec as codec
    from tt_memtop.core.events import Event, EventKind

    out = []
    for j in range(n):  # each pair: allocate slot k, free the slot allocated 256 pairs earlier
        i = seq0 + j
        alloc = i % 2 == 0
        k = i // 2 if alloc else i // 2 - 256
        out.append(Event(EventKind.ALLOC if alloc else EventKind.FREE, seq=i, ts_ns=ts0 + j * 5000, pid=2000,
                         device=k % 8, buffer_type=0, buffer_id=0x4000_0000 + (k % 4096) * 0x10000,
                         size=98304 if k % 3 else 32768, ref_count=1 if alloc else 0))
    return [ev for i in range(0, n, 8192) for ev in codec.decode_events_body(codec.encode_events(out[i:i + 8192])[1:])]


def _source(buffers):
    import anyio

    from tt_memtop.core.devices import Inventory
    from tt_memtop.sources.base import Capability, Snapshot, Source, Status

    class AttachSource(Source):
        """Connected, one snapshot of the resident buffers, then quiet (the benchmark folds the churn)."""

        description = "bench_frames"
        local = False

        async def run(self, emit) -> None:
            emit(Status("connected", capabilities=frozenset({Capability.EVENTS, Capability.TOTALS})))
            emit(Snapshot(buffers, len(buffers), 1_000_000_000, Inventory.uniform(8)))
            await anyio.sleep_forever()

    return AttachSource()


def _stretch(app, state, events: int, seq: int, ts: int, fps: float) -> float:
    """Folding a frame's events here takes wall time the real app spreads between its frames, so the
    benchmark's frames come slower than ``fps``: the app's periods (samples, list refreshes, sparklines,
    the header's rate) are stretched by as much, so each frame bears its share of the periodic work as
    at ``fps`` (else the per-sample work, e.g. the headroom warnings' bank maps, would weigh 2-3 times)."""
    import tt_memtop.ui.app as app_module
    import tt_memtop.ui.widgets.device_pane as device_module

    t0 = time.perf_counter()
    state.apply_events(_churn(events, seq, ts))
    k = max(1.0, (time.perf_counter() - t0 + 1 / fps) * fps)
    app.sample_period *= k
    for mod, name in ((app_module, "LIST_PERIOD"), (app_module, "RATE_PERIOD"), (device_module, "SPARK_PERIOD")):
        if hasattr(mod, name):
            setattr(mod, name, getattr(mod, name) * k)
    return k


async def run_pane(args, pane: str, buffers) -> tuple[float, ...]:
    from rich.console import Console
    from textual._compositor import CompositorUpdate
    from textual.screen import Screen

    from tt_memtop.ui.app import MemtopApp, new_state

    state = new_state()
    src = _source(buffers)
    app = MemtopApp(src, state=state, fps=args.fps, pane=pane)
    cpu = [0.0, 0.0]
    ticks = [0]
    orig_tick = app._tick

    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()

    def tick() -> None:
        c0 = time.thread_time()
        orig_tick()
        cpu[0] += time.thread_time() - c0
        ticks[0] += 1

    app._tick = tick
    timer_update = Screen._on_timer_update

    def on_timer_update(screen) -> None:
        c0 = time.thread_time()
        timer_update(screen)
        cpu[1] += time.thread_time() - c0

    Screen._on_timer_update = on_timer_update
    sink = Console(file=open(os.devnull, "w"), force_terminal=True, color_system="truecolor",  # noqa: SIM115
                   width=args.width, height=args.height, legacy_windows=False)
    orig_display = app._display
    frames = [0]

    def display(screen, renderable) -> None:
        orig_display(screen, renderable)
        if isinstance(renderable, CompositorUpdate):
            c0 = time.thread_time()
            sink.file.write(renderable.render_segments(sink))
            cpu[1] += time.thread_time() - c0
            frames[0] += 1

    app._display = display
    out = []
    import tt_memtop.ui.app as app_module
    import tt_memtop.ui.widgets.device_pane as device_module

    periods = [(m, n, getattr(m, n)) for m, n in ((app_module, "LIST_PERIOD"), (app_module, "RATE_PERIOD"),
                                                  (device_module, "SPARK_PERIOD")) if hasattr(m, n)]
    stretch = 1.0
    try:
        async with app.run_test(headless=True, size=(args.width, args.height)) as pilot:
            while app.state.registry.seq < len(buffers):
                await pilot.pause(0.1)
            await pilot.pause(1.0)  # the first ranking / bank maps
            per_frame = int(args.rate / args.fps)
            seq, ts = state.registry.seq + 1, state.last_ts_ns + 1
            for events in (0, per_frame):
                if events and args.fill:  # the model's feed ring full, as half a second after attaching at 200k/s
                    fill = state.feed.maxlen or 0
                    state.apply_events(_churn(fill, seq, ts))
                    seq += fill
                    ts += fill * 5000
                    await asyncio.sleep(0.5)
                if events:
                    stretch = _stretch(app, state, events, seq, ts, args.fps)
                    seq += events
                    ts += events * 5000
                c0, f0, t0 = list(cpu), frames[0], ticks[0]
                fold = 0.0
                p0 = time.thread_time()
                for _ in range(args.frames):
                    if events:
                        f1 = time.thread_time()
                        state.apply_events(_churn(events, seq, ts))
                        fold += time.thread_time() - f1
                        seq += events
                        ts += events * 5000
                    if prof is not None and events:
                        prof.enable()
                    await asyncio.sleep(1 / args.fps)  # not pilot.pause: it messages every widget and draws
                    if prof is not None:
                        prof.disable()
                # per frame period (a tick), the goal's unit: a tick that changed nothing on screen displays
                # no frame, and dividing by displayed frames would charge the skipped ones to the others
                n = max(1, ticks[0] - t0)
                shown = (frames[0] - f0) / n
                tick_ms, render_ms = (cpu[0] - c0[0]) / n * 1e3, (cpu[1] - c0[1]) / n * 1e3
                # the rest of the thread's CPU between frames: Textual's messages (resize, scroll,
                # callbacks after refresh), timers, the event loop; the fold (and making its events) not
                whole_ms = (time.thread_time() - p0 - fold) / n * 1e3
                out += [tick_ms, render_ms, whole_ms - tick_ms - render_ms, shown]
        out.append(stretch)
    finally:
        Screen._on_timer_update = timer_update
        for mod, name, value in periods:
            setattr(mod, name, value)
    if prof is not None:
        import pstats

        print(f"--- {pane}: the busy frames (everything between two folds), by own time, then cumulative")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    return tuple(out)


async def main(args) -> int:
    buffers = _resident(args.live)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.live:,} live buffers; {args.width}x{args.height}; "
          f"busy = {args.rate:,.0f} events/s folded between frames (not counted)")
    print("per frame period (tick); 'shown' = displayed frames per tick")
    print(f"{'pane':<10} {'idle tick ms':>12} {'render ms':>10} {'busy tick ms':>12} {'render ms':>10} {'other ms':>9}"
          f" {'sum ms':>7} {'shown':>6} {'periods x':>9}")
    for pane in args.panes.split(","):
        r = await run_pane(args, pane, buffers)  # idle "other" is left out (the app sits in the event loop)
        print(f"{pane:<10} {r[0]:>12.2f} {r[1]:>10.2f} {r[4]:>12.2f} {r[5]:>10.2f} {r[6]:>9.2f} "
              f"{r[4] + r[5] + r[6]:>7.2f} {r[7]:>6.2f} {r[8]:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--live", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=200_000)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--fps", type=float, default=20.0)
    p.add_argument("--width", type=int, default=200)
    p.add_argument("--height", type=int, default=50)
    p.add_argument("--panes", default="feed,devices,processes,buffers")
    p.add_argument("--fill", action=argparse.BooleanOptionalAction, default=True,
                   help="fill the model's feed ring before the busy frames (--no-fill: the first frames after "
                        "attaching, which bring every event of the frame to the feed)")
    p.add_argument("--profile", action="store_true", help="cProfile the busy frames")
    sys.exit(asyncio.run(main(p.parse_args())))
