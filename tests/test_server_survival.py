"""The server survives its environment: vanishing monitors, fd exhaustion, a full disk, a closed or stalled
log, damaged recordings, huge registries. Real sockets, real `memtop serve` processes (issue 8)."""

from __future__ import annotations

import io
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import anyio
import pytest
from server_helpers import query, raw_connect, recv_exactly, running_server, serve_process, short_socket, stop_process

from tt_memtop.client import ServerStatus, subscribe
from tt_memtop.core import eventcodec as codec
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import AllocMessage, MsgType, encode
from tt_memtop.core.registry import Registry
from tt_memtop.sources.base import EventBatch, Snapshot

FRAME = 144
PID = os.getpid()  # a live PID: the real server's dead-process cleanup leaves it alone


def _allocs(n: int, *, pid: int = PID, dev: int = 0, base: int = 0, size: int = 4096, btype: int = 0) -> bytes:
    return b"".join(encode(AllocMessage(type=MsgType.ALLOC, device_id=dev, size=size, buffer_type=btype,
                                        process_id=pid, buffer_id=base + i), FRAME) for i in range(n))


def _subscribe_bytes() -> bytes:
    return encode(AllocMessage(type=MsgType.SUBSCRIBE), 72)


async def _send(s: socket.socket, data: bytes) -> None:
    await anyio.to_thread.run_sync(s.sendall, data)


def _rst_close(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the server's next write fails at once."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ------------------------------------------------------------------------------------------ 1. vanishing monitor
async def test_monitor_that_vanishes_mid_write_ends_only_its_connection(tmp_path):
    """`q` in the TUI during a model load: the subscriber's socket dies while the server writes to it."""
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, quiet=True) as server:
        with raw_connect(path) as prod:
            await _send(prod, _allocs(30_000))
            assert await anyio.to_thread.run_sync(query, prod) == (30_000 * 4096, 0, 0, 0)
            for stage in range(6):
                sub = raw_connect(path)
                sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sub.sendall(_subscribe_bytes())
                if stage % 2:
                    await anyio.to_thread.run_sync(recv_exactly, sub, 100)  # mid-snapshot
                await anyio.sleep(0.05)
                # events keep coming while the monitor goes away
                await _send(prod, _allocs(2000, base=100_000 + stage * 2000))
                _rst_close(sub)
                await anyio.sleep(0.05)
            assert await anyio.to_thread.run_sync(query, prod) == (42_000 * 4096, 0, 0, 0)
        with anyio.fail_after(10):
            while server.stats.subscribers:
                await anyio.sleep(0.02)
    assert "internal error" not in log.getvalue()


# ------------------------------------------------------------------------------------------ 2. disk full
def _mount_tmpfs(where: str, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    os.makedirs(where, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where],
                          capture_output=True).returncode == 0


@pytest.fixture
def tiny_fs(tmp_path):
    where = str(tmp_path / "tiny")
    if not _mount_tmpfs(where, "256k"):
        pytest.skip("needs root to mount a 256 KiB tmpfs (the disk-full case)")
    yield where
    subprocess.run(["umount", "-l", where], capture_output=True)


def test_disk_full_stops_the_recording_not_the_server(tmp_path, tiny_fs):
    path = short_socket(tmp_path)
    err = open(tmp_path / "err.txt", "w+")
    proc = serve_process(path, "--quiet", "--record", os.path.join(tiny_fs, "run.rec"), stderr=err)
    try:
        status: list[dict] = []

        async def watch():
            async for item in subscribe(path):
                if isinstance(item, ServerStatus):
                    status.append(item.fields)
                    return

        with raw_connect(path) as prod:
            for k in range(40):  # 40 x 1000 events: far more than 256 KiB of recording
                prod.sendall(_allocs(1000, base=k * 1000))
            assert query(prod) == (40_000 * 4096, 0, 0, 0)
            anyio.run(lambda: _with_timeout(watch(), 10))
            time.sleep(0.5)
            prod.sendall(_allocs(10, base=10**6))
            assert query(prod) == (40_010 * 4096, 0, 0, 0)
        assert status and status[0]["recording"] == "stopped" and "No space left" in status[0]["recording_error"]
    finally:
        assert stop_process(proc) == 0
    err.seek(0)
    text = err.read()
    assert text.count("Recording stopped: No space left on device") == 1, text
    assert "Traceback" not in text


