"""A server restart loses nothing (issue 8.11, 8.12): recordings gain sessions, journals restore the registry.

Real ``memtop serve`` subprocesses, stopped with SIGINT or killed with SIGKILL, and raw sockets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from server_helpers import raw_connect, recv_exactly, short_socket

from tt_memtop.core.events import EventKind
from tt_memtop.core.protocol import AllocMessage, MsgType, encode
from tt_memtop.recording import RESTART_TEXT, RecordingReader, RecordingWriter

MiB = 1 << 20


def msg(t: int, device: int = 0, size: int = 0, bid: int = 0, pid: int = 0, btype: int = 0) -> bytes:
    return encode(AllocMessage(type=t, device_id=device, size=size, buffer_type=btype, process_id=pid,
                               buffer_id=bid), 144)


def u64(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 8], "little")


class Serve:
    """``memtop serve`` as a subprocess (stdout and stderr collected)."""

    def __init__(self, path: str, *args: str) -> None:
        self.path = path
        self.proc = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "-q", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                raw_connect(path).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        out, err = self.proc.communicate(timeout=10)
        raise AssertionError(f"server did not start: {err.decode()}")

    def send(self, payload: bytes, replies: int = 1) -> list[bytes]:
        with raw_connect(self.path) as s:
            s.sendall(payload + msg(MsgType.QUERY))
            return [recv_exactly(s, 144) for _ in range(replies)]

    def stop(self, sig: int = signal.SIGINT) -> tuple[str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return out.decode(), err.decode()


@pytest.fixture
def owner():
    """A live process whose PID owns the test's buffers (reported PIDs are checked with kill(pid, 0))."""
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield p.pid
    p.stdin.close()
    p.wait()


# ---------------------------------------------------------------------------------------- 8.11 recordings
def test_restarting_with_the_same_record_file_appends_a_session(tmp_path, owner):
    path = short_socket(tmp_path)
    rec = str(tmp_path / "run.rec")
    s = Serve(path, "--record", rec)
    s.send(b"".join(msg(MsgType.ALLOC, 0, MiB, bid=i, pid=owner) for i in range(1, 6)) + msg(MsgType.FREE, 0, bid=5))
    s.stop()
    first = os.path.getsize(rec)
    s = Serve(path, "--record", rec)
    s.send(msg(MsgType.ALLOC, 1, 2 * MiB, bid=9, pid=owner))
    _, err = s.stop()
    assert "appending session 2" in err
    assert os.path.getsize(rec) > first  # was truncated to a fresh header before

    r = RecordingReader(rec)
    events = list(r)
    assert r.sessions == 2
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # one increasing sequence
    ends = [e for e in events if e.text == RESTART_TEXT]
    assert sorted(e.buffer_id for e in ends) == [1, 2, 3, 4] and all(e.kind == EventKind.CLEANUP for e in ends)
    assert [e.buffer_id for e in events if e.kind == EventKind.ALLOC] == [1, 2, 3, 4, 5, 9]
    ts = [e.ts_ns for e in events]
    assert ts == sorted(ts)

    rep = subprocess.run([sys.executable, "-m", "tt_memtop", "report", rec, "--json"], capture_output=True, timeout=60)
    assert rep.returncode == 0, rep.stderr.decode()
    json.loads(rep.stdout)
    ana = subprocess.run([sys.executable, "-m", "tt_memtop", "analyze", rec, "--json"], capture_output=True,
                         timeout=60)
    assert ana.returncode == 0, ana.stderr.decode()


def test_a_file_that_is_not_a_recording_is_never_overwritten(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    res = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", short_socket(tmp_path), "--record",
                          str(notes)], capture_output=True, timeout=30)
    assert res.returncode == 1 and b"not a tt-memtop recording" in res.stderr
    assert notes.read_text() == "my notes\n"


def test_appending_after_a_torn_tail_keeps_both_sessions_readable(tmp_path):
    from tt_memtop.core.events import Event

    rec = str(tmp_path / "r.rec")
    with RecordingWriter(rec) as w:
        w.write_events([Event(EventKind.ALLOC, seq=1, ts_ns=10, pid=1, buffer_id=1, size=64)])
        w.write_events([Event(EventKind.ALLOC, seq=2, ts_ns=11, pid=1, buffer_id=2, size=64)])
    with open(rec, "r+b") as f:  # a crash tore the last record
        f.truncate(os.path.getsize(rec) - 5)
    w = RecordingWriter(rec)
    assert w.previous_sessions == 1 and w.dropped_tail > 0
    w.write_events([Event(EventKind.ALLOC, seq=1, ts_ns=20, pid=2, buffer_id=3, size=64)])
    w.close()
    r = RecordingReader(rec)
    evs = list(r)
    assert [(e.kind, e.buffer_id) for e in evs] == [(EventKind.ALLOC, 1), (EventKind.CLEANUP, 1),
                                                      (EventKind.ALLOC, 3)]
    assert r.torn_bytes == 0 and r.sessions == 2


