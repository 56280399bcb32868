"""Helpers for the server tests: short socket paths, a running in-process server, raw sockets."""

from __future__ import annotations

import contextlib
import io
import socket
import tempfile
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
