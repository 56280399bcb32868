"""Issue 13, behaviour by behaviour: what holds memory first, a readable feed, meters that do not
misrepresent, layouts that use the room, phases explained, the small things, settings kept.

Pure helpers are tested directly; everything on screen through ``App.run_test()`` pilots."""

from __future__ import annotations

import os

import pytest
from test_ui_app import fake_app, pane_text, wait_for
from ui_fakes import TRACE_ADDR, FakeSource, MiB, llama_events

from tt_memtop.config import Config, ConfigError, default_path, dumps, load, parse
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import new_state
from tt_memtop.core.protocol import BufferType
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.bindings import default_keymap
from tt_memtop.ui.feed_groups import OP, PAIR, FeedGroups
from tt_memtop.ui.format import rate, sparkline
from tt_memtop.ui.screens.details import DetailsScreen
from tt_memtop.ui.screens.help import HelpScreen
from tt_memtop.ui.widgets.device_pane import DevicePane, bar_cells
from tt_memtop.ui.widgets.event_feed import EventFeed
from tt_memtop.ui.widgets.processes_pane import ProcessesPane

DRAM = int(BufferType.DRAM)
TRACE = int(BufferType.TRACE)


def _ev(kind, seq, ms, device=0, btype=DRAM, bid=0x1000, size=2048, pid=7):
    return Event(kind, seq=seq, ts_ns=1_000_000_000 + int(ms * 1e6), pid=pid, device=device, buffer_type=btype,
                 buffer_id=bid, size=size, ref_count=1)


def readbacks(devices: int, repeats: int, t0_ms: float = 0.0, seq0: int = 1) -> list[Event]:
    """TT-Metal's read-back trickle: a 2 KiB buffer allocated on every device of the mesh, then freed."""
    out, seq, t = [], seq0, t0_ms
    for _ in range(repeats):
        for d in range(devices):
            out.append(_ev(EventKind.ALLOC, seq, t, d))
            seq += 1
        t += 1
        for d in range(devices):
            out.append(_ev(EventKind.FREE, seq, t, d))
            seq += 1
        t += 24
    return out


# ---------------------------------------------------------------------------------------------- 1. what holds memory
async def test_opens_on_the_processes_holding_memory():
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        procs = app.query_one(ProcessesPane)
        await wait_for(pilot, lambda: procs.table.row_count == 2)
        assert app.pane == "processes" and app.w_switcher.current == "processes"


def test_feed_groups_one_op_across_devices_and_coalesces_pairs():
    g = FeedGroups()
    for i, d in enumerate(range(8)):  # a TRACE on the whole mesh: one row
        g.add(_ev(EventKind.ALLOC, i + 1, 0.01 * i, d, TRACE, TRACE_ADDR, 12 * MiB), "capture")
    for ev in readbacks(8, 120, t0_ms=10, seq0=100):
        g.add(ev, "replay")
    assert [r.kind for r in g.rows] == [OP, PAIR]
    trace, pairs = g.rows
    assert sorted(trace.devices) == list(range(8)) and trace.phase == "capture"
    assert pairs.repeats == 120 and pairs.pairs == 960 and pairs.open_count == 0
    assert 2.9 <= pairs.span_s <= 3.1


def test_feed_groups_keep_unrelated_events_apart():
    g = FeedGroups()
    g.add(_ev(EventKind.ALLOC, 1, 0, 0, size=4096), "")
    g.add(_ev(EventKind.ALLOC, 2, 0, 1, size=8192), "")  # another size: another op
    g.add(_ev(EventKind.FREE, 3, 1, 0, size=4096), "")  # not the last row's buffer: its own row
    assert [len(r.devices) for r in g.rows] == [1, 1, 1] and all(r.kind == OP for r in g.rows)


async def test_grouped_feed_says_it_once_and_e_shows_every_event():
    app = fake_app(8, readbacks(8, 120), pane="feed")
    async with app.run_test(size=(120, 40)) as pilot:
        feed = app.query_one(EventFeed)
        await wait_for(pilot, lambda: len(feed.rows) == 8 * 2 * 120)
        assert len(feed.grouped_rows) == 1
        line = "".join(s.text for s in feed._group_segments(feed.grouped_rows[0]))
        assert "a/f ×120" in line and "alloc/free × 120 in 3.0 s" in line and "0-7" in line
        await pilot.press("e")
        await pilot.pause(0.1)
        assert not feed.grouped and feed.virtual_size.height == len(feed.rows) + 1
        await pilot.press("e")
        await pilot.pause(0.1)
        assert feed.grouped and feed.virtual_size.height == 2


