"""What a new user meets first: flags, files, pipes, the demo, Ctrl+C, a server that goes away.

Real ``memtop`` subprocesses for the command line; Textual pilots for the TUI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
import pytest
from server_helpers import running_server, short_socket
from ui_fakes import FakeSource, llama_events

from tt_memtop.client import AllocationClient
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import new_state
from tt_memtop.core.protocol import BufferType
from tt_memtop.core.registry import Buffer
from tt_memtop.sources.base import Snapshot, Status
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.header_bar import HeaderBar

MEMTOP = [sys.executable, "-m", "tt_memtop"]
LOG = os.path.join(os.path.dirname(__file__), "data", "original_server", "session_72byte.log")


def _memtop(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MEMTOP, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- item 10: --once --json
async def test_once_combines_with_json_and_ndjson(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path):
        async with await AllocationClient.connect(path, 144) as c:
            await c.alloc(0, 4096, BufferType.L1, 0x40)
        with anyio.fail_after(60):
            js = await anyio.run_process([*MEMTOP, "--once", "--json", "--socket", path], check=False)
            nd = await anyio.run_process([*MEMTOP, "--once", "--ndjson", "--interval", "0.05", "--socket", path],
                                         check=False)
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout)["devices"][0]["bytes"]["L1"] == 4096
    assert nd.returncode == 0, nd.stderr
    assert len(nd.stdout.decode().splitlines()) == 1  # --once: one line, then exit


def test_replay_once_json(tmp_path):
    proc = _memtop("replay", LOG, "--once", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schema_version"] == 2  # 2: per-pool peaks and per-bank free ranges (issue 12)


# ---------------------------------------------------------------- item 12: filters and theme
@pytest.mark.parametrize("argv,says", [
    (["--device", "99", "--once", "--json"], "no device 99 here"),
    (["--device", "-1", "--once"], "device ids are 0 or more"),
    (["--device", "3-1", "--once"], "the range goes down (did you mean 1-3?)"),
    (["--device", "300", "--once"], "device ids go from 0 to 255"),
    (["--theme", "nope", "--once"], "unknown theme 'nope'"),
    (["--type", "BOGUS", "--once"], "unknown buffer type"),
    (["replay", LOG, "--theme", "nope"], "unknown theme 'nope'"),
    (["demo", "--device", "5-2"], "the range goes down"),
])
def test_bad_view_arguments_are_usage_errors(tmp_path, argv, says):
    if "--once" in argv and "replay" not in argv:  # a real server, so that only the filter can be wrong
        import io
        import threading

        from tt_memtop.core.devices import Inventory
        from tt_memtop.server.server import AllocationServer, ServerConfig

        path = short_socket(tmp_path)
        ready = threading.Event()
        stop = threading.Event()

        async def serve() -> None:
            server = AllocationServer(ServerConfig(socket_path=path, inventory=Inventory.uniform(8),
                                                   cleanup_interval_s=3600, stats_interval_s=3600), log=io.StringIO())
            async with anyio.create_task_group() as tg:
                await tg.start(server.serve)
                ready.set()
                while not stop.is_set():
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

        t = threading.Thread(target=anyio.run, args=(serve,), daemon=True)
        t.start()
        ready.wait(20)
        try:
            proc = _memtop(*argv, "--socket", path)
        finally:
            stop.set()
            t.join(20)
    else:
        proc = _memtop(*argv)
    _no_traceback(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert says in proc.stderr, proc.stderr


# ---------------------------------------------------------------- item 11: files that are not logs
@pytest.mark.parametrize("content,says", [
    (b"", "is empty"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8, "is a binary file"),
    (b"meeting notes\n- buy milk\n- fix the trace region\n", "is not an allocation-server log"),
])
@pytest.mark.parametrize("command", ["report", "replay"])
def test_report_and_replay_refuse_what_is_not_a_log(tmp_path, content, says, command):
    f = tmp_path / "notes.txt"
    f.write_bytes(content)
    proc = _memtop(command, str(f), *(["--once"] if command == "replay" else []))
    _no_traceback(proc)
    assert proc.returncode == 1, proc.stdout
    assert says in proc.stderr and "perfect cleanup" not in proc.stdout


def test_a_real_log_is_still_reported(tmp_path):
    proc = _memtop("report", LOG)
    assert proc.returncode == 0 and proc.stdout, proc.stderr


# ---------------------------------------------------------------- item 9: pipes
def test_demo_into_a_pipe_prints_once_and_exits(tmp_path):
    out = tmp_path / "f"
    with out.open("w") as f:
        proc = subprocess.run([*MEMTOP, "demo"], stdout=f, stderr=subprocess.PIPE, text=True, timeout=120)
    text = out.read_text()
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in text  # no escape codes
    assert "DEMO llama-t3k at 1x" in text and "Wormhole_B0" in text  # simulated data says so, once
    assert text.count("DEMO") == 1
    rows = [ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]
    assert len([r for r in rows if "Wormhole_B0" in r]) == 8  # the T3K's 8 devices, with memory in use


# ---------------------------------------------------------------- item 8: explicit --socket, DEMO badge
def test_an_explicit_socket_that_does_not_answer_is_an_error(tmp_path):
    missing = short_socket(tmp_path, "none.sock")
    # a pseudo-terminal would be needed for the TUI; `script` gives one when available
    proc = _run_in_pty([*MEMTOP, "--socket", missing])
    _no_traceback(proc)
    assert proc.returncode == 1, proc.stdout
    assert f"no allocation server listens on {missing}" in proc.stdout


def _run_in_pty(argv: list[str]) -> subprocess.CompletedProcess:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child: stdout is a terminal
        os.execvp(argv[0], argv)
    import select
    import signal
    import time

    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if time.monotonic() >= deadline:  # still running (e.g. a TUI that never exits): stop it
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace"), "")


class DemoFake(FakeSource):
    demo = True
    description = "llama-t3k at 0.25x (no server at /tmp/tt_allocation_server.sock)"  # as DemoSource words it


@pytest.mark.parametrize("width", [60, 80, 200])
async def test_demo_badge_at_any_width(width):
    app = MemtopApp(DemoFake(8, [llama_events()]), clock=lambda: 0.0)
    async with app.run_test(size=(width, 24)) as pilot:
        await pilot.pause(0.3)
        text = app.query_one(HeaderBar).render().plain
    assert "DEMO" in text[:20], text
    assert text.count("DEMO") == 1, text  # the badge; the description does not repeat it
    assert "llama-t3k" in text or width < 200  # the description, where the width leaves room for it
    assert "connected" not in text  # a demo is simulated, not a connection to the user's hardware


# ---------------------------------------------------------------- item 14: Ctrl+C
@pytest.mark.parametrize("in_search", [False, True])
async def test_ctrl_c_quits(in_search):
    app = MemtopApp(FakeSource(1, [llama_events(1)]), clock=lambda: 0.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        if in_search:
            await pilot.press("slash")
            await pilot.press("a")
        await pilot.press("ctrl+c")
        await pilot.pause(0.2)
        assert not app.is_running
    assert app.return_code in (0, None)


# ---------------------------------------------------------------- item 15: restart under the monitor
TRACE = int(BufferType.TRACE)


def _trace_buffers(pid: int, devices: int = 8) -> list[Buffer]:
    return [Buffer(device=d, buffer_id=0x3E363C80, buffer_type=TRACE, size=12_503_040, owner_pid=pid, ref_count=1,
                   alloc_ts_ns=1_000_000_000, alloc_seq=d + 1) for d in range(devices)]


def test_a_reconnect_resets_phases():
    state = new_state()
    state.apply(Status("connected"))
    state.apply(Snapshot(_trace_buffers(919068), 8, 60_000_000_000))
    assert str(state.phases.processes()[919068].phase) == "replay"
    state.apply(Status("disconnected", "the server at /tmp/s.sock closed the connection; retrying in 0.25 s"))
    state.apply(Status("connected"))
    state.apply(Snapshot([], 0, 70_000_000_000))  # the restarted server: 0 B, no processes
    assert 919068 not in state.phases.processes()
    state.apply(Snapshot(_trace_buffers(4242), 8, 80_000_000_000))  # a RESYNC-style snapshot: no reset
    state.apply(Status("connected"))
    assert 4242 in state.phases.processes() or not state.phases.processes()


class LosingSource(FakeSource):
    async def run(self, emit) -> None:
        self.emit = emit
        emit(Status("connected", capabilities=frozenset()))
        emit(Snapshot(_trace_buffers(919068, 1), 1, 1_000_000_000))
        await anyio.sleep(0.3)
        emit(Status("disconnected", "the server at /tmp/s.sock closed the connection; retrying in 0.25 s"))
        await anyio.sleep_forever()


async def test_stale_state_is_dimmed_and_says_so():
    app = MemtopApp(LosingSource(1, []), clock=lambda: 0.0)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.1)
        assert not app.has_class("-stale")
        await pilot.pause(0.6)
        text = app.query_one(HeaderBar).render().plain
        assert app.has_class("-stale")
        assert "STALE" in text and "last state received" in text


def test_event_free_means_the_server_is_gone_for_good():  # the stale badge is not shown for a live source
    state = new_state()
    state.apply(Status("connected"))
    state.apply(Snapshot([], 0, 1))
    ev = Event(EventKind.ALLOC, seq=1, ts_ns=2, pid=1, device=0, buffer_type=0, buffer_id=1, size=1, ref_count=1)
    state.apply_events([ev])
    assert state.status.state == "connected"


# ---------------------------------------------------------------- item 16: serve's inventory
def test_serve_says_where_its_inventory_comes_from_and_grows_it(tmp_path):
    import signal
    import socket as so
    import struct
    import time

    path = short_socket(tmp_path)
    server = subprocess.Popen([*MEMTOP, "serve", "--socket", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(path):
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        msg = bytearray(144)  # a Galaxy workload: ALLOC on device 20 of a server configured for 8
        struct.pack_into("<B3xiQB3xiQQ", msg, 0, 1, 20, 1 << 20, 0, os.getpid(), 0x1000, 0)
        with so.socket(so.AF_UNIX, so.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(bytes(msg))
            time.sleep(0.2)
            info = bytearray(144)
            struct.pack_into("<B3xi", info, 0, 6, -1)  # DEVICE_INFO_QUERY(-1): the device count
            s.sendall(bytes(info))
            reply = s.recv(144)
        proc = _memtop("--json", "--socket", path)
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=20)
    assert "using TT-Metal APIs" not in out
    assert "🔍 Device detection (configured: 8 × Wormhole_B0" in out and "no hardware probed" in out
    assert "Device 20 is beyond the configured 8 device(s)" in err and "--devices 32" in err
    assert struct.unpack_from("<I", reply, 124)[0] == 21  # num_devices now includes it
    dev20 = next(d for d in json.loads(proc.stdout)["devices"] if d["device"] == 20)
    assert dev20["capacity"] == {"DRAM": 12 << 30, "L1": 179_896_320}


def test_serve_counts_the_chips_the_driver_lists(tmp_path):
    from tt_memtop.commands.serve import inventory_origin

    for i in range(4):
        (tmp_path / str(i)).touch()
    count, origin = inventory_origin(None, "wormhole_b0", str(tmp_path))
    assert count == 4 and f"{tmp_path} lists 4 PCIe chip(s)" in origin
    assert inventory_origin(32, "blackhole", str(tmp_path))[1].startswith("configured: 32 × Blackhole")
    count, origin = inventory_origin(None, "wormhole_b0", str(tmp_path / "none"))
    assert count == 8 and "no hardware probed" in origin


def test_monitor_assumes_capacities_for_devices_beyond_the_inventory():
    from tt_memtop.core.devices import Inventory

    state = new_state()
    state.apply(Status("connected"))
    state.apply(Snapshot([], 0, 1, Inventory.uniform(8)))
    ev = Event(EventKind.ALLOC, seq=1, ts_ns=2, pid=1, device=31, buffer_type=0, buffer_id=1, size=1, ref_count=1)
    state.apply_events([ev])
    assert state.devices() == [*range(8), 31]
    assert state.inventory.get(31).total_dram == 12 << 30 and state.inventory_grown == 8
