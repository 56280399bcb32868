"""Ownership on a shared host (issue 8.15-8.17): peer credentials, FREE rights, socket and file permissions.

Real sockets and real processes: a second UID made with ``useradd`` (the tests that need it are
skipped, with the reason, when not run as root), a client in its own PID namespace via
``unshare`` (skipped when unavailable).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import anyio
import pytest
from server_helpers import raw_connect, recv_exactly, running_server, short_socket

from tt_memtop.core.protocol import AllocMessage, MsgType, encode
from tt_memtop.server.server import pid_alive

USER = "memtop_peer_t"


@pytest.fixture(scope="module")
def other_uid() -> int:
    """The UID of a second, unprivileged user (created with useradd if missing)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second user (useradd) and to setuid to it")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    import pwd

    try:
        return pwd.getpwnam(USER).pw_uid
    except KeyError:
        pass
    res = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"useradd failed: {res.stderr.decode().strip()}")
    return pwd.getpwnam(USER).pw_uid


@pytest.fixture
def open_dir():
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="mtp", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def msg(t: int, device: int = 0, size: int = 0, bid: int = 0, pid: int = 0, btype: int = 0) -> bytes:
    return encode(AllocMessage(type=t, device_id=device, size=size, buffer_type=btype, process_id=pid,
                               buffer_id=bid), 144)


