"""Live sources stamp with this host's monotonic clock, as `memtop serve` does: the monitor turns that
into wall-clock time. A followed log was stamped with the wall clock, and its feed showed times hours off
(the wall offset added twice); polled and shared-memory samples likewise."""

from __future__ import annotations

import time

import anyio

from tt_memtop.core.model import MonitorState
from tt_memtop.sources.follow import FollowLogSource
from tt_memtop.sources.poll import PollSource
from tt_memtop.sources.shm import ShmSource
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.event_feed import EventFeed

LINE = "✓ [PID 8174] Allocated 1048576 bytes of DRAM on device 0 (buffer_id=455294688)\n"


def test_live_sources_default_to_the_monotonic_clock():
    import inspect

    for cls in (FollowLogSource, PollSource, ShmSource):
        assert inspect.signature(cls.__init__).parameters["clock"].default is time.monotonic_ns, cls


async def test_a_followed_log_shows_the_wall_clock_time_it_was_read(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    log = tmp_path / "server.log"
    log.write_text(LINE)
    app = MemtopApp(FollowLogSource(str(log), poll_interval=0.05), clock=lambda: 0.0, state=MonitorState(),
                    pane="feed")
    async with app.run_test(size=(160, 30)) as pilot:
        feed = app.query_one(EventFeed)
        with anyio.fail_after(20):
            while not feed.rows:
                await pilot.pause(0.05)
        shown = feed.time_text(feed.rows[0][0].ts_ns)
    now = time.strftime("%H:%M", time.gmtime())
    before = time.strftime("%H:%M", time.gmtime(time.time() - 60))
    assert shown[:5] in (now, before), (shown, now)


def test_a_dead_shared_memory_slot_is_not_said_to_be_removed_by_a_server():
    """TT-Metal's shared memory has no server: a dead PID's slot keeps its bytes until the next process
    attaches. The phase evidence said "process died; the server removed 0 buffers (0.0 MiB)"."""
    from tt_memtop.core.events import EventKind
    from tt_memtop.core.usage import ProcessUsage, TotalsEvents

    gib = 1 << 30
    ev = TotalsEvents().events(5, {999999: ProcessUsage(999999, "", False, {2: (gib, 0, 0, 0, 0, 0)})})
    exits = [e for e in ev if e.kind == EventKind.PROCESS_EXIT]
    assert len(exits) == 1
    assert exits[0].text == ("process died; its shared-memory slot still holds 1024.0 MiB (not counted; TT-Metal "
                             "releases it when the next process attaches)")
    from tt_memtop.ui.app import new_state

    st = new_state()
    st.apply_events(ev)
    assert st.phases.current(999999).evidence == exits[0].text


def test_shared_memory_rows_are_the_chips_that_have_a_region():
    """A program that opened devices 4-7 of a T3K leaves regions for those four chips only: the devices pane
    showed devices 0-3 too, at 0 B of a capacity nobody reported (the inventory taken as positional)."""
    from tt_memtop.core.devices import Inventory
    from tt_memtop.core.model import MonitorState
    from tt_memtop.sources.base import TotalsSample

    wh = Inventory.uniform(8).devices
    st = MonitorState()
    st.apply(TotalsSample(1, {d: (1 << 20, 0, 0, 0, 0, 0) for d in (4, 5, 6, 7)}, Inventory(wh[4:])))
    assert st.devices() == [4, 5, 6, 7]
    st.apply(TotalsSample(2, {d: (1 << 20, 0, 0, 0, 0, 0) for d in (4, 5, 6, 7, 9)}, Inventory(wh[4:])))
    assert st.devices() == [4, 5, 6, 7, 9]  # a device past the inventory still gets capacities, once
    assert [d.device_id for d in st.inventory.devices] == [4, 5, 6, 7, 8, 9]
    assert st.devices() == [4, 5, 6, 7, 9]  # 8 was only grown into: no phantom row for it
