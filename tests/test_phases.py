"""Phase inference against labelled simulated workloads: accuracy, boundary lag, and the rules.

The figures (printed with ``-s``) are time-weighted accuracy against the scenario's ground truth
and, per boundary, how long after the true boundary the live view (``PhaseTracker.phase``, ticked
every 10 ms) first showed the new phase.
"""

from __future__ import annotations

import pytest

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.phases import Phase, PhaseTracker, Segment, analyze
from tt_memtop.core.protocol import BufferType, Layout
from tt_memtop.sim.scenarios import BASE_PID, SCENARIOS, Label, build, reference_events

NS = 1_000_000_000
TICK_NS = 10_000_000
#: A crashed process is only seen dead at the server's next cleanup: accuracy skips that much after it.
CLEANUP_DELAY_S = 0.1


def live_run(events: list[Event], end_ns: int) -> tuple[PhaseTracker, list[tuple[int, int, Phase]]]:
    """Feed events in order with a tick every 10 ms; return the tracker and every change of the live view."""
    tracker = PhaseTracker()
    shown: dict[int, Phase] = {}
    changes: list[tuple[int, int, Phase]] = []

    def look(now: int) -> None:
        for pid in {ev_pid for ev_pid in shown} | pids:
            phase = tracker.phase(pid)
            if shown.get(pid) is not phase:
                shown[pid] = phase
                changes.append((now, pid, phase))

    pids = {ev.pid for ev in events}
    next_tick = TICK_NS
    for ev in events:
        while next_tick <= ev.ts_ns:
            tracker.tick(next_tick)
            look(next_tick)
            next_tick += TICK_NS
        tracker.observe(ev)
        if ev.pid in shown or tracker.phase(ev.pid) is not Phase.IDLE:
            pids.add(ev.pid)
        look(ev.ts_ns)
    while next_tick <= end_ns:
        tracker.tick(next_tick)
        look(next_tick)
        next_tick += TICK_NS
    return tracker, changes


def accuracy(segments: list[Segment], labels: list[Label], end_s: float, leaking: frozenset[int] = frozenset()) -> float:
    """Time-weighted share of the labelled time where the segments agree with the labels."""
    total = agree = 0.0
    for lab in labels:
        lo = lab.start_s + (CLEANUP_DELAY_S if lab.phase is Phase.EXITED and lab.slot in leaking else 0.0)
        hi = min(lab.end_s, end_s)
        total += max(0.0, hi - lo)
        for seg in segments:
            if seg.pid == BASE_PID + lab.slot and seg.phase is lab.phase:
                overlap = min(hi, seg.end_ns / NS) - max(lo, seg.start_ns / NS)
                agree += max(0.0, overlap)
    return agree / total


def changes_as_segments(changes: list[tuple[int, int, Phase]], end_ns: int) -> list[Segment]:
    out = []
    by_pid: dict[int, list[tuple[int, Phase]]] = {}
    for t, pid, phase in changes:
        by_pid.setdefault(pid, []).append((t, phase))
    for pid, seq in by_pid.items():
        for (t, phase), nxt in zip(seq, seq[1:] + [(end_ns, None)], strict=True):
            out.append(Segment(pid, (), phase, t, nxt[0]))
    return out


def _ms(lags: list[float]) -> list[object]:
    return [round(lag * 1e3) if lag != float("inf") else "never shown" for lag in lags]


def boundary_lags(changes: list[tuple[int, int, Phase]], labels: list[Label]) -> list[tuple[Label, float]]:
    """For each labelled boundary, seconds until the live view first showed that phase (from 50 ms before)."""
    lags = []
    by_slot: dict[int, list[Label]] = {}
    for lab in labels:
        by_slot.setdefault(lab.slot, []).append(lab)
    for slot, labs in by_slot.items():
        for lab in labs[1:]:
            seen = [t for t, pid, phase in changes
                    if pid == BASE_PID + slot and phase is lab.phase and t >= (lab.start_s - 0.05) * NS]
            lags.append((lab, (min(seen) / NS - lab.start_s) if seen else float("inf")))
    return lags


@pytest.fixture(scope="module", params=list(SCENARIOS))
def run(request):
    scenario = build(request.param)
    events = reference_events(scenario, cleanup_delay_s=CLEANUP_DELAY_S)
    end_ns = int(scenario.duration_s * NS) + NS // 2
    tracker, changes = live_run(events, end_ns)
    return scenario, events, tracker, changes, end_ns


