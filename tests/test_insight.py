"""Peaks, bank maps, headroom, leaks and history on known layouts (exact figures)."""

from __future__ import annotations

import random

import pytest

from tt_memtop.core.bankmap import SpaceMap
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.geometry import DRAM, L1, L1_SMALL, TRACE, GeometryConfig, PoolRange, per_bank_size
from tt_memtop.core.history import UsageHistory
from tt_memtop.core.insight import Insight
from tt_memtop.core.model import new_state
from tt_memtop.core.registry import Registry
from tt_memtop.sim import scenarios

MiB = 1 << 20
WH_TOP = 1 << 30


class Feed:
    """Events through a real registry, like a server would emit them."""

    def __init__(self, insight: Insight | None = None, state=None) -> None:
        self.reg = Registry()
        self.state = state
        self.insight = insight if insight is not None else (state.insight if state is not None else Insight())
        self.ts = 0

    def _go(self, ev: Event) -> Event:
        self.reg._stamp(ev)
        if self.state is not None:
            self.state.apply_events([ev])
        else:
            self.reg.apply_event(ev)
            self.insight.observe([ev])
        return ev

    def alloc(self, addr: int, size: int, btype: int = DRAM, device: int = 0, pid: int = 1) -> None:
        self.ts += 1000
        self._go(Event(EventKind.ALLOC, ts_ns=self.ts, pid=pid, device=device, buffer_type=btype, buffer_id=addr,
                       size=size, ref_count=1))

    def free(self, addr: int, size: int, btype: int = DRAM, device: int = 0, pid: int = 1,
             kind: EventKind = EventKind.FREE) -> None:
        self.ts += 1000
        self._go(Event(kind, ts_ns=self.ts, pid=pid, device=device, buffer_type=btype, buffer_id=addr, size=size))


def wh(config: GeometryConfig | None = None, devices: int = 1) -> Insight:
    ins = Insight(config)
    ins.set_inventory(Inventory.uniform(devices, "wormhole_b0"))
    return ins


def test_per_bank_size_rounds_to_alignment():
    assert per_bank_size(1000, 12, 32) == 96  # ceil(1000 / 12) = 84 -> 96
    assert per_bank_size(12 * MiB, 12, 32) == MiB
    assert per_bank_size(12_503_040, 12, 32) == 1_041_920  # the Llama trace, per bank
    assert per_bank_size(256, 64, 16) == 16


def test_dram_layout_largest_free_segments_allocatable():
    ins = wh(GeometryConfig(trace_region_size=30_000_000))
    f = Feed(ins)
    f.alloc(1 * MiB, 12 * MiB)  # [1 MiB, 2 MiB) in each of 12 banks
    f.alloc(3 * MiB, 12 * MiB)  # [3 MiB, 4 MiB)
    st = ins.pool_stats(0, DRAM)
    assert (st.banks, st.lo, st.hi) == (12, 32, WH_TOP - 30_000_000)
    assert st.used_per_bank == 2 * MiB
    assert st.free_segments == 3  # [32, 1M), [2M, 3M), [4M, top of DRAM)
    top = WH_TOP - 30_000_000
    assert st.largest_free == top - 4 * MiB and st.largest_free_at == 4 * MiB
    assert st.largest_allocatable == 12 * (top - 4 * MiB)
    assert st.free_per_bank == top - 32 - 2 * MiB
    f.free(1 * MiB, 12 * MiB)
    st = ins.pool_stats(0, DRAM)
    assert st.free_segments == 2 and st.used_per_bank == MiB  # [32, 3M) merged
    f.free(3 * MiB, 12 * MiB)
    st = ins.pool_stats(0, DRAM)
    assert st.free_segments == 1 and st.largest_free == top - 32 and st.fragmentation == 0.0