# ---------------------------------------------------------------------------------------- 8.12 journal
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_journal_restores_the_registry_after_a_restart(tmp_path, owner, how):
    path = short_socket(tmp_path)
    journal = str(tmp_path / "state.journal")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    s = Serve(path, "--journal", journal)
    batch = b"".join(msg(MsgType.ALLOC, d, 100 * MiB, bid=0x1000 + i, pid=owner) for d in (0, 1) for i in range(6))
    batch += msg(MsgType.ALLOC, 0, 100 * MiB, bid=0x1000, pid=owner)  # ref_count 2
    batch += msg(MsgType.ALLOC, 0, 5 * MiB, bid=0x9000, pid=int(dead))  # its owner is gone: cleaned up after restart
    batch += msg(MsgType.FREE, 1, bid=0x1005)
    before = s.send(batch)[0]
    assert u64(before, 40) == 605 * MiB
    s.stop(how)

    s = Serve(path, "--journal", journal)
    (q0,) = s.send(b"")
    with raw_connect(path) as c:
        c.sendall(msg(MsgType.QUERY, 1))
        q1 = recv_exactly(c, 144)
    assert u64(q0, 40) == 600 * MiB and u64(q1, 40) == 500 * MiB  # restored, the dead PID's 5 MiB cleaned up
    (after,) = s.send(msg(MsgType.FREE, 0, bid=0x1000) + msg(MsgType.FREE, 0, bid=0x1000)
                      + b"".join(msg(MsgType.FREE, 1, bid=0x1000 + i) for i in range(5)))
    assert u64(after, 40) == 500 * MiB
    out, err = s.stop()
    assert "restored 12 buffers" in err
    assert "unknown buffer" not in out  # every FREE found its buffer
    assert "PID " + dead + " is dead" in out


def test_without_a_journal_monitors_are_told_the_earlier_state_is_unknown(tmp_path):
    path = short_socket(tmp_path)
    s = Serve(path)
    try:
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "--socket", path, "--json"],
                             capture_output=True, timeout=60)
        doc = json.loads(res.stdout)
        server = doc["source"]["server"]
        assert server["prior_state"] == "unknown" and "not shown" in server["notes"][0]
        text = subprocess.run([sys.executable, "-m", "tt_memtop", "--socket", path, "--once"], capture_output=True,
                              timeout=60).stdout.decode()
        assert "without a journal: memory allocated before then is not shown" in text
    finally:
        s.stop()
    j = str(tmp_path / "j")
    s = Serve(path, "--journal", j)
    try:
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "--socket", path, "--json"],
                             capture_output=True, timeout=60)
        assert json.loads(res.stdout)["source"]["server"]["prior_state"] == "unknown"  # a first start: nothing to restore
    finally:
        s.stop()
    s = Serve(path, "--journal", j)
    try:
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "--socket", path, "--json"],
                             capture_output=True, timeout=60)
        assert json.loads(res.stdout)["source"]["server"]["prior_state"] == "journal"
    finally:
        s.stop()


