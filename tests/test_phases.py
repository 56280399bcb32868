"""Phase inference against labelled simulated workloads: accuracy offline and live, and the rules.

The figures (printed with ``-s``) are time-weighted accuracy against the scenario's ground truth,
offline (``analyze``) and live (what a monitor shows, spans no live method can know excluded),
and the worst boundary error; see :mod:`tt_memtop.sim.score`.
"""

from __future__ import annotations

import pytest

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.phases import Phase, PhaseTracker, analyze
from tt_memtop.core.protocol import BufferType, Layout
from tt_memtop.sim.scenarios import REALISTIC, SCENARIOS, build, reference_events
from tt_memtop.sim.score import score

NS = 1_000_000_000
TICK_NS = 10_000_000
#: A crashed process is only seen dead at the server's next cleanup: accuracy skips that much after it.
CLEANUP_DELAY_S = 0.1


#: Live floors at seed 0 (what it reaches minus a margin; the issue's target is 0.95 on what is
#: knowable live). Offline must reach 0.97 everywhere; every boundary within 250 ms offline.
LIVE_FLOORS = {
    "llama-t3k": 0.975, "cnn": 0.96, "two-process": 0.96, "leaky": 0.98, "galaxy": 0.965,
    "tt-transformers": 0.975, "two-traces": 0.97, "cnn-pipeline": 0.97, "dynamic-region": 0.98,
    "eager-server": 0.94, "diffusion": 0.96, "disjoint-meshes": 0.97, "galaxy-32": 0.97, "killed": 0.98,
    "attach-mid-replay": 0.975,
}
MAX_LAG_S = 0.25


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_accuracy_offline_and_live(name):
    """Scored as benchmarks/bench_phases.py does (tt_memtop.sim.score), seed 0; the benchmark runs more seeds."""
    sc = score(build(name, 0))
    print(f"\n{name}: offline {sc.offline:.4f}, live {sc.live:.4f}, worst boundary offline "
          f"{sc.worst_offline_ms:.0f} ms, live {sc.worst_live_ms:.0f} ms; {sc.misses}")
    assert sc.offline >= 0.97
    assert sc.live >= LIVE_FLOORS[name]
    assert sc.worst_offline_ms <= MAX_LAG_S * 1e3
    assert sc.worst_live_ms <= MAX_LAG_S * 1e3


@pytest.fixture(scope="module", params=[n for n in SCENARIOS if n not in REALISTIC])
def run(request):
    scenario = build(request.param)
    events = reference_events(scenario, cleanup_delay_s=CLEANUP_DELAY_S)
    end_ns = int(scenario.duration_s * NS) + NS // 2
    tracker = PhaseTracker()
    for ev in events:
        tracker.observe(ev)
    tracker.tick(end_ns)
    return scenario, events, tracker, None, end_ns


def test_phase_sequences_match_truth(run):
    scenario, events, _tracker, _changes, _end = run
    segments = analyze(events)
    for proc in scenario.processes:
        truth = [lab.phase for lab in proc.labels]
        got = [s.phase for s in segments if s.pid == proc.pid]
        assert got == truth


def test_live_equals_offline_except_capture_start(run):
    _scenario, events, tracker, _changes, _end = run
    offline = analyze(events)

    def starts(segments):  # the live run was ticked past the last event: open segments end later
        return [(s.pid, s.phase, s.start_ns, s.devices) for s in segments]

    assert starts(tracker.segments(relabel_capture=True)) == starts(offline)
    live = tracker.segments()
    assert [(s.pid, s.phase) for s in live] == [(s.pid, s.phase) for s in offline]
    for a, b in zip(live, offline, strict=True):
        if a.start_ns != b.start_ns:  # only a capture's start and the end of the warm-up before it may move
            assert (a.phase, b.phase) in ((Phase.CAPTURE, Phase.CAPTURE), (Phase.WARMUP, Phase.WARMUP),
                                          (Phase.EXITED, Phase.EXITED))  # a death dated by hindsight
            assert b.start_ns <= a.start_ns


def test_deterministic():
    a = analyze(reference_events(build("two-process", seed=3)))
    b = analyze(reference_events(build("two-process", seed=3)))
    assert a == b


