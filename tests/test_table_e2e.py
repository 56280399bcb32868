"""End to end, compiled table and pure Python (MEMTOP_PURE_PYTHON=1): a real `memtop serve` process
holds a producer's buffers through churn (holes squeezed out), a subscriber's snapshot matches the
QUERY totals, and the producer's death empties the registry (sliced cleanup)."""

import os
import subprocess
import sys
import time

import anyio
import pytest
from server_helpers import raw_connect, recv_exactly, serve_process, short_socket, stop_process

from tt_memtop.client import subscribe
from tt_memtop.core.protocol import AllocMessage, MsgType, decode, encode
from tt_memtop.core.registry import Registry
from tt_memtop.core.table import PyTable, table_class
from tt_memtop.sources.base import Snapshot

PRODUCER = r"""
import os, socket, sys, time
from tt_memtop.core.protocol import AllocMessage, MsgType, encode
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
m = lambda **kw: encode(AllocMessage(process_id=os.getpid(), **kw), 144)
frames = [m(type=MsgType.ALLOC, device_id=i % 2, size=4096, buffer_type=i % 2, buffer_id=0x10000 + i * 64)
          for i in range(3000)]
frames += [m(type=MsgType.FREE, device_id=i % 2, buffer_id=0x10000 + i * 64) for i in range(0, 3000, 3)]
frames += [m(type=MsgType.FREE, device_id=i % 2, buffer_id=0x10000 + i * 64) for i in range(1, 3000, 3)]
frames.append(m(type=MsgType.KERNEL_LOAD, device_id=1, size=8192, buffer_type=2, buffer_id=77))
frames.append(m(type=MsgType.QUERY))
s.sendall(b"".join(frames))
got = b""
while len(got) < 144:
    got += s.recv(144 - len(got))
print("ready", flush=True)
time.sleep(3600)
"""


def _query(path: str, device: int) -> tuple[int, int, int]:
    with raw_connect(path, 10) as s:
        q = encode(AllocMessage(type=MsgType.QUERY, device_id=device), 144)
        s.sendall(q + q)
        r = decode(recv_exactly(s, 288)[144:], 144)
    return r.dram_allocated, r.l1_allocated, r.kernel_allocated


@pytest.mark.parametrize("pure", [pytest.param("0", id="native", marks=pytest.mark.skipif(
    table_class() is PyTable, reason="compiled table not built")), pytest.param("1", id="pure")])
def test_served_registry_survives_churn_subscribe_and_cleanup(tmp_path, pure):
    path = short_socket(tmp_path)
    env = {"MEMTOP_PURE_PYTHON": pure}
    server = serve_process(path, "--quiet", "--cleanup-interval", "0.2", env=env)
    prod = None
    try:
        prod = subprocess.Popen([sys.executable, "-c", PRODUCER, path], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        assert prod.stdout.readline().strip() == "ready"
        want = {0: (500 * 4096, 0, 0), 1: (0, 500 * 4096, 8192)}  # the thirds i % 3 == 2 are left
        assert {d: _query(path, d) for d in (0, 1)} == want

        async def first_snapshot() -> Snapshot:
            with anyio.fail_after(20):
                async for item in subscribe(path):
                    if isinstance(item, Snapshot):
                        return item
            raise AssertionError("no snapshot")

        snap = anyio.run(first_snapshot)
        mirror = Registry()
        mirror.load_snapshot(snap.buffers, snap.seq)
        mirror.check_invariants()
        assert len(mirror) == 1001 and {d: (mirror.wire_totals(d)[0], mirror.wire_totals(d)[1],
                                            mirror.wire_totals(d)[5]) for d in (0, 1)} == want
        assert mirror.get(1, 77, 6).name == "Dispatch"
        prod.kill()
        prod.wait()
        deadline = time.monotonic() + 20
        while any(_query(path, d) != (0, 0, 0) for d in (0, 1)):
            assert time.monotonic() < deadline, "the dead producer's buffers were not cleaned up"
            time.sleep(0.1)
    finally:
        if prod is not None and prod.poll() is None:
            prod.kill()
        stop_process(server)