def test_json_shows_who_really_sent_a_reported_pid(tmp_path, owner):
    path = short_socket(tmp_path)
    s = Serve(path)
    try:
        s.send(msg(MsgType.ALLOC, 0, MiB, bid=1, pid=owner))  # the test process reports another PID
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "--socket", path, "--json"], capture_output=True,
                             timeout=60)
        doc = json.loads(res.stdout)
    finally:
        _, err = s.stop()
    (proc,) = doc["processes"]
    assert proc["pid"] == owner and proc["host_pid"] == os.getpid() and proc["pid_kind"] == "mismatch"
    assert doc["source"]["server"]["pid_mismatch_connections"] == 1
    assert "1 connection(s) report a PID that is not theirs" in doc["source"]["server"]["notes"]
    assert err.count(f"messages report PID {owner}, but the sender is PID {os.getpid()}") == 1


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (root only; skipped otherwise)."""
    d = tmp_path / "fs"
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_full_disk_stops_the_journal_not_the_server(tmp_path, small_fs, owner):
    path = short_socket(tmp_path)
    s = Serve(path, "--journal", str(small_fs / "j"))
    try:
        for k in range(4):  # ~3000 events: far more than 64 KiB of journal
            (q,) = s.send(b"".join(msg(MsgType.ALLOC, 0, 4096, bid=k * 1000 + i, pid=owner) for i in range(800)))
            assert u64(q, 40) == (k + 1) * 800 * 4096
        assert s.proc.poll() is None
    finally:
        out, err = s.stop()
    assert err.count("journaling stopped, the server goes on") == 1
    assert "Active allocations: 3200" in out
    assert os.path.getsize(small_fs / "j") == 0  # a restart must not restore a stale half
    s = Serve(path, "--journal", str(small_fs / "j"))
    _, err = s.stop()
    assert "restored" not in err


async def test_journal_restores_cbs_kernels_refcounts_and_owners_exactly(tmp_path):
    from server_helpers import running_server

    path = short_socket(tmp_path)
    j = str(tmp_path / "j")

    def run():
        with raw_connect(path) as s:
            s.sendall(msg(MsgType.ALLOC, 0, 4096, bid=1, pid=77) + msg(MsgType.ALLOC, 0, 4096, bid=1, pid=78)
                      + msg(MsgType.CB_ALLOC, 1, 2048, bid=5, pid=77) + msg(MsgType.KERNEL_LOAD, 1, 512, bid=6, pid=77,
                                                                             btype=1)
                      + msg(MsgType.ALLOC, 2, 100, bid=9, pid=79, btype=4) + msg(MsgType.QUERY, 1))
            return recv_exactly(s, 144)

    async with running_server(path, journal=j) as first:
        import anyio

        await anyio.to_thread.run_sync(run)
        before = sorted((b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, b.ref_count)
                        for b in first.registry.buffers())
        totals = {d: first.registry.wire_totals(d) for d in (0, 1, 2)}
    async with running_server(path, journal=j) as second:
        after = sorted((b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, b.ref_count)
                       for b in second.registry.buffers())
        assert after == before and len(after) == 4
        assert {d: second.registry.wire_totals(d) for d in (0, 1, 2)} == totals
        assert second.prior_state == "journal" and second.server_info()["restored_buffers"] == 4
        second.registry.check_invariants()


def test_journal_and_record_must_be_two_files(tmp_path):
    f = str(tmp_path / "same")
    res = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", short_socket(tmp_path), "--record", f,
                          "--journal", f], capture_output=True, timeout=30)
    assert res.returncode == 1 and b"same file" in res.stderr and not os.path.exists(f)


def test_two_servers_never_write_one_recording(tmp_path):
    rec = str(tmp_path / "r.rec")
    s = Serve(short_socket(tmp_path, "a.sock"), "--record", rec)
    try:
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", short_socket(tmp_path, "b.sock"),
                              "--record", rec], capture_output=True, timeout=30)
        assert res.returncode == 1 and b"being written by another process" in res.stderr
    finally:
        s.stop()
    assert RecordingReader(rec).header is not None


def test_two_servers_never_share_a_journal(tmp_path, owner):
    j = str(tmp_path / "j")
    s = Serve(short_socket(tmp_path, "a.sock"), "--journal", j)
    try:
        s.send(msg(MsgType.ALLOC, 0, MiB, bid=1, pid=owner))
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", short_socket(tmp_path, "b.sock"),
                              "--journal", j], capture_output=True, timeout=30)
        assert res.returncode == 1 and b"in use by another running server" in res.stderr
        (q,) = s.send(msg(MsgType.ALLOC, 0, MiB, bid=2, pid=owner))
        assert u64(q, 40) == 2 * MiB
    finally:
        s.stop()
    s = Serve(short_socket(tmp_path, "a.sock"), "--journal", j)
    (q,) = s.send(b"")
    s.stop()
    assert u64(q, 40) == 2 * MiB  # the first server's journal was left intact


async def test_a_torn_journal_tail_is_tolerated(tmp_path):
    import anyio
    from server_helpers import running_server

    path = short_socket(tmp_path)
    j = tmp_path / "j"
    err = __import__("io").StringIO()

    def send(payload):
        with raw_connect(path) as s:
            s.sendall(payload + msg(MsgType.QUERY))
            recv_exactly(s, 144)

    async with running_server(path, journal=str(j)):
        await anyio.to_thread.run_sync(send, msg(MsgType.ALLOC, 0, 100, bid=1, pid=5))
        await anyio.to_thread.run_sync(send, msg(MsgType.ALLOC, 0, 200, bid=2, pid=5))
    with open(j, "r+b") as f:  # a crash in the middle of writing the last batch
        f.truncate(os.path.getsize(j) - 7)
    async with running_server(path, journal=str(j), err=err) as server:
        assert [b.buffer_id for b in server.registry.buffers()] == [1]
        assert server.registry.wire_totals(0)[0] == 100
    assert "torn or damaged record" in err.getvalue()