def test_l1_fragmented_by_a_small_buffer_in_the_middle():
    """Two 1 MiB-per-bank-ish holes split by one 16 B-per-bank buffer: the largest free is the bigger hole."""
    ins = wh(GeometryConfig(l1_small_size=32768))
    f = Feed(ins)
    top = 1_499_136 - 32768  # L1 ends where L1_SMALL starts
    mid = 900_000
    f.alloc(mid, 64 * 16, L1)  # 16 B per bank
    st = ins.pool_stats(0, L1)
    assert (st.banks, st.lo, st.hi) == (64, 134_208, top)
    assert st.free_segments == 2
    assert st.largest_free == mid - 134_208 and st.largest_free_at == 134_208
    assert st.largest_allocatable == 64 * (mid - 134_208)
    assert st.fragmentation == pytest.approx(1 - (mid - 134_208) / (top - 134_208 - 16))
    small = ins.pool_stats(0, L1_SMALL)
    assert (small.lo, small.hi, small.largest_free) == (top, 1_499_136, 32768)


def test_trace_region_inferred_from_the_trace_address_and_suggested_size():
    ins = wh()
    f = Feed(ins)
    f.alloc(0x3E363C80, 12_503_040, TRACE)  # the Llama-on-T3K trace buffer
    tr = ins.pool_stats(0, TRACE)
    assert (tr.lo, tr.hi, tr.range_known) == (0x3E363C80, WH_TOP, False)
    assert tr.bank_size == 30_000_000 and tr.used_per_bank == 1_041_920
    assert tr.largest_free == 30_000_000 - 1_041_920 and tr.free_segments == 1
    assert ins.pool_stats(0, DRAM).hi == 0x3E363C80
    h = ins.headroom(0)
    assert h.trace_bytes == 12_503_040 and h.trace_region_size == 30_000_000 and not h.trace_region_known
    assert h.suggested_trace_region_size == 12_503_040  # already a multiple of 32 x 12


def test_address_zero_hooked_allocations_are_left_out():
    ins = wh()
    f = Feed(ins)
    f.alloc(0, 12 * MiB)
    assert ins.pool_stats(0, DRAM).used_per_bank == 0
    assert ins.peaks.device_peak(0, DRAM)[0] == 12 * MiB  # still counted in the bytes, as the server does


def test_peaks_with_time_and_reset():
    ins = wh()
    f = Feed(ins)
    f.alloc(1 * MiB, 100)
    f.alloc(2 * MiB, 200)  # ts 2000: peak 300
    f.free(1 * MiB, 100)
    f.alloc(3 * MiB, 50)
    assert ins.peaks.device_peak(0, DRAM) == (300, 2000)
    assert ins.peaks.current[0][DRAM] == 250
    cur, peak, at = ins.peaks.pid_peaks()[1]
    assert peak[DRAM] == 300 and at[DRAM] == 2000 and cur[DRAM] == 250
    ins.reset_peaks(9999)
    assert ins.peaks.device_peak(0, DRAM) == (250, 9999)


def test_what_was_live_at_the_peak():
    state = new_state()
    state.inventory = Inventory.uniform(1)
    f = Feed(state=state)
    f.alloc(1 * MiB, 5000, pid=7)
    f.alloc(2 * MiB, 9000, pid=8)
    cap = state.insight.captures[(0, DRAM)]
    assert cap.bytes == 14000
    assert [b["size"] for b in cap.top_buffers] == [9000, 5000]
    assert cap.by_pid == {7: 5000, 8: 9000}


def test_warning_before_the_typical_allocation_fails():
    ins = wh(GeometryConfig(l1_small_size=0))
    f = Feed(ins)
    lo, top = 134_208, 1_499_136
    # fill L1 but for a 40 KiB hole per bank, with 32 KiB-per-bank buffers (2 MiB interleaved over 64 banks)
    per = 32 * 1024
    addr = top - per
    while addr - per >= lo + 40 * 1024:
        f.alloc(addr, per * 64, L1)
        addr -= per
    f.alloc(addr, per * 64, L1)
    h = ins.headroom(0)
    st = ins.pool_stats(0, L1)
    assert st.largest_free < 2 * per
    assert [w["pool"] for w in h.warnings] == ["L1"]
    assert h.warnings[0]["level"] == ("would_fail" if st.largest_free < per else "tight")


