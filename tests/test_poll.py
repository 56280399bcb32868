"""PollSource and open_source against real servers on real Unix sockets (A's server as the original)."""

from __future__ import annotations

import argparse

import anyio
import pytest
from server_helpers import running_server, short_socket

from tt_memtop.client import AllocationClient
from tt_memtop.core.model import MonitorState
from tt_memtop.core.protocol import Layout
from tt_memtop.sources.base import Capability, TotalsSample
from tt_memtop.sources.follow import FollowLogSource
from tt_memtop.sources.open import FollowWithPolling, open_source_async
from tt_memtop.sources.poll import PollSource, detect_layout
from tt_memtop.sources.subscribe import SubscribeSource

WAIT = 10.0


async def until(cond) -> None:
    with anyio.fail_after(WAIT):
        while not cond():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("layout", [72, 112, 128, 144])
async def test_detect_and_poll_each_layout(tmp_path, layout):
    path = short_socket(tmp_path)
    async with running_server(path, extensions=False, layout=layout):
        assert await detect_layout(path) == Layout(layout)
        async with await AllocationClient.connect(path, layout) as c:
            await c.alloc(1, 4096, 1, 0x1000)
            await c.alloc(1, 1 << 20, 0, 0x2000)
            await c.alloc(0, 256, 2, 0x10)  # SYSTEM_MEMORY: counted in l1_small on the wire
        state = MonitorState()
        samples: list[TotalsSample] = []

        def emit(u):
            state.apply(u)
            if isinstance(u, TotalsSample):
                samples.append(u)

        async with anyio.create_task_group() as tg:
            tg.start_soon(PollSource(path, interval=0.02).run, emit)
            await until(lambda: len(samples) >= 2)
            tg.cancel_scope.cancel()
    assert state.capabilities == frozenset({Capability.TOTALS})
    assert "memtop serve" in state.status.message and "--follow" in state.status.message
    last = samples[-1].totals
    assert last[1][:2] == (1 << 20, 4096) and last[0][2] == 256
    if layout == 72:
        assert samples[-1].inventory is None  # the original 72-byte server has no DEVICE_INFO
    else:
        assert len(samples[-1].inventory) == 2 and set(last) == {0, 1}
    assert state.device_wire_totals(1)[:2] == (1 << 20, 4096)


async def test_forced_protocol_and_reconnect(tmp_path):
    path = short_socket(tmp_path)
    state = MonitorState()
    states: list[str] = []

    def emit(u):
        state.apply(u)
        if not isinstance(u, TotalsSample):
            states.append(u.state)

    src = PollSource(path, interval=0.02, layout="112")
    async with anyio.create_task_group() as tg:
        async with running_server(path, extensions=False, layout=112):
            tg.start_soon(src.run, emit)
            await until(lambda: "connected" in states)
        await until(lambda: "disconnected" in states)  # the server went away
        async with running_server(path, extensions=False, layout=112):
            async with await AllocationClient.connect(path, 112) as c:
                await c.alloc(0, 8192, 0, 0x40)
            await until(lambda: state.polled.get(0, (0,))[0] == 8192)
        tg.cancel_scope.cancel()
    assert states.count("connected") >= 2 and src.layout == Layout.V112


async def test_nothing_answers(tmp_path):
    missing = short_socket(tmp_path, "none.sock")
    with pytest.raises(OSError):
        await detect_layout(missing)
    args = argparse.Namespace(socket=missing, protocol="auto", interval=0.5, follow=None)
    assert await open_source_async(args) is None
    # a socket that accepts but never replies (not an allocation server)
    mute = short_socket(tmp_path, "mute.sock")
    listener = await anyio.create_unix_listener(mute)

    async def swallow(stream):
        async with stream:
            async for _ in stream:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, swallow)
        assert await detect_layout(mute, timeout=0.05) is None
        tg.cancel_scope.cancel()


async def test_open_source_picks_the_best(tmp_path):
    path = short_socket(tmp_path)
    log = tmp_path / "server.log"
    log.write_text("")
    args = argparse.Namespace(socket=path, protocol="auto", interval=0.5, follow=None)
    async with running_server(path, extensions=True):
        assert isinstance(await open_source_async(args), SubscribeSource)
    async with running_server(path, extensions=False, layout=144):
        src = await open_source_async(args)
        # auto stays auto: the detected layout is not handed on as if forced (reconnects re-detect)
        assert isinstance(src, PollSource) and src.forced is None
        args.follow = str(log)
        assert isinstance(await open_source_async(args), FollowWithPolling)
    assert isinstance(await open_source_async(args), FollowLogSource)
