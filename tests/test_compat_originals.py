"""memtop against the original servers: never disturb them, follow them across restarts, wait when busy.

The servers here are ``tests/fake_original.py`` (S1 72 B, S4 112 B, S5 144 B, written from
PROTOCOL.md: one recv per struct, the S5 resync, "Unknown message type" on stderr) and, for
busy-server cases, ``memtop serve`` itself stopped with SIGSTOP. ``test_real_originals.py`` runs
the same checks against the real C++ programs when their sources are available.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from server_helpers import short_socket

from tt_memtop.core.model import MonitorState
from tt_memtop.sources.base import TotalsSample
from tt_memtop.sources.open import open_source_async
from tt_memtop.sources.poll import PollSource

MEMTOP = [sys.executable, "-m", "tt_memtop"]
FAKE = [sys.executable, str(Path(__file__).with_name("fake_original.py"))]
SIZES = {"S1": 72, "S4": 112, "S5": 144}


class Original:
    """A fake original server subprocess; ``stderr()`` / ``received()`` after ``stop()``."""

    def __init__(self, path: str, version: str, busy: float = 0.0) -> None:
        self.path = path
        args = [*FAKE, path, version] + (["--busy-after-accept", str(busy)] if busy else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().startswith("READY"), self.proc.stderr.read()
        self.out = self.err = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        out, err = self.proc.communicate(timeout=20)
        self.out, self.err = out, err

    def received(self) -> list[tuple[int, int]]:
        """(type, bytes of the read) of every message the server took."""
        got = []
        for line in self.out.splitlines():
            if line.startswith("RECV "):
                t, n = (int(x.split("=")[1]) for x in line[5:].split())
                got.append((t, n))
        return got


def _memtop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*MEMTOP, *args], capture_output=True, text=True, timeout=timeout)


def _alloc(path: str, size_of: int, device: int, size: int, btype: int = 0, bid: int = 0x1000) -> None:
    msg = bytearray(size_of)
    struct.pack_into("<B3xiQB3xiQQ", msg, 0, 1, device, size, btype, os.getpid(), bid, 0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(bytes(msg))
        time.sleep(0.05)


@pytest.mark.parametrize("version", ["S1", "S4", "S5"])
def test_memtop_leaves_the_originals_log_empty(tmp_path, version):
    """Item 2: `memtop --once/--json`, and `memtop dump`, send nothing an original would log."""
    path = short_socket(tmp_path)
    server = Original(path, version)
    try:
        _alloc(path, SIZES[version], 0, 4096)
        once = _memtop("--once", "--socket", path)
        js = _memtop("--json", "--socket", path)
        dump = _memtop("dump", "--socket", path, "--timeout", "5")
    finally:
        server.stop()
    assert once.returncode == 0, once.stderr
    assert "0.00" in once.stdout and "original" in once.stdout
    assert js.returncode == 0, js.stderr
    assert dump.returncode == 0 and "Dump request sent" in dump.stdout, dump.stderr
    assert server.err == "", server.err
    types = {t for t, _ in server.received()}
    allowed = {1, 3, 5} | ({6} if version != "S1" else set())
    assert types <= allowed, server.received()
    assert [t for t, _ in server.received()].count(5) == 1  # one dump, never two


async def test_reconnect_redetects_the_layout(tmp_path):
    """Item 1: S1 (72 B) restarted as S5 (144 B) under the monitor: the new layout is detected."""
    path = short_socket(tmp_path)
    state = MonitorState()
    samples: list[TotalsSample] = []

    def emit(u):
        state.apply(u)
        if isinstance(u, TotalsSample):
            samples.append(u)

    first = Original(path, "S1")
    servers = [first]
    try:
        _alloc(path, 72, 0, 4096)
        # as `memtop` picks it: the source open_source chose for an S1 must re-detect when S5 replaces it
        src = await open_source_async(argparse.Namespace(socket=path, protocol="auto", interval=0.05, follow=None))
        assert isinstance(src, PollSource)
        async with anyio.create_task_group() as tg:
            tg.start_soon(src.run, emit)
            with anyio.fail_after(15):
                while state.polled.get(0, (0,))[0] != 4096:
                    await anyio.sleep(0.02)
            assert int(src.layout) == 72
            first.stop()
            second = Original(path, "S5")
            servers.append(second)
            _alloc(path, 144, 1, 8192, btype=1)
            with anyio.fail_after(20):
                while state.polled.get(1, (0, 0))[1] != 8192:
                    await anyio.sleep(0.02)
            n = len(samples)
            with anyio.fail_after(10):
                while len(samples) < n + 3:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    finally:
        for s in servers:
            s.stop()
    assert int(src.layout) == 144
    last = samples[-1].totals
    assert last[1][:2] == (0, 8192) and last[0][0] == 0  # right numbers on the right devices
    assert all(s.err == "" for s in servers), [s.err for s in servers]


def test_a_busy_original_is_waited_for(tmp_path):
    """Item 3: a server that accepts but answers only after 1.5 s is a server, not "no server"."""
    path = short_socket(tmp_path)
    server = Original(path, "S4", busy=1.5)
    try:
        _alloc(path, 112, 0, 1 << 20)
        proc = _memtop("--once", "--socket", path)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr
    assert "1.00" in proc.stdout
    assert server.err == ""


def _start_serve(path: str) -> subprocess.Popen:
    proc = subprocess.Popen([*MEMTOP, "serve", "--socket", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return proc


def test_busy_memtop_serve_dump_once_and_no_demo(tmp_path):
    """Item 3: memtop serve frozen for 2 s (SIGSTOP): `dump` waits and dumps once; open_source finds a
    server (no demo); `--once` waits and prints."""
    path = short_socket(tmp_path)
    server = _start_serve(path)
    try:
        server.send_signal(signal.SIGSTOP)
        dump = subprocess.Popen([*MEMTOP, "dump", "--socket", path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        once = subprocess.Popen([*MEMTOP, "--once", "--socket", path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        args = argparse.Namespace(socket=path, protocol="auto", interval=0.5, follow=None)
        src = anyio.run(open_source_async, args)
        assert src is not None  # something listens: never the demo
        time.sleep(2.0)
        server.send_signal(signal.SIGCONT)
        d_out, d_err = dump.communicate(timeout=30)
        o_out, o_err = once.communicate(timeout=30)
    finally:
        server.send_signal(signal.SIGCONT)
        server.send_signal(signal.SIGINT)
        log, _ = server.communicate(timeout=20)
    assert dump.returncode == 0, d_err
    assert "server busy" in d_err
    assert "REMAINING ALLOCATED BUFFERS" in d_out
    assert log.count("Received DUMP_REMAINING") == 1, log
    assert once.returncode == 0, o_err
    assert "Device" in o_out


S5_LOG = """🔍 Device detection (using UMD Cluster for accurate specs):
   Device 0: Wormhole_B0 (12GB DRAM, 171MB L1) [Local]
   Total: 1 device(s) detected