async def test_one_phase_label_per_mesh_in_the_feed():
    """The tracker moves to replay at the mesh's last TRACE alloc: that row must still say capture."""
    state = new_state()
    app = MemtopApp(FakeSource(8, [llama_events(8)]), clock=lambda: 0.0, state=state, pane="feed")
    async with app.run_test(size=(200, 50)) as pilot:
        feed = app.query_one(EventFeed)
        await wait_for(pilot, lambda: len(feed.rows) > 0 and state.events_total == len(llama_events(8)))
        await pilot.pause(0.1)
        trace = [ph for ev, ph in feed.rows if ev.buffer_type == TRACE]
        assert len(trace) == 8 and len(set(trace)) == 1


# ---------------------------------------------------------------------------------------------- 2. meters
def test_bars_are_proportional_to_the_eighth_of_a_cell():
    cells = bar_cells([(27, "l1")], 1000, 17)  # L1 at 2.7 % of 17 cells: 3/8 of a cell, not 4 cells
    assert cells[0] == ("▍", "l1", "empty") and all(c[1] == "empty" for c in cells[1:])
    cells = bar_cells([(500, "dram"), (250, "trace")], 1000, 8)
    assert [c[1] for c in cells] == ["dram"] * 4 + ["trace"] * 2 + ["empty"] * 2
    cells = bar_cells([(1, "trace")], 12 << 30, 20)  # 1 byte of 12 GiB: nothing, not a full cell
    assert all(c[1] == "empty" for c in cells)
    cells = bar_cells([(1000, "dram"), (500, "trace")], 8000, 4)  # boundary inside a cell: a partial block
    assert cells[0] == ("▌", "dram", "trace")


def test_peak_mark_sits_where_use_was_highest():
    cells = bar_cells([(250, "dram")], 1000, 20, peak=800)
    assert cells[16][1] == "peak" and sum(c[1] == "peak" for c in cells) == 1
    assert not any(c[1] == "peak" for c in bar_cells([(800, "dram")], 1000, 20, peak=800))


def test_history_is_on_an_absolute_scale_with_max_per_cell():
    cap = 1000
    assert sparkline([500] * 4, 4, cap) == "▄▄▄▄"  # flat at half: half height, not the middle of nothing
    assert sparkline([520, 533], 2, cap) == "▅▅"  # 1.3 % change: no full-height swing
    assert sparkline([0, 1000], 2, cap) == " █"
    assert sparkline([0, 0, 0, 850, 0, 0], 2, cap) == " ▇"  # a spike survives downsampling
    assert sparkline([2000], 1, cap) == "█"


def test_delta_is_per_second_with_its_unit():
    assert rate(2 * MiB) == "+2.0 MiB/s" and rate(-512) == "-512 B/s" and rate(0) == "·"


