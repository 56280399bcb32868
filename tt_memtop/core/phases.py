"""Trace-phase inference: what each TT-Metal process is doing, guessed from its allocations.

Pure and deterministic: time comes only from event timestamps (``Event.ts_ns``) and from explicit
:meth:`PhaseTracker.tick` calls, never from a clock. The same events give the same segments.

A TT-Metal program that uses tracing goes through a recognisable life, one process at a time:

========= ==================================================================================
phase     evidence
========= ==================================================================================
loading   a new process allocating: device init, then weights / KV cache — large DRAM
          allocations that stay alive (few frees)
warm-up   churn: many short-lived buffers allocated and freed (compile runs, or eager,
          untraced execution — a process that never traces stays here)
capture   the model runs once more while being recorded; it ends with a TRACE buffer ALLOC on
          every device of the process's mesh. Live, it can only be seen from the first TRACE
          alloc on; :func:`analyze` moves its start back to where the capture run began
replay    TRACE resident and near silence: at most a trickle of tiny I/O buffers
released  every TRACE buffer of the process freed
teardown  frees of long-lived buffers (weights, caches) with hardly any allocations
exited    the process freed everything after teardown, or the server cleaned up after it died
idle      nothing notable for a while, no trace resident
========= ==================================================================================

Transitions are backdated to where their evidence began (e.g. warm-up starts at the allocation of
the first temporary that was then freed), so segments are exact even though detection needs a few
events. A brief misdetection that is overtaken this way disappears. Several processes, several
traces per process and processes that never trace are all handled; every threshold is in
:class:`PhaseConfig`.

Totals polled from the original server carry no PIDs: :meth:`PhaseTracker.observe_totals` keeps a
coarse per-device phase from the TRACE and DRAM totals (pid 0 in :meth:`PhaseTracker.segments`).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .events import Event, EventKind
from .protocol import BufferType

__all__ = ["Phase", "PhaseConfig", "PhaseState", "PhaseTracker", "Segment", "analyze"]

_NS = 1_000_000_000
_MiB = 1024 * 1024
_TRACE = int(BufferType.TRACE)
_DRAM = int(BufferType.DRAM)
#: CBs and kernels (144-byte clients only) live as long as the program cache: they are no evidence
#: of a phase, so the inference is the same whatever the clients' message layout.
_PROGRAM_TYPES = frozenset({int(BufferType.CB), int(BufferType.KERNEL)})
_CB = int(BufferType.CB)
_KERNEL = int(BufferType.KERNEL)
_EV_ALLOC, _EV_FREE, _EV_CLEANUP = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP
_EV_EXIT = EventKind.PROCESS_EXIT
_IGNORED = frozenset({EventKind.BAD_FRAME, EventKind.DUMP, EventKind.TOTALS})


class Phase(StrEnum):
    """The trace life-cycle phase of a process (see the module docstring for the evidence)."""

    IDLE = "idle"
    LOADING = "loading"
    WARMUP = "warm-up"
    CAPTURE = "capture"
    REPLAY = "replay"
    RELEASED = "released"
    TEARDOWN = "teardown"
    EXITED = "exited"


@dataclass(frozen=True, slots=True)
class PhaseConfig:
    """Every threshold of the inference, in one place. Rates are per device of the process's mesh.

    The defaults suit real TT-Metal workloads: compile / warm-up churns through hundreds of buffers
    per second per device, replay allocates almost nothing, teardown frees buffers that lived for
    seconds.
    """

    window_s: float = 0.25  # evidence window for churn / load / teardown
    io_max_bytes: int = 16 * 1024  # buffers up to this size are I/O trickle: never churn, never "busy"
    young_s: float = 1.0  # a buffer freed younger than this was a temporary (churn evidence)
    churn_frees: float = 6.0  # temporaries freed per device within window_s that mean warm-up, ...
    churn_share: float = 0.25  # ... if they are at least this share of the (non-I/O) allocs and frees there
    long_lived_s: float = 2.0  # a buffer freed older than this was long-lived (teardown evidence)
    teardown_frees: float = 4.0  # long-lived frees per device within window_s that mean teardown ...
    teardown_alloc_ratio: float = 0.25  # ... while allocations stay below this fraction of them
    load_min_bytes: int = 1 * _MiB  # a DRAM allocation this large is model-load evidence ...
    load_allocs: float = 2.0  # ... when this many per device arrive within window_s (from idle/released)
    idle_s: float = 1.0  # no busy event for this long: idle (or replay when a trace is resident)
    capture_settle_s: float = 0.5  # TRACE on part of the mesh only: capture is over after this quiet
    capture_gap_s: float = 0.02  # analyze(): a pause this long before the TRACE burst starts the capture run
    capture_max_s: float = 10.0  # analyze(): ... if it is at most this long before the first TRACE alloc
    burst_gap_s: float = 0.05  # a pause this long between pieces of evidence separates bursts (backdating) ...
    burst_break: float = 4.0  # ... as do this many other entries in a row, per device (clock-free, for logs)
    evidence_window_s: float = 2.0  # "N allocs in last X s" in the evidence text


@dataclass(frozen=True, slots=True)
class PhaseState:
    """A process's (or a device's) current phase, since when, and why we think so."""

    pid: int
    phase: Phase
    devices: tuple[int, ...]
    since_ns: int
    evidence: str


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of one phase of one process: ``[start_ns, end_ns)``."""

    pid: int
    devices: tuple[int, ...]
    phase: Phase
    start_ns: int
    end_ns: int


