"""The meters' peak marks (▏) are the core's event-exact high water of each stacked bar, per device:
a spike allocated and freed between two frames still shows; `r` and a type filter start them over;
a totals-only source raises them from its samples. Pure and compiled insight passes alike."""

from __future__ import annotations

import anyio
import pytest
from ui_fakes import FakeSource, MiB

from tt_memtop.core import insight as insight_mod
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.insight import Insight
from tt_memtop.core.model import MonitorState
from tt_memtop.core.peaks import ALL_TYPES_MASK, PeakTracker, types_mask
from tt_memtop.core.protocol import BufferType
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.device_pane import DevicePane

DRAM, L1, L1_SMALL, TRACE, CB = (int(BufferType.DRAM), int(BufferType.L1), int(BufferType.L1_SMALL),
                                 int(BufferType.TRACE), int(BufferType.CB))
NATIVE = insight_mod._load_native_pass()
PASSES = [pytest.param(None, id="pure"),
          pytest.param(NATIVE, id="native", marks=pytest.mark.skipif(NATIVE is None, reason="not built"))]


def ev(kind, seq, t, size, addr, device=0, pid=7):
    return Event(kind, seq=seq, ts_ns=1_000 * seq, pid=pid, device=device, buffer_type=t, buffer_id=addr,
                 size=size, ref_count=1 if kind is EventKind.ALLOC else 0)


def spike() -> list[Event]:
    """A 40 MiB DRAM buffer and a 12 MiB TRACE stay; a 100 MiB DRAM buffer comes and goes; L1 too."""
    A, F = EventKind.ALLOC, EventKind.FREE  # noqa: N806
    return [ev(A, 1, DRAM, 40 * MiB, 0x1000_0000), ev(A, 2, TRACE, 12 * MiB, 0x3E36_3C80),
            ev(A, 3, DRAM, 100 * MiB, 0x2000_0000), ev(A, 4, L1, 6 * MiB, 0x8_0000),
            ev(A, 5, L1_SMALL, 1 * MiB, 0x1_0000), ev(F, 6, DRAM, 100 * MiB, 0x2000_0000),
            ev(F, 7, L1, 6 * MiB, 0x8_0000), ev(A, 8, L1, 2 * MiB, 0x8_0000)]


@pytest.mark.parametrize("native", PASSES)
@pytest.mark.parametrize("batch", [1, 3, 100])
def test_bar_peak_is_the_stacked_high_water_whatever_the_batches(monkeypatch, native, batch):
    monkeypatch.setattr(insight_mod, "_native_pass", native)
    ins = Insight()
    evs = spike()
    for i in range(0, len(evs), batch):
        ins.observe(evs[i:i + batch])
    # DRAM bar = DRAM + TRACE at its highest (seq 3), L1 bar = L1 + L1_SMALL at seq 5
    assert ins.peaks.bar_peak(0) == (152 * MiB, 7 * MiB)
    assert ins.peaks.bars_at[0] == [3_000, 5_000]
    # the mark counts only what a type filter shows, from the moment it is set
    ins.peaks.set_bar_mask(types_mask({TRACE}), 9_000)
    assert ins.peaks.bar_peak(0) == (12 * MiB, 0)
    ins.observe([ev(EventKind.ALLOC, 9, TRACE, 8 * MiB, 0x3000_0000), ev(EventKind.FREE, 10, TRACE, 8 * MiB,
                                                                        0x3000_0000)])
    assert ins.peaks.bar_peak(0) == (20 * MiB, 0)
    ins.peaks.set_bar_mask(ALL_TYPES_MASK, 11_000)
    assert ins.peaks.bar_peak(0) == (52 * MiB, 3 * MiB)
    ins.reset_peaks(12_000)  # `r`: the current sums
    assert ins.peaks.bar_peak(0) == (52 * MiB, 3 * MiB)


def test_totals_only_samples_raise_the_bars():
    ins = Insight()
    ins.record_totals(1_000, {2: (10 * MiB, MiB, 0, 5 * MiB, 0, 0)})
    ins.record_totals(2_000, {2: (4 * MiB, 3 * MiB, MiB, 0, 0, 0)})
    assert ins.peaks.bar_peak(2) == (15 * MiB, 4 * MiB)
    ins.reset_peaks(3_000)
    ins.record_totals(4_000, {2: (4 * MiB, 3 * MiB, MiB, 0, 0, 0)})
    assert ins.peaks.bar_peak(2) == (4 * MiB, 4 * MiB)


def test_a_tracker_loaded_from_a_snapshot_starts_at_the_sums():
    from tt_memtop.core.registry import Registry

    reg = Registry()
    for e in spike()[:2]:
        reg.apply_event(e)
    pk = PeakTracker()
    pk.load(reg, 5)
    assert pk.bar_peak(0) == (52 * MiB, 0)


def _mark_col(line: str) -> int:
    return line.index("▏") if "▏" in line else -1


