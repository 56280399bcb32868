"""Loaded by ``python benchmarks/bench_stall.py --step-profile``, in the server process only: which event-loop
steps take long, in CPU time of the loop thread (wall time on a shared machine mostly measures the OS).

Wraps ``asyncio.events.Handle._run``; at exit writes how many steps took over 20 ms of CPU and the longest
steps over ``MEMTOP_STEP_PROFILE_MS`` (default 20) ms, each with the coroutine stack it ran, to the file
named by ``MEMTOP_STEP_PROFILE``.
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

    asyncio.events.Handle._run = _timed

    def _dump() -> None:
        with open(os.environ["MEMTOP_STEP_PROFILE"], "w") as f:
            over = sum(1 for dt, _ in _long if dt > 0.02)
            f.write(f"{over} steps over 20 ms of CPU; the longest took {_worst[0] * 1e3:.1f} ms\n")
            for dt, where in sorted(_long, reverse=True)[:40]:
                f.write(f"{dt * 1e3:8.1f} ms  {where}\n")

    atexit.register(_dump)