# Evidence kinds kept in a process's sliding window.
_CHURN, _LONG_FREE, _FREE, _ALLOC, _BIG_ALLOC = range(5)


class _Window:
    """Counts of recent evidence within ``span_ns``; each entry keeps where its evidence began."""

    __slots__ = ("span_ns", "entries", "counts")

    def __init__(self, span_ns: int) -> None:
        self.span_ns = span_ns
        self.entries: deque[tuple[int, int, int]] = deque()  # (ts, kind, evidence start)
        self.counts = [0, 0, 0, 0, 0]

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, ts: int, kind: int, start: int) -> None:
        self.entries.append((ts, kind, start))
        self.counts[kind] += 1
        self.expire(ts)

    def expire(self, now: int) -> None:
        horizon = now - self.span_ns
        entries, counts = self.entries, self.counts
        while entries and entries[0][0] < horizon:
            counts[entries.popleft()[1]] -= 1

    def earliest(self, kind: int, gap_ns: int, max_run: int) -> int:
        """Where the latest burst of ``kind`` evidence began: the earliest start among its entries,
        going back until a pause longer than ``gap_ns`` or ``max_run`` other entries in a row."""
        first = newer = None
        run = 0
        for ts, k, start in reversed(self.entries):
            if k != kind:
                run += 1
                if first is not None and run >= max_run:
                    break
                continue
            if newer is not None and newer - ts > gap_ns:
                break
            first = start if first is None else min(first, start)
            newer = ts
            run = 0
        assert first is not None
        return first

    def allocs_since(self, ts: int) -> int:
        return sum(1 for t, k, _ in self.entries if t >= ts and k in (_ALLOC, _BIG_ALLOC))


