"""4 real producer processes x 250k messages: exact totals, and a subscriber's seqs are gap-free."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
from server_helpers import running_server, short_socket

from tt_memtop.client import Resync, subscribe
from tt_memtop.core.registry import Registry
from tt_memtop.sources.base import EventBatch, Snapshot

PRODUCER = Path(__file__).resolve().parents[1] / "benchmarks" / "producer.py"
N_PRODUCERS = 4
N_MESSAGES = 250_000
KEEP = 1000


async def test_four_producers_quarter_million_each(tmp_path):
    path = short_socket(tmp_path)
    t0 = time.perf_counter()
    # The subscriber shares this process (and its one event loop) with the server here, so it is
    # given a queue that holds the whole run; overflow/resync is covered by test_server_subscribe.
    async with running_server(path, quiet=True, subscriber_queue=2 * N_PRODUCERS * N_MESSAGES) as server:
        mirror = Registry()
        seqs_ok = True
        resyncs = 0
        async with anyio.create_task_group() as tg:
            async def watch():
                nonlocal seqs_ok, resyncs
                async for item in subscribe(path):
                    if isinstance(item, Snapshot):
                        mirror.load_snapshot(item.buffers, item.seq)
                    elif isinstance(item, EventBatch):
                        for ev in item.events:
                            seqs_ok &= ev.seq == mirror.seq + 1
                            mirror.apply_event(ev)
                    elif isinstance(item, Resync):
                        resyncs += 1
            tg.start_soon(watch)
            await anyio.sleep(0.1)
            results = []

            async def produce():
                results.append(await anyio.run_process([sys.executable, str(PRODUCER), path, str(N_MESSAGES),
                                                        str(KEEP)]))
            async with anyio.create_task_group() as producers:
                for _ in range(N_PRODUCERS):
                    producers.start_soon(produce)
            assert [r.returncode for r in results] == [0] * N_PRODUCERS
            with anyio.fail_after(60):
                while mirror.seq < server.registry.seq:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        reg = server.registry
        assert reg.messages == N_PRODUCERS * N_MESSAGES
        assert reg.num_buffers == N_PRODUCERS * KEEP and reg.unknown_frees == 0
        n_alloc = (N_MESSAGES + KEEP) // 2
        expected = [0] * 5
        for i in range(N_MESSAGES - n_alloc, n_alloc):
            expected[i % 5] += (64 + i % 7) * N_PRODUCERS
        got = [sum(reg.device_totals(d)[t] for d in reg.devices()) for t in range(5)]
        assert got == expected
        reg.check_invariants()
        assert seqs_ok and resyncs == 0
        assert sorted((b.device, b.buffer_id, b.size) for b in mirror.buffers()) == sorted(
            (b.device, b.buffer_id, b.size) for b in reg.buffers())
    elapsed = time.perf_counter() - t0
    print(f"\n1M messages + subscriber in {elapsed:.1f} s")
    assert elapsed < 90
