"""Scoring phase inference against a scenario's ground truth, offline and live.

* **offline**: :func:`~tt_memtop.core.phases.analyze` over every event the server emitted.
* **live**: what a monitor shows (``MonitorState`` + ``PhaseTracker``, as the TUI and
  ``--ndjson`` run it): events in arrival order, batched as the server's socket reads deliver
  them, the tracker ticked every frame with the monitor's clock mapped to the server's timeline,
  a ``/proc`` liveness check every ``liveness_s``; a monitor of a scenario with ``attach_s``
  attaches then (snapshot, then events).

Live, some spans cannot be known by any method; they are excluded from the live score and
reported apart: a capture before its trace buffer exists (until then the capture run is one more
run), a death before the first liveness check after it, and everything before the monitor attached.
Accuracy is time-weighted over the labelled time; a boundary error is how far the inferred
boundary is from the true one (offline: nearest segment start of that phase; live: when the view
first showed it, measured from where the boundary became knowable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.events import Event
from ..core.model import MonitorState
from ..core.phases import Phase, PhaseTracker, Segment, analyze
from ..core.registry import Registry
from ..sources.base import EventBatch, Snapshot
from .scenarios import Label, Scenario, reference_events

__all__ = ["Score", "live_view", "score"]

NS = 1_000_000_000


@dataclass
class Score:
    name: str
    seed: int
    offline: float
    live: float
    offline_errors_ms: list[float] = field(default_factory=list)
    live_errors_ms: list[float] = field(default_factory=list)
    unknowable_s: float = 0.0
    labelled_s: float = 0.0
    misses: list[str] = field(default_factory=list)  # boundaries never shown / worst spans

    @property
    def worst_offline_ms(self) -> float:
        return max(self.offline_errors_ms, default=0.0)

    @property
    def worst_live_ms(self) -> float:
        return max(self.live_errors_ms, default=0.0)


def _intervals_by_slot(segs: list[Segment], pid_of: dict[int, int]) -> dict[int, list[tuple[float, float, Phase]]]:
    out: dict[int, list[tuple[float, float, Phase]]] = {}
    slot_of = {pid: slot for slot, pid in pid_of.items()}
    for s in segs:
        if s.pid in slot_of:
            out.setdefault(slot_of[s.pid], []).append((s.start_ns / NS, s.end_ns / NS, s.phase))
    return out


def _agreement(labels: list[Label], spans: dict[int, list[tuple[float, float, Phase]]],
               excluded: dict[int, list[tuple[float, float]]], end_s: float) -> tuple[float, float]:
    total = agree = 0.0
    for lab in labels:
        pieces = [(lab.start_s, min(lab.end_s, end_s))]
        for lo, hi in excluded.get(lab.slot, ()):
            nxt = []
            for a, b in pieces:
                if hi <= a or lo >= b:
                    nxt.append((a, b))
                    continue
                if lo > a:
                    nxt.append((a, lo))
                if hi < b:
                    nxt.append((hi, b))
            pieces = nxt
        for a, b in pieces:
            if b <= a:
                continue
            total += b - a
            for s0, s1, ph in spans.get(lab.slot, ()):
                if ph is lab.phase:
                    agree += max(0.0, min(b, s1) - max(a, s0))
    return agree, total


def _extend(segs: list[Segment], end_ns: int) -> list[Segment]:
    """Each process's last segment goes on to the end (a recording ends; its last phase does not)."""
    last: dict[int, int] = {}
    for i, s in enumerate(segs):
        if s.pid not in last or s.start_ns >= segs[last[s.pid]].start_ns:
            last[s.pid] = i
    out = list(segs)
    for i in last.values():
        s = out[i]
        out[i] = Segment(s.pid, s.devices, s.phase, s.start_ns, max(s.end_ns, end_ns))
    return out


