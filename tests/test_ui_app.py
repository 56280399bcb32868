"""The memtop TUI driven by Textual pilots: a real allocation server + subscription where it matters,
the deterministic fake source elsewhere."""

from __future__ import annotations

import io
from contextlib import asynccontextmanager

import anyio
import pytest
from ui_fakes import TRACE_ADDR, TRACE_SIZE, FakeSource, MiB, llama_events

from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import MonitorState
from tt_memtop.core.protocol import BufferType
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.filters import ViewFilter
from tt_memtop.ui.screens.details import DetailsScreen
from tt_memtop.ui.screens.help import HelpScreen
from tt_memtop.ui.widgets.buffers_pane import BuffersPane
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.event_feed import EventFeed
from tt_memtop.ui.widgets.header_bar import HeaderBar
from tt_memtop.ui.widgets.processes_pane import ProcessesPane

SIZE = (200, 50)


def pane_text(pane) -> str:
    return "\n".join("".join(s.text for s in line) for line in pane._build_lines(pane.scrollable_content_region.width))


def feed_text(feed: EventFeed) -> str:
    return "\n".join("".join(s.text for s in feed._row_segments(ev, ph)) for ev, ph in feed.rows)


def static_text(widget) -> str:
    return str(widget.render())


async def wait_for(pilot, cond, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await pilot.pause(0.05)


def fake_app(devices: int = 8, events=None, **kw) -> MemtopApp:
    return MemtopApp(FakeSource(devices, [events if events is not None else llama_events(devices)]),
                     clock=lambda: 0.0, state=MonitorState(), **kw)


# ---------------------------------------------------------------------------------------------- real server
@asynccontextmanager
async def running_server(tmp_path):
    """Our allocation server on a temporary socket, 8 Wormhole devices, no dead-PID cleanup."""
    from tt_memtop.server.server import AllocationServer, ServerConfig

    path = str(tmp_path / "alloc.sock")
    cfg = ServerConfig(socket_path=path, inventory=Inventory.uniform(8), cleanup_interval_s=3600,
                       stats_interval_s=3600, quiet=True)
    srv = AllocationServer(cfg, log=io.StringIO(), is_alive=lambda pid: True)
    async with anyio.create_task_group() as tg:
        await tg.start(srv.serve)
        yield path
        tg.cancel_scope.cancel()


async def test_bars_show_exact_totals_from_a_real_server(tmp_path):
    from tt_memtop.client import AllocationClient
    from tt_memtop.sources.subscribe import SubscribeSource

    async with running_server(tmp_path) as server:
        app = MemtopApp(SubscribeSource(server), clock=lambda: 0.0)
        async with app.run_test(size=SIZE) as pilot:
            await _bars(app, pilot, server, AllocationClient)


async def _bars(app, pilot, server, AllocationClient) -> None:  # noqa: N803
    if True:
        await wait_for(pilot, lambda: app.state.status.state == "connected")
        async with await AllocationClient.connect(server) as client:
            for d in range(8):
                await client.alloc(d, 40 * MiB, BufferType.DRAM, buffer_id=0x10000000, pid=919068)
                await client.alloc(d, 6 * MiB, BufferType.L1, buffer_id=0x1000, pid=919068)
                await client.alloc(d, TRACE_SIZE, BufferType.TRACE, buffer_id=TRACE_ADDR, pid=919068)
            await client.alloc(3, 1 * MiB, BufferType.L1_SMALL, buffer_id=0x2000, pid=4242)
            await client.free(0, 0x1000, pid=919068)
        await wait_for(pilot, lambda: app.state.registry.seq >= 26)
        await pilot.pause(0.15)
        pane = app.query_one(DevicePane)
        rows = {r.device: r for r in pane.rows}
        assert sorted(rows) == list(range(8))
        assert rows[0].totals[:5] == [40 * MiB, 0, 0, 0, TRACE_SIZE]
        assert rows[3].totals[:5] == [40 * MiB, 6 * MiB, 0, 1 * MiB, TRACE_SIZE]
        assert rows[3].cap_dram == 12 * 1024**3
        text = pane_text(pane)
        assert "51.9 MiB/12.0 GiB" in text  # 40 MiB + 11.92 MiB of TRACE on device 0
        assert "7.0 MiB/172 MiB" in text  # device 3: 6 MiB L1 + 1 MiB L1_SMALL
        assert "connected" in static_text(app.query_one(HeaderBar))


async def test_pause_freezes_the_feed_and_unpause_catches_up(tmp_path):
    from tt_memtop.client import AllocationClient
    from tt_memtop.sources.subscribe import SubscribeSource

    async with running_server(tmp_path) as server:
        app = MemtopApp(SubscribeSource(server), clock=lambda: 0.0, pane="feed")
        async with app.run_test(size=SIZE) as pilot:
            await _pause(app, pilot, server, AllocationClient)


async def _pause(app, pilot, server, AllocationClient) -> None:  # noqa: N803
    if True:
        await wait_for(pilot, lambda: app.state.status.state == "connected")
        async with await AllocationClient.connect(server) as client:
            await client.alloc(0, 4096, BufferType.L1, buffer_id=0x100, pid=77)
            await wait_for(pilot, lambda: len(app.query_one(EventFeed).rows) == 1)
            await pilot.press("p")
            for i in range(5):
                await client.alloc(1, 4096, BufferType.L1, buffer_id=0x200 + i, pid=77)
            await wait_for(pilot, lambda: app.state.events_total == 6)
            await pilot.pause(0.2)
            feed = app.query_one(EventFeed)
            assert len(feed.rows) == 1  # frozen
            assert "PAUSED — 5 new events" in static_text(app.query_one(HeaderBar))
            await pilot.press("space")
            await pilot.pause(0.2)
            assert len(feed.rows) == 6
            assert "PAUSED" not in static_text(app.query_one(HeaderBar))
            assert "0x204" in feed_text(feed)


# ---------------------------------------------------------------------------------------------- fake source
async def test_device_and_type_filters_change_what_is_shown():
    app = fake_app(view_filter=ViewFilter.from_args("0,3", None, None), pane="feed")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.query_one(EventFeed).rows) > 0)
        await pilot.pause(0.1)
        assert [r.device for r in app.query_one(DevicePane).rows] == [0, 3]
        feed = app.query_one(EventFeed)
        assert {ev.device for ev, _ in feed.rows} == {0, 3}
        assert "filter: dev 0,3" in static_text(app.query_one(HeaderBar))
        # only TRACE: bars, feed and buffers agree
        app.set_filter(app.view_filter.with_(types=frozenset({int(BufferType.TRACE)})))
        await pilot.pause(0.1)
        assert {ev.buffer_type for ev, _ in feed.rows} == {int(BufferType.TRACE)}
        assert all(r.types_shown == {4} for r in [app.query_one(DevicePane)])
        await pilot.press("3")
        await wait_for(pilot, lambda: app._window is not None and app._window.matched == 2)
        assert {r.buffer_type for r in app._window.rows} == {4}
        # clear: every device is back
        await pilot.press("c")
        await pilot.pause(0.1)
        assert [r.device for r in app.query_one(DevicePane).rows] == list(range(8))