async def _with_timeout(coro, seconds: float):
    with anyio.fail_after(seconds):
        return await coro


# ------------------------------------------------------------------------------------------ 3. fd limit
def _limit_fds(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def test_out_of_file_descriptors_refuses_connections_and_keeps_serving(tmp_path):
    """More connections than the fd limit: extras are closed at once, everything else goes on."""
    path = short_socket(tmp_path)
    err = open(tmp_path / "err.txt", "w+")
    proc = serve_process(path, "--quiet", stderr=err, preexec_fn=_limit_fds(64, 64))
    conns = []
    try:
        first = raw_connect(path)
        first.sendall(_allocs(10))
        assert query(first) == (10 * 4096, 0, 0, 0)
        for _ in range(110):
            conns.append(raw_connect(path))
        refused = 0
        time.sleep(0.5)
        for c in conns:  # refused connections see EOF; accepted ones time out waiting
            c.settimeout(0.01)
            try:
                if c.recv(1) == b"":
                    refused += 1
            except TimeoutError:
                pass
            except ConnectionError:
                refused += 1
        assert refused >= 40
        first.sendall(_allocs(5, base=100))
        assert query(first) == (15 * 4096, 0, 0, 0)
        for c in conns:
            c.close()
        conns.clear()
        time.sleep(0.3)
        assert query(path) == (15 * 4096, 0, 0, 0)  # new connections work again
        first.close()
    finally:
        for c in conns:
            c.close()
        assert stop_process(proc) == 0
    err.seek(0)
    text = err.read()
    assert text.count("Refusing new connections: Too many open files") == 1, text
    assert "Traceback" not in text


def test_serve_raises_the_soft_fd_limit(tmp_path):
    path = short_socket(tmp_path)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 256:
        pytest.skip(f"hard fd limit {hard} is too low for this test")
    proc = serve_process(path, "--quiet", preexec_fn=_limit_fds(64, min(hard, 4096)))
    conns = []
    try:
        conns = [raw_connect(path) for _ in range(150)]
        q = encode(AllocMessage(type=MsgType.QUERY), FRAME)
        for c in conns:
            c.sendall(q + q)  # two frames: the layout is known without waiting for the connection to go quiet
        for c in conns:  # every one is served
            assert len(recv_exactly(c, 2 * FRAME)) == 2 * FRAME
    finally:
        for c in conns:
            c.close()
        assert stop_process(proc) == 0


# ------------------------------------------------------------------------------------------ 4. stdout closed
def test_serve_with_stdout_closed(tmp_path):
    path = short_socket(tmp_path)
    err = open(tmp_path / "err.txt", "w+")
    proc = serve_process(path, stderr=err, preexec_fn=lambda: os.close(1))
    try:
        with raw_connect(path) as s:
            s.sendall(_allocs(50))
            assert query(s) == (50 * 4096, 0, 0, 0)
    finally:
        assert stop_process(proc) == 0
    err.seek(0)
    assert "Traceback" not in err.read()


# ------------------------------------------------------------------------------------------ 5. crafted input
def _record(body: bytes) -> bytes:
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


def _recording(tmp_path, name: str, events: list[Event]) -> str:
    from tt_memtop.recording import RecordingWriter

    path = str(tmp_path / name)
    with RecordingWriter(path) as w:
        w.write_events(events)
    return path


def _memtop(*args: str, mem_limit: int = 1 << 30) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    return subprocess.run([sys.executable, "-m", "tt_memtop", *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=limit)


@pytest.mark.parametrize("command", [["report"], ["analyze"], ["replay", "--once"]])
def test_crafted_recordings_give_a_clear_error(tmp_path, command):
    from tt_memtop.recording import FILE_MAGIC, FORMAT_VERSION

    short = tmp_path / "short.rec"
    short.write_bytes(struct.pack("<8sH", FILE_MAGIC, FORMAT_VERSION) + _record(bytes((codec.RecordKind.HEADER, 1))))
    done = _memtop(*command, str(short))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "header record is damaged" in done.stderr
    bad = [Event(EventKind.ALLOC, seq=1, ts_ns=1, pid=5, device=0, buffer_type=0, buffer_id=1, size=64)]
    for name, ev in [("btype.rec", Event(EventKind.ALLOC, seq=2, ts_ns=2, pid=5, buffer_type=9, buffer_id=2, size=8)),
                     ("bigdev.rec", Event(EventKind.ALLOC, seq=2, ts_ns=2, pid=5, device=2**31 - 1, buffer_id=2,
                                          size=8))]:
        path = _recording(tmp_path, name, bad + [ev])
        done = _memtop(*command, path)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "undecodable record" in done.stderr, done.stderr


@pytest.mark.parametrize("command", [["report"], ["analyze"], ["replay", "--once"]])
def test_log_naming_device_2147483647_is_read_in_bounded_memory(tmp_path, command):
    log = tmp_path / "server.log"
    log.write_text("🔍 Device detection (using TT-Metal APIs):\n"
                   "   Device 0: Wormhole_B0 (12GB DRAM, 171MB L1)\n"
                   "   Device 2147483647: Wormhole_B0 (12GB DRAM, 171MB L1)\n"
                   "🚀 Allocation Server started\n"
                   "✓ [PID 8174] Allocated 1048576 bytes of DRAM on device 0 (buffer_id=455294688)\n"
                   "✓ [PID 8174] Allocated 1048576 bytes of DRAM on device 1 (buffer_id=455294688)\n"
                   "✓ [PID 8174] Allocated 1048576 bytes of DRAM on device 2147483647 (buffer_id=455294688)\n")
    done = _memtop(*command, str(log), mem_limit=1 << 30)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


# ------------------------------------------------------------------------------------------ 6. snapshot stall
async def test_subscribe_does_not_freeze_ingest(tmp_path):
    """While a big snapshot is encoded, QUERYs are answered: ingest waits far less than the snapshot takes."""
    path = short_socket(tmp_path)
    n = 100_000
    async with running_server(path, quiet=True) as server:
        with raw_connect(path, 30) as prod:
            data = _allocs(n)
            await anyio.to_thread.run_sync(prod.sendall, data)
            assert await anyio.to_thread.run_sync(query, prod) == (n * 4096, 0, 0, 0)
            worst = 0.0
            done = threading.Event()

            def probe() -> None:
                nonlocal worst
                while not done.is_set():
                    t0 = time.perf_counter()
                    query(prod)
                    worst = max(worst, time.perf_counter() - t0)
                    time.sleep(0.002)

            def subscriber() -> float:
                """Raw bytes in a thread: decoding here must not load the server's event loop."""
                with raw_connect(path, 60) as sub:
                    t0 = time.perf_counter()
                    sub.sendall(_subscribe_bytes())
                    for _ in range(2):  # HELLO, then SNAPSHOT
                        (size,) = struct.unpack("<I", recv_exactly(sub, 4))
                        kind = recv_exactly(sub, size)[0]
                    assert kind == codec.RecordKind.SNAPSHOT
                    return time.perf_counter() - t0

            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, probe)
                await anyio.sleep(0.05)
                got_snapshot = await anyio.to_thread.run_sync(subscriber)
                done.set()
            assert server.stats.messages >= n
    # the old server blocked every connection for the whole encoding (worst ~ got_snapshot)
    assert worst < 0.5 * got_snapshot, (worst, got_snapshot)


async def test_snapshot_under_concurrent_changes_is_consistent(tmp_path):
    """Events during the sliced snapshot (incl. ref-count changes of snapshotted buffers) follow it by seq."""
    path = short_socket(tmp_path)
    n = 60_000
    async with running_server(path, quiet=True) as server:
        with raw_connect(path, 30) as prod:
            await anyio.to_thread.run_sync(prod.sendall, _allocs(n))
            await anyio.to_thread.run_sync(query, prod)
            churn = b"".join(_allocs(1, base=i) + encode(AllocMessage(type=MsgType.FREE, buffer_id=i + 1,
                                                                      process_id=PID), FRAME)
                             for i in range(0, 20_000, 2))
            mirror = Registry()
            seqs: list[int] = []
            async with anyio.create_task_group() as tg:
                async def consume():
                    async for item in subscribe(path):
                        if isinstance(item, Snapshot):
                            mirror.load_snapshot(item.buffers, item.seq)
                            seqs.append(item.seq)
                        elif isinstance(item, EventBatch):
                            for ev in item.events:
                                seqs.append(ev.seq)
                                mirror.apply_event(ev)
                tg.start_soon(consume)
                await anyio.to_thread.run_sync(prod.sendall, _subscribe_free_churn(churn))
                await anyio.to_thread.run_sync(query, prod)
                with anyio.fail_after(20):
                    while not seqs or seqs[-1] < server.registry.seq:
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert sorted((b.device, b.buffer_id, b.size, b.ref_count) for b in mirror.buffers()) == \
        sorted((b.device, b.buffer_id, b.size, b.ref_count) for b in server.registry.buffers())
    mirror.check_invariants()


def _subscribe_free_churn(churn: bytes) -> bytes:
    return churn


def test_frozen_registry_keeps_ref_counts_as_of_the_freeze():
    reg = Registry()
    for i in range(3):
        reg.apply(AllocMessage(type=MsgType.ALLOC, size=10, process_id=1, buffer_id=i), 0)
    fz = reg.freeze()
    reg.apply(AllocMessage(type=MsgType.ALLOC, size=10, process_id=1, buffer_id=0), 0)  # ref 2
    reg.apply(AllocMessage(type=MsgType.FREE, process_id=1, buffer_id=1), 0)  # gone
    reg.apply(AllocMessage(type=MsgType.ALLOC, size=10, process_id=1, buffer_id=7), 0)
    assert [(b.buffer_id, b.ref_count) for b in fz.buffers()] == [(0, 1), (1, 1), (2, 1)] and len(fz) == 3
    assert reg.get(0, 0).ref_count == 2 and reg.get(0, 1) is None
    assert fz.seq == 3 and fz.totals[0][0] == 3
    reg.thaw(fz)
    reg.check_invariants()


# ------------------------------------------------------------------------------------------ 7. encode once
async def test_events_are_encoded_once_for_all_subscribers(tmp_path, monkeypatch):
    calls = 0
    real = codec.encode_events

    def counting(events):
        nonlocal calls
        calls += 1
        return real(events)

    monkeypatch.setattr(codec, "encode_events", counting)
    path = short_socket(tmp_path)
    async with running_server(path, quiet=True) as server:
        got = [0] * 5
        async with anyio.create_task_group() as tg:
            async def consume(k: int) -> None:
                async for item in subscribe(path):
                    if isinstance(item, EventBatch):
                        got[k] += len(item.events)
            for k in range(5):
                tg.start_soon(consume, k)
            with anyio.fail_after(10):
                while server.stats.subscribers < 5:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)
            calls = 0
            with raw_connect(path) as prod:
                for k in range(20):
                    await _send(prod, _allocs(10, base=k * 10))
                    await anyio.to_thread.run_sync(query, prod)  # one batch per round trip
            with anyio.fail_after(10):
                while min(got) < 200:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    assert got == [200] * 5
    assert calls <= 20, calls  # once per batch, not once per batch and subscriber