async def test_a_spike_between_two_frames_still_shows_its_mark():
    """One batch allocates and frees 6 GiB of DRAM: no frame ever draws it, the mark is there."""
    src = FakeSource(1, [])
    app = MemtopApp(src, clock=lambda: 0.0, state=MonitorState(), pane="devices")
    async with app.run_test(size=(120, 30)) as pilot:
        with anyio.fail_after(20):
            while src.emit is None:
                await pilot.pause(0.02)
        src.push([ev(EventKind.ALLOC, 1, DRAM, 1 << 30, 0x1000_0000)])
        pane = app.query_one(DevicePane)
        with anyio.fail_after(20):
            while not pane.rows or pane.rows[0].totals[DRAM] != 1 << 30:
                await pilot.pause(0.05)
        src.push([ev(EventKind.ALLOC, 2, DRAM, 6 << 30, 0x8000_0000), ev(EventKind.FREE, 3, DRAM, 6 << 30, 0x8000_0000)])
        with anyio.fail_after(20):
            while app.state.events_total < 3 or app.last_frame_events < 3:
                await pilot.pause(0.05)
        await pilot.pause(0.1)
        row = pane.rows[0]
        assert row.totals[DRAM] == 1 << 30  # never more on any frame
        assert row.peak_dram == 7 << 30
        lines = ["".join(s.text for s in ln) for ln in pane._build_lines(pane.scrollable_content_region.width)]
        dram = next(ln for ln in lines if ln.startswith("  0 WH") and "DRAM" in ln)
        col = _mark_col(dram)
        assert col > 0  # the mark at 7/12 of the bar, well past the 1/12 filled
        assert dram[:col].count("█") < col // 3
        # `r` puts the mark back to what is used now: it disappears (nothing beyond the bar)
        await pilot.press("r")
        with anyio.fail_after(10):
            while pane.rows[0].peak_dram != 1 << 30:
                await pilot.pause(0.05)
        lines = ["".join(s.text for s in ln) for ln in pane._build_lines(pane.scrollable_content_region.width)]
        assert _mark_col(next(ln for ln in lines if ln.startswith("  0 WH") and "DRAM" in ln)) == -1


def test_an_unknown_capacity_is_said_whole_in_a_narrow_bar():
    from rich.style import Style

    from tt_memtop.ui.widgets.meter import bar_segments

    def text(width):
        return "".join(s.text for s in bar_segments([0] * 7, (0, 4), 0, width, lambda _n: Style(), frozenset(range(7))))

    assert text(30).strip() == "capacity unknown"
    assert text(13).strip() == "cap. unknown"  # the S1 server (no DEVICE_INFO) polled at 80 columns
    assert text(8).strip() == "unknown" and text(3).strip() == "?"
    assert all(len(text(w)) == w for w in (3, 8, 13, 30))


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """The recorded sessions (tests/data/recordings) and two built-in scenarios, as events."""

    from recordings import recorded_events

    from tt_memtop.sim.scenarios import build
    from tt_memtop.sim.score import reference_events

    out = {}
    for name in ("llama_8dev", "galaxy_32dev", "cnn_1dev"):
        out[name] = recorded_events(name, tmp_path_factory.mktemp("rec"))
    for name in ("two-traces", "killed"):
        out[name] = reference_events(build(name, 0), 144)
    return out


@pytest.mark.skipif(NATIVE is None, reason="the compiled insight pass is not built")
@pytest.mark.parametrize("name", ["llama_8dev", "galaxy_32dev", "cnn_1dev", "two-traces", "killed"])
def test_native_bar_peaks_equal_the_pure_ones(sessions, name, monkeypatch):
    from test_monitor_fold import _fold

    events = sessions[name]
    monkeypatch.setattr(insight_mod, "_native_pass", None)
    pure = _fold(events, 512, one_by_one=False).insight.peaks
    monkeypatch.setattr(insight_mod, "_native_pass", NATIVE)
    native = _fold(events, 512, one_by_one=False).insight.peaks
    assert native.bars == pure.bars and native.bars_at == pure.bars_at
    assert any(v for pk in pure.bars.values() for v in pk)


@pytest.mark.parametrize("name", ["llama_8dev", "cnn_1dev"])
def test_bar_peaks_do_not_depend_on_the_batches(sessions, name):
    """Without CB / KERNEL changes inside a batch, folding one event at a time or 512 at a time gives the
    same bar peaks (CB / KERNEL count as of the batch's ends: a re-ALLOC of a live CB id replaces it)."""
    from test_monitor_fold import _fold

    events = [e for e in sessions[name][:4000] if e.buffer_type not in (CB, 6)]
    one = _fold(events, 1, one_by_one=True).insight.peaks
    many = _fold(events, 512, one_by_one=False).insight.peaks
    assert one.bars == many.bars and one.bars_at == many.bars_at


async def test_a_pid_filter_shows_no_peak_mark_and_no_legend_for_one():
    """Under a PID filter the bars are that process's share, whose per-device high water nothing keeps."""
    from tt_memtop.ui.filters import ViewFilter

    src = FakeSource(1, [[ev(EventKind.ALLOC, 1, DRAM, 1 << 30, 0x1000_0000, pid=7),
                          ev(EventKind.ALLOC, 2, DRAM, 2 << 30, 0x8000_0000, pid=8),
                          ev(EventKind.FREE, 3, DRAM, 2 << 30, 0x8000_0000, pid=8)]])
    app = MemtopApp(src, clock=lambda: 0.0, state=MonitorState(), pane="devices",
                    view_filter=ViewFilter(pids=frozenset({7})))
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.query_one(DevicePane)
        with anyio.fail_after(20):
            while not pane.rows or app.state.events_total < 3:
                await pilot.pause(0.05)
        await pilot.pause(0.2)
        text = "\n".join("".join(s.text for s in ln) for ln in pane._build_lines(pane.scrollable_content_region.width))
    assert pane.rows[0].totals[DRAM] == 1 << 30 and pane.rows[0].peak_dram == 0
    assert "▏" not in text and "│" not in text and "peak" not in text, text
