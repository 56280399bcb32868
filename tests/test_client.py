"""AllocationClient against our server, and its behaviour against a server that never answers."""

from __future__ import annotations

import io

import anyio
import pytest
from server_helpers import running_server, short_socket

from tt_memtop.client import AllocationClient, ExtensionUnsupported, subscribe
from tt_memtop.core.devices import Inventory
from tt_memtop.core.protocol import BufferType, Layout


@pytest.mark.parametrize("layout", [Layout.V72, Layout.V112, Layout.V144])
async def test_alloc_free_query_dump_report(tmp_path, layout):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, inventory=Inventory.uniform(4, "wormhole_b0")):
        async with await AllocationClient.connect(path, layout) as c:
            await c.alloc(3, 1 << 20, BufferType.TRACE, 0x3E363C80)
            await c.alloc(3, 256, BufferType.SYSTEM_MEMORY, 0x100)
            r = await c.query(3)
            assert (r.type, r.device_id, r.trace_allocated, r.l1_small_allocated) == (4, 3, 1 << 20, 256)
            report = await c.dump_report()
            assert "  TRACE: 1 buffers, 1 MB total" in report and report.endswith("📋 DUMP_REMAINING complete.\n")
            await c.free(3, 0x3E363C80)
            assert (await c.query(3)).trace_allocated == 0
            if layout != Layout.V72:
                inv = await c.inventory()
                assert inv == Inventory.uniform(4, "wormhole_b0")
            await c.dump()
            await c.query(0)
    assert log.getvalue().count("📋 DUMP_REMAINING complete.") == 2


async def test_extension_calls_against_a_silent_server(tmp_path):
    """An original server reads the request and never answers: the client times out cleanly."""
    path = short_socket(tmp_path)
    listener = await anyio.create_unix_listener(path)
    async with listener, anyio.create_task_group() as tg:
        async def silent(stream):
            async with stream:
                try:
                    while await stream.receive():
                        pass
                except anyio.EndOfStream:
                    pass
        tg.start_soon(listener.serve, silent)
        async with await AllocationClient.connect(path, Layout.V72) as c:
            with pytest.raises(ExtensionUnsupported):
                await c.dump_report(timeout=0.3)
            assert await c.hello(timeout=0.2) is False
        with pytest.raises(ExtensionUnsupported):
            async for _ in subscribe(path, hello_timeout=0.3):
                pass
        tg.cancel_scope.cancel()


async def test_connect_to_missing_socket_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        await AllocationClient.connect(short_socket(tmp_path, "none.sock"))


