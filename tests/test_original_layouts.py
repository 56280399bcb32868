"""The original of each layout is the reference (issue 9.5, 9.6).

* Captured output of the REAL S4 server (tests/data/oracle/s4_112_small_clients.*, made with
  tests/original_servers.py) fed by a 72-byte and a 112-byte client: ``memtop serve --protocol 112``
  and ``auto`` must write the same stdout, the same warning lines (every occurrence) and send the
  same reply bytes.
* When ``MEMTOP_ORIGINAL_SRC`` and g++ are available, the original is built and run live against
  the same script, and its output compared with ours (skipped, with the reason, otherwise).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from original_servers import build, drive, req, small_clients_steps, why_unavailable
from server_helpers import raw_connect, recv_exactly, replay_wire_steps, running_server, short_socket

from tt_memtop.core.devices import Inventory
from tt_memtop.core.protocol import MsgType
from tt_memtop.server.server import AllocationServer, ServerConfig

DATA = Path(__file__).parent / "data" / "oracle"
ORACLE_SOCKET = "/tmp/oracle/s.sock"
NAME = "s4_112_small_clients"


async def _ours(tmp_path, steps: list[dict], layout: str) -> tuple[str, str, list[bytes]]:
    path = short_socket(tmp_path)
    log, err = io.StringIO(), io.StringIO()
    config = ServerConfig(socket_path=path, cleanup_interval_s=3600, stats_interval_s=3600, layout=layout,
                          inventory=Inventory.uniform(2, "wormhole_b0"))
    server = AllocationServer(config, log=log, err=err, is_alive=lambda pid: True)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        replies = await anyio.to_thread.run_sync(replay_wire_steps, path, steps, server)
        with anyio.fail_after(10):
            while "📋 DUMP_REMAINING complete." not in log.getvalue():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    return log.getvalue().replace(path, ORACLE_SOCKET), err.getvalue(), replies


def _original_lines(err: str) -> list[str]:
    """Our stderr without our own notes (PID mismatch lines, bad-frame diagnostics): the original's lines."""
    return [ln for ln in err.splitlines() if ln.startswith(("⚠ [PID", "Unknown message type", "⚠️  Invalid"))]


async def test_smaller_clients_on_a_112_byte_server_as_the_original(tmp_path):
    """``--protocol 112`` (in auto, a 72-byte connection is served as S1 serves it: 72-byte replies)."""
    rec = json.loads((DATA / f"{NAME}.wire.json").read_text())
    out, err, replies = await _ours(tmp_path, rec["steps"], "112")
    assert out == (DATA / f"{NAME}.stdout").read_text(encoding="utf-8")
    assert replies == [bytes.fromhex(s["recv"]) for s in rec["steps"] if "recv" in s]
    assert _original_lines(err) == (DATA / f"{NAME}.stderr").read_text(encoding="utf-8").splitlines()


async def test_forced_144_with_72_and_112_byte_clients_loses_nothing(tmp_path):
    """The issue's case: --protocol 144, smaller clients streaming (coalesced reads), a 72-byte monitor."""
    path = short_socket(tmp_path)
    async with running_server(path, layout=144) as server:
        def run():
            out = []
            for size in (72, 112):
                with raw_connect(path) as s:
                    s.sendall(b"".join(req(size, MsgType.ALLOC, 0, 4096, 0, 1, 0x1000 * size + i) for i in range(10))
                              + b"".join(req(size, MsgType.FREE, 0, 0, 0, 1, 0x1000 * size + i) for i in range(3)))
                    s.sendall(req(size, MsgType.QUERY, 0))
                    out.append(recv_exactly(s, 144))
            return out
        r72, r112 = await anyio.to_thread.run_sync(run)
        assert int.from_bytes(r72[40:48], "little") == 7 * 4096
        assert int.from_bytes(r112[40:48], "little") == 14 * 4096
        assert server.stats.bad_frames == 0 and len(server.registry) == 14


async def test_validation_follows_the_layouts_original(tmp_path):
    """S5 (144) checks sizes, S1-S4 (72/112) do not; no original checks kernel types; --strict checks all."""
    path = short_socket(tmp_path)
    for strict in (False, True):
        err = io.StringIO()
        async with running_server(path, err=err, strict=strict) as server:
            def run():
                for size in (72, 112, 144):
                    with raw_connect(path) as s:
                        s.sendall(req(size, MsgType.ALLOC, 0, 0, 0, 1, size) + req(size, MsgType.QUERY))
                        recv_exactly(s, size)
                with raw_connect(path) as s:
                    s.sendall(req(144, MsgType.KERNEL_LOAD, 0, 2048, 5, 1, 0x77) + req(144, MsgType.QUERY))
                    return recv_exactly(s, 144)
            q = await anyio.to_thread.run_sync(run)
            got = {size: server.registry.get(0, size) is not None for size in (72, 112, 144)}
            kernel = int.from_bytes(q[80:88], "little")
        if strict:
            assert got == {72: False, 112: False, 144: False} and kernel == 0
        else:
            assert got == {72: True, 112: True, 144: False} and kernel == 2048
            assert err.getvalue().count("⚠️  Invalid size 0 - ignoring message") == 1


def test_serve_banner_s1_and_auto(tmp_path):
    """``--banner s1`` (and --protocol 72 in auto) print S1's start-up lines: no device-detection block."""
    s1 = (DATA / "s1_72.stdout").read_text(encoding="utf-8").splitlines()[:4]
    for args in (["--banner", "s1"], ["--protocol", "72"]):
        path = short_socket(tmp_path)
        proc = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=20)[0].decode().replace(path, ORACLE_SOCKET).splitlines()
        assert out[:4] == s1, args


# ---------------------------------------------------------------------------------------- live original
@pytest.fixture(scope="module")
def original_s4(tmp_path_factory):
    """The real S4 binary built from $MEMTOP_ORIGINAL_SRC (skipped, with the reason, when it cannot be)."""
    why = why_unavailable("S4")
    if why:
        pytest.skip(f"original S4 server not available: {why}")
    d = tmp_path_factory.mktemp("orig")
    sock = str(d / "o.sock")
    return build("S4", d, sock), sock


async def test_live_original_and_ours_agree(original_s4, tmp_path):
    exe, sock = original_s4
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        steps = await anyio.to_thread.run_sync(drive, sock, small_clients_steps(os.getpid()))
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        o_out, o_err = proc.communicate(timeout=20)
    out, err, replies = await _ours(tmp_path, steps, "112")
    assert out == o_out.decode().replace(sock, ORACLE_SOCKET)
    assert replies == [bytes.fromhex(s["recv"]) for s in steps if "recv" in s]
    assert _original_lines(err) == o_err.decode().splitlines()