async def test_enter_on_a_buffer_opens_its_details():
    app = fake_app(pane="buffers")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app._window is not None and app._window.matched > 0)
        await pilot.press("g")  # grouped: the TRACE at one address on 8 devices is one row
        await wait_for(pilot, lambda: app._window is not None and app.group and
                       any(r.buffer_id == TRACE_ADDR for r in app._window.rows))
        await pilot.pause(0.1)
        table = app.query_one(BuffersPane).table
        keys = [r.key for r in app._window.rows]
        trace_key = next(r.key for r in app._window.rows if r.buffer_id == TRACE_ADDR)
        assert len(app._window.rows[keys.index(trace_key)].devices) == 8
        table.move_cursor(row=table.get_row_index(trace_key))
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DetailsScreen)
        body = app.screen.query_one("#details-body")
        text = app.screen.renderable
        from rich.console import Console
        con = Console(width=160, record=True, file=io.StringIO())
        con.print(text)
        out = con.export_text()
        assert "0x3e363c80  (1043741824)" in out
        assert "0-7  (8 devices)" in out
        assert "TRACE" in out and "11.9 MiB (12,503,040 B) per device" in out
        assert "PID 919068" in out
        assert "history of 0x3e363c80" in out
        assert body is not None
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert not isinstance(app.screen, DetailsScreen)


@pytest.mark.parametrize("typed", ["0x3e363c80", "3E363C80", "1043741824"])
async def test_jump_to_a_buffer_by_id(typed):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.events_total > 0)
        await pilot.press("j")
        await pilot.pause(0.05)
        for ch in typed:
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DetailsScreen)
        assert app.screen.title_text == "buffer 0x3e363c80"


async def test_processes_drill_into_buffers_and_back():
    app = fake_app(pane="processes")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.query_one(ProcessesPane).table.row_count == 2)
        table = app.query_one(ProcessesPane).table
        table.move_cursor(row=table.get_row_index("4242"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.pane == "buffers" and app._window is not None
                       and app._window.matched == 1)
        assert app.view_filter.pids == {4242}
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.pane == "processes" and not app.view_filter.pids


async def test_text_filter_and_sort_keys():
    app = fake_app(pane="buffers")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app._window is not None)
        await pilot.press("greater_than_sign")
        assert app.buffer_sort == "age"
        await pilot.press("I")
        assert app.buffer_invert
        await pilot.press("slash")
        for ch in "trace":
            await pilot.press(ch)
        await wait_for(pilot, lambda: app._window is not None and app._window.matched == 8)
        assert "text “trace”" in static_text(app.query_one(HeaderBar))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app._window.matched > 8)


async def test_help_lists_every_binding():
    from tt_memtop.ui.bindings import KEYS

    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.05)
        assert isinstance(app.screen, HelpScreen)
        from rich.console import Console

        from tt_memtop.ui.screens.help import help_table
        con = Console(width=120, record=True, file=io.StringIO())
        con.print(help_table())
        out = con.export_text()
        for k in KEYS:
            assert k.description in out


async def test_feed_shows_phase_when_phase_inference_is_available():
    from tt_memtop.ui.app import new_state

    state = new_state()
    if state.phases is None:
        pytest.skip("phase inference not available")
    app = MemtopApp(FakeSource(8, [llama_events(8)]), clock=lambda: 0.0, state=state, pane="feed")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.query_one(EventFeed).rows) > 0)
        assert any(ph for _, ph in app.query_one(EventFeed).rows)


async def test_cleanup_and_exit_events_reach_the_feed():
    evs = llama_events(1)
    n = len(evs)
    evs.append(Event(EventKind.CLEANUP, seq=n + 1, ts_ns=evs[-1].ts_ns + 1, pid=4242, device=0,
                     buffer_type=0, buffer_id=0x9000000, size=MiB))
    evs.append(Event(EventKind.PROCESS_EXIT, seq=n + 2, ts_ns=evs[-1].ts_ns + 1, pid=4242, size=MiB, ref_count=1))
    app = fake_app(1, evs, pane="feed")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.query_one(EventFeed).rows) == n + 2)
        text = feed_text(app.query_one(EventFeed))
        assert "cleanup" in text and "process exited: 1 buffers" in text
        assert 4242 in app.state.exited
