"""Loaded by ``python benchmarks/bench_stall.py --step-profile``, in the server process only: which event-loop
steps take long, in CPU time of the loop thread (wall time on a shared machine mostly measures the OS).

Wraps ``asyncio.events.Handle._run``; at exit writes how many steps took over 20 ms of CPU and the longest
steps over ``MEMTOP_STEP_PROFILE_MS`` (default 20) ms, each with the coroutine stack it ran, to the file
named by ``MEMTOP_STEP_PROFILE``; then the loop passes (``BaseEventLoop._run_once``: one select and
every step it made ready) over 20 ms of CPU, with what they ran, since many short steps in one pass
delay every socket as much as one long step does.
"""

import os

if os.environ.get("MEMTOP_STEP_PROFILE"):
    import asyncio.events
    import atexit
    import time

    _run_handle = asyncio.events.Handle._run
    _long: list[tuple[float, str]] = []
    _floor = float(os.environ.get("MEMTOP_STEP_PROFILE_MS", "20")) / 1e3
    _worst = [0.0]
    _pass: list[tuple[float, str]] = []  # the steps of the current loop pass (over 0.5 ms)
    _passes: list[tuple[float, int, list]] = []  # (CPU, steps, its longest steps) of passes over 20 ms
    _worst_pass = [0.0]

    def _where(cb) -> str:
        task = getattr(cb, "__self__", None)
        if task is None or not hasattr(task, "get_coro"):
            return repr(cb)[:80]
        frames, coro = [], task.get_coro()
        while coro is not None:
            fr = getattr(coro, "cr_frame", None)
            if fr is not None:
                frames.append(f"{fr.f_code.co_name}:{fr.f_lineno}")
            coro = getattr(coro, "cr_await", None)
        return " > ".join(frames)

    def _timed(self) -> None:
        c0 = time.thread_time()
        _run_handle(self)
        dt = time.thread_time() - c0
        if dt > _worst[0]:
            _worst[0] = dt
        if dt > _floor:
            _long.append((dt, _where(getattr(self, "_callback", None))))
        if dt > 0.0005:
            _pass.append((dt, _where(getattr(self, "_callback", None))))

    asyncio.events.Handle._run = _timed

    import asyncio.base_events

    _run_once = asyncio.base_events.BaseEventLoop._run_once

    def _timed_pass(self) -> None:
        _pass.clear()
        n = len(self._ready)
        c0 = time.thread_time()
        _run_once(self)
        dt = time.thread_time() - c0
        _worst_pass[0] = max(_worst_pass[0], dt)
        if dt > 0.02:
            _passes.append((dt, n, sorted(_pass, reverse=True)[:6]))

    asyncio.base_events.BaseEventLoop._run_once = _timed_pass

    def _dump() -> None:
        with open(os.environ["MEMTOP_STEP_PROFILE"], "w") as f:
            over = sum(1 for dt, _ in _long if dt > 0.02)
            f.write(f"{over} steps over 20 ms of CPU; the longest took {_worst[0] * 1e3:.1f} ms\n")
            for dt, where in sorted(_long, reverse=True)[:40]:
                f.write(f"{dt * 1e3:8.1f} ms  {where}\n")
            f.write(f"{len(_passes)} loop passes over 20 ms of CPU; the longest took {_worst_pass[0] * 1e3:.1f} ms\n")
            for dt, _n, steps in sorted(_passes, key=lambda p: p[0], reverse=True)[:10]:
                f.write(f"{dt * 1e3:8.1f} ms pass, {len(steps)} steps over 0.5 ms, longest: "
                        + "; ".join(f"{d * 1e3:.1f} ms {w[-70:]}" for d, w in steps[:4]) + "\n")

    atexit.register(_dump)
