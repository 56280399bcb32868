"""The server's whole stdout for the README's session equals the original server's, byte for byte."""

from __future__ import annotations

import io

import anyio
from server_helpers import running_server, short_socket
from session_72byte import ORIGINAL_SOCKET, PID_B, phase_a, phase_b, session_lines

from tt_memtop.client import AllocationClient
from tt_memtop.core.protocol import Layout


async def test_session_72byte_log_end_to_end(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    dead: set[int] = set()
    async with running_server(path, log=log, err=io.StringIO(), log_format="decimal", detection_banner=False,
                              is_alive=lambda pid: pid not in dead) as server:
        async with await AllocationClient.connect(path, Layout.V72) as a:
            for m in phase_a():
                await a.send(m)
            async with await AllocationClient.connect(path, Layout.V72) as b:
                for m in phase_b():
                    await b.send(m)
                await b.query(0)  # a round trip: everything before it has been applied
            await a.query(0)
        dead.add(PID_B)
        for n in (1, 2):  # dump_remaining_buffers.py: a lone 72-byte message on its own connection
            async with await AllocationClient.connect(path, Layout.V72) as d:
                await d.dump()
            await _wait_for(log, "📋 DUMP_REMAINING complete.", n)
        assert server.registry.num_buffers == 16
    got = log.getvalue().replace(path, ORIGINAL_SOCKET).split("\n")[:-1]
    assert got == session_lines()


async def _wait_for(log: io.StringIO, text: str, count: int) -> None:
    with anyio.fail_after(5):
        while log.getvalue().count(text) < count:
            await anyio.sleep(0.01)