def test_same_phases_whatever_the_client_layout():
    scenario = build("cnn")
    with_programs = analyze(reference_events(scenario, Layout.V144))
    without = analyze(reference_events(scenario, Layout.V72))
    assert [(s.pid, s.phase) for s in with_programs] == [(s.pid, s.phase) for s in without]
    for a, b in zip(with_programs, without, strict=True):
        assert abs(a.start_ns - b.start_ns) < 0.05 * NS


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in REALISTIC])
def test_log_order_with_a_nominal_clock_keeps_the_sequence(name):
    """What ``memtop analyze LOG`` does: no timestamps, events in order at 250 per second per device."""
    scenario = build(name)
    events = reference_events(scenario)
    devices = len({ev.device for ev in events})
    for i, ev in enumerate(events):
        ev.ts_ns = int(i * NS / (250 * devices))
    segments = analyze(events)
    for proc in scenario.processes:  # a log has no pauses: a release right before teardown is teardown
        got = [s.phase for s in segments if s.pid == proc.pid and s.phase is not Phase.RELEASED]
        assert got == [lab.phase for lab in proc.labels if lab.phase is not Phase.RELEASED]


# ---------------------------------------------------------------------------------------------- rules

def _ev(kind, t, pid=7, device=0, btype=BufferType.DRAM, bid=0x1000, size=4 << 20, **kw) -> Event:
    return Event(kind, ts_ns=int(t * NS), pid=pid, device=device, buffer_type=int(btype), buffer_id=bid, size=size,
                 **kw)


def test_replay_evidence_and_device_phase():
    tr = PhaseTracker()
    for d in range(8):
        tr.observe(_ev(EventKind.ALLOC, 0.0, device=d, bid=0x100000))
    for d in range(8):
        tr.observe(_ev(EventKind.ALLOC, 1.0, device=d, btype=BufferType.TRACE, bid=0x3E363C80, size=12_503_040))
    tr.tick(4 * NS)
    state = tr.current(7)
    assert state.phase is Phase.REPLAY and state.devices == tuple(range(8))
    assert state.evidence == "trace 11.9 MiB TRACE on 8 devices held, 0 allocs in last 2.0 s"
    assert tr.device_phase(3) == state
    assert tr.device_phase(9) is None


def test_partial_mesh_capture_settles_into_replay():
    tr = PhaseTracker()
    for d in range(2):
        tr.observe(_ev(EventKind.ALLOC, 0.0, device=d))
    tr.observe(_ev(EventKind.ALLOC, 1.0, device=0, btype=BufferType.TRACE, bid=0x3E363C80))
    assert tr.phase(7) is Phase.CAPTURE
    tr.tick(int(2.0 * NS))
    assert tr.phase(7) is Phase.REPLAY
    assert tr.current(7).since_ns == NS


def test_idle_then_exit_by_cleanup():
    tr = PhaseTracker()
    tr.observe(_ev(EventKind.ALLOC, 0.0))
    tr.observe(_ev(EventKind.ALLOC, 0.5, bid=0x2000))
    tr.tick(3 * NS)
    assert tr.phase(7) is Phase.IDLE and tr.current(7).since_ns == NS // 2
    tr.observe(_ev(EventKind.CLEANUP, 4.0))
    tr.observe(_ev(EventKind.PROCESS_EXIT, 4.0, size=4 << 20, ref_count=1))
    assert tr.phase(7) is Phase.EXITED
    assert "removed 1 buffers" in tr.current(7).evidence
    assert [s.phase for s in tr.segments()] == [Phase.LOADING, Phase.IDLE, Phase.EXITED]


def test_polled_totals_give_a_coarse_device_phase():
    tr = PhaseTracker()
    tr.observe_totals(0, 0, (0, 0, 0, 0, 0, 0))
    tr.observe_totals(NS, 0, (1 << 30, 0, 0, 0, 0, 0))
    assert tr.device_phase(0).phase is Phase.LOADING
    tr.observe_totals(2 * NS, 0, (1 << 30, 0, 0, 12_503_040, 0, 0))
    assert tr.device_phase(0).phase is Phase.REPLAY
    tr.observe_totals(3 * NS, 0, (1 << 30, 0, 0, 0, 0, 0))
    assert tr.device_phase(0).phase is Phase.RELEASED
    assert [s.phase for s in tr.segments()] == [Phase.IDLE, Phase.LOADING, Phase.REPLAY, Phase.RELEASED]


