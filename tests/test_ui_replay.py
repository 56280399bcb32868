"""Replay controls in the TUI, driven by Textual pilots over a real log of the original server:
pause, step, seek (the state rebuilt exactly), speed, and the keys existing only in replay mode."""

from __future__ import annotations

import io

import anyio
from session_72byte import SESSION_LOG
from ui_fakes import FakeSource, llama_events

from tt_memtop.core.logparse import LogParser
from tt_memtop.core.model import MonitorState
from tt_memtop.core.registry import Registry
from tt_memtop.sources.logfile import read_line_chunks
from tt_memtop.sources.replay import ReplaySource
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.event_feed import EventFeed
from tt_memtop.ui.widgets.header_bar import HeaderBar

SIZE = (160, 45)
ALL_BUFFERS = 16  # live at the end of the session (see session_72byte.py)


def header(app: MemtopApp) -> str:
    return str(app.query_one(HeaderBar).render())


async def wait_for(pilot, cond, what: str = "", timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await pilot.pause(0.02)


async def settle(pilot, app: MemtopApp) -> None:
    """Until the player has applied every queued control and the app has folded everything it sent."""
    await wait_for(pilot, lambda: not app.player._ops and not app._pending, "settled")
    await pilot.pause(0.05)
    await wait_for(pilot, lambda: not app.player._ops and not app._pending, "settled")


def expected_registry(lines_played: int) -> Registry:
    """The state after the first ``lines_played`` lines, computed independently of the replay."""
    with open(SESSION_LOG, "rb") as f:
        lines = [ln for chunk, _ in read_line_chunks(f) for ln in chunk]
    reg = Registry()
    for ev in LogParser().feed(lines[:lines_played]):
        reg.apply_event(ev)
    return reg


def totals(reg: Registry) -> dict[int, list[int]]:
    """Per-device totals by type, of devices holding something (a registry may remember emptied ones)."""
    return {d: list(t) for d in sorted(reg.devices()) if any(t := reg.device_totals(d))}


def replay_app(*, paused: bool = True, rate: float = 10.0, step_events: int = 1) -> MemtopApp:
    src = ReplaySource(str(SESSION_LOG), rate=rate, paused=paused, tick=0.01)
    return MemtopApp(src, clock=lambda: 0.0, state=MonitorState(), step_events=step_events, pane="feed")


async def test_pause_stops_playback_and_resume_continues():
    app = replay_app(paused=False, rate=20.0)
    async with app.run_test(size=SIZE) as pilot:
        player = app.player
        assert player is not None
        await wait_for(pilot, lambda: player.position > 10, "playing")
        assert "playing" in header(app)
        await pilot.press("space")
        await settle(pilot, app)
        assert player.paused and not app.paused  # the playback pauses, not the drawing
        pos, folded = player.position, app.state.events_total
        await pilot.pause(0.4)  # 8 lines' worth at 20 lines/s
        assert (player.position, app.state.events_total) == (pos, folded)
        await pilot.pause(0.1)
        assert "paused" in header(app)
        await pilot.press("p")
        await wait_for(pilot, lambda: player.position > pos, "resumed")
        assert "playing" in header(app)


async def test_step_advances_exactly_n_events():
    app = replay_app(step_events=3)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.state.events_total == 0
        await pilot.press("full_stop")
        await settle(pilot, app)
        assert app.state.events_total == 3 and len(app.state.registry) == 3
        await pilot.press("full_stop")
        await settle(pilot, app)
        assert app.state.events_total == 6
        assert totals(app.state.registry) == totals(expected_registry(app.player.position))
        await wait_for(pilot, lambda: len(app.query_one(EventFeed).rows) == 6, "feed")
        assert app.player.paused


async def test_seek_rebuilds_the_exact_state():
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        player = app.player
        await pilot.press("right_curly_bracket")  # the end
        await settle(pilot, app)
        assert player.at_end and len(app.state.registry) == ALL_BUFFERS
        assert totals(app.state.registry) == totals(expected_registry(player.length))
        await pilot.pause(0.1)
        assert "ended" in header(app)

        await pilot.press("left_curly_bracket")  # the start: nothing played, nothing left of the old timeline
        await settle(pilot, app)
        assert player.position == 0 and len(app.state.registry) == 0
        assert app.state.events_total == 0 and not app.state.feed
        await wait_for(pilot, lambda: not app.query_one(EventFeed).rows, "feed cleared")

        for _ in range(4):  # forward 4 x 5 %
            await pilot.press("right_square_bracket")
        await settle(pilot, app)
        assert abs(player.position_s - 0.2 * player.duration_s) < 1e-6
        assert 0 < player.position < player.length
        assert totals(app.state.registry) == totals(expected_registry(player.position))

        await pilot.press("left_square_bracket")  # back 5 %: an exact state again
        await settle(pilot, app)
        assert abs(player.position_s - 0.15 * player.duration_s) < 1e-6
        assert totals(app.state.registry) == totals(expected_registry(player.position))

        await pilot.press("full_stop")  # events after a seek fold on top of the rebuilt state
        await settle(pilot, app)
        assert app.state.events_total == 1
        assert totals(app.state.registry) == totals(expected_registry(player.position))


async def test_speed_changes_are_shown():
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert " 1x" in header(app)
        await pilot.press("plus")
        await pilot.press("plus")
        await pilot.pause(0.1)
        assert app.player.speed == 4 and " 4x" in header(app)
        for _ in range(3):
            await pilot.press("minus")
        await pilot.pause(0.1)
        assert app.player.speed == 0.5 and " 0.5x" in header(app)


async def test_play_at_the_end_plays_again_from_the_start():
    app = replay_app(rate=1000.0, paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.player.at_end, "ended")
        await settle(pilot, app)
        app.player.set_speed(0.01)  # 10 lines/s: it stays near the start while we look
        await pilot.press("space")
        await wait_for(pilot, lambda: not app.player.paused and app.player.position < 10, "restarted")
        await settle(pilot, app)
        assert len(app.state.registry) < 5


async def test_replay_keys_only_in_replay_mode():
    from rich.console import Console

    from tt_memtop.ui.screens.help import help_table

    def shown(app) -> set[str]:
        return {b.binding.description for b in app.screen.active_bindings.values() if b.binding.show}

    def help_text(replay: bool) -> str:
        con = Console(width=120, record=True, file=io.StringIO())
        con.print(help_table(replay))
        return con.export_text()

    live = MemtopApp(FakeSource(2, [llama_events(2)]), clock=lambda: 0.0, state=MonitorState())
    async with live.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert live.player is None
        assert {"Pause", "Help"} <= shown(live) and not {"Play/Pause", "Step", "Faster"} & shown(live)
        await pilot.press("full_stop", "right_square_bracket", "plus")  # nothing happens
        await pilot.press("space")
        assert live.paused  # live: p / Space freeze the view
    assert "Seek back" not in help_text(False) and "Pause drawing" in help_text(False)

    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert {"Play/Pause", "Step", "Faster"} <= shown(app) and "Pause" not in shown(app)
    assert "Seek back" in help_text(True) and "Pause drawing" not in help_text(True)
