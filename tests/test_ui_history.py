"""History with meaning: the chart (h) over the one usage history, the sparklines that read it, the one
mesh grid, the processes columns that drop instead of scrolling, and type colours on 16 colours."""

from __future__ import annotations

import pytest
from rich.color import ColorSystem
from rich.style import Style
from test_ui_app import wait_for
from ui_fakes import FakeSource

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import new_state
from tt_memtop.core.phases import Phase, Segment
from tt_memtop.core.protocol import BufferType
from tt_memtop.sources.base import TotalsSample
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.screens.history import HistoryScreen
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.history_chart import GUTTER, ChartData, HistoryChart, bucket_columns, chart_lines
from tt_memtop.ui.widgets.mesh_grid import mesh_cells, mesh_shape, mesh_text
from tt_memtop.ui.widgets.meter import DeviceRow
from tt_memtop.ui.widgets.processes_pane import ProcessesPane

NS = 1_000_000_000
GiB = 1 << 30
DRAM, TRACE, L1 = int(BufferType.DRAM), int(BufferType.TRACE), int(BufferType.L1)


def _plain(line) -> str:
    return "".join(seg.text for seg in line)


def _ev(kind, seq, t_s, size, bid=0x100000, device=0, btype=DRAM, pid=7):
    return Event(kind, seq=seq, ts_ns=int(t_s * NS), pid=pid, device=device, buffer_type=btype, buffer_id=bid,
                 size=size, ref_count=1)


# ---------------------------------------------------------------------------------------------- pure parts
def test_bucket_columns_keep_the_max_and_carry_the_last_value():
    # 1 s buckets over [0, 10 s) in 5 columns (2 buckets a column): max per column
    series = [(0, 1, 1), (NS, 5, 2), (2 * NS, 2, 2), (3 * NS, 2, 2), (4 * NS, 9, 0), (5 * NS, 0, 0)]
    assert bucket_columns(series, 0, 10 * NS, 5) == [5, 2, 9, 0, 0]  # the spike at 4 s survives
    # wide buckets, narrow columns: a column no bucket starts in carries the last value; before the first: None
    assert bucket_columns([(4 * NS, 7, 3)], 0, 8 * NS, 8) == [None, None, None, None, 7, 3, 3, 3]


def _chart(**kw) -> ChartData:
    base = dict(series=[(i * NS, v, v) for i, v in enumerate([0, 100, 400, 800, 400, 200, 200, 200, 200, 200])],
                t0=0, t1=10 * NS, scale=1600, capacity=1600, peak=800, peak_at=3 * NS + NS // 2,
                peak_text="00:00:03")
    base.update(kw)
    return ChartData(**base)


def test_chart_is_scaled_to_capacity_with_the_peak_marked_where_it_happened():
    width, height = GUTTER + 40, 4 + 8  # four columns per second, 8 body rows
    lines = [_plain(x) for x in chart_lines(_chart(), width, height, lambda _n: Style())]
    marker, body = lines[0], lines[1:9]
    assert marker.index("▼") == GUTTER + 12  # the bucket the peak is in: 3 s
    assert "▼ peak 800 B 00:00:03" in marker
    assert body[0].startswith("   1.6K┤")  # full height = the capacity (1600 B), not the series' max (800)
    assert body[-1].startswith("      0┤")
    col = [row[GUTTER + 12] for row in body]  # 800 of 1600 B: half the height, 4 of 8 rows
    assert col == [" "] * 4 + ["█"] * 4
    col = [row[GUTTER + 8] for row in body]  # 400 B: 2 rows; the peak's height marked in the empty part
    assert col == [" "] * 4 + ["▔", " "] + ["█"] * 2  # 800 B is the top of its row: the line at the top
    assert body[4][GUTTER + 12] == "█" and body[4].count("▔") == 40 - 4  # all but the peak's bucket


def test_a_zoomed_scale_marks_what_it_clips():
    lines = [_plain(x) for x in chart_lines(_chart(scale=400), GUTTER + 10, 12, lambda _n: Style())]
    top = lines[1][GUTTER:]  # 1600 B capacity shown at 25 %: 800 B is above the chart
    assert top[3] == "▲" and top[2] == "█" and top[1] == " "  # 800 clipped, 400 exactly full, 100 low