async def test_device_pane_shows_rates_history_and_peaks():
    app = fake_app(1, [], sample_period=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        src = app.source
        src.push([_ev(EventKind.ALLOC, 1, 0, 0, DRAM, 0x10, 6 << 30)])  # half of the 12 GiB
        await wait_for(pilot, lambda: dp.rows[0].totals[DRAM] == 6 << 30)
        # Δ/s lasts one sample period: check the rate and its text in one look
        await wait_for(pilot, lambda: dp.rows[0].rate_dram > 0 and "+" in pane_text(dp) and "GiB/s" in pane_text(dp),
                       timeout=20)
        src.push([_ev(EventKind.FREE, 2, 1, 0, DRAM, 0x10, 6 << 30)])
        await wait_for(pilot, lambda: dp.rows[0].totals[DRAM] == 0)
        assert dp.rows[0].peak_dram == 6 << 30
        text = pane_text(dp)
        assert "▏" in text or "│" in text  # the peak mark in the empty bar
        assert any(c in text for c in "▁▂▃▄▅▆▇█")  # history



async def test_r_resets_the_meters_peak_marks_too():
    """`r` resets every peak the user sees: the core's (json, address map) and the meters' marks."""
    app = fake_app(1, [], sample_period=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        app.source.push([_ev(EventKind.ALLOC, 1, 0, 0, DRAM, 0x10, 6 << 30)])
        await wait_for(pilot, lambda: dp.rows[0].totals[DRAM] == 6 << 30)
        app.source.push([_ev(EventKind.FREE, 2, 1, 0, DRAM, 0x10, 6 << 30),
                         _ev(EventKind.ALLOC, 3, 2, 0, DRAM, 0x20, 1 << 30)])
        await wait_for(pilot, lambda: dp.rows[0].totals[DRAM] == 1 << 30)
        assert dp.rows[0].peak_dram == 6 << 30
        await pilot.press("r")
        await wait_for(pilot, lambda: dp.rows[0].peak_dram == 1 << 30)
        assert app.state.insight.peaks.device_peak(0, DRAM)[0] == 1 << 30


# ---------------------------------------------------------------------------------------------- 3. layouts
@pytest.mark.parametrize(("size", "devices", "mode"), [((120, 40), 8, "two"), ((80, 24), 8, "one"),
                                                       ((200, 50), 32, "grid"), ((80, 24), 32, "grid")])
async def test_layout_is_chosen_by_the_room(size, devices, mode):
    app = fake_app(devices)
    async with app.run_test(size=size) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        await pilot.pause(0.1)
        lines = dp._build_lines(dp.scrollable_content_region.width)
        assert dp.layout_mode == mode
        if mode == "two":
            assert len(lines) >= 2 * devices
        if mode == "grid":
            assert len(lines) <= 8 + 2  # a Galaxy on 8 lines and the summary
            assert "31" in pane_text(dp)


async def test_expanded_devices_pane_uses_the_whole_screen():
    app = fake_app(32)
    async with app.run_test(size=(200, 50)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        await pilot.press("1")
        await pilot.pause(0.1)
        dp._build_lines(dp.scrollable_content_region.width)
        assert dp.layout_mode == "one"  # 32 full-width rows fit on 50 lines


@pytest.mark.parametrize("width", [110, 200])
async def test_columns_grow_on_a_wide_terminal_up_to_their_widest_content(width):
    """The process column takes the width left over, but no more than a name can use (names are cut to
    NAME_MAX): past that the numbers would sit half a screen away from their process."""
    from tt_memtop.ui.widgets.processes_pane import NAME_MAX

    app = fake_app()
    async with app.run_test(size=(width, 50)) as pilot:
        table = app.query_one(ProcessesPane).table
        await wait_for(pilot, lambda: table.row_count)
        await pilot.pause(0.1)
        total = sum(c.get_render_width(table) for c in table.columns.values())
        name = table.columns["name"].width
        if width == 200:
            assert name == NAME_MAX and total < width - 20  # the rest of the line stays blank
        else:
            assert 12 < name < NAME_MAX and total >= width - 5  # all the spare width, to the name


# ---------------------------------------------------------------------------------------------- 4. phases explained
async def test_help_explains_phases_colours_and_delta():
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HelpScreen)
        from rich.console import Console

        con = Console(width=160, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        for s in app.screen.query("Static"):
            con.print(s.content)
        text = con.export_text()
        for phrase in ("capture", "replay", "warm-up", "teardown", "Δ", "per second", "peak", "absolute",
                       "KERNEL", "alloc/free"):
            assert phrase in text, phrase


async def test_details_show_evidence_and_stay_live():
    now = [0.0]
    app = MemtopApp(FakeSource(8, [llama_events(8)]), clock=lambda: now[0], state=new_state(), pane="buffers")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.events_total == len(llama_events(8)))
        app.open_details(TRACE_ADDR)
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, DetailsScreen)

        def body() -> str:
            from rich.console import Console
            con = Console(width=120, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
            con.print(screen.renderable)
            return con.export_text()

        assert "evidence" in body() and "TRACE" in body()
        assert "age 0s" in body()
        now[0] = 75.0  # the clock moves, no event arrives: the age must follow
        screen.rebuild()
        assert "age 1m" in body()


# ---------------------------------------------------------------------------------------------- 5. small things
async def test_footer_says_resume_while_paused():
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)

        def footer() -> set[str]:
            return {b.description for _k, b, enabled, _t in app.screen.active_bindings.values()
                    if b.show and enabled}

        assert "Pause" in footer() and "Resume" not in footer()
        await pilot.press("p")
        await pilot.pause(0.1)
        assert app.paused and "Resume" in footer() and "Pause" not in footer()
        await pilot.press("p")
        await pilot.pause(0.1)
        assert not app.paused


async def test_one_group_is_singular_and_sort_column_is_marked():
    evs = [_ev(EventKind.ALLOC, 1 + d, d * 0.01, d, TRACE, TRACE_ADDR, 12 * MiB) for d in range(8)]
    app = fake_app(8, evs, pane="buffers", group=True)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = app.w_buffers
        await wait_for(pilot, lambda: pane.table.row_count == 1)
        status = str(pane.query_one("#buffers-status").render())
        assert "1 group match" in status and "1 groups" not in status
        assert str(pane.table.columns["size"].label).endswith("▼")
        await pilot.press("I")
        await wait_for(pilot, lambda: str(pane.table.columns["size"].label).endswith("▲"))


async def test_type_checklist_ticks_only_what_is_on():
    from tt_memtop.ui.filters import ViewFilter
    from tt_memtop.ui.screens.filters import Checklist

    app = fake_app(view_filter=ViewFilter(types=frozenset({TRACE})))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("t")
        await pilot.pause(0.2)
        cl = app.screen.query_one(Checklist)
        boxes = ["".join(s.text for s in cl.render_line(y))[1] for y in range(7)]
        assert boxes.count("✓") == 1 and boxes.count(" ") == 6 and "X" not in boxes


def test_type_colours_are_distinct_and_kernel_is_not_the_alarm():
    css = open(os.path.join(os.path.dirname(__file__), "..", "themes", "dark.tcss")).read()
    colour = {}
    for t in ("l1small", "sys", "cb", "kernel", "crit"):
        line = next(x for x in css.splitlines() if f".devicepane--{t} " in x)
        colour[t] = line.split("color:")[1].split(";")[0].strip()
    assert len({colour[t] for t in ("l1small", "sys", "cb", "kernel")}) == 4
    assert "error" not in colour["kernel"]


async def test_feed_times_are_wall_clock_by_default_and_w_counts_from_start():
    import time

    offset = 1_764_547_200_000_000_000  # event ts 1 s -> 00:00:01 UTC
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        app = fake_app(1, [_ev(EventKind.ALLOC, 1, 500)], pane="feed", wall_offset_ns=offset)
        async with app.run_test(size=(120, 40)) as pilot:
            feed = app.query_one(EventFeed)
            await wait_for(pilot, lambda: feed.rows)
            assert feed.time_text(feed.rows[0][0].ts_ns) == "00:00:01.500"
            await pilot.press("w")
            await pilot.pause(0.05)
            assert feed.time_text(feed.rows[0][0].ts_ns) == "00:00:00.500"  # from the first timestamp seen
    finally:
        os.environ.pop("TZ", None)
        time.tzset()


async def test_palette_lists_each_command_once():
    from textual.widgets import OptionList

    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("ctrl+p")
        await pilot.pause(0.5)
        ol = app.screen.query_one(OptionList)
        titles = [str(ol.get_option_at_index(i).prompt).split("\n") for i in range(ol.option_count)]
        assert all(len(t) == 1 or t[0] != t[1] for t in titles)  # no help line repeating its title
        firsts = [t[0].split(" (")[0] for t in titles]
        assert firsts.count("Quit") == 1 and "Resume" not in firsts


async def test_narrow_footer_keeps_help_and_quit():
    from textual.widgets import Footer

    app = fake_app()
    async with app.run_test(size=(60, 15)) as pilot:
        footer = app.query_one(Footer)
        await wait_for(pilot, lambda: len(footer.children) > 3)
        await pilot.pause(0.2)
        visible = [w for w in footer.children if w.region.right <= 60 and w.region.width]
        text = " ".join(str(getattr(w, "description", "")) for w in visible)
        assert "Help" in text and "Quit" in text


async def test_idle_monitor_redraws_nothing():
    """Nothing allocated, nothing arriving: samples come and go, the meters are not redrawn."""
    app = fake_app(2, [], sample_period=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        await pilot.pause(0.6)
        calls = []
        orig = dp.refresh
        dp.refresh = lambda *a, **k: (calls.append(1), orig(*a, **k))[1]
        await pilot.pause(1.5)  # several sample periods with no event
        assert not calls


# ---------------------------------------------------------------------------------------------- 6. settings
def test_config_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_path() == tmp_path / "tt-memtop" / "config.toml"
    assert load() == Config()


def test_config_file_is_read_from_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "tt-memtop").mkdir()
    (tmp_path / "tt-memtop" / "config.toml").write_text(
        '[ui]\npane = "buffers"\ngroup = true\ntheme = "memtop-light"\nhistory_scale = 0.25\n'
        '[thresholds]\nwarn = 60\ncrit = 80\n[filters]\ntypes = "TRACE"\n[keys]\nquit = "q,ctrl+q"\n')
    cfg = load(known_actions=frozenset(default_keymap()))
    assert (cfg.pane, cfg.group, cfg.theme, cfg.history_scale, cfg.warn, cfg.types) == \
        ("buffers", True, "memtop-light", 0.25, 60.0, "TRACE")
    assert cfg.keys == {"quit": "q,ctrl+q"}


@pytest.mark.parametrize(("text", "named"), [
    ('[ui]\npane = "bufers"\n', "[ui] pane"),
    ('[ui]\nrefresh = "fast"\n', "[ui] refresh"),
    ('[ui]\ngroup = 1\n', "[ui] group"),
    ('[ui]\ncolour = "red"\n', "[ui] colour: unknown key"),
    ('[colors]\nx = 1\n', "unknown table [colors]"),
    ('[thresholds]\nwarn = 95\ncrit = 90\n', "warn"),
    ('[keys]\nquitt = "x"\n', "[keys] quitt"),
    ('[ui\n', "invalid TOML"),
])
def test_a_broken_config_names_the_key(tmp_path, text, named):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(p, frozenset(default_keymap()))
    assert named in str(err.value) and str(p) in str(err.value)


def test_print_config_round_trips(tmp_path):
    text = dumps(Config(pane="feed", warn=70.0), default_keymap())
    p = tmp_path / "c.toml"
    p.write_text(text)
    cfg = load(p, frozenset(default_keymap()))
    assert cfg.pane == "feed" and cfg.warn == 70.0 and cfg.keys["quit"] == "q,f10"


def test_cli_print_config_and_bad_config_exit_2(tmp_path, capsys, monkeypatch):
    import sys

    from tt_memtop.cli import main

    assert main(["--print-config"]) == 0
    assert '[ui]' in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[ui]\npane = 3\n')
    assert main(["--config", str(bad), "--print-config"]) == 2
    assert "[ui] pane" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the monitor, not one-shot output
    assert main(["demo", "--config", str(bad)]) == 2


async def test_keymap_override_rebinds_a_key():
    app = fake_app(keymap={"toggle_pause": "x"})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("x")
        await pilot.pause(0.1)
        assert app.paused


def test_parse_flattens_dotted_key_ids():
    cfg = parse({"keys": {"show_pane": {"devices": "F2"}}}, "c.toml", frozenset(default_keymap()))
    assert cfg.keys == {"show_pane.devices": "F2"}



async def test_a_totals_only_source_opens_on_the_meters():
    from test_ui_views import TotalsOnly

    app = MemtopApp(TotalsOnly(), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.pane == "devices")


async def test_h_changes_the_history_scale():
    app = fake_app(1, [_ev(EventKind.ALLOC, 1, 0, 0, DRAM, 0x10, 3 << 30)], sample_period=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows and dp.rows[0].totals[DRAM])
        await wait_for(pilot, lambda: "▂" in pane_text(dp))  # a quarter of capacity: a quarter height
        await pilot.press("H")
        await wait_for(pilot, lambda: "▄" in pane_text(dp))  # full height = half of capacity
        assert app.history_scale == 0.5


def test_memtop_runs_the_monitor_with_the_config(tmp_path, monkeypatch):
    from tt_memtop.cli import main
    from tt_memtop.ui import app as app_module

    seen = {}

    def fake_run(self, *a, **k):
        seen.update(pane=self.pane, group=self.group, grouped=self.feed_grouped, wall=self.wall_clock,
                    scale=self.history_scale, period=self.sample_period, filt=self.view_filter, keymap=self.keymap,
                    theme=self.initial_theme)
        return None

    import sys

    monkeypatch.setattr(app_module.MemtopApp, "run", fake_run)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the monitor, not one-shot output
    cfg = tmp_path / "c.toml"
    cfg.write_text('[ui]\npane = "feed"\ngroup = true\nfeed = "raw"\ntimes = "relative"\nhistory_scale = 0.1\n'
                   'refresh = 2\ntheme = "memtop-light"\n[filters]\ntypes = "TRACE"\n[keys]\nquit = "q,ctrl+q"\n')
    assert main(["demo", "--config", str(cfg)]) == 0
    assert seen["pane"] == "feed" and seen["group"] and not seen["grouped"] and seen["wall"] is False
    assert seen["scale"] == 0.1 and seen["period"] == 2.0 and seen["filt"].types == frozenset({TRACE})
    assert seen["keymap"] == {"quit": "q,ctrl+q"} and seen["theme"] == "memtop-light"
    assert main(["demo", "--config", str(cfg), "--theme", "memtop-contrast", "--type", "DRAM"]) == 0
    assert seen["theme"] == "memtop-contrast" and seen["filt"].types == frozenset({DRAM})  # flags win


async def test_pane_1_has_a_phase_legend():
    app = fake_app(8, pane="devices")
    async with app.run_test(size=(200, 50)) as pilot:
        dp = app.query_one(DevicePane)
        await wait_for(pilot, lambda: dp.rows)
        await pilot.pause(0.1)
        text = pane_text(dp)
        assert "phases " in text and "capture (TRACE allocated)" in text
