"""The processes pane shows each process's phase with its evidence and a band of its recent phases."""

from __future__ import annotations

import io

import anyio
from rich.console import Console
from ui_fakes import FakeSource

from tt_memtop.core.model import MonitorState
from tt_memtop.core.phases import Phase, PhaseTracker, Segment
from tt_memtop.sim.scenarios import build, reference_events
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.phase_timeline import PhaseTimeline, band

NS = 1_000_000_000


def test_band_cells_take_the_phase_covering_most_of_each_slot():
    segs = [Segment(1, (0,), Phase.LOADING, 0, 3 * NS), Segment(1, (0,), Phase.REPLAY, 3 * NS, 10 * NS)]
    text = band(segs, 0, 10 * NS, 10)
    assert text.plain == "▒▒▒███████"
    assert band(segs, 20 * NS, 30 * NS, 5).plain == "     "  # not seen: blank


async def test_processes_pane_shows_phase_evidence_and_bands():
    scenario = build("llama-t3k")
    events = [e for e in reference_events(scenario) if e.ts_ns < 4.5 * NS]  # mid-replay
    batches = [events[i:i + 512] for i in range(0, len(events), 512)]
    app = MemtopApp(FakeSource(8, batches), clock=lambda: 0.0, state=MonitorState(phases=PhaseTracker()),
                    sample_period=0.05)
    async with app.run_test(size=(160, 50)) as pilot:
        with anyio.fail_after(20):
            while app.state.events_total < len(events):
                await pilot.pause(0.05)
        await pilot.press("4")
        with anyio.fail_after(10):
            while True:
                await pilot.pause(0.1)
                console = Console(width=160, record=True, file=io.StringIO())
                console.print(app.query_one(PhaseTimeline).last)
                text = console.export_text()
                if "replay" in text:
                    break
        assert "4000" in text and "TRACE on 8 devices held" in text
        assert "█" in text and "▒" in text  # replay and loading bands