#: What each scenario reaches (seed 0, deterministic), minus a small margin: (offline, live segments,
#: live view, live view with the capture start excused). A drop below fails. Live view: what
#: ``PhaseTracker.phase`` showed at each moment; "capture excused" counts the part of a capture
#: before its first TRACE alloc as right when warm-up was shown (no live input can tell it apart).
FLOORS = {
    "llama-t3k": (0.9980, 0.9910, 0.9870, 0.9940),
    "cnn": (0.9970, 0.9930, 0.9880, 0.9920),
    "two-process": (0.9975, 0.9945, 0.9695, 0.9720),
    "leaky": (0.9970, 0.9915, 0.9865, 0.9905),
    "galaxy": (0.9975, 0.9930, 0.9870, 0.9915),
}
#: The issue's goal for the boundary lag of the live view (every boundary but a capture's start).
MAX_LAG_S = 0.25


def capture_excused(labels: list[Label], live_segments: list[Segment]) -> list[Label]:
    """``labels`` with each capture's part before the live capture segment began labelled warm-up."""
    starts = {(s.pid, s.start_ns) for s in live_segments if s.phase is Phase.CAPTURE}
    out = []
    for lab in labels:
        if lab.phase is Phase.CAPTURE:
            seen = [t / NS for pid, t in starts if pid == BASE_PID + lab.slot and lab.start_s - 0.05 <= t / NS < lab.end_s]
            cut = min(max(min(seen, default=lab.end_s), lab.start_s), lab.end_s)
            if cut > lab.start_s:
                out.append(Label(lab.slot, Phase.WARMUP, lab.start_s, cut))
            lab = Label(lab.slot, lab.phase, cut, lab.end_s)
        out.append(lab)
    return out


def test_accuracy_and_lag(run):
    scenario, events, tracker, changes, end_ns = run
    labels = scenario.labels()
    end_s = end_ns / NS
    leaking = frozenset(p.slot for p in scenario.processes if p.leaks)
    live_segs = tracker.segments()
    live_segments = accuracy(live_segs, labels, end_s, leaking)
    offline = accuracy(tracker.segments(relabel_capture=True), labels, end_s, leaking)
    view = changes_as_segments(changes, end_ns)
    instant = accuracy(view, labels, end_s, leaking)
    excused = accuracy(view, capture_excused(labels, live_segs), end_s, leaking)
    lags = boundary_lags(changes, labels)
    # Inherent to live inference: a capture shows from its TRACE allocation on (segments are
    # backdated, the live view cannot be). Idleness shows after PhaseConfig.idle_show_s of quiet.
    detect = [lag for lab, lag in lags if lab.phase is not Phase.CAPTURE]
    print(f"\n{scenario.name}: {len(events):,} events over {scenario.duration_s:.1f} s; accuracy: offline "
          f"{offline:.2%}, live segments {live_segments:.2%}, live view {instant:.2%} ({excused:.2%} with the "
          f"capture start excused); live view lag: max {max(detect) * 1e3:.0f} ms, mean "
          f"{sum(detect) / len(detect) * 1e3:.0f} ms over {len(detect)} boundaries "
          f"({', '.join(f'{lab.phase} {lag * 1e3:.0f}' for lab, lag in lags if lab.phase is not Phase.CAPTURE)}); "
          f"capture start {_ms([lag for lab, lag in lags if lab.phase is Phase.CAPTURE])} ms")
    floors = FLOORS[scenario.name]
    got = (offline, live_segments, instant, excused)
    assert all(g >= f for g, f in zip(got, floors, strict=True)), f"{scenario.name}: {got} below {floors}"
    assert offline >= 0.99
    assert max(detect) <= MAX_LAG_S


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
            assert (a.phase, b.phase) in ((Phase.CAPTURE, Phase.CAPTURE), (Phase.WARMUP, Phase.WARMUP))
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


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_log_order_with_a_nominal_clock_keeps_the_sequence(name):
    """What ``memtop analyze LOG`` does: no timestamps, events in order at 250 per second per device."""
    scenario = build(name)
    events = reference_events(scenario)
    devices = len({ev.device for ev in events})
    for i, ev in enumerate(events):
        ev.ts_ns = int(i * NS / (250 * devices))
    segments = analyze(events)
    for proc in scenario.processes:
        assert [s.phase for s in segments if s.pid == proc.pid] == [lab.phase for lab in proc.labels]


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
    assert state.evidence == "TRACE 11.9 MiB on 8 devices, 0 allocs in last 2.0 s"
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
    """Per-layer pauses while loading (~80 ms) and host work between warm-up runs (300 ms) are no idleness."""
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
        t += 0.3
    tr = PhaseTracker()
    shown = _watch(tr, evs, t - 0.3)
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