🚀 Allocation Server started
   Listening on: /tmp/tt_allocation_server.sock
   Press Ctrl+C to stop
🔄 Background cleanup thread started (checking every 10s)
✓ [PID 4242] Allocated 1048576 bytes of DRAM on device 0 (buffer_id=0x1000)
✓ [KERNEL_LOAD] Fabric kernel on Device 0: +0.0546875 MB (Total: 0.0546875 MB)
✓ [KERNEL_LOAD] Dispatch kernel on Device 0: +0.0449219 MB (Total: 0.0996094 MB)
✓ [CB_ALLOC] Device 0: +0.0625 MB (Total: 0.0625 MB)
✓ [CB_ALLOC] Device 0: +0.0625 MB (Total: 0.125 MB)
✗ [CB_FREE] Device 0: -0.0625 MB (Total: 0.0625 MB)
"""


def test_follow_an_s5_log_shows_cb_and_kernel(tmp_path):
    """Item 4: the S5 [CB_*] / [KERNEL_*] lines carry totals; --follow shows them."""
    log = tmp_path / "s5.log"
    log.write_text(S5_LOG, encoding="utf-8")
    proc = _memtop("--follow", str(log), "--json", "--socket", short_socket(tmp_path, "none.sock"))
    assert proc.returncode == 0, proc.stderr
    import json

    dev0 = next(d for d in json.loads(proc.stdout)["devices"] if d["device"] == 0)
    assert dev0["bytes"]["CB"] == 65536
    assert dev0["bytes"]["KERNEL"] == round(0.0996094 * 1048576)  # 104448 B, to the line's 6 digits
    assert dev0["bytes"]["DRAM"] == 1 << 20 and dev0["total"] == 1 << 20  # CB/KERNEL not in the total
