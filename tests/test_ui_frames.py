"""What a frame may skip, shown to change nothing: the feed's one-loop grouping against event-by-event
grouping, cached meter bars against bars drawn afresh, cached feed lines against lines made again, a
feed that grows without laying the screen out, device meters that redraw only the lines that changed.
(Their speed is measured by benchmarks/bench_frames.py.)"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.style import Style
from test_ui_app import fake_app, wait_for
from textual.screen import Screen

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import BufferType
from tt_memtop.ui.feed_groups import FeedGroups
from tt_memtop.ui.format import wall_time
from tt_memtop.ui.widgets.device_pane import DevicePane, DeviceRow
from tt_memtop.ui.widgets.event_feed import EventFeed
from tt_memtop.ui.widgets.meter import DRAM_STACK, L1_STACK, bar_cells, bar_segments

KINDS = [EventKind.ALLOC, EventKind.FREE, EventKind.REF_INC, EventKind.REF_DEC, EventKind.CLEANUP,
         EventKind.FREE_UNKNOWN, EventKind.PROCESS_EXIT, EventKind.DUMP]


def _rows(g: FeedGroups) -> list[tuple]:
    return [(r.kind, r.ev.seq, r.phase, tuple(r.devices), r.t_last, r.pairs, dict(r.open or {}), r.last.seq)
            for r in g.rows]


event = st.builds(lambda kind, pid, dev, btype, bid, size, dt: (kind, pid, dev, btype, bid, size, dt),
                  st.sampled_from(KINDS), st.sampled_from([1, 2]), st.integers(0, 3), st.sampled_from([0, 1]),
                  st.sampled_from([0x1000, 0x2000]), st.sampled_from([64, 2048]),
                  st.sampled_from([0, 1_000, 600_000_000]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(event, max_size=30), max_size=6), st.sampled_from([0, 1, 2, 3, 5, 100_000]),
       st.lists(st.sampled_from(["", "warm-up", "replay"]), min_size=1, max_size=3))
def test_extend_groups_as_add_does(chunks, limit, phase_names):
    one, many = FeedGroups(limit), FeedGroups(limit)
    seq, ts = 0, 1_000_000_000
    for chunk in chunks:
        evs, phs = [], []
        for kind, pid, dev, btype, bid, size, dt in chunk:
            seq += 1
            ts += dt
            evs.append(Event(kind, seq=seq, ts_ns=ts, pid=pid, device=dev, buffer_type=btype, buffer_id=bid,
                             size=size, ref_count=1))
            phs.append(phase_names[seq % len(phase_names)])
        for ev, ph in zip(evs, phs, strict=True):
            one.add(ev, ph)
        many.extend(evs, phs)
        assert _rows(many) == _rows(one)


def _styles(name: str) -> Style:
    return {"empty": Style(color="grey0", bgcolor="grey11"), "dram": Style(color="blue"),
            "trace": Style(color="magenta"), "l1": Style(color="green"), "l1small": Style(color="yellow"),
            "sys": Style(color="grey50"), "cb": Style(color="red"), "kernel": Style(color="cyan"),
            "peak": Style(bold=True), "dim": Style(dim=True)}.get(name, Style())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1 << 34), min_size=7, max_size=7), min_size=1, max_size=8),
       st.sampled_from([0, 1 << 30, 12 << 30, 96 << 30]), st.integers(0, 130), st.integers(0, 1 << 36),
       st.sampled_from([frozenset(range(7)), frozenset({0, 1}), frozenset({4})]))
def test_cached_bars_are_the_bars_drawn_afresh(totals_seq, cap, width, peak, shown):
    """A shared cache over a sequence of frames: every bar is what drawing it from nothing gives."""
    cache: dict = {}
    for totals in totals_seq:
        for stack in (DRAM_STACK, L1_STACK):
            fresh = bar_segments(totals, stack, cap, width, _styles, shown, peak)
            assert bar_segments(totals, stack, cap, width, _styles, shown, peak, cache) == fresh
            if cap and width:  # and its text is bar_cells', cell by cell
                cells = bar_cells([(totals[t], str(t)) for t in stack if t in shown], cap, width, peak)
                assert "".join(s.text for s in fresh) == "".join(c[0] for c in cells)


def test_a_bar_that_moved_less_than_an_eighth_of_a_cell_is_not_drawn_again():
    cache: dict = {}
    cap, width = 12 << 30, 40  # an eighth of a cell: 40 MiB
    a = bar_segments([5 << 30, 0, 0, 0, 1 << 29, 0, 0], DRAM_STACK, cap, width, _styles, frozenset(range(7)), 0, cache)
    b = bar_segments([(5 << 30) + 4096, 0, 0, 0, 1 << 29, 0, 0], DRAM_STACK, cap, width, _styles,
                     frozenset(range(7)), 0, cache)
    assert b is a and len(cache) == 1
    c = bar_segments([6 << 30, 0, 0, 0, 1 << 29, 0, 0], DRAM_STACK, cap, width, _styles, frozenset(range(7)), 0,
                     cache)
    assert c is not a and len(cache) == 2


def test_wall_time_follows_the_time_zone(monkeypatch):
    ns = 1_700_000_000 * 1_000_000_000 + 123_000_000
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        utc = wall_time(ns)
        monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30 all year
        time.tzset()
        assert wall_time(ns) != utc and wall_time(ns).endswith(".123")
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert wall_time(ns) == utc == "22:13:20.123"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def _churn(n: int, seq0: int, t0: int, pid: int = 7) -> list[Event]:
    out = []
    for j in range(n):  # alloc slot k, free the slot allocated 32 pairs earlier: every event its own feed row
        i = seq0 + j
        alloc = i % 2 == 0
        k = i // 2 if alloc else i // 2 - 32
        out.append(Event(EventKind.ALLOC if alloc else EventKind.FREE, seq=i, ts_ns=t0 + j * 5000, pid=pid,
                         device=k % 8, buffer_type=int(BufferType.DRAM), buffer_id=0x4000_0000 + (k % 4096) * 0x10000,
                         size=98304, ref_count=1 if alloc else 0))
    return out


def _screen_text(feed: EventFeed) -> list[str]:
    return [feed.render_line(y).text for y in range(feed.size.height)]


async def test_a_growing_feed_follows_without_laying_the_screen_out(monkeypatch):
    """New rows every frame: the feed's length changes, the screen's layout is not redone, and the feed still
    shows the newest row at the bottom with a scrollbar that knows the length."""
    app = fake_app(8, _churn(200, 0, 1_000_000_000), pane="feed", feed_grouped=False)
    layouts = []
    orig = Screen._refresh_layout

    def counted(screen, *a, **kw):
        layouts.append((kw, a, sorted(type(w).__name__ for w in screen._layout_widgets)))
        return orig(screen, *a, **kw)

    async with app.run_test(size=(120, 30)) as pilot:
        feed = app.query_one(EventFeed)
        await wait_for(pilot, lambda: len(feed.rows) == 200)
        await pilot.pause(0.2)
        seq = 200
        for i in range(6):
            if i == 1:  # (the first frame after the scrollbar appeared: the feed's width changed, a layout)
                monkeypatch.setattr(Screen, "_refresh_layout", counted)
            app.source.push(_churn(50, seq, 2_000_000_000 + seq * 5000))
            seq += 50
            await wait_for(pilot, lambda s=seq: len(feed.rows) == s)
            await pilot.pause(0.1)
        assert not layouts
        assert feed.virtual_size.height == 501 and feed.scroll_offset.y == feed.max_scroll_y > 0
        assert feed.vertical_scrollbar.window_virtual_size == 501
        last = f"{feed.rows[-1][0].buffer_id:#x}"
        lines = _screen_text(feed)
        assert last in lines[-1] and f"{feed.rows[-2][0].buffer_id:#x}" in lines[-2]


async def test_kept_feed_lines_are_the_lines_made_again():
    app = fake_app(8, _churn(300, 0, 1_000_000_000), pane="feed")
    async with app.run_test(size=(120, 30)) as pilot:
        feed = app.query_one(EventFeed)
        await wait_for(pilot, lambda: len(feed.rows) == 300)
        await pilot.pause(0.2)
        for _ in range(3):
            kept = _screen_text(feed)
            feed._strips.clear()
            assert _screen_text(feed) == kept
            await pilot.press("e")  # raw, grouped, raw: the kept lines of one view never show in the other
            await pilot.pause(0.1)
        await pilot.press("w")  # the times change: no line kept from before
        await pilot.pause(0.1)
        kept = _screen_text(feed)
        feed._strips.clear()
        assert _screen_text(feed) == kept


async def test_device_meters_redraw_only_the_lines_that_changed():
    app = fake_app(8, _churn(16, 0, 1_000_000_000), pane="feed")
    async with app.run_test(size=(200, 50)) as pilot:
        devs = app.query_one(DevicePane)
        await wait_for(pilot, lambda: app.state.events_total == 16)
        await pilot.pause(0.3)
        calls: list = []
        devs.refresh = lambda *a, **kw: calls.append("all")
        devs.refresh_line = calls.append
        rows, types = devs.rows, devs.types_shown
        devs.update_frame(rows, types, False)  # the same frame: nothing to draw
        assert calls == []
        before = [list(line) for line in devs._lines]
        moved = [DeviceRow(**{f: getattr(r, f) for f in r.__slots__}) for r in rows]
        moved[3].totals = list(rows[3].totals)
        moved[3].totals[0] += 6 << 30  # device 3 holds 6 GiB more: its line and the summary line change
        devs.update_frame(moved, types, False)
        changed = [i for i, (a, b) in enumerate(zip(before, devs._lines, strict=True)) if a != b]
        assert calls == changed and 2 <= len(changed) < len(before)


async def test_a_ranked_table_shows_each_ranking_whole_and_its_cursor_follows_the_row():
    """Rows are places in the ranking: after any sequence of re-rankings (rows moving, arriving, going,
    many going at once) each row shows exactly the ranking's row, and the cursor stays on its key."""
    import random

    from textual.app import App

    from tt_memtop.ui.widgets.ranked_table import RankedTable

    cols = (("rank", "#", 3), ("name", "name", 8), ("size", "size", 8))

    class One(App):
        def compose(self):
            yield RankedTable(cols, id="t")

    rnd = random.Random(5)
    async with One().run_test(size=(40, 20)) as pilot:
        table = pilot.app.query_one(RankedTable)
        table.apply_rows([])
        for step in range(40):
            n = rnd.choice([0, 1, 3, 12, 40, 80]) if step % 7 == 0 else rnd.randint(5, 60)
            keys = rnd.sample(range(100), n)
            rows = [(f"k{k}", (f"n{k}", f"{rnd.randint(0, 3)}")) for k in keys]
            follow = table.cursor_key if table.cursor_row > 0 else None
            table.apply_rows(rows)
            await pilot.pause(0)
            assert table.row_count == len(rows)
            assert [list(table.get_row_at(i)) for i in range(len(rows))] == \
                [[i + 1, *cells] for i, (_k, cells) in enumerate(rows)]
            assert [table.key_of(r.key) for r in table.ordered_rows] == [k for k, _c in rows]
            await pilot.pause(0.05)
            drawn = [table.render_line(y).text.split() for y in range(1, table.size.height)]  # what is on screen
            top = int(table.scroll_offset.y)
            shown = [(i, cells) for i, (_k, cells) in enumerate(rows)][top:top + len(drawn)]
            assert [d[:3] for d in drawn[:len(shown)]] == [[str(i + 1), *c] for i, c in shown]
            if follow is not None and any(k == follow for k, _c in rows):
                assert table.cursor_key == follow
            if rows and step % 3 == 0:
                table.move_cursor(row=rnd.randrange(len(rows)), animate=False)
                await pilot.pause(0)


async def test_a_feed_line_in_one_pass_is_the_strip_textual_makes():
    """The feed's one-pass line (styles over the base looked up, padded) is cell for cell, style for style,
    what ``Strip(...).adjust_cell_length(...).apply_style(base)`` makes; too long a row is cut the same."""
    from rich.segment import Segment
    from textual.strip import Strip

    app = fake_app(8, _churn(40, 0, 1_000_000_000), pane="feed", feed_grouped=False)
    async with app.run_test(size=(120, 30)) as pilot:
        feed = app.query_one(EventFeed)
        await wait_for(pilot, lambda: len(feed.rows) == 40)
        base = feed.rich_style
        for width in (200, 120, 60):
            for ev, ph in feed.rows[:10]:
                segs = feed._row_segments(ev, ph, extra=" detail" * (width // 60))
                ours = feed._line(segs, width, base)
                theirs = Strip(segs).adjust_cell_length(width, base).apply_style(base)
                assert ours.cell_length == theirs.cell_length == width
                assert list(Segment.simplify(ours)) == list(Segment.simplify(theirs))
