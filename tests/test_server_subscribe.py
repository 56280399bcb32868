"""Subscription: snapshot + gap-free events, mirrors equal the server, slow subscribers resync, producers never block."""

from __future__ import annotations

import socket
import time

import anyio
from server_helpers import raw_connect, running_server, short_socket

from tt_memtop.client import AllocationClient, Resync, subscribe
from tt_memtop.core.events import EventKind
from tt_memtop.core.protocol import AllocMessage, Layout, MsgType, encode
from tt_memtop.core.registry import Registry
from tt_memtop.sources.base import EventBatch, Snapshot, Status
from tt_memtop.sources.subscribe import SubscribeSource, probe_extension


def _alloc(i: int, dev: int = 0) -> AllocMessage:
    return AllocMessage(type=MsgType.ALLOC, device_id=dev, size=1024 + i, buffer_type=i % 5, process_id=77,
                        buffer_id=i)


def _mirror_state(reg: Registry):
    return sorted((b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, b.ref_count) for b in reg.buffers())


async def test_snapshot_then_gap_free_events_and_mirror_matches(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path) as server:
        async with await AllocationClient.connect(path, Layout.V144) as c:
            for i in range(50):
                await c.send(_alloc(i))
            await c.query(0)
            mirror = Registry()
            seqs: list[int] = []
            async with anyio.create_task_group() as tg:
                async def consume():
                    async for item in subscribe(path):
                        if isinstance(item, Snapshot):
                            assert item.seq == 50 and len(item.buffers) == 50 and item.inventory is not None
                            mirror.load_snapshot(item.buffers, item.seq)
                        elif isinstance(item, EventBatch):
                            for ev in item.events:
                                seqs.append(ev.seq)
                                mirror.apply_event(ev)
                            if mirror.seq >= server.registry.seq and seqs and seqs[-1] > 150:
                                tg.cancel_scope.cancel()
                tg.start_soon(consume)
                await anyio.sleep(0.1)
                for i in range(50, 100):
                    await c.send(_alloc(i, dev=1))
                for i in range(0, 100, 2):
                    await c.free(0 if i < 50 else 1, i, pid=77)
                for i in range(3):
                    await c.send(_alloc(200 + i))
                await c.query(0)
                with anyio.fail_after(5):
                    while not (seqs and seqs[-1] >= server.registry.seq):
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    assert seqs == list(range(51, 51 + len(seqs)))
    assert _mirror_state(mirror) == _mirror_state(server.registry)
    mirror.check_invariants()


async def test_slow_subscriber_gets_resync_and_producer_never_blocks(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, subscriber_queue=1000) as server:
        # A subscriber that never reads: its socket buffers fill up, then its queue overflows.
        sub = raw_connect(path)
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub.sendall(encode(AllocMessage(type=MsgType.SUBSCRIBE), 72))
        await anyio.sleep(0.2)
        n = 60_000
        data = b"".join(encode(_alloc(i), 144) for i in range(n))

        def produce() -> float:
            t0 = time.perf_counter()
            with raw_connect(path) as s:
                s.sendall(data)
                s.sendall(encode(AllocMessage(type=MsgType.QUERY), 144))
                s.recv(144)
            return time.perf_counter() - t0

        elapsed = await anyio.to_thread.run_sync(produce)
        assert server.registry.num_buffers == n
        assert elapsed < 20
        assert server.stats.resyncs >= 0  # the overflow is noticed when the writer wakes
        # Now a well-behaved subscriber sees a resync-free consistent stream, and the slow one gets RESYNC.
        sub.setblocking(True)
        sub.settimeout(5)
        got = b""
        with anyio.fail_after(10):
            while b"subscriber queue overflow" not in got:
                got += await anyio.to_thread.run_sync(sub.recv, 1 << 20)
        sub.close()
        assert server.stats.resyncs >= 1


async def test_resync_is_followed_by_a_consistent_snapshot(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, subscriber_queue=100) as server:
        items = []
        async with anyio.create_task_group() as tg:
            async def consume():
                async for item in subscribe(path):
                    items.append(item)
                    if isinstance(item, Resync):
                        await anyio.sleep(0)
            tg.start_soon(consume)
            await anyio.sleep(0.1)
            # One big chunk: 500 events pushed at once overflow a 100-event queue.
            def produce():
                with raw_connect(path) as s:
                    s.sendall(b"".join(encode(_alloc(i), 72) for i in range(500)) + encode(AllocMessage(type=3), 72))
                    s.recv(72)
            await anyio.to_thread.run_sync(produce)
            with anyio.fail_after(5):
                while not any(isinstance(i, Snapshot) and i.seq == server.registry.seq for i in items):
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    kinds = [type(i).__name__ for i in items]
    assert kinds[0] == "Snapshot" and "Resync" in kinds
    last = items[-1]
    assert isinstance(last, Snapshot) and len(last.buffers) == 500


async def test_subscribe_source_status_and_reconnect(tmp_path):
    path = short_socket(tmp_path)
    updates = []
    src = SubscribeSource(path, backoff_initial=0.05, backoff_max=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, updates.append)
        await anyio.sleep(0.2)
        assert any(isinstance(u, Status) and u.state == "disconnected" and "no server" in u.message for u in updates)
        async with running_server(path):
            async with await AllocationClient.connect(path) as c:
                with anyio.fail_after(5):
                    while not any(isinstance(u, Snapshot) for u in updates):
                        await anyio.sleep(0.02)
                await c.alloc(0, 4096, 1, 0x10)
                with anyio.fail_after(5):
                    while not any(isinstance(u, EventBatch) for u in updates):
                        await anyio.sleep(0.02)
        n = len(updates)
        with anyio.fail_after(5):
            while not any(isinstance(u, Status) and u.state == "disconnected" for u in updates[n:]):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    connected = [u for u in updates if isinstance(u, Status) and u.state == "connected"]
    assert connected and {c.value for c in connected[0].capabilities} == {"events", "totals"}
    batch = next(u for u in updates if isinstance(u, EventBatch))
    assert batch.events[0].kind == EventKind.ALLOC and batch.events[0].buffer_id == 0x10


async def test_probe_extension(tmp_path):
    path = short_socket(tmp_path)
    assert await probe_extension(path, 0.5) is False  # no socket: False, no exception
    async with running_server(path):
        assert await probe_extension(path, 1.0) is True
    async with running_server(path, extensions=False):
        assert await probe_extension(path, 0.3) is False
