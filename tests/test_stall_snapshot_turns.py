"""Monitors attaching together take turns with their snapshot slices (issue 8.10): ingest waits for at
most one subscriber's slice per loop pass, not one per subscriber, and every snapshot is still whole."""

from __future__ import annotations

import asyncio

import anyio
from server_helpers import running_server, short_socket

from tt_memtop.client import subscribe
from tt_memtop.core.protocol import AllocMessage, MsgType
from tt_memtop.core.registry import FrozenState
from tt_memtop.server import server as server_mod
from tt_memtop.sources.base import Snapshot

N = 40_000


async def test_concurrent_snapshots_take_turns_slice_by_slice(tmp_path, monkeypatch):
    monkeypatch.setattr(server_mod, "_SNAPSHOT_SLICE_BYTES", 40_000)  # ~800 entries: ~50 slices each
    loop = asyncio.get_running_loop()
    passes = [0]

    def count_pass() -> None:  # runs once per loop pass (call_soon from a callback: the next pass)
        passes[0] += 1
        loop.call_soon(count_pass)

    slices: list[tuple[int, int]] = []  # (loop pass, which snapshot)
    real_encode = FrozenState.encode

    def encode(self, pos, n):
        slices.append((passes[0], id(self)))
        return real_encode(self, pos, n)

    monkeypatch.setattr(FrozenState, "encode", encode)
    path = short_socket(tmp_path)
    async with running_server(path) as server:
        for i in range(N):
            server.registry.apply(AllocMessage(type=MsgType.ALLOC, device_id=i % 2, size=4096, buffer_type=0,
                                               process_id=7, buffer_id=i), 0)
        loop.call_soon(count_pass)
        sizes: list[int] = []

        async def monitor() -> None:
            async for item in subscribe(path):
                if isinstance(item, Snapshot):
                    sizes.append(len(item.buffers))
                    return

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(monitor)
    assert sizes == [N] * 4
    by_pass: dict[int, set[int]] = {}
    for p, snap in slices:
        by_pass.setdefault(p, set()).add(snap)
    assert len({snap for _, snap in slices}) == 4 and len(slices) >= 4 * 40
    assert max(len(s) for s in by_pass.values()) == 1, sorted(by_pass.items())[:10]  # one subscriber per pass