# ------------------------------------------------------------------------------------------ 8. stalled log
def test_log_pipe_nobody_reads_does_not_stall_producers(tmp_path):
    path = short_socket(tmp_path)
    err = open(tmp_path / "err.txt", "w+")
    proc = serve_process(path, stdout=subprocess.PIPE, stderr=err)  # per-allocation lines, never read (yet)
    try:
        n = 60_000  # ~5 MB of log lines: far beyond the 64 KiB pipe and the 4 MiB queue
        with raw_connect(path, 60) as prod:
            t0 = time.monotonic()
            prod.sendall(_allocs(n))
            assert query(prod) == (n * 4096, 0, 0, 0)
            assert time.monotonic() - t0 < 60
        out = b""
        deadline = time.monotonic() + 30
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:  # the reader comes back: the log drains
            try:
                chunk = proc.stdout.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                out += chunk
            err.seek(0)
            if "log lines dropped" in err.read():
                break
            time.sleep(0.05)
        err.seek(0)
        text = err.read()
        assert "log lines dropped (log output was not being read fast enough" in text, text[-2000:]
        lines = out.decode().splitlines()
        allocated = [ln for ln in lines if "Allocated 4096 bytes of DRAM" in ln]
        assert allocated and all(ln.startswith(f"✓ [PID {PID}] Allocated 4096 bytes of DRAM on device 0 (buffer_id=")
                                 for ln in allocated)
    finally:
        proc.stdout.close()
        assert stop_process(proc) == 0