def test_l1_headroom_between_cbs_and_the_lowest_l1_buffer():
    ins = wh()
    f = Feed(ins)
    f.alloc(134_208, 65536, 5)  # a CB at the unreserved base
    f.alloc(1_400_000, 64 * 1024, L1)
    h = ins.headroom(0)
    assert (h.l1_cb_top, h.l1_lowest_buffer, h.l1_headroom) == (134_208 + 65536, 1_400_000, 1_400_000 - 199_744)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_space_map_matches_a_rescan(seed):
    """Random allocs / frees (overlaps included, as stale state can make): free segments == complement."""
    rng = random.Random(seed)
    pools = {DRAM: PoolRange(DRAM, 4, 32, 5000, 32), TRACE: PoolRange(TRACE, 4, 5000, 8000, 32)}
    m = SpaceMap(pools)
    live = []
    for step in range(1500):
        if live and rng.random() < 0.45:
            m.free(live.pop(rng.randrange(len(live))))
        else:
            s = rng.randrange(0, 8200)
            if s not in live:
                live.append(s)
                m.alloc(s, rng.randrange(1, 3000), rng.choice([DRAM, TRACE]))
        if step % 13 == 0:
            m.check()
    m.check()
    m.set_pools({DRAM: PoolRange(DRAM, 4, 32, 6000, 32), TRACE: PoolRange(TRACE, 4, 6000, 8000, 32)})
    m.check()
    for _ in range(2000):  # a burst bigger than the map: applied by the bulk rebuild
        s = rng.randrange(0, 8200)
        if s in live:
            m.free(s)
            live.remove(s)
        else:
            live.append(s)
            m.alloc(s, rng.randrange(1, 300), rng.choice([DRAM, TRACE]))
    m.check()
    for s in list(live)[: len(live) // 2]:
        m.free(s)
    m.check()


def test_cells_mark_trace_and_largest_free():
    ins = wh()
    f = Feed(ins)
    f.alloc(0x3E363C80, 12_503_040, TRACE)
    f.alloc(512 * MiB, 12 * MiB)  # splits DRAM: [32, 512M) is the largest hole, [513M, trace) the other
    cells = ins.space(0, DRAM).cells(0, WH_TOP, 64)  # 16 MiB a cell
    assert cells[-1].pool == TRACE and cells[0].pool == DRAM
    assert all(c.in_largest_free for c in cells[:32])
    assert not any(c.in_largest_free for c in cells[32:62])
    assert cells[32].used == {DRAM: MiB} and cells[62].used == {TRACE: 1_041_920} and cells[63].used == {}


def test_history_keeps_the_peak_when_downsampled():
    h = UsageHistory()
    s = 1_000_000_000
    for i in range(4000):  # 1000 s at 4 points / s; one 10 ms spike
        h.record((0, DRAM), i * 250_000_000, 10 * MiB if i == 1234 else MiB)
    whole = h.series((0, DRAM), 4000 * 250_000_000)
    assert max(v for _, v, _ in whole) == 10 * MiB
    assert len(whole) < 1000  # coarser than the finest level
    last_min = h.series((0, DRAM), 4000 * 250_000_000, span_ns=60 * s)
    assert 200 <= len(last_min) <= 250 and max(v for _, v, _ in last_min) == MiB
    assert h.peak((0, DRAM))[0] == 10 * MiB


def test_leaky_scenario_leaks_by_pid():
    sc = scenarios.build("leaky")
    events = scenarios.reference_events(sc)
    state = new_state()
    state.inventory = Inventory.uniform(sc.num_devices)
    for i in range(0, len(events), 256):
        state.apply_events(events[i:i + 256])
    cleaned = [e for e in events if e.kind == EventKind.CLEANUP]
    rows = state.insight.leaks.rows(state.phases.phase)
    assert rows[0]["pid"] == scenarios.BASE_PID and rows[0]["kind"] == "died"
    assert rows[0]["buffers"] == len(cleaned) and rows[0]["bytes"] == sum(e.size for e in cleaned)
    assert rows[0]["devices"] == [0, 1]


def test_report_lists_the_leaky_scenarios_leaks_by_pid(tmp_path):
    """`memtop report` on a recording of the leaky scenario: the dead process's reclaimed buffers are its leaks."""
    from tt_memtop.commands.report import build_report
    from tt_memtop.core.report import render_text
    from tt_memtop.recording import RecordingWriter

    sc = scenarios.build("leaky")
    events = scenarios.reference_events(sc)
    path = tmp_path / "leaky.rec"
    with RecordingWriter(str(path), Inventory.uniform(sc.num_devices), socket_path="/tmp/x.sock",
                         clock=lambda: 0, wall_clock=lambda: 0) as w:
        for i in range(0, len(events), 512):
            w.write_events(events[i:i + 512])
    rep = build_report(str(path))
    cleaned = [e for e in events if e.kind == EventKind.CLEANUP]
    died = [lk for lk in rep.leaks_by_pid if lk["kind"] == "died"]
    assert [(lk["pid"], lk["buffers"], lk["bytes"]) for lk in died] == [
        (scenarios.BASE_PID, len(cleaned), sum(e.size for e in cleaned))]
    text = render_text(rep)
    assert f"PID {scenarios.BASE_PID}: died holding them" in text and f"{len(cleaned):,} buffers" in text
    assert "Leaks by PID:\n  none" not in text


def test_usage_history_on_the_monitor_state():
    state = new_state()
    state.inventory = Inventory.uniform(1)
    f = Feed(state=state)
    f.alloc(1 * MiB, 5000)
    f.alloc(2 * MiB, 7000)
    f.free(1 * MiB, 5000)
    series = state.usage_history(0, DRAM)
    assert series and max(v for _, v, _ in series) == 12000 and series[-1][2] == 7000
    assert state.phase_bands() is not None


def test_warmup_buffer_alive_in_replay_is_reported():
    """A warm-up temporary that is never freed shows as outliving warm-up once the process replays."""
    import random as _random

    from tt_memtop.core.phases import Phase
    from tt_memtop.sim.scenarios import base as sim

    p = sim._Process(0, (0, 1), _random.Random(3), sim._llama(4, 2, (sim.LLAMA_TRACE_SIZE,)), 0.0)
    p.phase(Phase.LOADING)
    p.device_init()
    p.load_weights()
    p.phase(Phase.WARMUP)
    for _ in range(2):
        p.forward(p.model.decode_ops, p.model.op_s)
        p.sync()
    p.alloc(DRAM, 12 * MiB, "forgotten_tmp")  # allocated in warm-up, never freed
    p.forward(p.model.decode_ops, p.model.op_s)
    p.sync()
    p.capture(sim.LLAMA_TRACE_SIZE)
    p.replay(100)
    sc = sim.Scenario("warm-leak", 0, 2, "test", [p.exit()])
    events = scenarios.reference_events(sc)
    state = new_state()
    state.inventory = Inventory.uniform(2)
    for i in range(0, len(events), 256):
        state.apply_events(events[i:i + 256])
    rows = [r for r in state.insight.leaks.rows() if r["kind"] == "outlived_warmup"]
    # the forgotten temporary (on both devices) is there; how much of the load phase inference calls
    # warm-up on this tiny model depends on its thresholds (the built-in scenarios report none)
    assert [r["pid"] for r in rows] == [scenarios.BASE_PID]
    assert rows[0]["buffers"] >= 2 and rows[0]["bytes"] >= 2 * 12 * MiB


def test_trace_region_inferred_even_if_the_trace_is_freed_before_anyone_looks():
    ins = wh()
    f = Feed(ins)
    f.alloc(0x3E363C80, 12_503_040, TRACE)
    f.free(0x3E363C80, 12_503_040, TRACE)
    tr = ins.pool_stats(0, TRACE)
    assert (tr.lo, tr.hi, tr.used_per_bank) == (0x3E363C80, WH_TOP, 0)
    assert ins.headroom(0).trace_peak_bytes == 12_503_040


def test_json_document_carries_pool_figures_headroom_and_leaks():
    from tt_memtop.output.oneshot import SCHEMA_VERSION, build_document

    sc = scenarios.build("llama-t3k")
    events = [e for e in scenarios.reference_events(sc) if e.ts_ns < 3.5e9]
    state = new_state()
    state.inventory = Inventory.uniform(8)
    for i in range(0, len(events), 512):
        state.apply_events(events[i:i + 512])
    doc = build_document(state)
    assert SCHEMA_VERSION == 2 and doc["schema_version"] == 2
    dev = doc["devices"][0]
    dram, trace = dev["pools"]["DRAM"], dev["pools"]["TRACE"]
    for key in ("peak_bytes", "peak_at", "largest_free_bytes", "free_segments", "largest_allocatable_bytes"):
        assert key in dram and key in trace
    assert dram["largest_allocatable_bytes"] == 12 * dram["largest_free_bytes"]
    assert dram["peak_bytes"] >= dram["current_bytes"] == dev["bytes"]["DRAM"]
    assert trace["current_bytes"] == 12_503_040 and trace["range"] == [0x3E363C80, WH_TOP]
    assert dev["headroom"]["suggested_trace_region_size"] == 12_503_040
    assert doc["leaks"] == []
    assert doc["processes"][0]["peak_bytes"]["TRACE"] == 8 * 12_503_040


def test_report_map_of_an_original_server_log():
    from pathlib import Path

    from tt_memtop.commands.report import build_report, render_maps

    log = Path(__file__).parent / "data" / "original_server" / "session_72byte.log"
    ins = Insight()
    build_report(str(log), insight=ins)
    text = render_maps(ins, "line")
    assert "Device 0 DRAM: 12 banks of 1,073,741,824 B" in text
    assert "trace region 30,000,000 B (inferred from addresses)" in text
    assert "TRACE 12,503,040 B at line 8" in text
    tr = ins.pool_stats(0, TRACE)
    assert tr.lo == 0x3E363C80 and tr.used_per_bank == 1_041_920
    small = ins.pool_stats(0, L1_SMALL)
    assert small.bank_size == 0  # its L1_SMALL address (32768) is below the unreserved base: no region inferred


def test_once_table_has_the_per_bank_section():
    from tt_memtop.output.oneshot import build_document, render_table

    ins_state = new_state()
    ins_state.inventory = Inventory.uniform(1)
    f = Feed(state=ins_state)
    f.alloc(1 * MiB, 12 * MiB)
    f.alloc(0x3E363C80, 12_503_040, TRACE)
    table = render_table(build_document(ins_state))
    assert "DRAM largest free MB" in table
    row = next(ln for ln in table.splitlines() if ln.strip().startswith("0 ") and "," in ln)
    top = 0x3E363C80
    assert f"{(top - 2 * MiB) / MiB:.2f}" in row  # largest free: from 2 MiB to the trace region
    assert "suggested trace_region_size >= 12,503,040" in table


def test_blackhole_geometry_and_overrides():
    from tt_memtop.core.geometry import ARCH_GEOMETRY, device_geometry
    from tt_memtop.core.protocol import Arch

    bh = ARCH_GEOMETRY[Arch.BLACKHOLE]
    assert (bh.dram_banks, bh.dram_alignment, bh.l1_banks, bh.worker_l1_size) == (8, 64, 130, 1_572_864)
    assert bh.dram_bank_size - bh.dram_unreserved_base == 4_278_190_016  # the bank size Blackhole OOMs report
    assert bh.worker_l1_size - bh.l1_unreserved_base == 1_461_760
    ins = Insight(GeometryConfig(l1_banks=56))
    ins.set_inventory(Inventory.uniform(1, "blackhole"))
    f = Feed(ins)
    f.alloc(0x1000, 8 * 64 * 100)  # 100 x 64 B per bank over 8 banks
    st = ins.pool_stats(0, DRAM)
    assert st.banks == 8 and st.used_per_bank == 6400
    assert ins.pool_stats(0, L1).banks == 56
    g = device_geometry(Arch.WORMHOLE_B0, GeometryConfig(dram_banks=6, l1_unreserved_base=0x30000))
    assert (g.dram_banks, g.l1_unreserved_base) == (6, 0x30000)


def test_geometry_flags_parse_sizes():
    import argparse

    from tt_memtop.geometry_args import add_geometry_arguments, geometry_from_args

    p = argparse.ArgumentParser()
    add_geometry_arguments(p)
    cfg = geometry_from_args(p.parse_args(["--trace-region-size", "30M", "--l1-small-size", "0x8000", "--l1-banks", "64"]))
    assert (cfg.trace_region_size, cfg.l1_small_size, cfg.l1_banks) == (30 << 20, 0x8000, 64)
    with pytest.raises(SystemExit):
        p.parse_args(["--l1-banks", "0"])
    with pytest.raises(SystemExit):
        p.parse_args(["--trace-region-size", "lots"])


def test_configured_trace_region_is_known_and_rounded():
    ins = wh(GeometryConfig(trace_region_size=30_000_000))
    tr = ins.pool_stats(0, TRACE)
    assert tr.range_known and tr.bank_size == 30_000_000  # already a multiple of 32 x 12
    ins = wh(GeometryConfig(trace_region_size=1000))
    assert ins.pool_stats(0, TRACE).bank_size == 1152  # rounded up to 32 x 12, as generate_config does


def test_attaching_to_a_snapshot_gives_the_same_maps_as_the_events():
    from tt_memtop.sources.base import Snapshot

    sc = scenarios.build("llama-t3k")
    events = [e for e in scenarios.reference_events(sc) if e.ts_ns < 3.5e9]
    live = new_state()
    live.inventory = Inventory.uniform(8)
    for i in range(0, len(events), 512):
        live.apply_events(events[i:i + 512])
    attached = new_state()
    attached.apply(Snapshot(live.registry.snapshot(), live.registry.seq, events[-1].ts_ns, Inventory.uniform(8)))
    for d in (0, 7):
        for pool in (DRAM, L1, TRACE):
            a, b = live.insight.pool_stats(d, pool), attached.insight.pool_stats(d, pool)
            assert (a.lo, a.hi, a.used_per_bank, a.largest_free, a.free_segments) == \
                (b.lo, b.hi, b.used_per_bank, b.largest_free, b.free_segments), (d, pool)
        live.insight.space(d, DRAM).check()
        attached.insight.space(d, DRAM).check()


def test_history_keeps_a_spike_inside_one_batch():
    from tt_memtop.core.events import Event as Ev

    ins = wh()
    first = [Ev(EventKind.ALLOC, ts_ns=1000, device=0, buffer_type=DRAM, buffer_id=MiB, size=50 * MiB, pid=1),
             Ev(EventKind.FREE, ts_ns=2000, device=0, buffer_type=DRAM, buffer_id=MiB, size=50 * MiB, pid=1)]
    ins.observe(first)  # the first peak: 50 MiB
    spike = [Ev(EventKind.ALLOC, ts_ns=10**9, device=0, buffer_type=DRAM, buffer_id=MiB, size=10 * MiB, pid=1),
             Ev(EventKind.ALLOC, ts_ns=10**9 + 1, device=0, buffer_type=DRAM, buffer_id=2 * MiB, size=20 * MiB, pid=1),
             Ev(EventKind.FREE, ts_ns=10**9 + 2, device=0, buffer_type=DRAM, buffer_id=2 * MiB, size=20 * MiB, pid=1)]
    ins.observe(spike)  # 30 MiB for a moment, below the peak, inside one batch
    series = ins.history.series((0, DRAM), 2 * 10**9)
    at_1s = [b for b in series if b[0] == 10**9]
    assert at_1s and at_1s[0][1] == 30 * MiB and at_1s[0][2] == 10 * MiB


def test_cb_realloc_of_a_live_id_does_not_inflate_the_current_bytes():
    state = new_state()
    state.inventory = Inventory.uniform(1)
    f = Feed(state=state)
    f.alloc(7, 65536, 5)
    f.alloc(7, 32768, 5)  # the registry replaces the live CB: 32 KiB held, not 96 KiB
    assert state.insight.peaks.current[0][5] == 32768 == state.registry.device_totals(0)[5]
    assert state.insight.peaks.device_peak(0, 5)[0] == 65536
