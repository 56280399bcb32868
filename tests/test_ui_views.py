"""What the panes show in situations found by hands-on QA: a narrow terminal, pausing on another pane,
growing rankings, a totals-only source, bad input in the dialogs."""

from __future__ import annotations

import anyio
import pytest
from test_ui_app import fake_app, feed_text, wait_for
from ui_fakes import FakeSource, MiB

from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import MonitorState
from tt_memtop.core.protocol import BufferType
from tt_memtop.sources.base import Capability, Source, Status, TotalsSample
from tt_memtop.ui.app import TOTALS_ONLY_NOTE, MemtopApp
from tt_memtop.ui.filters import ViewFilter
from tt_memtop.ui.screens.details import DetailsScreen
from tt_memtop.ui.screens.filters import FilterScreen
from tt_memtop.ui.screens.prompt import PromptScreen
from tt_memtop.ui.widgets.buffers_pane import BuffersPane
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.event_feed import EventFeed
from tt_memtop.ui.widgets.header_bar import HeaderBar
from tt_memtop.ui.widgets.processes_pane import ProcessesPane

NARROW = (80, 24)


def allocs(pid: int, n: int, size: int, first_id: int, seq0: int, devices: int = 8, t0: int = 2_000_000_000,
           btype: BufferType = BufferType.DRAM) -> list[Event]:
    out = []
    for i in range(n):
        out.append(Event(EventKind.ALLOC, seq=seq0 + i, ts_ns=t0 + i * 1_000_000, pid=pid, device=i % devices,
                         buffer_type=int(btype), buffer_id=first_id + i * 0x1000, size=size, ref_count=1))
    return out


def visible(app, widget) -> bool:
    """Is ``widget`` actually on screen (not clipped away by a scrolling parent)?"""
    return widget in app.screen._compositor.visible_widgets


def line_text(widget, y: int = 0) -> str:
    return "".join(seg.text for seg in widget.render_line(y))


# ---------------------------------------------------------------------------------------------- ranking
async def test_top_of_the_ranking_stays_in_view_when_bigger_buffers_arrive():
    """The cursor, untouched on row 1, must not follow its buffer down the ranking: that scrolled the
    biggest buffers (the ones that just arrived) out of sight."""
    app = fake_app(pane="buffers")
    async with app.run_test(size=NARROW) as pilot:
        table = app.query_one(BuffersPane).table
        await wait_for(pilot, lambda: table.row_count > 20)
        app.source.push(allocs(777, 24, 200 * MiB, 0x70000000, 10_000))
        await wait_for(pilot, lambda: app._window is not None and app._window.rows[0].owner_pid == 777)
        await pilot.pause(0.3)
        assert table.cursor_row == 0
        assert table.scroll_y == 0
        assert table.get_row_at(0)[0] == 1  # rank 1 is the first row on screen


async def test_a_selected_buffer_is_followed_down_the_ranking():
    app = fake_app(pane="buffers")
    async with app.run_test(size=(200, 50)) as pilot:
        table = app.query_one(BuffersPane).table
        await wait_for(pilot, lambda: table.row_count > 20)
        await pilot.press("down", "down")
        chosen = table.cursor_key
        app.source.push(allocs(777, 4, 200 * MiB, 0x70000000, 10_000))
        await wait_for(pilot, lambda: app._window is not None and app._window.rows[0].owner_pid == 777)
        await pilot.pause(0.3)
        assert table.cursor_key == chosen and table.cursor_row == 6


async def test_equal_buffers_rank_in_device_order():
    """One TRACE on 8 devices, registered in whatever order the devices reported it: ranked 0..7."""
    order = [4, 0, 1, 2, 3, 5, 6, 7]
    evs = [Event(EventKind.ALLOC, seq=i + 1, ts_ns=1_000_000_000 + i, pid=9, device=d,
                 buffer_type=int(BufferType.TRACE), buffer_id=0x3E363C80, size=12 * MiB, ref_count=1)
           for i, d in enumerate(order)]
    app = fake_app(events=evs, pane="buffers")
    async with app.run_test(size=(200, 50)) as pilot:
        await wait_for(pilot, lambda: app._window is not None and len(app._window.rows) == 8)
        assert [r.devices[0] for r in app._window.rows] == list(range(8))


# ---------------------------------------------------------------------------------------------- pause
async def test_pause_freezes_panes_that_were_not_on_screen_at_the_same_instant():
    app = fake_app(pane="buffers")
    async with app.run_test(size=(200, 50)) as pilot:
        await wait_for(pilot, lambda: app._window is not None and app._window.matched > 0)
        total_at_pause = app.state.events_total
        await pilot.press("p")
        app.source.push(allocs(777, 5, 1 * MiB, 0x70000000, 10_000))
        await wait_for(pilot, lambda: app.state.events_total == total_at_pause + 5)
        await pilot.press("4")
        await pilot.pause(0.2)
        procs = app.query_one(ProcessesPane).table
        assert procs.row_count == 2  # the two processes at pause time: not 0, and not the new one
        assert "777" not in [procs.get_row_at(i)[1] for i in range(procs.row_count)]
        await pilot.press("2")
        await pilot.pause(0.2)
        feed = app.query_one(EventFeed)
        assert len(feed.rows) == total_at_pause  # the feed up to the pause, though it was not on screen
        assert "777" not in feed_text(feed)
        await pilot.press("p")
        await wait_for(pilot, lambda: "777" in feed_text(feed))