def live_view(scenario: Scenario, events: list[Event], frame_s: float = 0.02, liveness_s: float = 0.25,
              batch_s: float = 0.001) -> tuple[list[Segment], PhaseTracker]:
    """What a monitor showed over time, as segments of the shown phase (see the module docstring)."""
    tracker = PhaseTracker()
    state = MonitorState(phases=tracker)
    end_ns = int((scenario.duration_s + 0.5) * NS)
    attach_ns = int(scenario.attach_s * NS) if scenario.attach_s is not None else 0
    exits = {p.pid: int(p.exit_s * NS) for p in scenario.processes}
    i = 0
    if attach_ns:
        reg = Registry()
        while i < len(events) and events[i].ts_ns < attach_ns:
            reg.apply_event(events[i])
            i += 1
        state.apply(Snapshot(reg.snapshot(), reg.seq, attach_ns))
    shown: dict[int, list[tuple[int, Phase]]] = {}
    frame_ns, batch_ns, live_ns = int(frame_s * NS), int(batch_s * NS), int(liveness_s * NS)
    t = attach_ns + frame_ns
    next_check = (attach_ns // live_ns + 1) * live_ns
    while t <= end_ns:
        batch = []
        while i < len(events) and events[i].ts_ns <= t:  # delivered in socket-read batches
            j = i
            limit = events[i].ts_ns + batch_ns
            while j < len(events) and events[j].ts_ns <= min(limit, t):
                j += 1
            batch = events[i:j]
            state.apply(EventBatch(batch))
            i = j
        if t >= next_check:
            for pid, ex in exits.items():
                if ex <= t:
                    tracker.process_gone(pid, t)
            next_check += live_ns
        state.tick(t)
        for pid in set(tracker._procs):  # noqa: SLF001 (the scorer reads every tracked PID)
            ph = tracker.phase(pid)
            seq = shown.setdefault(pid, [])
            if not seq or seq[-1][1] is not ph:
                seq.append((t, ph))
        t += frame_ns
    segs = []
    for pid, seq in shown.items():
        for (t0, ph), nxt in zip(seq, seq[1:] + [(end_ns, None)], strict=True):
            segs.append(Segment(pid, (), ph, t0, nxt[0]))
    return segs, tracker


def _unknowable(scenario: Scenario, liveness_s: float) -> dict[int, list[tuple[float, float]]]:
    out: dict[int, list[tuple[float, float]]] = {}
    for p in scenario.processes:
        spans = out.setdefault(p.slot, [])
        if scenario.attach_s is not None:
            spans.append((0.0, scenario.attach_s))
        for lab in p.labels:
            if lab.phase is Phase.CAPTURE:
                spans.append((lab.start_s, lab.end_s))
        if p.leaks:
            check = (int(p.exit_s / liveness_s) + 1) * liveness_s
            spans.append((p.exit_s, check))
    return out


def _boundaries(labels: list[Label]) -> list[Label]:
    out = []
    by_slot: dict[int, list[Label]] = {}
    for lab in labels:
        by_slot.setdefault(lab.slot, []).append(lab)
    for labs in by_slot.values():
        out += [b for a, b in zip(labs, labs[1:], strict=False) if a.phase is not b.phase]
    return out


def score(scenario: Scenario, frame_s: float = 0.02, liveness_s: float = 0.25, layout: int = 144) -> Score:
    """Offline and live accuracy and boundary errors of ``scenario`` (see the module docstring).

    ``layout``: the clients' message layout (72 and 112: no CB / KERNEL messages, so no compile signatures)."""
    events = reference_events(scenario, layout)
    labels = scenario.labels()
    pid_of = {p.slot: p.pid for p in scenario.processes}
    end_s = scenario.duration_s + 0.5
    offline_segs = _extend(analyze(events), int(end_s * NS))
    off = _intervals_by_slot(offline_segs, pid_of)
    agree, total = _agreement(labels, off, {}, end_s)
    live_segs, _tracker = live_view(scenario, events, frame_s, liveness_s)
    live = _intervals_by_slot(live_segs, pid_of)
    excluded = _unknowable(scenario, liveness_s)
    lagree, ltotal = _agreement(labels, live, excluded, end_s)
    unknowable = sum(min(hi, end_s) - lo for spans in excluded.values() for lo, hi in spans
                     if not (scenario.attach_s is not None and lo == 0.0))
    sc = Score(scenario.name, scenario.seed, agree / total, lagree / ltotal if ltotal else 1.0,
               unknowable_s=unknowable, labelled_s=total)
    for lab in _boundaries(labels):
        starts = [s0 for s0, _s1, ph in off.get(lab.slot, ()) if ph is lab.phase]
        err = min((abs(s - lab.start_s) for s in starts), default=float("inf"))
        sc.offline_errors_ms.append(err * 1e3)
        if err > 0.25:
            sc.misses.append(f"offline {lab.phase} @{lab.start_s:.2f}s off by {err * 1e3:.0f} ms")
        if scenario.attach_s is not None and lab.start_s < scenario.attach_s:
            continue
        known = lab.start_s
        for lo, hi in excluded.get(lab.slot, ()):
            if lo <= known < hi:
                known = hi
        if lab.phase is Phase.CAPTURE:
            continue  # its start is unknowable live; its end is the replay boundary
        seen = [s0 for s0, _s1, ph in live.get(lab.slot, ()) if ph is lab.phase and lab.start_s - 0.05 <= s0 < lab.end_s]
        lag = (min(seen) - known) if seen else float("inf")
        sc.live_errors_ms.append(max(0.0, lag) * 1e3)
        if lag > 0.25:
            sc.misses.append(f"live {lab.phase} @{lab.start_s:.2f}s shown {lag * 1e3:.0f} ms late")
    return sc
