"""SVG snapshots of the main screen (1 and 8 devices) and the buffer details screen.

Driven by committed recordings (tests/data/recordings/, made by its make.py from the built-in
scenarios and cut mid trace-replay), with trace-phase inference on, the app's clock fixed and
times on screen relative to the first event, at a fixed terminal size: same files, same pixels.
Regenerate after an intended visual change with ``pytest tests/test_ui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anyio
import pytest
from ui_fakes import TRACE_ADDR, FakeSource

from tt_memtop.recording import read_recording
from tt_memtop.ui.app import MemtopApp, new_state
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.event_feed import EventFeed

SIZE = (140, 40)
RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"


@pytest.fixture
def recording(tmp_path):
    def load(name: str) -> list:
        path = tmp_path / f"{name}.rec"
        with gzip.open(RECORDINGS / f"{name}.rec.gz", "rb") as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return list(read_recording(str(path)))
    return load


def make_app(events: list, devices: int) -> tuple[MemtopApp, int]:
    # sample_period: Δ and sparklines would depend on when frames fall; one sample keeps them reproducible
    batches = [events[i:i + 512] for i in range(0, len(events), 512)]
    app = MemtopApp(FakeSource(devices, batches), clock=lambda: 0.0, state=new_state(), sample_period=1e9)
    return app, min(len(events), app.state.feed.maxlen)


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
        with anyio.fail_after(10):
            while not (len(feed.rows) == n and app.query_one(DevicePane).rows):
                await pilot.pause(0.05)
            await pilot.pause(0.1)
            while feed.max_scroll_y == 0 or feed.scroll_offset.y != feed.max_scroll_y:
                feed.scroll_end(animate=False, immediate=True, x_axis=False)
                await pilot.pause(0.05)
        await pilot.pause(0.1)
    return run_before


def test_main_screen_one_device(snap_compare, recording):
    app, n = make_app(recording("cnn_1dev"), 1)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(app, n))


def test_main_screen_eight_devices(snap_compare, recording):
    app, n = make_app(recording("llama_8dev"), 8)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(app, n))


def test_details_screen(snap_compare, recording):
    app, n = make_app(recording("llama_8dev"), 8)
    wait = settled(app, n)

    async def run_before(pilot) -> None:
        await wait(pilot)
        app.open_details(TRACE_ADDR)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
