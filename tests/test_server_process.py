"""Real processes: dead-PID cleanup, `memtop serve` on SIGTERM, refusing a live socket."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest
from server_helpers import raw_connect, recv_exactly, running_server, short_socket

from tt_memtop.client import AllocationClient
from tt_memtop.core.protocol import AllocMessage, MsgType, encode
from tt_memtop.server.server import AllocationServer, ServerConfig, SocketInUseError

PRODUCER = textwrap.dedent("""
    import os, socket, struct, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    fmt = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I")
    tail = (0,) * 18
    s.sendall(fmt.pack(1, 0, 4096, 1, os.getpid(), 0xA0, 0, *tail) + fmt.pack(1, 1, 8192, 0, os.getpid(), 0xB0, 0, *tail)
              + fmt.pack(3, 0, 0, 0, os.getpid(), 0, 0, *tail))
    s.recv(144)
""")


async def test_dead_pid_cleanup_with_a_real_process(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, is_alive=_alive, cleanup_interval_s=0.2) as server:
        proc = await anyio.run_process([sys.executable, "-c", PRODUCER, path])
        assert proc.returncode == 0
        with anyio.fail_after(5):
            while server.registry.num_buffers or "Removed 2 buffers" not in log.getvalue():
                await anyio.sleep(0.05)
        assert server.registry.wire_totals(0) == (0,) * 6
        server.registry.check_invariants()
    text = log.getvalue()
    assert "is dead, removing its buffers..." in text
    assert "   ✓ Removed 2 buffers (0.0117188 MB) from PID" in text


def _alive(pid: int) -> bool:
    from tt_memtop.server.server import pid_alive
    return pid_alive(pid)


def test_pid_alive():
    from tt_memtop.server.server import pid_alive
    assert pid_alive(os.getpid())
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)


def _wait_for_socket(path: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "server did not start"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_memtop_serve_signal_exits_0_and_unlinks(tmp_path, sig):
    path = short_socket(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "--devices", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_socket(path, proc)
        with raw_connect(path) as s:
            s.sendall(encode(AllocMessage(type=MsgType.ALLOC, device_id=1, size=2048, buffer_type=0, process_id=5,
                                          buffer_id=16), 144) + encode(AllocMessage(type=MsgType.QUERY, device_id=1), 144))
            recv_exactly(s, 144)
        # a second server on the same path is refused with a clear message
        second = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", path], capture_output=True,
                                text=True, timeout=30)
        assert second.returncode == 1 and "already listening" in second.stderr
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert not os.path.exists(path)
    lines = out.split("\n")
    assert "✓ [PID 5] Allocated 2048 bytes of DRAM on device 1 (buffer_id=0x10)" in lines
    assert lines[-6:] == ["    Total: 2048 bytes", "  Active allocations: 1", "🔄 Background cleanup thread stopped",
                          "", "🛑 Allocation Server stopped", ""]


async def test_refuses_live_socket_and_removes_stale_one(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path):
        with pytest.raises(SocketInUseError, match="already listening"):
            await AllocationServer(ServerConfig(socket_path=path), log=io.StringIO()).serve()
    import socket as _s
    stale = _s.socket(_s.AF_UNIX, _s.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on
    async with running_server(path):
        async with await AllocationClient.connect(path) as c:
            assert (await c.device_info(-1)).num_devices == 2
    (tmp_path / "plain").write_text("x")
    with pytest.raises(SocketInUseError, match="not a socket"):
        await AllocationServer(ServerConfig(socket_path=str(tmp_path / "plain")), log=io.StringIO()).serve()