def as_user(uid: int, path: str, payload: bytes, reply: int = 144) -> bytes | str:
    """Fork, setuid(uid), connect to ``path``, send ``payload``, read ``reply`` bytes. Returns them or the error."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(path)
                s.sendall(payload)
                out = recv_exactly(s, reply) if reply else b""
                os.write(w, b"OK" + out)
            except OSError as exc:
                os.write(w, f"ERR{type(exc).__name__}".encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    return data[2:] if data.startswith(b"OK") else data.decode()


def u64(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 8], "little")


# ---------------------------------------------------------------------------------------- 8.16 FREE rights
async def test_free_from_another_uid_is_refused_and_counted(other_uid, open_dir):
    path = os.path.join(open_dir, "s.sock")
    err = io.StringIO()
    async with running_server(path, err=err, socket_mode=0o666) as server:
        me = os.getpid()

        def run():
            with raw_connect(path) as s:  # root's process allocates two buffers
                s.sendall(msg(MsgType.ALLOC, 0, 1 << 30, bid=0x10, pid=me) + msg(MsgType.ALLOC, 0, 4096, bid=0x20,
                                                                                  pid=me) + msg(MsgType.QUERY))
                recv_exactly(s, 144)
            # another user frees one of them, and claims the other is theirs with a fake PID
            return as_user(other_uid, path, msg(MsgType.FREE, 0, bid=0x10, pid=me) + msg(MsgType.QUERY))

        q = await anyio.to_thread.run_sync(run)
        assert isinstance(q, bytes), q
        assert u64(q, 40) == (1 << 30) + 4096  # nothing was freed
        assert server.registry.get(0, 0x10) is not None
        assert server.stats.refused_frees == 1 and server.ownership.refused_frees == 1
        assert server.server_info()["refused_frees"] == 1
    assert "FREE of buffer 0x10 on device 0 refused" in err.getvalue()


async def test_normal_use_is_never_refused(other_uid, open_dir):
    """A user frees its own buffers (ref-counted ones too); root may free anything; --trust-all accepts all."""
    path = os.path.join(open_dir, "s.sock")
    async with running_server(path, socket_mode=0o666) as server:
        def run():
            # the user's process (it reports PID 4242: the PID claim does not matter, the UID does)
            q1 = as_user(other_uid, path, msg(MsgType.ALLOC, 1, 8192, bid=0x30, pid=4242)
                         + msg(MsgType.ALLOC, 1, 8192, bid=0x30, pid=4242) + msg(MsgType.FREE, 1, bid=0x30, pid=4242)
                         + msg(MsgType.QUERY, 1))
            q2 = as_user(other_uid, path, msg(MsgType.FREE, 1, bid=0x30, pid=4242) + msg(MsgType.QUERY, 1))
            with raw_connect(path) as s:  # root frees a user's buffer: allowed
                s.sendall(msg(MsgType.ALLOC, 1, 100, bid=0x40, pid=4242))
            q3 = as_user(other_uid, path, msg(MsgType.ALLOC, 1, 100, bid=0x50, pid=4343) + msg(MsgType.QUERY, 1))
            with raw_connect(path) as s:
                s.sendall(msg(MsgType.FREE, 1, bid=0x50, pid=1) + msg(MsgType.QUERY, 1))
                q4 = recv_exactly(s, 144)
            return q1, q2, q3, q4

        q1, q2, q3, q4 = await anyio.to_thread.run_sync(run)
        assert u64(q1, 40) == 8192 and u64(q2, 40) == 0  # same user: ref-counted free, then the final one
        assert u64(q3, 40) == 100 + 100 and u64(q4, 40) == 100  # root freed 0x50
        assert server.stats.refused_frees == 0


async def test_trust_all_accepts_foreign_frees(other_uid, open_dir):
    path = os.path.join(open_dir, "s.sock")
    async with running_server(path, socket_mode=0o666, trust_all=True) as server:
        def run():
            with raw_connect(path) as s:
                s.sendall(msg(MsgType.ALLOC, 0, 4096, bid=0x10, pid=os.getpid()) + msg(MsgType.QUERY))
                recv_exactly(s, 144)
            return as_user(other_uid, path, msg(MsgType.FREE, 0, bid=0x10) + msg(MsgType.QUERY))

        q = await anyio.to_thread.run_sync(run)
        assert u64(q, 40) == 0 and server.stats.refused_frees == 0


# ---------------------------------------------------------------------------------------- 8.17 permissions
async def test_socket_is_0600_by_default_and_other_users_cannot_connect(other_uid, open_dir):
    path = os.path.join(open_dir, "s.sock")
    async with running_server(path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        res = await anyio.to_thread.run_sync(as_user, other_uid, path, msg(MsgType.QUERY))
        assert res == "ERRPermissionError"


async def test_socket_mode_and_group_widen_access(other_uid, open_dir):
    import pwd

    gid = pwd.getpwuid(other_uid).pw_gid
    path = os.path.join(open_dir, "s.sock")
    async with running_server(path, socket_mode=0o660, socket_group=gid):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid


def test_serve_cli_socket_mode(tmp_path):
    """memtop serve --socket-mode 640: the file has that mode from the first moment it is listed."""
    path = short_socket(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "--socket-mode", "640"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    bad = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "--socket-mode", "9"],
                         capture_output=True)
    assert bad.returncode == 2 and b"octal" in bad.stderr


def test_recording_never_written_through_a_symlink(tmp_path):
    target = tmp_path / "root_owned"
    target.write_bytes(b"precious")
    link = tmp_path / "rec"
    link.symlink_to(target)
    path = short_socket(tmp_path)
    for opt in ("--record", "--journal"):
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", path, opt, str(link)],
                             capture_output=True, timeout=30)
        assert res.returncode == 1 and b"symbolic link" in res.stderr, res.stderr
        assert target.read_bytes() == b"precious"
        assert not os.path.exists(path)  # nothing was bound


async def test_recording_and_journal_are_created_0600(tmp_path):
    old = os.umask(0)  # even with a permissive umask
    try:
        async with running_server(short_socket(tmp_path), record=str(tmp_path / "r.rec"),
                                  journal=str(tmp_path / "j.rec")):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r.rec").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "j.rec").st_mode) == 0o600


# ---------------------------------------------------------------------------------------- 8.15 real PIDs
_NS_CLIENT = textwrap.dedent('''
    import os, socket, struct, sys
    # PID 1 of the namespace, or the first PID number in it that does not exist on the host
    want_missing = sys.argv[2] == "missing"
    while True:
        if not want_missing:
            me = os.getpid()
            break
        child = os.fork()
        if child == 0:
            me = os.getpid()
            if os.path.exists(f"/proc/{me}"):  # the host's /proc: this number is taken there
                os._exit(3)
            break
        _, st = os.waitpid(child, 0)
        if os.WEXITSTATUS(st) != 3:
            sys.exit(os.WEXITSTATUS(st))
    def m(t, dev=0, size=0, bid=0):
        return struct.pack("<B3xiQB3xiQQ", t, dev, size, 0, me, bid, 0).ljust(144, b"\\0")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(m(1, 0, 1 << 20, 0x77) + m(3))
    got = b""
    while len(got) < 144:
        got += s.recv(144 - len(got))
    print(me, flush=True)
    sys.stdin.read()  # live until the test closes our stdin
    os._exit(0)
''')


def _unshare() -> list[str]:
    exe = shutil.which("unshare")
    if exe is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to run a client in its own PID namespace")
    if subprocess.run([exe, "-pf", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -pf is not permitted here")
    return [exe, "-pf"]


@pytest.mark.parametrize("which", ["one", "missing"])
async def test_container_pids_live_as_long_as_the_real_process(tmp_path, which):
    """A process in its own PID namespace reports PID 1 (always alive on the host) or a PID the host lacks."""
    cmd = _unshare()
    path = short_socket(tmp_path)
    err = io.StringIO()
    async with running_server(path, err=err, is_alive=pid_alive) as server:
        proc = subprocess.Popen([*cmd, sys.executable, "-c", _NS_CLIENT, path, which], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        try:
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
            reported = int(line)
            assert reported != proc.pid
            assert which == "missing" or reported == 1
            for _ in range(3):
                server.run_cleanup()
                await anyio.sleep(0.05)
            assert server.registry.get(0, 0x77) is not None, "a live container process lost its buffer"
            assert server.registry.get(0, 0x77).owner_pid == reported  # shown as reported
            assert server.stats.pid_namespace == 1 and server.stats.pid_mismatch == 0
        finally:
            proc.stdin.close()
            await anyio.to_thread.run_sync(proc.wait)
        deadline = time.monotonic() + 10
        while server.registry.get(0, 0x77) is not None and time.monotonic() < deadline:
            server.run_cleanup()
            await anyio.sleep(0.05)
        assert server.registry.get(0, 0x77) is None, "the exited container process's buffer was never cleaned up"
    assert f"PID {reported} is PID" in err.getvalue() and "another PID namespace" in err.getvalue()


async def test_a_reported_pid_that_is_not_the_sender_is_flagged_once_per_connection(tmp_path):
    path = short_socket(tmp_path)
    err = io.StringIO()
    log = io.StringIO()
    async with running_server(path, log=log, err=err) as server:
        def run():
            for _ in range(2):
                with raw_connect(path) as s:
                    s.sendall(msg(MsgType.ALLOC, 0, 64, bid=1, pid=999999) + msg(MsgType.ALLOC, 0, 64, bid=2, pid=999999)
                              + msg(MsgType.QUERY))
                    recv_exactly(s, 144)
        await anyio.to_thread.run_sync(run)
        assert server.stats.pid_mismatch == 2
        assert server.server_info()["pid_mismatch_connections"] == 2
    assert err.getvalue().count("messages report PID 999999, but the sender is PID") == 2
    assert "but the sender" not in log.getvalue()  # stdout stays the original's


async def test_a_pre_claimed_address_does_not_swallow_the_victims_buffer(other_uid, open_dir):
    """Another user claims an address with a dead PID; the owner's own ALLOC replaces that claim, and the
    claim's cleanup cannot delete the real buffer (it used to become a ref_count bump, then vanish)."""
    path = os.path.join(open_dir, "s.sock")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    alive = {os.getpid()}
    async with running_server(path, socket_mode=0o666, is_alive=lambda pid: pid in alive) as server:
        def run():
            as_user(other_uid, path, msg(MsgType.ALLOC, 0, 4096, bid=0x10, pid=int(dead)) + msg(MsgType.QUERY))
            with raw_connect(path) as s:
                s.sendall(msg(MsgType.ALLOC, 0, 1 << 20, bid=0x10, pid=os.getpid()) + msg(MsgType.QUERY))
                return recv_exactly(s, 144)
        q = await anyio.to_thread.run_sync(run)
        assert u64(q, 40) == 1 << 20
        server.run_cleanup()
        b = server.registry.get(0, 0x10)
        assert b is not None and b.owner_pid == os.getpid() and b.ref_count == 1 and b.size == 1 << 20
        assert server.stats.evicted_claims == 1
        server.registry.check_invariants()