class _Proc:
    """Everything the tracker knows about one PID."""

    __slots__ = ("pid", "phase", "since", "seg_devices", "closed", "live", "live_dram", "dev_live", "trace",
                 "capture_mesh", "capture_devs", "last_busy", "last_trace_alloc", "gap_end", "hints", "window",
                 "allocs", "exit_note")

    def __init__(self, pid: int, phase: Phase, ts: int, cfg: PhaseConfig) -> None:
        self.pid = pid
        self.phase = phase
        self.since = ts
        self.seg_devices: set[int] = set()
        self.closed: list[Segment] = []
        self.live: dict[int | tuple[int, int, int], tuple[int, int, int]] = {}  # _live_key -> (alloc ts, size, type)
        self.live_dram = 0  # bytes of the live DRAM entries (for the evidence text)
        self.dev_live: Counter[int] = Counter()  # device -> live non-TRACE entries
        self.trace: dict[tuple[int, int], int] = {}  # (device, buffer_id) -> size of resident TRACE buffers
        self.capture_mesh: frozenset[int] = frozenset()
        self.capture_devs: set[int] = set()
        self.last_busy = ts  # last event that was not I/O trickle
        self.last_trace_alloc = ts
        self.gap_end: int | None = None  # first busy event after the last pause >= capture_gap_s
        self.hints: dict[int, int] = {}  # capture segment start -> where its capture run began
        self.window = _Window(int(cfg.window_s * _NS))
        self.allocs: deque[int] = deque()  # ALLOC timestamps within evidence_window_s (of the latest ALLOC)
        self.exit_note = ""

    def mesh_width(self) -> int:
        return max(1, len(self.dev_live))

    def devices(self) -> tuple[int, ...]:
        devs = set(self.dev_live) | {d for d, _ in self.trace}
        return tuple(sorted(devs or self.seg_devices))

    def on_device(self, device: int) -> bool:
        """``device in self.devices()``, without building the tuple."""
        if self.dev_live or self.trace:
            return device in self.dev_live or any(d == device for d, _ in self.trace)
        return device in self.seg_devices


def _live_key(device: int, buffer_id: int, buffer_type: int) -> int | tuple[int, int, int]:
    """Key of a live entry: buffers, CBs and kernels live in separate id spaces (as in the registry).

    One int (``buffer_id``, device and space packed: smaller and faster than a tuple, as in the
    registry's keys); the tuple for a device outside 0..255, so that keys stay one-to-one.
    """
    space = 1 if buffer_type == _CB else 2 if buffer_type == _KERNEL else 0
    return buffer_id << 10 | device << 2 | space if 0 <= device < 256 else (device, buffer_id, space)


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


