"""Exporter units: the view of a monitor's state, the exposition text, staleness; the Client API;
the read-only web-view app; exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server_helpers import running_server, short_socket
from tt_memtop import Client, DeviceTotals
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import new_state
from tt_memtop.exporter.collector import render
from tt_memtop.exporter.view import LagTracker, view_from_state
from tt_memtop.sources.base import Capability, EventBatch, Snapshot, Status, TotalsSample

MEMTOP = [sys.executable, "-m", "tt_memtop"]
CAPS = frozenset({Capability.EVENTS, Capability.TOTALS})
MiB = 1 << 20


def _alloc(seq, pid, dev, btype, bid, size):
    return Event(EventKind.ALLOC, seq=seq, ts_ns=seq * 1000, pid=pid, device=dev, buffer_type=btype, buffer_id=bid,
                 size=size, ref_count=1)


def _samples(text: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def _state(events):
    st = new_state()
    st.apply(Status("connected", capabilities=CAPS))
    st.apply(Snapshot([], 0, 1, Inventory.uniform(2, "blackhole")))
    st.apply(EventBatch(events))
    return st


def test_state_view_renders_exact_bytes_per_device_pool_and_process():
    st = _state([_alloc(1, 10, 0, 0, 0x100, 5 * MiB), _alloc(2, 10, 0, 3, 0x200, 4096),  # DRAM, L1_SMALL
                 _alloc(3, 10, 0, 2, 0x300, 100),  # SYSTEM_MEMORY: in l1_small, as on the wire
                 _alloc(4, 11, 1, 4, 0x400, 12 * MiB), _alloc(5, 11, 1, 5, 0x500, 2048)])  # TRACE, CB
    text = render(view_from_state(st, source="subscribe", hostname="h1", comm={10: "a", 11: "b"}.get, lag_s=0.25))
    s = _samples(text)
    dev0 = (("arch", "blackhole"), ("device", "0"), ("hostname", "h1"))
    assert s["tt_memtop_used_bytes", (*dev0, ("pool", "dram"))] == 5 * MiB
    assert s["tt_memtop_used_bytes", (*dev0, ("pool", "l1_small"))] == 4096 + 100
    assert s["tt_memtop_used_bytes", (("arch", "blackhole"), ("device", "1"), ("hostname", "h1"), ("pool", "cb"))] == 2048
    assert s["tt_memtop_capacity_bytes", (*dev0, ("pool", "dram"))] == 32 << 30
    assert s["tt_memtop_buffers", dev0] == 3
    proc = (("comm", "b"), ("device", "1"), ("hostname", "h1"), ("pid", "11"))
    assert s["tt_memtop_process_used_bytes", (*proc, ("pool", "trace"))] == 12 * MiB
    assert s["tt_memtop_process_buffers", (("comm", "a"), ("hostname", "h1"), ("pid", "10"))] == 3
    assert s["tt_memtop_source_lag_seconds", (("hostname", "h1"), ("source", "subscribe"))] == 0.25
    assert s["tt_memtop_events_total", (("hostname", "h1"),)] == 5
    # a phase is a state set: exactly one state is 1 per process
    states = {dict(k)["tt_memtop_process_phase"]: v for (n, k), v in s.items()
              if n == "tt_memtop_process_phase" and dict(k)["pid"] == "10"}
    assert sum(states.values()) == 1 and len(states) == 8
    for fam in ("used_bytes", "events_total", "bad_frames_total", "process_phase"):
        assert f"# HELP tt_memtop_{fam} ".encode() in text
    assert b"# TYPE tt_memtop_events_total counter" in text

    # peaks and the largest allocatable buffer come from the bank maps (core/insight.py)
    assert s["tt_memtop_peak_bytes", (*dev0, ("pool", "dram"))] == 5 * MiB
    largest = st.insight.pool_stats(0, 0).largest_allocatable
    assert 0 < largest < 32 << 30 and s["tt_memtop_largest_allocatable_bytes", (*dev0, ("pool", "dram"))] == largest

    # the process frees everything: its series are not in the next scrape
    st.apply(EventBatch([Event(EventKind.FREE, seq=6, pid=11, device=1, buffer_type=4, buffer_id=0x400, size=12 * MiB),
                         Event(EventKind.FREE, seq=7, pid=11, device=1, buffer_type=5, buffer_id=0x500, size=2048)]))
    s = _samples(render(view_from_state(st, source="subscribe", hostname="h1", comm=str, lag_s=0.0)))
    assert {dict(k)["pid"] for (n, k) in s if n.startswith("tt_memtop_process_")} == {"10"}
    dev1 = (("arch", "blackhole"), ("device", "1"), ("hostname", "h1"))
    assert s["tt_memtop_used_bytes", (*dev1, ("pool", "trace"))] == 0
    assert s["tt_memtop_peak_bytes", (*dev1, ("pool", "trace"))] == 12 * MiB  # the high-water mark stays


def test_polled_totals_have_no_per_buffer_series_and_report_sample_age():
    st = new_state()
    st.apply(Status("connected", capabilities=frozenset({Capability.TOTALS})))
    lag = LagTracker()
    update = TotalsSample(123, {0: (1, 2, 3, 4, 5, 6)}, Inventory.uniform(1))
    st.apply(update)
    lag.saw(update, now_ns=10**9)
    s = _samples(render(view_from_state(st, source="poll", hostname="h", comm=str,
                                        lag_s=lag.lag_s(st, now_ns=3 * 10**9))))
    dev = (("arch", "wormhole_b0"), ("device", "0"), ("hostname", "h"))
    assert [s["tt_memtop_used_bytes", (*dev, ("pool", p))] for p in ("dram", "l1", "l1_small", "trace", "cb",
                                                                     "kernel")] == [1, 2, 3, 4, 5, 6]
    assert s["tt_memtop_source_lag_seconds", (("hostname", "h"), ("source", "poll"))] == 2.0
    assert not [n for (n, _k) in s if n in ("tt_memtop_buffers", "tt_memtop_process_used_bytes")]
    st.apply(Status("disconnected", "gone"))
    s = _samples(render(view_from_state(st, source="poll", hostname="h", comm=str, lag_s=lag.lag_s(st, 4 * 10**9))))
    assert s["tt_memtop_source_up", (("hostname", "h"), ("source", "poll"))] == 0


def test_event_lag_is_delivery_delay_not_quiet_time():
    st = _state([])
    lag = LagTracker()
    lag.saw(EventBatch([_alloc(1, 1, 0, 0, 1, 1)]), now_ns=1000 + 5_000_000)  # event stamped at 1000 ns
    assert lag.lag_s(st, now_ns=10**12) == pytest.approx(0.005)


async def test_client_api_totals_devices_and_subscribe(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, inventory=Inventory.uniform(2)):
        async with Client(path) as c:
            await c._conn().alloc(1, 3 * MiB, 4, 0x77)  # TRACE on device 1
            totals = await c.totals()
            assert totals == {0: DeviceTotals(0, 0, 0, 0, 0, 0), 1: DeviceTotals(0, 0, 0, 3 * MiB, 0, 0)}
            assert len(await c.devices()) == 2
            async for item in c.subscribe():
                assert isinstance(item, Snapshot) and [(b.device, b.size) for b in item.buffers] == [(1, 3 * MiB)]
                break
    with pytest.raises(OSError):
        async with Client(path):
            pass


async def test_read_only_app_refuses_actions_that_touch_the_host(tmp_path, monkeypatch):
    from tests.ui_fakes import FakeSource
    from tt_memtop.ui.app import WRITE_ACTIONS, MemtopApp

    monkeypatch.chdir(tmp_path)
    assert {"screenshot", "suspend_process"} <= WRITE_ACTIONS
    app = MemtopApp(FakeSource(1, []))
    app.read_only = True
    async with app.run_test(size=(120, 30)) as pilot:
        assert not app.check_action("screenshot", ())
        await app.run_action("screenshot")
        await pilot.pause()
        assert app.check_action("show_pane", ("devices",)) and app.check_action("quit", ())
    assert not list(tmp_path.iterdir()), "a read-only view wrote a file on the host"
    writable = MemtopApp(FakeSource(1, []))
    async with writable.run_test(size=(120, 30)):
        assert writable.check_action("screenshot", ())


def test_web_session_command_is_read_only_and_keeps_the_source():
    from tt_memtop.cli import build_parser
    from tt_memtop.web import session_command

    args = build_parser().parse_args(["--web", "--socket", "/tmp/x.sock", "--device", "0-3", "--protocol", "128"])
    cmd = session_command(args)
    assert cmd[:4] == [sys.executable, "-m", "tt_memtop", "--read-only"]
    assert cmd[cmd.index("--socket") + 1] == "/tmp/x.sock" and cmd[cmd.index("--device") + 1] == "0-3"
    assert "--web" not in cmd and cmd[cmd.index("--protocol") + 1] == "128"
    tab = build_parser().parse_args(cmd[3:])  # what each tab runs parses (a default of None is left out)
    assert tab.read_only and tab.socket == "/tmp/x.sock"
    args = build_parser().parse_args(["--web", "--config", "/tmp/memtop.toml", "--interval", "0.5"])
    tab = build_parser().parse_args(session_command(args)[3:])
    assert tab.config == "/tmp/memtop.toml" and tab.interval == 0.5


def test_exit_codes(tmp_path, capsys):
    from tt_memtop.cli import main

    for argv in (["--no-such-flag"], ["exporter", "--port", "70000"], ["serve", "--metrics-port", "-1"],
                 ["--web", "--port", "0"]):
        with pytest.raises(SystemExit) as exc:  # argparse: usage, then exit 2
            main(argv)
        assert exc.value.code == 2, argv
    assert main(["exporter", "--textfile", str(tmp_path / "missing" / "x.prom")]) == 2
    assert main(["--port", "8000"]) == 2 and main(["--web", "--json"]) == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["exporter", "--port", str(port), "--socket", str(tmp_path / "none.sock")]) == 1
        assert main(["serve", "--metrics-port", str(port), "--socket", str(tmp_path / "s.sock")]) == 1
        assert not (tmp_path / "s.sock").exists()
    assert capsys.readouterr().err.count("cannot serve metrics") == 2
    # a server stopped by SIGINT / SIGTERM has done its job: 0; an interrupted one-shot run: 130
    proc = subprocess.Popen([*MEMTOP, "exporter", "--port", "0", "--socket", str(tmp_path / "none.sock")],
                            stderr=subprocess.PIPE, text=True)
    assert "metrics on" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    sock = str(tmp_path / "s2.sock")
    server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "-q"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        nd = subprocess.Popen([*MEMTOP, "--ndjson", "--socket", sock], stdout=subprocess.PIPE, text=True)
        assert nd.stdout.readline().startswith("{")
        nd.send_signal(signal.SIGINT)
        assert nd.wait(timeout=20) == 130
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0


def test_optional_figures_render_when_known_and_are_absent_otherwise():
    from tt_memtop.exporter.view import DeviceFigures, MetricsView

    dev = DeviceFigures(2, "wormhole_b0", (10, 0, 0, 0, 0, 0), {"dram": 100}, 1)
    view = MetricsView("h", "subscribe", True, None, 1, 0, [dev])
    text = render(view)
    for absent in (b"tt_memtop_peak_bytes", b"tt_memtop_largest_allocatable_bytes", b"tt_memtop_ledger_drift_bytes",
                   b"tt_memtop_source_lag_seconds", b"tt_memtop_process_"):
        assert absent not in text
    dev.peak, dev.largest_allocatable, dev.drift = {"dram": 50}, {"dram": 40, "l1": 7}, {"trace": -4096}
    s = _samples(render(view))
    lab = (("arch", "wormhole_b0"), ("device", "2"), ("hostname", "h"))
    assert s["tt_memtop_peak_bytes", (*lab, ("pool", "dram"))] == 50
    assert s["tt_memtop_largest_allocatable_bytes", (*lab, ("pool", "l1"))] == 7
    assert s["tt_memtop_ledger_drift_bytes", (*lab, ("pool", "trace"))] == -4096


@pytest.mark.parametrize("version", ["S1", "S4", "S5"])
def test_client_api_totals_from_an_original_it_does_not_disturb(tmp_path, version):
    """The Client against stand-ins for the original servers: totals by QUERY in their layout, nothing they log."""
    from tests.test_compat_originals import Original, _alloc

    path = short_socket(tmp_path, f"{version}.sock")
    orig = Original(path, version)
    try:
        _alloc(path, {"S1": 72, "S4": 112, "S5": 144}[version], 1, 5 * MiB, 4)  # TRACE on device 1

        async def read():
            async with Client(path) as c:
                return c.layout, await c.totals()

        layout, totals = anyio.run(read)
    finally:
        orig.stop()
    assert int(layout) == {"S1": 72, "S4": 112, "S5": 144}[version]
    assert totals[1].trace == 5 * MiB and totals[0] == DeviceTotals(0, 0, 0, 0, 0, 0)
    assert orig.err == "", orig.err  # no "Unknown message type"