def _watch(tr: PhaseTracker, events: list[Event], until_s: float, pid: int = 7) -> list[tuple[float, Phase]]:
    """Feed ``events`` with a tick every 10 ms until ``until_s``; every change of ``tr.phase(pid)``."""
    shown: list[tuple[float, Phase]] = []
    t = events[0].ts_ns + TICK_NS

    def look(now: int) -> None:
        ph = tr.phase(pid)
        if not shown or shown[-1][1] is not ph:
            shown.append((now / NS, ph))

    for ev in events:
        while t <= ev.ts_ns:
            tr.tick(t)
            look(t)
            t += TICK_NS
        tr.observe(ev)
        look(ev.ts_ns)
    while t <= until_s * NS:
        tr.tick(t)
        look(t)
        t += TICK_NS
    return shown


def _load(t: float, layers: int, pause_s: float, bid: int = 0x10000) -> tuple[list[Event], float]:
    """Five 4 MiB weights per layer, 2 ms apart, then ``pause_s`` of host work."""
    evs = []
    for _ in range(layers):
        for _ in range(5):
            evs.append(_ev(EventKind.ALLOC, t, bid=bid))
            bid += 0x100
            t += 0.002
        t += pause_s
    return evs, t


def test_host_pauses_do_not_show_idle():
    """Per-layer pauses while loading (~80 ms) and host work between eager runs (sampling, 60 ms) are no idleness."""
    evs, t = _load(0.0, 12, 0.08)
    bid = 0x900000
    for _run in range(4):  # eager runs: each op allocates its output and frees the previous one
        prev = None
        for _op in range(20):
            evs.append(_ev(EventKind.ALLOC, t, btype=BufferType.L1, bid=bid, size=256 << 10))
            if prev is not None:
                evs.append(_ev(EventKind.FREE, t + 1e-4, btype=BufferType.L1, bid=prev, size=256 << 10))
            prev, bid, t = bid, bid + 0x100, t + 0.001
        evs.append(_ev(EventKind.FREE, t, btype=BufferType.L1, bid=prev, size=256 << 10))
        t += 0.06
    tr = PhaseTracker()
    shown = _watch(tr, evs, t - 0.06)
    assert [ph for _, ph in shown] == [Phase.LOADING, Phase.WARMUP]
    assert [s.phase for s in tr.segments()] == [Phase.LOADING, Phase.WARMUP]


def test_a_load_that_stops_shows_idle_at_once_and_only_then_in_segments():
    evs, t = _load(0.0, 6, 0.03)
    last = evs[-1].ts_ns / NS
    tr = PhaseTracker()
    shown = _watch(tr, evs, last + 0.6)
    assert [ph for _, ph in shown] == [Phase.LOADING, Phase.IDLE]
    assert shown[-1][0] - last <= 0.25
    assert tr.current(7).phase is Phase.IDLE and tr.current(7).since_ns == evs[-1].ts_ns
    assert [s.phase for s in tr.segments()] == [Phase.LOADING]  # not idle_s yet: no idle segment
    tr.tick(int((last + 1.5) * NS))
    assert [(s.phase, s.start_ns) for s in tr.segments()] == [(Phase.LOADING, 0), (Phase.IDLE, evs[-1].ts_ns)]


def test_a_pause_that_did_not_end_the_load_raises_the_bar():
    """Hysteresis: a slow load shows idle at its first long pause, not at the next ones as long."""
    evs, t = _load(0.0, 4, 0.3)
    shown = _watch(PhaseTracker(), evs, evs[-1].ts_ns / NS)
    assert [ph for _, ph in shown] == [Phase.LOADING, Phase.IDLE, Phase.LOADING]
    assert shown[1][0] < 0.3
    tr = PhaseTracker()
    _watch(tr, evs, t + 2.0)
    assert [s.phase for s in tr.segments()] == [Phase.LOADING, Phase.IDLE]


# ---------------------------------------------------------------------------------------------- issue 11 edges

