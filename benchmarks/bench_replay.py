"""Memory and speed of ``memtop analyze``, ``memtop report`` and a headless ``memtop replay`` on a long recording.

Writes a recording with the project's own writer (:class:`~tt_memtop.recording.RecordingWriter`),
several sessions appended as ``memtop serve --record`` does on restarts, then runs each command as
a subprocess and prints its wall time, CPU time, peak RSS (``wait4`` rusage of that child alone)
and events/s. Goal (issue 15): a 16 M-event recording replayed, analyzed and reported in < 1 GB.

The workload is a T3K model run per session (8 devices): weights loaded and kept, a warm-up of
churn, a trace captured (a TRACE buffer per device), then decode iterations allocating and freeing
activations at the same addresses (some re-used: REF_INC / REF_DEC), at 40k events/s; the last
weights of a session stay live, so the next session's start ends them (CLEANUP events).

    python benchmarks/bench_replay.py                         # 1 M events (~1 min)
    python benchmarks/bench_replay.py --events 16000000       # the issue's figure
    python benchmarks/bench_replay.py --gzip --log            # also a gzipped recording / a server log
    python benchmarks/bench_replay.py --keep rec.ttrec --only report
    python benchmarks/bench_replay.py --keep rec.ttrec --only seek --src OLD --src NEW   # the player's seeks

``--log`` also writes the same events as an original-server log (the original's line formats)
and runs the three commands on it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tt_memtop.core import logformat as lf
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.recording import RecordingWriter

DEVICES = 8
RATE = 40_000  # events per second of recorded time
BATCH = 512  # events per EVENTS record (a socket read's worth)
_ALLOC, _FREE, _INC, _DEC = EventKind.ALLOC, EventKind.FREE, EventKind.REF_INC, EventKind.REF_DEC


class _Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def session_events(pid: int, n: int, t0: int, seed: int):
    """About ``n`` events of one model run, as (kind, device, type, buffer_id, size, ref_count) tuples."""
    out = 0
    weights = min(4000, max(50, n // 200))  # per device
    w_base = 0x4000_0000 + seed * 0x100_0000
    for dev in range(DEVICES):
        for i in range(weights):
            yield _ALLOC, dev, 0, w_base + i * 0x1000, 1 << (14 + i % 6), 1
    out += weights * DEVICES
    warm = min(n // 20, 200_000)
    i = 0
    while out < warm + weights * DEVICES:  # warm-up: many shapes, temporaries freed young
        dev = i % DEVICES
        bid = 0x1000_0000 + (i // DEVICES % 977) * 0x2000
        yield _ALLOC, dev, 1, bid, 4096 * (1 + i % 7), 1
        yield _FREE, dev, 1, bid, 4096 * (1 + i % 7), 0
        out += 2
        i += 1
    for dev in range(DEVICES):  # the trace buffer
        yield _ALLOC, dev, 4, 0x7000_0000, 8 << 20, 1
    out += DEVICES
    it = 0
    while out < n - weights * DEVICES // 2:  # decode iterations: the same addresses every time
        it += 1
        for dev in range(DEVICES):
            for a in range(6):
                bid = 0x2000_0000 + a * 0x4000
                yield _ALLOC, dev, a % 2, bid, 8192 << (a % 3), 1
            yield _INC, dev, 0, 0x2000_0000, 8192, 2
            yield _DEC, dev, 0, 0x2000_0000, 8192, 1
            for a in range(6):
                bid = 0x2000_0000 + a * 0x4000
                yield _FREE, dev, a % 2, bid, 8192 << (a % 3), 0
            out += 14
    for dev in range(DEVICES):  # teardown of half the weights; the rest stays live (the next start ends it)
        yield _FREE, dev, 4, 0x7000_0000, 8 << 20, 0
        for i in range(weights // 2):
            yield _FREE, dev, 0, w_base + i * 0x1000, 1 << (14 + i % 6), 0


def write_recording(path: str, n_events: int, sessions: int) -> int:
    """Write ``sessions`` appended sessions of about ``n_events`` events in all; returns the exact count."""
    inv = Inventory.uniform(DEVICES)
    total = 0
    wall = 1_700_000_000 * 10**9
    step = 10**9 // RATE
    for s in range(sessions):
        pid = 4242 + s
        clock = _Clock(10**12 + s * 10**9)
        t_start = clock.now
        w = RecordingWriter(path, inv, socket_path="/tmp/tt_allocation_server.sock", clock=clock,
                            wall_clock=lambda w=wall: w)
        seq = 0
        batch: list[Event] = []
        for kind, dev, bt, bid, size, refs in session_events(pid, n_events // sessions, t_start, s):
            seq += 1
            clock.now += step
            batch.append(Event(kind, seq=seq, ts_ns=clock.now, pid=pid, device=dev, buffer_type=bt, buffer_id=bid,
                               size=size, ref_count=refs))
            if len(batch) >= BATCH:
                w.write_events(batch)
                batch = []
        w.write_events(batch)
        w.close()
        total += seq
        wall += clock.now - t_start + 5 * 10**9  # the next server starts 5 s after this one's last event
    return total


def write_log(rec_path: str, log_path: str) -> int:
    """The recording's events as the original server prints them (one line per message)."""
    from tt_memtop.recording import RecordingReader

    n = 0
    with open(log_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lf.start_banner("/tmp/tt_allocation_server.sock", Inventory.uniform(DEVICES))) + "\n")
        for batch in RecordingReader(rec_path).batches():
            lines = [ln for ev in batch if ev.text == "" and (ln := lf.event_line(ev)) is not None]
            n += len(lines)
            f.write("\n".join(lines) + "\n")
    return n


