"""SVG snapshots of the main screen (1 and 8 devices, at 80×24, 120×40 and 200×50), a 32-device
Galaxy, the event feed and the buffer details screen.

Driven by committed recordings (tests/data/recordings/, made by its make.py from the built-in
scenarios and cut mid trace-replay), with trace-phase inference on, the app's clock fixed, the
wall-clock offset pinned and the time zone UTC, at fixed terminal sizes: same files, same pixels.
Regenerate after an intended visual change with ``pytest tests/test_ui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import anyio
import pytest
from recordings import recorded_events
from ui_fakes import TRACE_ADDR, FakeSource

from tt_memtop.ui.app import MemtopApp, new_state
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.event_feed import EventFeed

SIZE = (120, 40)
SIZES = {"80x24": (80, 24), "120x40": (120, 40), "200x50": (200, 50)}
WALL_OFFSET_NS = 1_764_547_200_000_000_000  # event time 0 = 2025-12-01 00:00:00 UTC


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    """Wall-clock feed times in one zone whatever the machine's."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def recording(tmp_path):
    def load(name: str) -> list:
        return recorded_events(name, tmp_path)
    return load


def make_app(events: list, devices: int, pane: str = "processes") -> tuple[MemtopApp, int]:
    # sample_period: Δ and sparklines would depend on when frames fall; one sample keeps them reproducible
    batches = [events[i:i + 512] for i in range(0, len(events), 512)]
    state = new_state()
    # Phase inference has time-based rules the app's frames drive (state.tick at each frame): frames fall
    # at arbitrary points of the ingestion, so they are held back until every event is folded (settled()
    # then ticks once, at the last event's time): the phases on screen are those of the events alone.
    state.held_tick, state.tick = state.tick, lambda now_ns: None
    app = MemtopApp(FakeSource(devices, batches), clock=lambda: 0.0, state=state, sample_period=1e9,
                    pane=pane, wall_offset_ns=WALL_OFFSET_NS)
    app._liveness.alive = lambda pid: None  # the recording's PIDs are not this host's
    return app, len(events)


@pytest.fixture(autouse=True)
def _pinned_environment(monkeypatch):
    """Nothing from the user's environment reaches the pixels (Textual reads NO_COLOR when an App is made)."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TEXTUAL_THEME", "TEXTUAL_ANIMATIONS", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TZ", "UTC")


def settled(app: MemtopApp, n: int):
    """Every event folded and drawn, and the feed scrolled to its newest row (a position, not a race)."""
    async def run_before(pilot) -> None:
        feed = app.query_one(EventFeed)
        with anyio.fail_after(20):
            while app.state.events_total != n:
                await pilot.pause(0.05)
            st = app.state
            # from now on every frame ticks at the last event's time (not the live server clock): no drift
            st.tick = lambda now_ns: st.held_tick(st.last_ts_ns)
            st.tick(st.last_ts_ns)
            app._dev_seen = (-1, -1, None)  # redraw the meters with the phases of the final instant
            while not (app.query_one(DevicePane).rows and app.last_frame_events == n and app._dev_seen[0] == n):
                await pilot.pause(0.05)
            if app.pane == "processes":  # a ranking made after the last event (lists re-rank every 0.5 s)
                due = app._proc_due
                while app._proc_due == due or not app.w_processes.table.row_count:
                    await pilot.pause(0.05)
            await pilot.pause(0.1)
            while app.pane == "feed" and feed.scroll_offset.y != feed.max_scroll_y:
                feed.scroll_end(animate=False, immediate=True, x_axis=False)
                await pilot.pause(0.05)
        await pilot.pause(0.2)
    return run_before


def test_main_screen_one_device(snap_compare, recording):
    app, n = make_app(recording("cnn_1dev"), 1)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(app, n))


@pytest.mark.parametrize("size", list(SIZES))
def test_main_screen_eight_devices(snap_compare, recording, size):
    app, n = make_app(recording("llama_8dev"), 8)
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settled(app, n))


@pytest.mark.parametrize("size", ["80x24", "200x50"])
def test_galaxy_mesh_grid(snap_compare, recording, size):
    app, n = make_app(recording("galaxy_32dev"), 32)
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settled(app, n))


def test_grouped_event_feed(snap_compare, recording):
    app, n = make_app(recording("llama_8dev"), 8, pane="feed")
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(app, n))


def test_details_screen(snap_compare, recording):
    app, n = make_app(recording("llama_8dev"), 8)
    wait = settled(app, n)

    async def run_before(pilot) -> None:
        await wait(pilot)
        app.open_details(TRACE_ADDR)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_devices_pane_galaxy_full_screen(snap_compare, recording):
    """Pane 1 on 200×50: all 32 devices one line each, with used/capacity, Δ/s and history."""
    app, n = make_app(recording("galaxy_32dev"), 32, pane="devices")
    assert snap_compare(app, terminal_size=SIZES["200x50"], run_before=settled(app, n))


def test_address_map_screen(snap_compare, recording):
    """`m` mid trace-replay: device 0's DRAM bank map, TRACE at the top, the largest free range marked."""
    app, n = make_app(recording("llama_8dev"), 8)
    wait = settled(app, n)

    async def run_before(pilot) -> None:
        await wait(pilot)
        await pilot.press("m")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", ["80x24", "120x40"])
def test_history_screen(snap_compare, recording, size):
    """`h` mid trace-replay: device 0's DRAM over the session, 0..capacity, the peak marked, the phases beneath."""
    app, n = make_app(recording("llama_8dev"), 8)
    wait = settled(app, n)

    async def run_before(pilot) -> None:
        await wait(pilot)
        await pilot.press("h")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


def test_history_screen_l1_galaxy(snap_compare, recording):
    """`h` then Tab Tab on a Galaxy: L1 of device 0, the 32-device mesh grid as the picker."""
    app, n = make_app(recording("galaxy_32dev"), 32)
    wait = settled(app, n)

    async def run_before(pilot) -> None:
        await wait(pilot)
        await pilot.press("h", "tab", "tab")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZES["200x50"], run_before=run_before)