def test_chart_scale_is_the_capacity_even_when_use_is_tiny():
    lines = [_plain(x) for x in chart_lines(_chart(scale=12 * GiB, capacity=12 * GiB), GUTTER + 10, 12,
                                            lambda _n: Style())]
    assert lines[1].startswith("  12.0G┤")
    assert all(set(r[GUTTER:]) <= {" ", "▁"} for r in lines[1:9])  # a few hundred bytes of 12 GiB: the floor


def test_phase_bands_sit_under_their_time_and_the_peak_outside_the_span_is_said():
    bands = [Segment(7, (0,), Phase.LOADING, 0, 4 * NS), Segment(7, (0,), Phase.CAPTURE, 4 * NS, 6 * NS),
             Segment(7, (0,), Phase.REPLAY, 6 * NS, 10 * NS)]
    lines = [_plain(x) for x in chart_lines(_chart(bands=bands), GUTTER + 10, 12, lambda _n: Style())]
    assert lines[10][GUTTER:] == "▒▒▒▒" + "██" + "████"  # loading 0-4 s, capture 4-6 s, replay 6-10 s
    assert lines[11].rstrip().endswith("now") and "-10s" in lines[11]
    brief = [Segment(7, (0,), Phase.WARMUP, 0, 4 * NS), Segment(7, (0,), Phase.CAPTURE, 4 * NS, 4 * NS + NS // 10),
             Segment(7, (0,), Phase.REPLAY, 4 * NS + NS // 10, 10 * NS)]
    band = chart_lines(_chart(bands=brief), GUTTER + 5, 12, lambda n: Style(color=n) if n == "magenta" else Style())[10]
    assert _plain(band)[GUTTER:] == "▓▓" + "█" + "██"  # a 0.1 s capture still takes its 2 s cell (in magenta)
    assert [seg.style.color.name for seg in band[1:] if seg.style and seg.style.color] == ["magenta"]
    early = [_plain(x) for x in chart_lines(_chart(peak_at=0, t0=NS), GUTTER + 10, 12, lambda _n: Style())]
    assert "before this span" in early[0] and "▼" not in early[0]


# ---------------------------------------------------------------------------------------------- the screen
def _story() -> list[Event]:
    """One batch per event (the history has one point per batch). Device 0: 3 GiB at 1 s, +6 GiB at 20 s (the peak, 9 GiB), the 6 GiB freed at 30 s; quiet until 60 s."""
    return [_ev(EventKind.ALLOC, 1, 1, 3 * GiB, 0x100000), _ev(EventKind.ALLOC, 2, 20, 6 * GiB, 0x40000000),
            _ev(EventKind.FREE, 3, 30, 6 * GiB, 0x40000000), _ev(EventKind.ALLOC, 4, 60, 4096, 0x200000),
            _ev(EventKind.ALLOC, 5, 60, 4096, 0x200000, device=1)]


async def test_h_shows_the_chart_with_the_peak_at_its_column():
    events = _story()
    app = MemtopApp(FakeSource(2, [[e] for e in events]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.state.events_total >= len(events))
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.pause(0.2)
        screen = app.screen
        chart = screen.query_one(HistoryChart)
        lines = [_plain(chart.render_line(y)) for y in range(chart.size.height)]
        data = chart.data
        n = chart.size.width - GUTTER
        cap = app.state.inventory.get(0).total_dram
        assert data.scale == cap and data.peak == 9 * GiB and data.peak_at == 20 * NS
        expected = GUTTER + (20 * NS - data.t0) * n // (data.t1 - data.t0)
        assert lines[0].index("▼") == expected
        body = lines[1:-3]
        top = next(i for i, row in enumerate(body) if row[expected] != " ")
        assert body[0].startswith(f"{'12.0G':>7}┤")  # 0..capacity
        # 9 of 12 GiB: the peak column is three quarters of the body high (within one row)
        assert abs((len(body) - top) - 0.75 * len(body)) <= 1
        title = str(screen.query_one("#hist-title").render())
        assert "device 0 DRAM" in title and "the session" in title and "(attach)" in title
        assert "peak 9.0 GiB" in title
        await pilot.press("s")  # 1 min
        await pilot.pause(0.1)
        assert "last 1 min" in str(screen.query_one("#hist-title").render())
        await pilot.press("tab")  # TRACE
        await pilot.pause(0.1)
        assert "device 0 TRACE" in str(screen.query_one("#hist-title").render())
        await pilot.press("right_square_bracket")
        await pilot.pause(0.1)
        assert "device 1 TRACE" in str(screen.query_one("#hist-title").render())
        shown = {b.description for _k, b, enabled, _t in screen.active_bindings.values() if b.show and enabled}
        assert {"Span", "Pool", "Help", "Quit"} <= shown and not {"Sort", "Search", "Jump to id"} & shown
        mesh = str(screen.query_one("#hist-mesh").render())
        assert " 0 D" in mesh and " 1 D" in mesh  # the device picker is the mesh grid
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HistoryScreen))


async def test_sparklines_read_the_one_history():
    """Everything arrives before the first sample: a sparkline of its own samples would be flat; the
    history has the 9 GiB hump between 20 and 30 s."""
    events = _story()
    app = MemtopApp(FakeSource(1, [[e] for e in events]), clock=lambda: 0.0, state=new_state(), sample_period=1e9)
    async with app.run_test(size=(200, 50)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: app.state.events_total >= len(events) and dp.rows)
        app.refresh_now()
        await pilot.pause(0.2)
        cols = app._history_columns(0, (DRAM, TRACE), 60 * NS, 60)
        assert max(cols) == 9 * GiB and cols[-1] == 3 * GiB + 4096
        spark = [_plain(line) for line in dp._build_lines(dp.scrollable_content_region.width)
                 if _plain(line).lstrip().startswith("0 WH")][0]
        assert "▆" in spark or "▇" in spark  # 9 / 12 GiB, from the history (the bar alone shows 3 GiB)


def test_totals_only_sources_have_a_history_too():
    st = new_state()
    for i, dram in enumerate((1 * GiB, 5 * GiB, 2 * GiB)):
        st.apply(TotalsSample((i + 1) * NS, {0: (dram, 0, 0, 0, 0, 0)}))
    series = st.usage_history(0, DRAM)
    assert max(v for _t, v, _l in series) == 5 * GiB and series[-1][2] == 2 * GiB


# ---------------------------------------------------------------------------------------------- one mesh grid
def _rows(n: int, odd: int | None = None) -> list[DeviceRow]:
    cap = 12 * GiB
    return [DeviceRow(d, "Wormhole_B0", [int(cap * (0.8 if d == odd else 0.4)), 0, 0, 0, 0, 0, 0], cap, 100)
            for d in range(n)]


def test_mesh_grid_shapes_and_outliers():
    assert mesh_shape(32, 80) == (4, 8)  # a Galaxy: 4 columns of 8
    assert mesh_shape(8, 80) == (2, 4)  # a T3K: 2 x 4, like its board
    fr = {d: 0.40 for d in range(32)}
    fr[13] = 0.80
    assert [c.device for c in mesh_cells(fr) if c.outlier] == [13]
    lines = mesh_text(_rows(32, odd=13), 80, selected=0).plain.splitlines()
    assert len(lines) == 8
    cell = next(c for c in lines[13 % 8].split("!")[:1])  # device 13: second column, row 5
    assert "13 D" in lines[5] and "80%" in lines[5] and lines[5].count("!") == 1 and cell


async def test_the_device_pane_grid_is_the_mesh_grid():
    events = [_ev(EventKind.ALLOC, d + 1, 1 + d * 0.001, (6 if d == 21 else 1) * GiB, device=d) for d in range(32)]
    app = MemtopApp(FakeSource(32, [events]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=(80, 24)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: app.state.events_total >= 32 and dp.rows and len(dp.rows) == 32)
        await pilot.pause(0.1)
        lines = [_plain(x) for x in dp._build_lines(dp.scrollable_content_region.width)]
        assert dp.layout_mode == "grid"
        grid = [x for x in lines if x.lstrip()[:1].isdigit()]
        assert len(grid) == 8 and sum(x.count("!") for x in grid) == 1 and "21 D" in grid[21 % 8]
        assert "!" in grid[21 % 8].split("21 D")[1][:20]  # the outlier mark is on device 21's cell


# ---------------------------------------------------------------------------------------------- small defects
@pytest.mark.parametrize(("width", "shown"), [
    (80, ["rank", "pid", "name", "phase", "total", "dram", "trace", "l1"]),
    (200, ["rank", "pid", "name", "phase", "total", "dram", "trace", "l1", "l1s", "cbk", "devs", "n", "state"])])
async def test_processes_columns_drop_instead_of_scrolling_sideways(width, shown):
    events = [_ev(EventKind.ALLOC, 1, 1, GiB)]
    app = MemtopApp(FakeSource(1, [events]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=(width, 24)) as pilot:
        table = app.query_one(ProcessesPane).table
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause(0.2)
        assert [str(k.value) for k in table.columns] == shown
        assert table.max_scroll_x == 0  # nothing off to the side: no horizontal scrollbar (no stray ▍)
        assert [str(c) for c in table.get_row_at(0)[:2]] == ["1", "7"]
    app = MemtopApp(FakeSource(1, [events]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=(200, 24)) as pilot:  # widening brings them back, rows intact
        table = app.query_one(ProcessesPane).table
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        assert len(table.columns) == 8 and table.get_row_at(0)[4] == "1.0 GiB"
        await pilot.resize_terminal(200, 24)
        await pilot.pause(0.3)
        assert len(table.columns) == 13 and table.get_row_at(0)[-1] in ("alive", "—", "dead")


@pytest.mark.parametrize("theme", ["memtop-dark", "memtop-light", "memtop-contrast"])
async def test_type_colours_stay_distinct_on_16_colours(theme):
    app = MemtopApp(FakeSource(1, []), clock=lambda: 0.0, state=new_state(), theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        dp = app.w_devices

        def ansi(t: str) -> int:
            return dp.get_component_rich_style(f"devicepane--{t}", partial=True).color.downgrade(
                ColorSystem.STANDARD).number

        l1_bar = [ansi(t) for t in ("l1", "l1small", "sys", "cb", "kernel")]
        assert len(set(l1_bar)) == 5, l1_bar  # L1_SMALL and CB above all (they sit side by side)
        assert ansi("dram") != ansi("trace")


def test_sparklines_may_read_coarser_buckets_without_losing_the_peak():
    from tt_memtop.core.history import UsageHistory

    h = UsageHistory()
    for i in range(600):  # 2.5 minutes at 0.25 s, one 0.25 s spike
        h.record((0, DRAM), i * NS // 4, 5 * GiB if i == 333 else GiB)
    now = 600 * NS // 4
    fine = h.series((0, DRAM), now, 120 * NS)
    coarse = h.series((0, DRAM), now, 120 * NS, resolution_ns=3 * NS)  # 40 cells of 3 s
    assert fine[1][0] - fine[0][0] == NS // 4 and coarse[1][0] - coarse[0][0] == 2 * NS
    assert len(coarse) < len(fine) // 5
    assert max(v for _s, v, _l in coarse) == max(v for _s, v, _l in fine) == 5 * GiB
    assert bucket_columns(coarse, now - 120 * NS, now, 40) == bucket_columns(fine, now - 120 * NS, now, 40)


async def test_buffers_columns_drop_too():
    events = [_ev(EventKind.ALLOC, 1, 1, GiB)]
    app = MemtopApp(FakeSource(1, [events]), clock=lambda: 0.0, state=new_state(), pane="buffers")
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.w_buffers.table
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.pause(0.2)
        keys = [str(k.value) for k in table.columns]
        assert keys[:5] == ["rank", "id", "dev", "type", "size"] and "refs" not in keys
        assert table.max_scroll_x == 0


async def test_a_sparkline_catches_up_after_a_burst():
    """Sparklines are recomputed at most every SPARK_PERIOD; what arrives in between is drawn once it passes."""
    first = [_ev(EventKind.ALLOC, 1, 1, GiB)]
    src = FakeSource(1, [first])
    app = MemtopApp(src, clock=lambda: 0.0, state=new_state(), sample_period=1e9)
    async with app.run_test(size=(200, 50)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: app.state.events_total == 1 and dp.rows)

        def spark() -> str:
            line = next(_plain(x) for x in dp._build_lines(dp.scrollable_content_region.width)
                        if _plain(x).lstrip().startswith("0 WH"))
            return line.rstrip()[-3:]

        await wait_for(pilot, lambda: spark().strip() != "")
        dp._spark.clear()  # computed right now: the burst below comes within SPARK_PERIOD of it
        dp._lines = None
        before = spark()
        src.push([_ev(EventKind.ALLOC, 2, 2, 8 * GiB, bid=0x40000000)])  # 9 of 12 GiB
        await wait_for(pilot, lambda: spark() != before and spark()[-1] in "▆▇")
