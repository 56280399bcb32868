"""The address-map screen (m): real Textual pilot over a simulated Llama run."""

from __future__ import annotations

from functools import lru_cache

from test_ui_app import SIZE, wait_for
from ui_fakes import FakeSource

from tt_memtop.core.model import new_state
from tt_memtop.sim import scenarios
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.screens.address_map import AddressMapScreen


@lru_cache(maxsize=2)
def _llama_until(seconds: float):
    sc = scenarios.build("llama-t3k")
    return tuple(e for e in scenarios.reference_events(sc) if e.ts_ns < seconds * 1e9)


def _grid(screen) -> list[str]:
    return str(screen.query_one("#map-grid").render()).splitlines()


async def test_map_shows_trace_at_the_top_of_dram_and_the_largest_free_range():
    events = _llama_until(3.5)  # replaying: weights resident, one TRACE buffer per device
    app = MemtopApp(FakeSource(8, [list(events)]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.events_total >= len(events))
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, AddressMapScreen))
        screen = app.screen
        await pilot.pause(0.1)
        rows = [r.split(" ", 1)[1] for r in _grid(screen)]
        assert rows[0].lstrip(".").startswith(("D", "d"))  # weights at the bottom of DRAM (from 1 MiB up)
        assert "~" in "".join(rows[:-1])  # the largest free range, marked
        assert rows[-1].rstrip().endswith(":") and ("t" in rows[-1] or "T" in rows[-1])  # TRACE region on top
        info = str(screen.query_one("#map-info").render())
        assert "largest free" in info and "suggested trace_region_size >= 12,503,040" in info
        # Enter on the first used cell lists the weights there
        for _ in range(len(rows[0]) - len(rows[0].lstrip("."))):
            await pilot.press("right")
        await pilot.press("enter")
        table = screen.query_one("#map-cell")
        assert table.row_count >= 1
        first = table.get_row_at(0)
        assert first[3] == "DRAM" and first[4] == str(scenarios.BASE_PID)
        # Tab: L1; the map changes
        await pilot.press("tab")
        await pilot.pause(0.1)
        assert "device 0 L1" in str(screen.query_one("#map-title").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, AddressMapScreen))


async def test_r_resets_peaks():
    events = _llama_until(3.5)
    app = MemtopApp(FakeSource(8, [list(events)]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.events_total >= len(events))
        ins = app.state.insight
        before = ins.peaks.device_peak(0, 0)[0]
        await pilot.press("r")
        await pilot.pause(0.05)
        after = ins.peaks.device_peak(0, 0)[0]
        assert after == ins.peaks.current[0][0] < before


async def test_processes_pane_names_the_leaks_of_a_dead_process():
    from ui_fakes import FakeSource as _FS

    sc = scenarios.build("leaky")
    events = scenarios.reference_events(sc)
    cleaned = sum(1 for e in events if e.kind.name == "CLEANUP")
    app = MemtopApp(_FS(2, [events]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.events_total >= len(events))
        await pilot.press("4")
        await wait_for(pilot, lambda: "died holding" in str(app.query_one("#processes-status").render()))
        status = str(app.query_one("#processes-status").render())
        assert f"leaks: PID {scenarios.BASE_PID} died holding {cleaned:,} buffers" in status


def test_mesh_cells_mark_the_outlier():
    from tt_memtop.ui.widgets.mesh_grid import mesh_cells, mesh_text
    from tt_memtop.ui.widgets.meter import DeviceRow

    fr = {d: 0.40 for d in range(32)}
    fr[13] = 0.80
    cells = mesh_cells(fr)
    assert [c.device for c in cells if c.outlier] == [13]
    cap = 12 << 30
    rows = [DeviceRow(d, "Wormhole_B0", [int(cap * fr[d]), 0, 0, 0, 0, 0, 0], cap, 1) for d in range(32)]
    text = mesh_text(rows, 80, selected=0).plain.splitlines()
    assert len(text) == 8  # 4 columns x 8: devices 8-15 in the second column
    cell13 = text[5].split("13 D", 1)[1]
    assert cell13.split("%", 1)[0].endswith("80") and cell13.split("%", 2)[2].startswith("!")


async def test_galaxy_map_has_a_mesh_grid_with_the_outlier():
    from tt_memtop.core.events import Event, EventKind

    events = [Event(EventKind.ALLOC, seq=d + 1, ts_ns=10**9 + d, pid=7, device=d, buffer_type=0,
                    buffer_id=0x100000, size=(6 if d == 21 else 1) << 30, ref_count=1) for d in range(32)]
    app = MemtopApp(FakeSource(32, [events]), clock=lambda: 0.0, state=new_state())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.events_total >= 32)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, AddressMapScreen))
        await pilot.pause(0.2)
        mesh = str(app.screen.query_one("#map-mesh").render()).splitlines()
        assert len(mesh) == 8  # the device pane's grid: 4 columns x 8
        cell21 = mesh[21 % 8].split("21 D", 1)[1]
        assert cell21.split("%", 1)[0].endswith("50") and cell21.split("%", 2)[2].startswith("!")
        assert sum(line.count("!") for line in mesh) == 1
