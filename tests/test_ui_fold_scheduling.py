"""The monitor's event loop: no stray loop errors when it quits while data arrives."""

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

