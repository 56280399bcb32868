"""Helpers for the server tests: short socket paths, a running in-process server, raw sockets."""

from __future__ import annotations

import contextlib
import io
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from tt_memtop.core.devices import Inventory
from tt_memtop.server.server import AllocationServer, ServerConfig


def short_socket(tmp_path: Path, name: str = "s.sock") -> str:
    """A socket path under tmp_path if it is short enough for AF_UNIX (< 100 chars), else under /tmp."""
    path = str(tmp_path / name)
    if len(path) < 100:
        return path
    return str(Path(tempfile.mkdtemp(prefix="mt", dir="/tmp")) / name)


@contextlib.asynccontextmanager
async def running_server(path: str, *, log: io.StringIO | None = None, err: io.StringIO | None = None,
                         is_alive=lambda pid: True, **config) -> AsyncIterator[AllocationServer]:
    config.setdefault("inventory", Inventory.uniform(2))
    config.setdefault("cleanup_interval_s", 3600)
    config.setdefault("stats_interval_s", 3600)
    server = AllocationServer(ServerConfig(socket_path=path, **config), log=log if log is not None else io.StringIO(),
                              err=err, is_alive=is_alive)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield server
        tg.cancel_scope.cancel()


def raw_connect(path: str, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError(f"got {len(out)} of {n} bytes")
        out += chunk
    return out


def serve_process(path: str, *args: str, stdout=None, stderr=None, preexec_fn=None, env: dict | None = None,
                  timeout: float = 20.0):
    """Start ``memtop serve --socket path *args`` as a real process; return it once the socket answers."""
    import os
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, *args],
                            stdout=subprocess.DEVNULL if stdout is None else stdout,
                            stderr=subprocess.DEVNULL if stderr is None else stderr, preexec_fn=preexec_fn,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"memtop serve exited early with status {proc.returncode}")
        try:
            raw_connect(path, 1.0).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def query(path_or_sock, device: int = 0, layout: int = 144) -> tuple[int, ...]:
    """(dram, l1, l1_small, trace) of a QUERY, on a new connection or on the given socket."""
    from tt_memtop.core.protocol import AllocMessage, MsgType, decode, encode

    s = raw_connect(path_or_sock) if isinstance(path_or_sock, str) else path_or_sock
    try:
        s.sendall(encode(AllocMessage(type=MsgType.QUERY, device_id=device), layout))
        r = decode(recv_exactly(s, layout), layout)
        return (r.dram_allocated, r.l1_allocated, r.l1_small_allocated, r.trace_allocated)
    finally:
        if isinstance(path_or_sock, str):
            s.close()


def stop_process(proc, timeout: float = 20.0) -> int:
    """SIGTERM ``proc`` and return its exit status."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except Exception:
        proc.kill()
        raise


def replay_wire_steps(path: str, steps: list[dict], server: AllocationServer) -> list[bytes]:
    """Send the recorded bytes connection by connection, in the recorded order; return the replies.

    After each send we wait until the server has taken the message (as a message or a bad frame),
    so that messages on different connections are applied in the recorded order."""
    conns = {}
    replies = []
    st = server.stats

    def taken() -> int:
        return st.messages + st.bad_frames

    for step in steps:
        c = step["conn"]
        if "send" in step:
            before = taken()
            if c not in conns:
                conns[c] = raw_connect(path)
            conns[c].sendall(bytes.fromhex(step["send"]))
            deadline = time.monotonic() + 10
            while taken() == before and time.monotonic() < deadline:
                time.sleep(0.002)
            assert taken() > before, f"server did not take step {step}"
        elif "recv" in step:
            replies.append(recv_exactly(conns[c], len(step["recv"]) // 2))
        elif step.get("close"):
            conns.pop(c).close()
    for s in conns.values():
        s.close()
    return replies