def run(label: str, argv: list[str], events: int, src: str | None = None) -> None:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": src} if src else None
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=src or None)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace").strip() if p.stderr else ""
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    cpu = ru.ru_utime + ru.ru_stime
    rss_mb = ru.ru_maxrss / 1024  # KiB on Linux
    print(f"{label:<32} exit {code}  wall {wall:7.1f} s  cpu {cpu:7.1f} s  peak RSS {rss_mb:7.1f} MB "
          f"({rss_mb / 1024:.3f}x the 1 GB goal)  {events / max(cpu, 1e-9):>10,.0f} events/s (CPU)", flush=True)
    if code != 0 or err:
        print(f"{'':32} stderr: {err[-500:]}", flush=True)


_SEEK_CHILD = """
import asyncio, sys, time
from tt_memtop.core.model import new_state
from tt_memtop.sources.replay import ReplaySource
from tt_memtop.ui.app import MemtopApp

async def seek(app, src, fraction):
    f0, t0 = app.frames, time.perf_counter()
    src.seek(fraction)
    first = None
    while True:
        await asyncio.sleep(0.002)
        now = time.perf_counter() - t0
        if first is None and app.frames > f0:
            first = now
        if not src._ops and not getattr(src, "seeking", False) and not app._pending:
            f1 = app.frames
            while app.frames == f1:  # the new state on screen
                await asyncio.sleep(0.002)
            total = time.perf_counter() - t0
            return (total if first is None else first), total  # None: the loop was blocked until now

async def main(path):
    t = time.process_time()
    src = ReplaySource(path, paused=True)
    print(f"open (quick scan) {time.process_time() - t:.1f} s CPU", flush=True)
    app = MemtopApp(src, state=new_state(), pane="processes")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(1.0)
        for label, fraction in (("first seek to 50 %", 0.5), ("seek back to 45 %", 0.45),
                                ("seek forward to 60 %", 0.6)):
            c0 = time.process_time()
            first, total = await seek(app, src, fraction)
            print(f"{label:<22} first frame after {first * 1e3:8.0f} ms, new state on screen after {total:6.2f} s "
                  f"({time.process_time() - c0:.1f} s CPU), at {src.position:,} events", flush=True)
    if not hasattr(src, "indexed"):
        return
    src = ReplaySource(path, paused=True)  # a player left idle: it reads ahead, taking checkpoints
    app = MemtopApp(src, state=new_state(), pane="processes")
    async with app.run_test(size=(160, 45)) as pilot:
        t0, c0 = time.perf_counter(), time.process_time()
        while src.indexed < 0.6:
            await pilot.pause(0.1)
        print(f"idle player read 60 % ahead in {time.perf_counter() - t0:.1f} s ({time.process_time() - c0:.1f} s CPU, "
              f"{app.frames} frames drawn meanwhile)", flush=True)
        c0 = time.process_time()
        first, total = await seek(app, src, 0.5)
        print(f"{'then a seek to 50 %':<22} first frame after {first * 1e3:8.0f} ms, new state on screen after "
              f"{total:6.2f} s ({time.process_time() - c0:.1f} s CPU)", flush=True)

asyncio.run(main(sys.argv[1]))
"""