class _Prog:
    """Hand-made mesh events: weights, eager runs (each op allocates its output, frees the previous one)."""

    def __init__(self, devices: int = 2) -> None:
        self.devs = range(devices)
        self.evs: list[Event] = []
        self.t = 0.0
        self.bid = 0x100000

    def _all(self, kind, btype, bid, size, name="") -> None:
        for d in self.devs:
            self.evs.append(_ev(kind, self.t, device=d, btype=btype, bid=bid, size=size, name=name))
        self.t += 1e-4

    def alloc(self, btype, size, bid=None, name="") -> int:
        if bid is None:
            bid, self.bid = self.bid, self.bid + 0x10000
        self._all(EventKind.ALLOC, btype, bid, size, name)
        return bid

    def free(self, bid, btype, size) -> None:
        self._all(EventKind.FREE, btype, bid, size)

    def weights(self, n: int = 30) -> list[int]:
        out = [self.alloc(BufferType.DRAM, 8 << 20) for _ in range(n)]
        self.t += 0.05
        return out

    def run(self, ops: int = 24, jit: bool = False, op_s: float = 3e-4) -> float:
        """One run; returns its start. ``jit``: a compile run (program-cache misses in the first 6 ops)."""
        start, prev = self.t, None
        for i in range(ops):
            size = (64 << 10) * (1 + i % 6)
            out = self.alloc(BufferType.L1, size, bid=0x10000 + 0x1000 * (i % 6) + (0x100 if i % 2 else 0))
            if jit and i < 6:
                self.t += 0.1
                self.alloc(BufferType.CB, 65536, bid=1000 + i)
                self.alloc(BufferType.DRAM, 128 << 10, name="const")  # first run only, kept
            if prev is not None:
                self.free(prev[0], BufferType.L1, prev[1])
            prev = (out, size)
            self.t += op_s
        self.free(prev[0], BufferType.L1, prev[1])
        return start


def test_capture_start_by_sequence_not_by_pauses():
    """No pause between the compile run and the capture run, 40 ms in end_trace_capture: the capture
    still starts with its run (the last repetition of the compile run's allocation sequence)."""
    p = _Prog()
    p.weights()
    p.run(jit=True)
    p.t += 0.004  # trace inputs copied, no sync
    capture = p.run()
    p.t += 0.04
    p.alloc(BufferType.TRACE, 12_503_040, bid=0x3E363C80)
    p.t += 1.0
    segs = [s for s in analyze(p.evs) if s.phase is Phase.CAPTURE]
    assert len(segs) == 1 and abs(segs[0].start_ns / NS - capture) < 0.002


def test_a_dram_trace_buffer_allocated_top_down_is_a_trace():
    """trace_region_size = 0: the trace is a DRAM buffer at the top of the banks, held while quiet."""
    p = _Prog(devices=4)
    p.weights()
    p.run(jit=True)
    p.run()
    p.t += 0.03
    p.alloc(BufferType.DRAM, 4 * 12 * 2048 * 50, bid=(1 << 30) - 4 * 2048 * 50)
    tr = PhaseTracker()
    for e in p.evs:
        tr.observe(e)
    tr.tick(int((p.t + 0.5) * NS))
    state = tr.current(7)
    assert state.phase is Phase.REPLAY and "DRAM (dynamic trace region)" in state.evidence
    assert [s.phase for s in tr.segments()] == [Phase.LOADING, Phase.WARMUP, Phase.CAPTURE, Phase.REPLAY]


def test_a_dram_trace_buffer_is_also_recognised_by_its_behaviour_alone():
    """Just above the other DRAM buffers (not far above): a trace because it ends a repeated run on
    every device and is held while the stream goes quiet; the same buffer in a stream that goes on is not."""
    def program(goes_on: bool) -> tuple[_Prog, PhaseTracker]:
        p = _Prog(devices=4)
        p.weights()
        p.run(jit=True)
        p.run()
        p.t += 0.03
        p.alloc(BufferType.DRAM, 12 * 2048 * 50, bid=0x1000000)  # 16 MiB: above the weights, not far
        if goes_on:
            p.t += 0.01
            p.run()
        tr = PhaseTracker()
        for e in p.evs:
            tr.observe(e)
        tr.tick(int((p.t + 0.5) * NS))
        return p, tr

    p, tr = program(goes_on=False)
    assert tr.phase(7) is Phase.REPLAY
    assert [s.phase for s in tr.segments()] == [Phase.LOADING, Phase.WARMUP, Phase.CAPTURE, Phase.REPLAY]
    _p, tr = program(goes_on=True)
    assert Phase.REPLAY not in [s.phase for s in tr.segments()]


def test_a_trace_freed_inside_teardown_is_no_release_and_shows_no_blip():
    p = _Prog()
    weights = p.weights()
    p.run(jit=True)
    p.run()
    p.t += 0.03
    p.alloc(BufferType.TRACE, 12_503_040, bid=0x3E363C80)
    p.t += 3.0
    for i, w in enumerate(reversed(weights)):
        if i == 5:
            p.free(0x3E363C80, BufferType.TRACE, 12_503_040)
        p.free(w, BufferType.DRAM, 8 << 20)
        p.t += 5e-4
    shown = _watch(PhaseTracker(), p.evs, p.t + 0.5)
    assert Phase.RELEASED not in [ph for _, ph in shown]
    assert [s.phase for s in analyze(p.evs)] == [Phase.LOADING, Phase.WARMUP, Phase.CAPTURE, Phase.REPLAY,
                                               Phase.TEARDOWN]  # the compile run's constants are left


