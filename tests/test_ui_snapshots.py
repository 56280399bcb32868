"""SVG snapshots of the main screen (1 and 8 devices) and the buffer details screen.

Driven by the deterministic event list in ``ui_fakes`` (no server, no wall clock: the app's clock is
fixed, times on screen are relative to the first event), at a fixed terminal size.
Regenerate after an intended visual change with ``pytest tests/test_ui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import anyio
from ui_fakes import TRACE_ADDR, FakeSource, llama_events

from tt_memtop.core.model import MonitorState
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.event_feed import EventFeed

SIZE = (140, 40)


def make_app(devices: int) -> tuple[MemtopApp, int]:
    events = llama_events(devices)
    # sample_period: Δ and sparklines would depend on when frames fall; one sample keeps them reproducible
    app = MemtopApp(FakeSource(devices, [events]), clock=lambda: 0.0, state=MonitorState(), sample_period=1e9)
    return app, len(events)


def settled(app: MemtopApp, n: int):
    async def run_before(pilot) -> None:
        with anyio.fail_after(10):
            while not (len(app.query_one(EventFeed).rows) == n and app.query_one(DevicePane).rows):
                await pilot.pause(0.05)
        await pilot.pause(0.1)
    return run_before


def test_main_screen_one_device(snap_compare):
    app, n = make_app(1)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(app, n))


def test_main_screen_eight_devices(snap_compare):
    app, n = make_app(8)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(app, n))


def test_details_screen(snap_compare):
    app, n = make_app(8)
    wait = settled(app, n)

    async def run_before(pilot) -> None:
        await wait(pilot)
        app.open_details(TRACE_ADDR)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
