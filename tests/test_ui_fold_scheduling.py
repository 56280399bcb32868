"""The monitor's event loop: folding in slices, frames on time, and no stray loop errors at exit."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tt_memtop.ui.app import ignore_stale_wakeups


async def _race(loop: asyncio.AbstractEventLoop) -> None:
    """A reader callback ``future.set_result`` firing after its future was cancelled (anyio's receive,
    cancelled while data arrives: what the app's shutdown does to its ingest worker)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        f = loop.create_future()
        loop.add_reader(a.fileno(), f.set_result, None)
        f.cancel()
        b.send(b"x")
        for _ in range(20):
            await asyncio.sleep(0.001)
        loop.remove_reader(a.fileno())
    finally:
        a.close()
        b.close()


@pytest.mark.asyncio
async def test_a_cancelled_socket_wait_prints_nothing_other_errors_still_do():
    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    try:
        await _race(loop)
        assert any(isinstance(c.get("exception"), asyncio.InvalidStateError) for c in seen)  # the race is real
        seen.clear()
        ignore_stale_wakeups(loop)
        ignore_stale_wakeups(loop)  # idempotent
        await _race(loop)
        assert seen == []

        def boom() -> None:
            raise RuntimeError("a real error")

        loop.call_soon(boom)
        await asyncio.sleep(0.01)
        assert [type(c.get("exception")) for c in seen] == [RuntimeError]
    finally:
        loop.set_exception_handler(old)


def _churn(n: int, start: int = 0) -> list:
    from tt_memtop.core.events import Event, EventKind

    out = []
    for i in range(start, start + n):
        kind = EventKind.ALLOC if i % 2 == 0 else EventKind.FREE
        out.append(Event(kind, seq=i + 1, ts_ns=1_000_000_000 + i * 1000, pid=7, device=i % 8, buffer_type=0,
                         buffer_id=0x100000 + (i // 2) * 0x1000, size=65536, ref_count=1 if kind == EventKind.ALLOC else 0))
    return out


@pytest.mark.asyncio
async def test_small_batches_are_folded_together_in_order_and_the_chunk_follows_the_cost():
    import anyio
    from ui_fakes import FakeSource

    from tt_memtop.core.model import new_state
    from tt_memtop.sources.base import EventBatch
    from tt_memtop.ui.app import CHUNK_MAX, CHUNK_MIN, MemtopApp

    src = FakeSource(8, [])
    state = new_state()
    calls: list[int] = []
    fold = state.apply_events

    def counting(events):
        calls.append(len(events))
        fold(events)

    state.apply_events = counting
    app = MemtopApp(src, clock=lambda: 0.0, state=state, pane="feed")
    async with app.run_test(headless=True, size=(120, 30)) as pilot:
        with anyio.fail_after(20):
            while src.emit is None:
                await pilot.pause(0.02)
        events = _churn(6000)
        for i in range(0, 6000, 100):  # 60 records of 100 events, all queued before the fold runs again
            app.emit(EventBatch(events[i:i + 100]))
        with anyio.fail_after(30):
            while state.events_total < 6000:
                await pilot.pause(0.05)
    assert [e.seq for e in state.feed] == list(range(1, 6001))  # nothing lost, nothing reordered
    assert len(calls) < 60 and max(calls) > 100  # folded together, not record by record
    assert CHUNK_MIN <= app._chunk <= CHUNK_MAX and app._fold_cost > 0
    assert app._pending_events == 0