class PhaseTracker:
    """Incremental phase inference over an event stream (see the module docstring)."""

    def __init__(self, config: PhaseConfig | None = None) -> None:
        self.config = config or PhaseConfig()
        self._procs: dict[int, _Proc] = {}
        self._polled: dict[int, _PolledDevice] = {}
        self._now = 0
        self._small: dict[tuple[int, int], tuple[int, int, int]] = {}  # live values of I/O-sized entries

    # ------------------------------------------------------------------ input
    def observe(self, ev: Event) -> None:
        """Fold one event in. Events must come in server order (non-decreasing ``ts_ns``)."""
        kind = ev.kind
        if kind in _IGNORED:
            return
        ts = ev.ts_ns
        if ts > self._now:
            self._now = ts
        proc = self._procs.get(ev.pid)
        if proc is None or (proc.phase is Phase.EXITED and kind == _EV_ALLOC):
            proc = self._new_proc(ev.pid, ts, Phase.LOADING if kind == _EV_ALLOC else Phase.IDLE)
        else:
            self._check_quiet(proc, ts)
        if kind != _EV_EXIT:
            proc.seg_devices.add(ev.device)
        if kind == _EV_ALLOC:
            self._on_alloc(proc, ev)
        elif kind == _EV_FREE:
            self._on_free(proc, ev)
        elif kind == _EV_CLEANUP:
            self._drop(proc, ev)
            self._enter(proc, Phase.EXITED, ts)
        elif kind == _EV_EXIT:
            proc.exit_note = f"process died; the server removed {ev.ref_count} buffers ({_mib(ev.size)})"
            self._enter(proc, Phase.EXITED, ts)

    def observe_totals(self, ts_ns: int, device: int, wire_totals: tuple[int, ...]) -> None:
        """Fold one polled totals sample ``(dram, l1, l1_small, trace, cb, kernel)`` of ``device``."""
        if ts_ns > self._now:
            self._now = ts_ns
        polled = self._polled.get(device)
        if polled is None:
            polled = self._polled[device] = _PolledDevice(device, ts_ns)
        polled.observe(ts_ns, wire_totals, self.config)

    def tick(self, now_ns: int) -> None:
        """Let time pass without events: quiet processes become idle (or replay, or end their capture)."""
        if now_ns > self._now:
            self._now = now_ns
        for proc in self._procs.values():
            self._check_quiet(proc, self._now)

    # ------------------------------------------------------------------ queries
    def current(self, pid: int) -> PhaseState:
        proc = self._procs.get(pid)
        if proc is None:
            return PhaseState(pid, Phase.IDLE, (), self._now, "no allocations seen")
        return PhaseState(pid, proc.phase, proc.devices(), proc.since, self._evidence(proc))

    def phase(self, pid: int) -> Phase:
        """Just the phase of ``pid`` (cheap: no evidence text). Use it per event or per frame."""
        proc = self._procs.get(pid)
        return proc.phase if proc is not None else Phase.IDLE

    def processes(self) -> dict[int, PhaseState]:
        return {pid: self.current(pid) for pid in sorted(self._procs)}

    def device_phase(self, device: int) -> PhaseState | None:
        """The phase of the most recently busy live process on ``device``; else the polled guess."""
        best = self._device_proc(device)
        if best is not None:
            return self.current(best.pid)
        polled = self._polled.get(device)
        return polled.state() if polled is not None else None

    def device_phase_only(self, device: int) -> Phase | None:
        """Just the phase of :meth:`device_phase` (cheap: no evidence text)."""
        best = self._device_proc(device)
        if best is not None:
            return best.phase
        polled = self._polled.get(device)
        return polled.phase if polled is not None else None

    def _device_proc(self, device: int) -> _Proc | None:
        best: _Proc | None = None
        for proc in self._procs.values():
            if proc.phase is not Phase.EXITED and proc.on_device(device):
                if best is None or proc.last_busy > best.last_busy:
                    best = proc
        return best

    def segments(self, relabel_capture: bool = False) -> list[Segment]:
        """Every segment so far, open ones ending now, ordered by start then pid.

        ``relabel_capture`` moves each capture's start back to where its capture run began (the
        last pause before the TRACE burst), which only hindsight can tell; see :func:`analyze`.
        """
        out: list[Segment] = []
        for proc in self._procs.values():
            segs = proc.closed + [Segment(proc.pid, tuple(sorted(proc.seg_devices)), proc.phase, proc.since,
                                          max(self._now, proc.since))]
            out.extend(_relabel(segs, proc.hints) if relabel_capture else segs)
        for polled in self._polled.values():
            out.extend(polled.segments(self._now))
        out.sort(key=lambda s: (s.start_ns, s.pid))
        return out

    # ------------------------------------------------------------------ per-event rules
    def _new_proc(self, pid: int, ts: int, phase: Phase) -> _Proc:
        old = self._procs.get(pid)
        proc = self._procs[pid] = _Proc(pid, phase, ts, self.config)
        if old is not None:  # PID reused after an exit: keep the old life's segments
            proc.closed = old.closed + [Segment(pid, tuple(sorted(old.seg_devices)), old.phase, old.since, ts)]
            proc.hints = old.hints
        return proc

    def _on_alloc(self, proc: _Proc, ev: Event) -> None:
        cfg = self.config
        ts, size, btype, dev = ev.ts_ns, ev.size, ev.buffer_type, ev.device
        key = _live_key(dev, ev.buffer_id, btype)
        old = proc.live.get(key)
        if old is not None and old[2] == _DRAM:  # an overwritten entry (CB/KERNEL re-ALLOC) leaves no bytes
            proc.live_dram -= old[1]
        if size <= cfg.io_max_bytes:
            # I/O trickle never counts as evidence (see _on_free), so its alloc time is not needed:
            # one shared (0, size, type) tuple per size and type instead of one per buffer.
            value = self._small.get((size, btype))
            if value is None:
                value = self._small[(size, btype)] = (0, size, btype)
        else:
            value = (ts, size, btype)
        proc.live[key] = value
        if btype == _DRAM:
            proc.live_dram += size
        allocs = proc.allocs
        allocs.append(ts)
        # keep only what the evidence text can count, so the deque stays small between queries
        horizon = ts - int(cfg.evidence_window_s * _NS)
        while allocs[0] < horizon:
            allocs.popleft()
        if btype == _TRACE:
            proc.trace[(dev, ev.buffer_id)] = size
            self._busy(proc, ts)
            self._on_trace_alloc(proc, dev, ts)
            return
        proc.dev_live[dev] += 1
        if size <= cfg.io_max_bytes or btype in _PROGRAM_TYPES:
            return
        self._busy(proc, ts)
        big = btype == _DRAM and size >= cfg.load_min_bytes
        proc.window.push(ts, _BIG_ALLOC if big else _ALLOC, ts)
        self._apply_rules(proc, ts)

    def _on_trace_alloc(self, proc: _Proc, dev: int, ts: int) -> None:
        proc.last_trace_alloc = ts
        if proc.phase is not Phase.CAPTURE:
            proc.capture_mesh = frozenset(proc.dev_live) | {dev}
            proc.capture_devs = set()
            gap = proc.gap_end
            warm = proc.phase is Phase.WARMUP
            self._enter(proc, Phase.CAPTURE, ts)
            if warm and gap is not None and proc.closed and proc.closed[-1].start_ns < gap < ts \
                    and ts - gap <= self.config.capture_max_s * _NS:
                proc.hints[proc.since] = gap
        proc.capture_devs.add(dev)
        if proc.capture_devs >= proc.capture_mesh:
            self._enter(proc, Phase.REPLAY, ts)

    def _on_free(self, proc: _Proc, ev: Event) -> None:
        cfg = self.config
        ts = ev.ts_ns
        got = self._drop(proc, ev)
        if got is None:
            return
        born, size, btype = got
        if btype == _TRACE:
            self._busy(proc, ts)
            if not proc.trace:
                self._enter(proc, Phase.RELEASED, ts)
        elif size > cfg.io_max_bytes and btype not in _PROGRAM_TYPES:
            self._busy(proc, ts)
            age = ts - born
            if age < cfg.young_s * _NS:
                proc.window.push(ts, _CHURN, born)
            elif age >= cfg.long_lived_s * _NS:
                proc.window.push(ts, _LONG_FREE, ts)
            else:
                proc.window.push(ts, _FREE, ts)
            self._apply_rules(proc, ts)
        if not proc.live and proc.phase in (Phase.TEARDOWN, Phase.RELEASED):
            self._enter(proc, Phase.EXITED, ts)

    def _drop(self, proc: _Proc, ev: Event) -> tuple[int, int, int] | None:
        got = proc.live.pop(_live_key(ev.device, ev.buffer_id, ev.buffer_type), None)
        if got is None:
            return None
        if got[2] == _DRAM:
            proc.live_dram -= got[1]
        if got[2] == _TRACE:
            proc.trace.pop((ev.device, ev.buffer_id), None)
        else:
            n = proc.dev_live[ev.device] - 1
            if n:
                proc.dev_live[ev.device] = n
            else:
                del proc.dev_live[ev.device]
        return got

    def _busy(self, proc: _Proc, ts: int) -> None:
        if ts - proc.last_busy >= self.config.capture_gap_s * _NS:
            proc.gap_end = ts
        proc.last_busy = ts

    def _apply_rules(self, proc: _Proc, ts: int) -> None:
        cfg = self.config
        phase = proc.phase
        if phase in (Phase.CAPTURE, Phase.EXITED):
            return
        counts = proc.window.counts
        width = proc.mesh_width()
        # Each transition is backdated to where its burst of evidence began, back to the last pause
        # or run of other evidence (not to stragglers such as a temporary freed while loading). Evidence older than the
        # current phase was already accounted for: it never counts.
        window = proc.window
        gap = int(cfg.burst_gap_s * _NS)
        run = math.ceil(cfg.burst_break * width)
        need = math.ceil(cfg.teardown_frees * width)
        if phase is not Phase.TEARDOWN and counts[_LONG_FREE] >= need:
            first = window.earliest(_LONG_FREE, gap, run)
            if first >= proc.since and window.allocs_since(first) <= cfg.teardown_alloc_ratio * counts[_LONG_FREE]:
                self._enter(proc, Phase.TEARDOWN, first)
                return
        need = math.ceil(cfg.churn_frees * width)
        if phase is not Phase.WARMUP and counts[_CHURN] >= need and counts[_CHURN] >= cfg.churn_share * len(window):
            first = window.earliest(_CHURN, gap, run)
            if first >= proc.since:
                self._enter(proc, Phase.WARMUP, first)
                return
        need = math.ceil(cfg.load_allocs * width)
        if phase in (Phase.IDLE, Phase.RELEASED) and counts[_BIG_ALLOC] >= need:
            first = window.earliest(_BIG_ALLOC, gap, run)
            if first >= proc.since:
                self._enter(proc, Phase.LOADING, first)

    def _check_quiet(self, proc: _Proc, now: int) -> None:
        cfg = self.config
        quiet = now - proc.last_busy
        if proc.phase is Phase.CAPTURE:
            if quiet >= cfg.capture_settle_s * _NS:
                self._enter(proc, Phase.REPLAY, proc.last_trace_alloc)
        elif proc.phase in (Phase.LOADING, Phase.WARMUP) and quiet >= cfg.idle_s * _NS:
            self._enter(proc, Phase.REPLAY if proc.trace else Phase.IDLE, proc.last_busy)

    # ------------------------------------------------------------------ segments
    def _enter(self, proc: _Proc, phase: Phase, start: int) -> None:
        """Switch ``proc`` to ``phase`` from ``start`` (clamped to the current segment's start).

        A current segment that would be left empty is replaced, and merged into the one before
        when that has the same phase: a short misdetection overtaken by backdated evidence vanishes.
        """
        if phase is proc.phase:
            return
        start = max(start, proc.since)
        devices = proc.seg_devices
        if start > proc.since or proc.phase is Phase.CAPTURE:  # keep even an instant capture: analyze() widens it
            proc.closed.append(Segment(proc.pid, tuple(sorted(devices)), proc.phase, proc.since, start))
            proc.seg_devices = set(proc.devices())
        elif proc.closed and proc.closed[-1].phase is phase:
            prev = proc.closed.pop()
            start = prev.start_ns
            proc.seg_devices = set(prev.devices) | devices
        proc.phase = phase
        proc.since = start

    def _evidence(self, proc: _Proc) -> str:
        cfg = self.config
        horizon = self._now - int(cfg.evidence_window_s * _NS)
        while proc.allocs and proc.allocs[0] < horizon:
            proc.allocs.popleft()
        recent = f"{len(proc.allocs)} allocs in last {cfg.evidence_window_s:.1f} s"
        phase = proc.phase
        trace_devs = {d for d, _ in proc.trace}
        if phase is Phase.REPLAY or (phase is Phase.WARMUP and proc.trace):
            per_dev = sum(proc.trace.values()) // max(1, len(trace_devs))
            return f"TRACE {_mib(per_dev)} on {len(trace_devs)} devices, {recent}"
        if phase is Phase.CAPTURE:
            return f"TRACE allocated on {len(proc.capture_devs)}/{len(proc.capture_mesh)} devices of the mesh"
        if phase is Phase.EXITED:
            return proc.exit_note or "every buffer freed"
        counts = proc.window.counts
        window = f"in last {cfg.window_s:.2f} s"
        if phase is Phase.WARMUP:
            return f"churn: {counts[_CHURN]} temporaries freed {window}, {recent}"
        if phase is Phase.TEARDOWN:
            return f"{counts[_LONG_FREE]} long-lived buffers freed {window}, {len(proc.live)} left"
        if phase is Phase.LOADING:
            return f"DRAM {_mib(proc.live_dram)} in {len(proc.live)} live buffers, {recent}"
        if phase is Phase.RELEASED:
            return f"TRACE freed, {len(proc.live)} buffers left, {recent}"
        return f"no busy allocation for {(self._now - proc.last_busy) / _NS:.1f} s"