# ------------------------------------------------------------------------------------------ 9. cleanup index
def test_dead_pid_cleanup_does_not_scan_every_buffer(monkeypatch):
    reg = Registry()
    for i in range(2000):
        reg.apply(AllocMessage(type=MsgType.ALLOC, size=8, process_id=1, buffer_id=i), 0)
    for pid in range(100, 400):
        reg.apply(AllocMessage(type=MsgType.ALLOC, size=8, process_id=pid, buffer_id=10_000 + pid), 0)
        reg.apply(AllocMessage(type=MsgType.CB_ALLOC, size=8, process_id=pid, buffer_id=pid), 0)
    monkeypatch.setattr(reg, "buffers", lambda: pytest.fail("cleanup scanned every buffer"))
    events = reg.cleanup(range(100, 400), 1)
    monkeypatch.undo()
    assert sum(e.kind == EventKind.CLEANUP for e in events) == 600
    assert [e.pid for e in events if e.kind == EventKind.PROCESS_EXIT] == list(range(100, 400))
    assert len(reg) == 2000 and reg.pids() == [1]
    reg.check_invariants()


# ------------------------------------------------------------------------------------------ 14. --max-buffers
async def test_max_buffers_refuses_new_allocations(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, quiet=True, max_buffers=100) as server:
        with raw_connect(path) as prod:
            await _send(prod, _allocs(150))
            assert await anyio.to_thread.run_sync(query, prod) == (100 * 4096, 0, 0, 0)
            await _send(prod, _allocs(1, base=5))  # a live key: a ref-count bump, not a new entry
            await _send(prod, encode(AllocMessage(type=MsgType.FREE, buffer_id=7, process_id=PID), FRAME))
            await _send(prod, _allocs(1, base=500))  # room for one again
            assert await anyio.to_thread.run_sync(query, prod) == (100 * 4096, 0, 0, 0)
        assert server.stats.refused_allocs == 50
        assert server.registry.get(0, 5).ref_count == 2 and server.registry.get(0, 500) is not None
        assert server.status()["refused_allocs"] == 50
        with raw_connect(path) as other:
            await _send(other, _allocs(3, base=1000))
            await anyio.to_thread.run_sync(query, other)
    text = log.getvalue()
    assert text.count("reached --max-buffers 100") == 2  # once per connection
    server.registry.check_invariants()