def test_recording_planted_by_another_user_is_refused(other_uid, tmp_path):
    from tt_memtop.recording import RecordingWriter

    planted = tmp_path / "run.rec"
    RecordingWriter(str(planted)).close()  # a valid recording...
    os.chown(planted, other_uid, -1)  # ...that another user owns (and could read)
    before = planted.read_bytes()
    res = subprocess.run([sys.executable, "-m", "tt_memtop", "serve", "--socket", short_socket(tmp_path), "--record",
                          str(planted)], capture_output=True, timeout=30)
    assert res.returncode == 1 and b"belongs to another user" in res.stderr
    assert planted.read_bytes() == before


def test_details_name_a_container_pid_by_its_host_process():
    """The details screen: PID 9 of a container is described by its host process, a spoofed PID is flagged."""
    from rich.console import Console

    from tt_memtop.core.model import new_state
    from tt_memtop.core.registry import Buffer
    from tt_memtop.ui.procinfo import ProcInfo
    from tt_memtop.ui.screens.details import details_renderable

    state = new_state(phases=False)
    me = os.getpid()
    reported = {9: {"pid": 9, "host_pid": me, "uid": 0, "kind": "namespace"},
                12: {"pid": 12, "host_pid": me, "uid": 1000, "kind": "mismatch"}}

    def render(pid):
        b = Buffer(0, 0x10, 0, 4096, pid)
        con = Console(width=120, record=True)
        con.print(details_renderable(state, 0x10, [b], ProcInfo(True, time.monotonic), 0, reported))
        return con.export_text()

    text = render(9)
    assert "PID 9 python" in text and f"host PID {me} (uid 0)" in text and "pytest" in text
    assert f"reported by PID {me} (uid 1000), which is not that PID" in render(12)