def _relabel(segs: list[Segment], hints: dict[int, int]) -> list[Segment]:
    """Move each hinted capture start back into the warm-up segment right before it."""
    out: list[Segment] = []
    for seg in segs:
        hint = hints.get(seg.start_ns) if seg.phase is Phase.CAPTURE else None
        if hint is not None and out and out[-1].phase is Phase.WARMUP and out[-1].end_ns == seg.start_ns:
            prev = out.pop()
            if hint > prev.start_ns:
                out.append(Segment(prev.pid, prev.devices, prev.phase, prev.start_ns, hint))
            seg = Segment(seg.pid, seg.devices, seg.phase, max(hint, prev.start_ns), seg.end_ns)
        out.append(seg)
    return out


class _PolledDevice:
    """A coarse phase for one device from polled totals only (no PIDs, no per-buffer events)."""

    __slots__ = ("device", "phase", "since", "closed", "prev")

    def __init__(self, device: int, ts: int) -> None:
        self.device = device
        self.phase = Phase.IDLE
        self.since = ts
        self.closed: list[Segment] = []
        self.prev: tuple[int, ...] | None = None

    def observe(self, ts: int, totals: tuple[int, ...], cfg: PhaseConfig) -> None:
        dram, trace = totals[0], totals[3]
        prev = self.prev or (0,) * len(totals)
        self.prev = tuple(totals)
        if trace:
            phase = Phase.REPLAY  # a TRACE buffer is resident: its capture has ended
        elif prev[3]:
            phase = Phase.RELEASED
        elif not any(totals):
            phase = Phase.IDLE
        elif self.phase is Phase.RELEASED and dram < prev[0]:
            phase = Phase.TEARDOWN
        elif dram - prev[0] >= cfg.load_min_bytes and self.phase in (Phase.IDLE, Phase.LOADING):
            phase = Phase.LOADING
        elif self.phase is Phase.IDLE and dram:
            phase = Phase.LOADING
        else:
            phase = self.phase
        if phase is not self.phase:
            if ts > self.since:
                self.closed.append(Segment(0, (self.device,), self.phase, self.since, ts))
            self.phase, self.since = phase, ts

    def state(self) -> PhaseState:
        trace = self.prev[3] if self.prev else 0
        evidence = f"polled totals: TRACE {_mib(trace)}" if trace else "polled totals"
        return PhaseState(0, self.phase, (self.device,), self.since, evidence)

    def segments(self, now: int) -> list[Segment]:
        return self.closed + [Segment(0, (self.device,), self.phase, self.since, max(now, self.since))]


def analyze(events: Iterable[Event], config: PhaseConfig | None = None) -> list[Segment]:
    """Offline inference: the live tracker over every event, then each capture start relabelled.

    Apart from the capture relabel, the result equals what a live :class:`PhaseTracker` fed the
    same events reports in :meth:`PhaseTracker.segments` (same code path, no clock).
    """
    tracker = PhaseTracker(config)
    last = 0
    for ev in events:
        tracker.observe(ev)
        last = max(last, ev.ts_ns)
    tracker.tick(last)
    return tracker.segments(relabel_capture=True)