def test_untraced_work_with_a_trace_resident_and_back_to_replay_quickly():
    p = _Prog()
    p.weights()
    p.run(jit=True)
    p.run()
    p.t += 0.03
    p.alloc(BufferType.TRACE, 12_503_040, bid=0x3E363C80)
    p.t += 1.0
    eager = p.run(ops=60)  # an untraced prefill
    end = p.t
    p.t += 1.0
    p.alloc(BufferType.DRAM, 2048, bid=0x999)  # a read-back: keeps the stream going
    shown = _watch(PhaseTracker(), p.evs, p.t)
    warm = [t for t, ph in shown if ph is Phase.WARMUP and t > eager - 0.01]
    back = [t for t, ph in shown if ph is Phase.REPLAY and t > end]
    assert warm and warm[0] - eager < 0.05
    assert back and 0.1 <= back[0] - end <= 0.25  # hysteresis, not idle_s
    assert [s.phase for s in analyze(p.evs)][-3:] == [Phase.REPLAY, Phase.WARMUP, Phase.REPLAY]


def test_a_host_stall_inside_a_load_is_no_warm_up():
    """A 40 ms stall between a load's on-device tilize temporary and its free (the first tilize
    compiles, or the host is busy) shows as warm-up for a moment at most: the load goes on, and
    the segments say loading."""
    p = _Prog(devices=8)
    for layer in range(12):
        for _ in range(5):
            p.alloc(BufferType.DRAM, 8 << 20)
        tmp = p.alloc(BufferType.L1, 64 << 10)
        if layer == 3:
            p.t += 0.04
        p.free(tmp, BufferType.L1, 64 << 10)
        p.t += 0.02
    tr = PhaseTracker()
    _watch(tr, p.evs, p.t)
    assert [s.phase for s in tr.segments()] == [Phase.LOADING]


def test_repeated_suffix_finds_the_whole_last_run():
    """Identical layers do not fool it (a layer repeats too), nor first-run-only insertions."""
    from tt_memtop.core.phases.relabel import repeated_suffix

    layer = [1, 2, 3, 4, 5, 0]
    run = [0] + layer * 8 + [7, 8]  # residual, 8 identical layers, a head
    compile_run = [0] + [1, 9, 2, 3, 10, 4, 5, 0] + layer * 7 + [7, 8]  # two constants created on first use
    assert repeated_suffix([6, 6] + compile_run + run) == len(run)
    assert repeated_suffix([6, 6] + run + [11] + run) == len(run)  # a trace input between: skipped
    assert repeated_suffix([6, 6] + run + run + run) == len(run)  # the last repetition, not two runs
    assert repeated_suffix([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 0  # nothing repeats


def test_a_load_with_a_tilize_temporary_per_weight_stays_loading():
    """Each weight tilized on device through a temporary of its own shape: churn of several shapes,
    but one temporary per weight, not one per op of a run."""
    p = _Prog(devices=2)
    for _layer in range(10):
        for shape in range(5):
            tmp = p.alloc(BufferType.L1, (64 << 10) * (shape + 1))
            p.alloc(BufferType.DRAM, 8 << 20)
            p.free(tmp, BufferType.L1, (64 << 10) * (shape + 1))
            p.t += 0.003
        p.t += 0.03
    tr = PhaseTracker()
    shown = _watch(tr, p.evs, p.t)
    assert [s.phase for s in tr.segments()] == [Phase.LOADING]
    assert Phase.WARMUP not in [ph for _, ph in shown]


def test_freeing_the_load_is_teardown_however_young_the_weights():
    """A short-lived program (or a recording whose timeline got compressed): weights freed 0.3 s after
    they were loaded are still the load being torn down, not churn."""
    p = _Prog()
    weights = p.weights()
    p.run(jit=True)
    p.run()
    p.t += 0.03
    p.alloc(BufferType.TRACE, 12_503_040, bid=0x3E363C80)
    p.t += 0.1
    p.free(0x3E363C80, BufferType.TRACE, 12_503_040)
    p.t += 0.1
    for w in reversed(weights):
        p.free(w, BufferType.DRAM, 8 << 20)
        p.t += 2e-4
    assert [s.phase for s in analyze(p.evs)][-3:] == [Phase.REPLAY, Phase.RELEASED, Phase.TEARDOWN]