async def test_monitors_see_the_servers_health(tmp_path):
    """A STATUS record reaches SubscribeSource (status line) and `--json` (source.server)."""
    from tt_memtop.core.model import new_state
    from tt_memtop.output.oneshot import build_document
    from tt_memtop.sources.base import Status
    from tt_memtop.sources.subscribe import SubscribeSource

    path = short_socket(tmp_path)
    async with running_server(path, quiet=True, max_buffers=10):
        src = SubscribeSource(path, reconnect=False)
        seen: list[Status] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(src.run, lambda u: seen.append(u) if isinstance(u, Status) else None)
            await anyio.sleep(0.2)
            with raw_connect(path) as prod:
                await _send(prod, _allocs(20))
                await anyio.to_thread.run_sync(query, prod)
            with anyio.fail_after(10):
                while not src.server_status:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    assert src.server_status["refused_allocs"] >= 1 and src.server_status["max_buffers"] == 10
    assert any("allocations refused (--max-buffers 10)" in s.message for s in seen)
    doc = build_document(new_state(), src)
    assert doc["source"]["server"]["refused_allocs"] >= 1


async def test_a_failing_periodic_job_does_not_end_the_server(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()

    def broken(pid: int) -> bool:
        raise RuntimeError("liveness check exploded")

    async with running_server(path, log=log, quiet=True, is_alive=broken, cleanup_interval_s=0.05):
        with raw_connect(path) as prod:
            await _send(prod, _allocs(3))
            await anyio.sleep(0.3)  # several cleanup rounds fail
            assert await anyio.to_thread.run_sync(query, prod) == (3 * 4096, 0, 0, 0)
    assert log.getvalue().count("run_cleanup failed (RuntimeError: liveness check exploded)") == 1


def test_log_writer_counts_lines_lost_to_a_full_disk(tiny_fs):
    """A log file on a full file system: lines are lost and counted, never an exception, later lines still tried."""
    from tt_memtop.server.logwriter import LogWriter

    with open(os.path.join(tiny_fs, "fill"), "wb") as f:  # fill the 256 KiB file system
        with pytest.raises(OSError):
            f.write(b"x" * (1 << 20))
            f.flush()
    with open(os.path.join(tiny_fs, "log.txt"), "w") as out, open(os.devnull, "w") as err:
        w = LogWriter(out, err)
        for i in range(100):
            w.write([f"line {i}"])
        assert w.close(5)
        assert w.dropped_total >= 1


async def test_periodic_cleanup_of_a_big_dead_process_yields_to_ingest(tmp_path):
    """A dead PID's entries are removed in slices (run_cleanup_sliced), each published as it is done."""
    import tt_memtop.server.server as srv

    path = short_socket(tmp_path)
    alive = {"dead": False}
    async with running_server(path, quiet=True, cleanup_interval_s=0.05,
                              is_alive=lambda pid: not (alive["dead"] and pid == 4242)) as server:
        with raw_connect(path) as prod:
            await _send(prod, b"".join(encode(AllocMessage(type=MsgType.ALLOC, size=4096, process_id=4242,
                                                           buffer_id=0x1000 + i * 64), 144)
                                       for i in range(3 * srv._CLEANUP_SLICE + 5)))
            assert await anyio.to_thread.run_sync(query, prod) == ((3 * srv._CLEANUP_SLICE + 5) * 4096, 0, 0, 0)
            batches = []
            real = server._publish
            server._publish = lambda evs: (batches.append(len(evs)), real(evs))
            alive["dead"] = True
            with anyio.fail_after(20):
                while server.registry.num_buffers:
                    await anyio.sleep(0.02)
            assert len(batches) >= 4 and max(batches) <= srv._CLEANUP_SLICE + 1
            assert await anyio.to_thread.run_sync(query, prod) == (0, 0, 0, 0)
