"""At 80 columns, why a pane is empty must be read to its end: that is where it says what to do
(`memtop serve` / --follow LOG). The note was one line, cut at "… polled): no"."""

from __future__ import annotations

import anyio
import pytest
from test_ui_views import TotalsOnly

from tt_memtop.core.model import MonitorState
from tt_memtop.ui.app import TOTALS_ONLY_NOTE, MemtopApp
from tt_memtop.ui.widgets.device_pane import DevicePane
from tt_memtop.ui.widgets.event_feed import EventFeed


@pytest.mark.parametrize("pane", ["feed", "buffers", "processes"])
async def test_the_totals_only_note_is_whole_at_80_columns(pane):
    app = MemtopApp(TotalsOnly(), clock=lambda: 0.0, state=MonitorState(), pane=pane)
    async with app.run_test(size=(80, 24)) as pilot:
        dp = app.query_one(DevicePane)
        with anyio.fail_after(20):
            while not (dp.rows and dp.rows[0].totals[0]):
                await pilot.pause(0.05)
        await pilot.pause(0.3)
        if pane == "feed":
            feed = app.query_one(EventFeed)
            width = feed.scrollable_content_region.width
            text = " ".join("".join(s.text for s in feed.render_line(y)).strip() for y in range(1, 6))
            assert all(len("".join(s.text for s in feed.render_line(y))) <= width for y in range(1, 6))
        else:
            status = app.query_one("#buffers-status" if pane == "buffers" else "#processes-status")
            with anyio.fail_after(10):
                while "totals only" not in str(status.render()) or status.size.height < 2:
                    await pilot.pause(0.05)
            assert status.size.height >= 2  # wrapped, not cut
            text = " ".join(str(status.render()).split())
        assert " ".join(TOTALS_ONLY_NOTE.split()) in " ".join(text.split()), text


async def test_a_source_error_is_read_whole_where_the_devices_would_be():
    """`memtop --follow server.log.gz` at 80 columns: the header cut the error at "... is gzipped, not…",
    before what to run instead; the devices pane now shows it whole."""
    from tt_memtop.sources.base import Source, Status

    why = "server.log.gz is gzipped, not a log being written: read it with `memtop replay server.log.gz` or " \
          "`memtop report`"

    class Failing(Source):
        description = "log server.log.gz"
        local = False

        async def run(self, emit) -> None:
            emit(Status("error", why))
            await anyio.sleep_forever()

    app = MemtopApp(Failing(), clock=lambda: 0.0, state=MonitorState())
    async with app.run_test(size=(80, 24)) as pilot:
        dp = app.query_one(DevicePane)
        with anyio.fail_after(10):
            while not dp.empty_note:
                await pilot.pause(0.05)
        await pilot.pause(0.2)
        text = " ".join("".join(s.text for s in ln) for ln in dp._build_lines(dp.scrollable_content_region.width))
    assert " ".join(why.split()) in " ".join(text.split()), text


async def test_a_region_that_was_not_read_is_said_on_the_devices_pane(tmp_path):
    """An unknown layout version and a v4 region being initialised have no row (their device is not
    known): at 80 columns the header cut their "not read" notes, and their memory silently went missing.
    Also: no phantom device 0 / 1 rows at 0 B for the one chip whose region was read (device 2)."""
    import os

    from test_shm import pack_region

    from tt_memtop.core import shm_layout as L
    from tt_memtop.sources.shm import ShmSource

    os.makedirs(tmp_path / "shm")
    (tmp_path / "shm" / "tt_device_100_memory").write_bytes(pack_region(L.V4, 5, device_id=0, asic=100))
    (tmp_path / "shm" / "tt_device_101_memory").write_bytes(pack_region(L.V4, 4, device_id=1, asic=101,
                                                                        init_state=L.INIT_IN_PROGRESS))
    (tmp_path / "shm" / "tt_device_102_memory").write_bytes(
        pack_region(L.V4, 4, device_id=2, asic=102, totals=(1 << 20,), procs=((os.getpid(), "python", (1 << 20,)),)))
    app = MemtopApp(ShmSource(str(tmp_path / "shm"), 0.05, "wormhole_b0"), clock=lambda: 0.0, state=MonitorState())
    async with app.run_test(size=(80, 24)) as pilot:
        dp = app.query_one(DevicePane)
        with anyio.fail_after(20):
            while not dp.rows or not dp.unread:
                await pilot.pause(0.05)
        await pilot.pause(0.2)
        assert [r.device for r in dp.rows] == [2]
        text = "\n".join("".join(s.text for s in ln) for ln in dp._build_lines(dp.scrollable_content_region.width))
    assert "not read: tt_device_100_memory: version 5 is not a layout" in text, text
    assert "not read: tt_device_101_memory: version 4, init_state" in text, text