def run_seek(path: str, src: str | None) -> None:
    """The TUI player (a real App, headless) seeking a recording: time to the first frame after the
    seek key (the screen's responsiveness) and until the new state is on screen."""
    env = {**os.environ, "PYTHONPATH": src} if src else None
    tag = f" [{os.path.basename(src.rstrip('/'))}]" if src else ""
    print(f"player seeks{tag}, load average {os.getloadavg()[0]:.2f}:", flush=True)
    subprocess.run([sys.executable, "-c", _SEEK_CHILD, path], env=env, cwd=src or None, check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the recording (default 1 M)")
    ap.add_argument("--sessions", type=int, default=3, help="sessions appended (server restarts; default 3)")
    ap.add_argument("--gzip", action="store_true", help="also run on a gzipped copy of the recording")
    ap.add_argument("--log", action="store_true", help="also run on the same events as an original-server log")
    ap.add_argument("--no-recording", action="store_true", help="run only on the --gzip / --log inputs")
    ap.add_argument("--keep", metavar="PATH", help="write (or reuse, if it exists) the recording here and keep it")
    ap.add_argument("--only", choices=["analyze", "report", "replay", "seek"], action="append",
                    help="run only these commands (repeatable; seek: the TUI player's seeks, on the recording)")
    ap.add_argument("--src", action="append", metavar="DIR",
                    help="run the commands of the tt_memtop source tree in DIR (repeatable: A B A B comparisons; "
                         "default: the installed one)")
    ap.add_argument("--repeat", type=int, default=1, help="run each command this many times (default 1)")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_replay.")
    try:
        path = args.keep or os.path.join(tmp, "run.ttrec")
        t0 = time.perf_counter()
        if args.keep and os.path.exists(args.keep):
            from tt_memtop.recording import RecordingReader

            n = RecordingReader(path).scan()[0]
            print(f"reusing {path}: {n:,} events, {os.path.getsize(path) / 1e6:,.0f} MB")
        else:
            n = write_recording(path, args.events, args.sessions)
            print(f"wrote {path}: {n:,} events in {args.sessions} sessions, {os.path.getsize(path) / 1e6:,.0f} MB, "
                  f"in {time.perf_counter() - t0:.1f} s")
        print(f"load average: {os.getloadavg()[0]:.2f}")
        inputs = [] if args.no_recording else [("recording", path)]
        if args.gzip:
            gz = os.path.join(tmp, "run.ttrec.gz")
            with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            inputs.append(("recording.gz", gz))
        if args.log:
            log = os.path.join(tmp, "run.log")
            lines = write_log(path, log)
            print(f"wrote {log}: {lines:,} event lines, {os.path.getsize(log) / 1e6:,.0f} MB")
            inputs.append(("log", log))
        memtop = [sys.executable, "-m", "tt_memtop"]
        commands = {"analyze": ["analyze", "--json"], "report": ["report", "--json"],
                    "replay": ["replay", "--json"]}
        trees = args.src or [None]
        if not args.no_recording and (not args.only or "seek" in args.only):
            for _ in range(args.repeat):
                for src in trees:
                    run_seek(path, src)
        for what, p in inputs:
            for name, cmd in commands.items():
                if args.only and name not in args.only:
                    continue
                for _ in range(args.repeat):
                    for src in trees:  # interleaved: A B A B
                        tag = f" [{os.path.basename(src.rstrip('/'))}]" if src else ""
                        run(f"{name} {what}{tag}", memtop + cmd[:1] + [p] + cmd[1:], n, src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
