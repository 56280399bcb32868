"""Device lists in narrow columns: a list that does not fit is a count, never a cut list ("0-3," would
read as devices 0 to 3). The original server's session log holds a process on devices 0-3 and 5."""

from __future__ import annotations

import anyio
from ui_fakes import FakeSource, MiB

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import MonitorState
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.buffers_pane import devices_text


def test_devices_text_fits_or_counts():
    assert devices_text((0, 1, 2, 3, 5), 5) == "0-3,5"
    assert devices_text(tuple(range(32)), 5) == "0-31"
    assert devices_text((0, 2, 4, 6, 8, 10), 5) == "6 dev"
    assert devices_text(tuple(range(0, 64, 2)), 5) == "32dev"
    assert devices_text((0, 2, 4, 6, 8, 10)) == "0,2,4,6,8,10"  # no width: the whole list


async def test_processes_pane_shows_every_device_of_the_session_log_process():
    evs = [Event(EventKind.ALLOC, seq=i + 1, ts_ns=1_000_000 * (i + 1), pid=8174, device=d, buffer_type=0,
                 buffer_id=0x1B233EE0, size=MiB, ref_count=1) for i, d in enumerate((0, 1, 2, 3, 5))]
    app = MemtopApp(FakeSource(6, [evs]), clock=lambda: 0.0, state=MonitorState(), pane="processes")
    async with app.run_test(size=(200, 50)) as pilot:
        table = app.w_processes.table
        with anyio.fail_after(20):
            while not table.row_count:
                await pilot.pause(0.05)
        cells = [str(c) for c in table.get_row_at(0)]
    assert "0-3,5" in cells, cells


def test_an_unknown_free_in_the_feed_guesses_no_type_and_says_why():
    """The session log's ``Deallocation for unknown buffer 233492480 on device 2 (allocated before tracking
    started)``: the feed showed it as a DRAM free of 0 B with no detail."""
    from tt_memtop.core.logparse import LogParser
    from tt_memtop.ui.widgets.event_feed import EventFeed

    line = "⚠ [PID 8174] Deallocation for unknown buffer 233492480 on device 2 (allocated before tracking started)"
    ev = LogParser().feed([line.encode()])[0]
    text = "".join(s.text for s in EventFeed()._row_segments(ev, "capture"))
    assert "free?" in text and "0xdead000" in text
    assert " DRAM " not in text and " 0 B " not in text, text
    assert "unknown buffer: allocated before tracking started" in text, text