# ---------------------------------------------------------------------------------------------- device bars
async def test_summary_line_does_not_jump_as_totals_grow():
    """The legend moved to a line of its own once the totals had more digits, shifting every bar down."""
    from tt_memtop.ui.widgets.device_pane import DeviceRow

    def rows(dram: int, l1: int, count: int) -> list[DeviceRow]:
        return [DeviceRow(d, "Wormhole_B0", [dram, l1, 0, 0, 0, 0, 0], 12 << 30, 180 << 20, buffers=count)
                for d in range(8)]

    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        for width in range(90, 160):
            small = dp._summary_lines(rows(0, 0, 0), width)
            big = dp._summary_lines(rows(1500 * MiB, 170 * MiB, 1234), width)
            assert len(small) == len(big), width


async def test_device_rows_show_used_and_capacity_at_120_columns():
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows and dp.rows[0].totals[0])
        text = "\n".join("".join(s.text for s in line) for line in dp._build_lines(dp.scrollable_content_region.width))
        assert "/12.0 GiB" in text and "/172 MiB" in text


class TotalsOnly(Source):
    """Like polling the original server: totals, no events."""

    description = "poll"
    local = False
    capabilities = frozenset({Capability.TOTALS})

    async def run(self, emit) -> None:
        emit(Status("connected", "polling", capabilities=self.capabilities))
        emit(TotalsSample(1_000_000_000, {d: (100 * MiB, 1 * MiB, 0, 0, 0, 0) for d in range(2)},
                          Inventory.uniform(2)))
        await anyio.sleep_forever()


@pytest.mark.parametrize("pane", ["feed", "buffers", "processes"])
async def test_totals_only_source_says_why_panes_are_empty(pane):
    app = MemtopApp(TotalsOnly(), clock=lambda: 0.0, state=MonitorState(), pane=pane)
    async with app.run_test(size=(200, 50)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows and dp.rows[0].totals[0])
        await pilot.pause(0.3)
        if pane == "feed":
            assert line_text(app.query_one(EventFeed), 1).startswith(TOTALS_ONLY_NOTE[:40])
        else:
            status = app.query_one("#buffers-status" if pane == "buffers" else "#processes-status")
            await wait_for(pilot, lambda: "totals only" in str(status.render()))
        lines = "\n".join("".join(s.text for s in ln) for ln in dp._build_lines(dp.scrollable_content_region.width))
        assert "buffers" not in lines  # no "0 buffers": a count this source cannot know


# ---------------------------------------------------------------------------------------------- header
async def test_narrow_header_keeps_the_filter_visible():
    app = fake_app(view_filter=ViewFilter(devices=frozenset({0, 3}), types=frozenset({4})))
    async with app.run_test(size=NARROW) as pilot:
        await pilot.press("p")
        await pilot.pause(0.2)
        line = line_text(app.query_one(HeaderBar))
        assert "PAUSED" in line and "filter: dev 0,3 · type TRACE" in line


# ---------------------------------------------------------------------------------------------- dialogs
async def test_filter_dialog_fits_a_24_line_terminal():
    app = fake_app()
    async with app.run_test(size=NARROW) as pilot:
        await pilot.press("backslash")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, FilterScreen)
        for ch in "1-x":
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.screen is screen  # not applied
        err = screen.query_one("#filter-error")
        assert "not a list of numbers" in str(err.render()) and visible(app, err)
        apply = screen.query_one("#apply")
        apply.focus()
        await pilot.pause(0.2)
        assert visible(app, apply)


@pytest.mark.parametrize("typed", ["zzz", "0x", "-5", "99999999999999999999999999"])
async def test_jump_rejects_bad_ids_and_stays_open(typed):
    app = fake_app()
    async with app.run_test(size=NARROW) as pilot:
        await pilot.press("j")
        await pilot.pause(0.1)
        for ch in typed:
            await pilot.press({"-": "minus"}.get(ch, ch))
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, PromptScreen)
        err = app.screen.query_one("#prompt-error")
        assert "not a buffer id" in str(err.render()) or "64 bits" in str(err.render())
        assert visible(app, err)
        await pilot.press(*["backspace"] * len(typed), *"0x3e363c80", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, DetailsScreen)


async def test_feed_never_cuts_a_type_name():
    ev = allocs(5, 1, 256, 0x100, 1, btype=BufferType.SYSTEM_MEMORY)
    app = MemtopApp(FakeSource(1, [ev]), clock=lambda: 0.0, state=MonitorState(), pane="feed")
    async with app.run_test(size=(120, 30)) as pilot:
        feed = app.query_one(EventFeed)
        await wait_for(pilot, lambda: feed.rows)
        assert " SYS " in feed_text(feed) and "SYSTEM_M " not in feed_text(feed)


async def test_type_filter_applies_to_the_summary_line_too():
    """With --type DRAM the rows showed L1 0 B while the summary above still added up every L1 type."""
    app = fake_app(view_filter=ViewFilter(types=frozenset({int(BufferType.DRAM)})))
    async with app.run_test(size=(80, 24)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows and dp.rows[0].totals[0])
        summary = "".join(s.text for s in dp._summary_lines(dp.rows, 80)[0])
        assert "L1      0 B/" in summary
