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

Live view versus segments. :meth:`PhaseTracker.phase` is what a monitor shows *now*; it cannot be
backdated, so each boundary shows once its evidence is in: warm-up after a couple of temporaries
freed per device (~20-30 ms into the first run), teardown / released / replay / exited at the
event that proves them. Two things live input fundamentally cannot know:

* **where a capture starts.** The capture run is an ordinary forward pass, allocation for
  allocation the same as the warm-up runs before it; only the TRACE allocation at its end (one per
  device) says it was recorded. Live, a capture shows from its first TRACE alloc on and the run
  before it shows as warm-up; :func:`analyze` (offline) moves the capture start back to the pause
  before that run (``relabel_capture``), which only hindsight can do.
* **whether a quiet spell will last.** A process that stops allocating may be waiting (idle) or
  about to go on (a host-side pause). The live view shows a *loading* process as idle after
  ``idle_show_s`` of quiet (at least ``idle_show_pause_factor`` times the longest pause of that load:
  per-layer pauses do not blip, a slow load raises the bar); a warming-up process only after
  ``idle_s``, because host work between runs (sampling, tokenising, Python, program-cache misses
  compiling) takes hundreds of ms. Segments make a quiet spell idle only once it lasted ``idle_s``,
  backdated to the last busy event, so a blip in the live view leaves no trace in the segments.

Totals polled from the original server carry no PIDs: :meth:`PhaseTracker.observe_totals` keeps a
coarse per-device phase from the TRACE and DRAM totals (pid 0 in :meth:`PhaseTracker.segments`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .._compat import StrEnum
from .events import Event, EventKind
from .protocol import BufferType

__all__ = ["Phase", "PhaseConfig", "PhaseState", "PhaseTracker", "Segment", "analyze"]

_NS = 1_000_000_000
_MiB = 1024 * 1024
_TRACE = int(BufferType.TRACE)
_DRAM = int(BufferType.DRAM)
#: CBs and kernels (144-byte clients only) live as long as the program cache: they are no evidence
#: of a phase, so the inference is the same whatever the clients' message layout.
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


_IDLE, _LOADING, _WARMUP, _CAPTURE = Phase.IDLE, Phase.LOADING, Phase.WARMUP, Phase.CAPTURE
_REPLAY, _RELEASED, _TEARDOWN, _EXITED = Phase.REPLAY, Phase.RELEASED, Phase.TEARDOWN, Phase.EXITED

@dataclass(frozen=True, slots=True)
class PhaseConfig:
    """Every threshold of the inference, in one place. Counts are per device of the process's mesh.

    The defaults suit real TT-Metal workloads: compile / warm-up churns through hundreds of buffers
    per second per device, replay allocates almost nothing, teardown frees buffers that lived for
    seconds. Evidence is counted in *bursts*: runs of one kind of evidence with no pause longer than
    ``burst_gap_s`` and fewer than ``burst_break`` other entries (per device) in a row.
    """

    #: Buffers up to this size are I/O trickle (replay inputs / read-backs): never evidence, never "busy".
    io_max_bytes: int = 16 * 1024
    #: A buffer freed younger than this was a temporary (churn evidence).
    young_s: float = 1.0
    #: Temporaries freed per device in one burst that mean warm-up (compile or eager runs), ...
    churn_frees: float = 2.0
    #: ... if they are at least this share of the evidence entries since the burst began (a load
    #: with an on-device tilize temporary per layer stays far below it).
    churn_share: float = 0.25
    #: A buffer freed older than this was long-lived (teardown evidence).
    long_lived_s: float = 2.0
    #: Long-lived frees per device in one burst that mean teardown, ...
    teardown_frees: float = 4.0
    #: ... while allocations since the burst began stay below this fraction of them.
    teardown_alloc_ratio: float = 0.25
    #: A DRAM allocation this large is model-load evidence, ...
    load_min_bytes: int = 1 * _MiB
    #: ... when this many per device come in one burst (from idle / released).
    load_allocs: float = 2.0
    #: No busy event for this long: a loading / warming-up process is idle (replay when a trace is
    #: resident). Segments use this threshold (backdated to the last busy event). Long, because
    #: warm-up has host-side gaps of a few hundred ms (sampling, tokenising, Python between runs,
    #: a program-cache miss compiling) that are not idleness.
    idle_s: float = 1.0
    #: The live view (:meth:`PhaseTracker.phase`) shows a *loading* process as idle after this much
    #: quiet already; the segments only if the quiet lasts ``idle_s`` (else the blip leaves no trace).
    #: A load is a steady stream of allocations (a few ms per tensor, ~20-80 ms per layer), and when
    #: it stops without churn starting, the process is waiting (for requests, for input) or compiling.
    idle_show_s: float = 0.2
    #: ... but never less than this many times the longest pause the current load has had (slow
    #: tensor-cache reads; a pause that did not end the load raises the bar: hysteresis), capped at
    #: ``idle_s``.
    idle_show_pause_factor: float = 2.5
    #: TRACE on part of the mesh only: the capture is over after this much quiet.
    capture_settle_s: float = 0.5
    #: analyze(): a pause this long before the TRACE burst starts the capture run ...
    capture_gap_s: float = 0.02
    #: ... if it is at most this long before the first TRACE alloc.
    capture_max_s: float = 10.0
    #: A pause this long between pieces of evidence ends a burst (backdating, counting) ...
    burst_gap_s: float = 0.05
    #: ... as do this many other entries in a row, per device (clock-free, for logs).
    burst_break: float = 4.0
    #: "N allocs in last X s" in the evidence text.
    evidence_window_s: float = 2.0


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


# Evidence kinds (non-I/O, non-program entries of a process); the last three are alloc-like.
_CHURN, _LONG_FREE, _FREE, _ALLOC, _BIG_ALLOC = range(5)
_NEVER = 1 << 62  # "no deadline": later than any timestamp


class _Burst:
    """The latest burst of one kind of evidence, kept in O(1) per entry.

    A burst is a run of entries of that kind with no pause longer than ``burst_gap_s`` and fewer
    than ``burst_break`` (per device) other entries in a row between two of them; ``start`` is the
    earliest evidence start among its entries (where a transition it triggers is backdated to).
    """

    __slots__ = ("n", "start", "last_ts", "last_idx", "first_idx", "first_allocs")

    def __init__(self) -> None:
        self.n = 0  # entries of this kind in the burst (0: no burst)
        self.start = 0
        self.last_ts = 0
        self.last_idx = 0  # entry index of its latest entry
        self.first_idx = 0  # entry index of its first entry: entries since = total - first_idx
        self.first_allocs = 0  # the process's alloc count before its first entry


class _Proc:
    """Everything the tracker knows about one PID."""

    __slots__ = ("pid", "phase", "since", "seg_devices", "closed", "live", "live_dram", "dev_live", "trace",
                 "capture_mesh", "capture_devs", "last_busy", "last_trace_alloc", "gap_end", "hints", "allocs",
                 "exit_note", "quiet_at", "show_at", "show_ns", "longest_pause", "n_entries", "n_allocs",
                 "churn", "long", "load", "cause", "need_churn", "need_long", "need_load", "run")

    def __init__(self, pid: int, phase: Phase, ts: int) -> None:
        self.pid = pid
        self.phase = phase
        self.since = ts
        self.seg_devices: set[int] = set()
        self.closed: list[Segment] = []
        self.live: dict[int | tuple[int, int, int], tuple[int, int, int]] = {}  # _live_key -> (alloc ts, size, type)
        self.live_dram = 0  # bytes of the live DRAM entries (for the evidence text)
        self.dev_live: dict[int, int] = {}  # device -> live non-TRACE entries
        self.trace: dict[tuple[int, int], int] = {}  # (device, buffer_id) -> size of resident TRACE buffers
        self.capture_mesh: frozenset[int] = frozenset()
        self.capture_devs: set[int] = set()
        self.last_busy = ts  # last event that was not I/O trickle
        self.last_trace_alloc = ts
        self.gap_end: int | None = None  # first busy event after the last pause >= capture_gap_s
        self.hints: dict[int, int] = {}  # capture segment start -> where its capture run began
        self.allocs: deque[int] = deque()  # ALLOC timestamps within evidence_window_s (of the latest ALLOC)
        self.exit_note = ""
        # Deadlines, so that the per-event check of the time rules is one comparison:
        self.quiet_at = _NEVER  # when the quiet rule (_check_quiet) may fire
        self.show_at = _NEVER  # when the live view shows a loading process as idle (phase())
        self.show_ns = 0  # the quiet that takes here (PhaseConfig.idle_show_s, adapted)
        self.longest_pause = 0  # the longest pause between busy events of the current loading
        self.n_entries = 0  # evidence entries so far
        self.n_allocs = 0  # ... of which allocations
        self.churn, self.long, self.load = _Burst(), _Burst(), _Burst()
        self.cause: _Burst | None = None  # the burst whose rule began the current phase
        self.need_churn = self.need_long = self.need_load = self.run = 0  # set by PhaseTracker._width

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
    (Inlined in :meth:`PhaseTracker.observe`: keep both in step.)
    """
    space = 1 if buffer_type == _CB else 2 if buffer_type == _KERNEL else 0
    return buffer_id << 10 | device << 2 | space if 0 <= device < 256 else (device, buffer_id, space)


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


class PhaseTracker:
    """Incremental phase inference over an event stream (see the module docstring).

    Per event only O(1) work is done: the live-buffer maps, a few counters, one comparison against
    the process's next time deadline, and a rule check when the entry's own burst count reaches its
    threshold. :meth:`phase` is O(1).
    """

    def __init__(self, config: PhaseConfig | None = None) -> None:
        cfg = self.config = config or PhaseConfig()
        self._procs: dict[int, _Proc] = {}
        self._polled: dict[int, _PolledDevice] = {}
        self._now = 0
        self._small: dict[tuple[int, int], tuple[int, int, int]] = {}  # live values of I/O-sized entries
        self._io_max = cfg.io_max_bytes
        self._young_ns = int(cfg.young_s * _NS)
        self._long_ns = int(cfg.long_lived_s * _NS)
        self._idle_ns = int(cfg.idle_s * _NS)
        self._show_ns = min(self._idle_ns, int(cfg.idle_show_s * _NS))
        self._settle_ns = int(cfg.capture_settle_s * _NS)
        self._capgap_ns = int(cfg.capture_gap_s * _NS)
        self._gap_ns = int(cfg.burst_gap_s * _NS)
        self._evwin_ns = int(cfg.evidence_window_s * _NS)

    # ------------------------------------------------------------------ input
    def observe(self, ev: Event) -> None:
        """Fold one event in. Events must come in server order (non-decreasing ``ts_ns``)."""
        kind = ev.kind
        if kind == _EV_ALLOC:
            ts = ev.ts_ns
            if ts > self._now:
                self._now = ts
            proc = self._procs.get(ev.pid)
            if proc is None or proc.phase is _EXITED:
                proc = self._new_proc(ev.pid, ts, Phase.LOADING)
            elif ts >= proc.quiet_at:
                self._check_quiet(proc, ts)
            dev, size, btype = ev.device, ev.size, ev.buffer_type
            proc.seg_devices.add(dev)
            if btype == _TRACE:
                self._on_trace_alloc(proc, ev, ts)
                return
            # _live_key, inlined
            if 0 <= dev < 256:
                key = ev.buffer_id << 10 | dev << 2 | (1 if btype == _CB else 2 if btype == _KERNEL else 0)
            else:
                key = _live_key(dev, ev.buffer_id, btype)
            live = proc.live
            old = live.get(key)
            if size <= self._io_max:
                # I/O trickle never counts as evidence (see _on_free), so its alloc time is not needed:
                # one shared (0, size, type) tuple per size and type instead of one per buffer.
                value = self._small.get((size, btype))
                if value is None:
                    value = self._small[(size, btype)] = (0, size, btype)
            else:
                value = (ts, size, btype)
            live[key] = value
            if old is None:
                dev_live = proc.dev_live
                n = dev_live.get(dev)
                if n is None:
                    dev_live[dev] = 1
                    self._width(proc)
                else:
                    dev_live[dev] = n + 1
            elif old[2] == _DRAM:  # an overwritten entry (CB/KERNEL re-ALLOC) leaves no bytes
                proc.live_dram -= old[1]
            if btype == _DRAM:
                proc.live_dram += size
            allocs = proc.allocs
            allocs.append(ts)
            if allocs[0] < ts - self._evwin_ns:  # keep only what the evidence text counts
                horizon = ts - self._evwin_ns
                while allocs[0] < horizon:
                    allocs.popleft()
            if size <= self._io_max or btype == _CB or btype == _KERNEL:
                return
            self._busy(proc, ts)
            if btype == _DRAM and size >= self.config.load_min_bytes:
                self._entry(proc, _BIG_ALLOC, ts, ts)
            else:
                self._entry(proc, _ALLOC, ts, ts)
        elif kind == _EV_FREE:
            ts = ev.ts_ns
            if ts > self._now:
                self._now = ts
            proc = self._procs.get(ev.pid)
            if proc is None:
                proc = self._new_proc(ev.pid, ts, Phase.IDLE)
            elif ts >= proc.quiet_at:
                self._check_quiet(proc, ts)
            proc.seg_devices.add(ev.device)
            self._on_free(proc, ev, ts)
        elif kind not in _IGNORED:
            ts = ev.ts_ns
            if ts > self._now:
                self._now = ts
            proc = self._procs.get(ev.pid)
            if proc is None:
                proc = self._new_proc(ev.pid, ts, Phase.IDLE)
            elif ts >= proc.quiet_at:
                self._check_quiet(proc, ts)
            if kind == _EV_CLEANUP:
                proc.seg_devices.add(ev.device)
                self._drop(proc, ev)
                self._enter(proc, Phase.EXITED, ts)
            elif kind == _EV_EXIT:
                proc.exit_note = f"process died; the server removed {ev.ref_count} buffers ({_mib(ev.size)})"
                self._enter(proc, Phase.EXITED, ts)
            else:
                proc.seg_devices.add(ev.device)

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
        now = self._now
        for proc in self._procs.values():
            if now >= proc.quiet_at:
                self._check_quiet(proc, now)

    # ------------------------------------------------------------------ queries
    def _shown(self, proc: _Proc) -> Phase:
        """The live view: the phase, or idle for a loading process quiet for its ``show_ns``."""
        return _IDLE if self._now >= proc.show_at else proc.phase

    def current(self, pid: int) -> PhaseState:
        proc = self._procs.get(pid)
        if proc is None:
            return PhaseState(pid, Phase.IDLE, (), self._now, "no allocations seen")
        if self._now >= proc.show_at:
            return PhaseState(pid, Phase.IDLE, proc.devices(), proc.last_busy,
                              f"no busy allocation for {(self._now - proc.last_busy) / _NS:.2f} s after "
                              f"{proc.phase}")
        return PhaseState(pid, proc.phase, proc.devices(), proc.since, self._evidence(proc))

    def phase(self, pid: int) -> Phase:
        """Just the phase of ``pid`` as the live view shows it (O(1), no evidence text). Use it per
        event or per frame."""
        proc = self._procs.get(pid)
        if proc is None:
            return _IDLE
        return _IDLE if self._now >= proc.show_at else proc.phase

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
            return self._shown(best)
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
        Segments never show the live view's early idle (:attr:`PhaseConfig.idle_show_s`): a quiet
        spell becomes an idle segment only once it has lasted :attr:`PhaseConfig.idle_s`.
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
        proc = self._procs[pid] = _Proc(pid, phase, ts)
        self._width(proc)
        self._arm(proc)
        if old is not None:  # PID reused after an exit: keep the old life's segments
            proc.closed = old.closed + [Segment(pid, tuple(sorted(old.seg_devices)), old.phase, old.since, ts)]
            proc.hints = old.hints
        return proc

    def _width(self, proc: _Proc) -> None:
        """The per-mesh thresholds, recomputed when the process's mesh width changes."""
        cfg = self.config
        width = proc.mesh_width()
        proc.need_churn = max(1, math.ceil(cfg.churn_frees * width))
        proc.need_long = max(1, math.ceil(cfg.teardown_frees * width))
        proc.need_load = max(1, math.ceil(cfg.load_allocs * width))
        proc.run = math.ceil(cfg.burst_break * width)

    def _on_trace_alloc(self, proc: _Proc, ev: Event, ts: int) -> None:
        dev = ev.device
        proc.trace[(dev, ev.buffer_id)] = ev.size
        key = _live_key(dev, ev.buffer_id, _TRACE)
        proc.live[key] = (ts, ev.size, _TRACE)
        allocs = proc.allocs
        allocs.append(ts)
        horizon = ts - self._evwin_ns
        while allocs[0] < horizon:
            allocs.popleft()
        self._busy(proc, ts)
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

    def _on_free(self, proc: _Proc, ev: Event, ts: int) -> None:
        got = self._drop(proc, ev)
        if got is None:
            return
        born, size, btype = got
        if btype == _TRACE:
            self._busy(proc, ts)
            if not proc.trace:
                self._enter(proc, Phase.RELEASED, ts)
        elif size > self._io_max and btype != _CB and btype != _KERNEL:
            self._busy(proc, ts)
            age = ts - born
            if age < self._young_ns:
                self._entry(proc, _CHURN, ts, born)
            elif age >= self._long_ns:
                self._entry(proc, _LONG_FREE, ts, ts)
            else:
                self._entry(proc, _FREE, ts, ts)
        if not proc.live and proc.phase in (Phase.TEARDOWN, Phase.RELEASED):
            self._enter(proc, Phase.EXITED, ts)

    def _drop(self, proc: _Proc, ev: Event) -> tuple[int, int, int] | None:
        dev, btype = ev.device, ev.buffer_type
        if 0 <= dev < 256:  # _live_key, inlined
            key = ev.buffer_id << 10 | dev << 2 | (1 if btype == _CB else 2 if btype == _KERNEL else 0)
        else:
            key = _live_key(dev, ev.buffer_id, btype)
        got = proc.live.pop(key, None)
        if got is None:
            return None
        if got[2] == _DRAM:
            proc.live_dram -= got[1]
        elif got[2] == _TRACE:
            proc.trace.pop((dev, ev.buffer_id), None)
            return got
        n = proc.dev_live[dev] - 1
        if n:
            proc.dev_live[dev] = n
        else:
            del proc.dev_live[dev]
            self._width(proc)
        return got

    def _busy(self, proc: _Proc, ts: int) -> None:
        """A busy (non-I/O) event: move the quiet deadlines."""
        pause = ts - proc.last_busy
        if pause >= self._capgap_ns:
            proc.gap_end = ts
        proc.last_busy = ts
        phase = proc.phase
        if phase is _LOADING:
            if pause > proc.longest_pause:  # a pause that did not end the loading: wait longer next time
                proc.longest_pause = pause
                proc.show_ns = min(self._idle_ns, max(self._show_ns, int(self.config.idle_show_pause_factor * pause)))
            proc.show_at = ts + proc.show_ns
            proc.quiet_at = ts + self._idle_ns
        elif phase is _WARMUP:
            proc.quiet_at = ts + self._idle_ns
        elif phase is _CAPTURE:
            proc.quiet_at = ts + self._settle_ns

    def _arm(self, proc: _Proc) -> None:
        """Set the deadlines of the time rules for ``proc``'s (new) phase."""
        phase = proc.phase
        proc.show_at = _NEVER
        if phase is _LOADING:
            proc.longest_pause = 0
            proc.show_ns = self._show_ns
            proc.show_at = proc.last_busy + proc.show_ns
            proc.quiet_at = proc.last_busy + self._idle_ns
        elif phase is _WARMUP:
            proc.quiet_at = proc.last_busy + self._idle_ns
        elif phase is _CAPTURE:
            proc.quiet_at = proc.last_busy + self._settle_ns
        else:
            proc.quiet_at = _NEVER

    def _entry(self, proc: _Proc, kind: int, ts: int, start: int) -> None:
        """One piece of evidence (``start``: where it began): O(1) burst bookkeeping, and the rule of
        its kind when its burst reaches the threshold.

        Each transition is backdated to where its burst of evidence began, back to the last pause or
        run of other evidence (not to stragglers such as a temporary freed while loading). Evidence
        older than the current phase was already accounted for: it never counts.
        """
        idx = proc.n_entries
        proc.n_entries = idx + 1
        if kind >= _ALLOC:
            proc.n_allocs += 1
            if kind == _ALLOC:
                return
            burst = proc.load
        elif kind == _CHURN:
            burst = proc.churn
        elif kind == _LONG_FREE:
            burst = proc.long
        else:
            return
        if not burst.n or ts - burst.last_ts > self._gap_ns or idx - burst.last_idx > proc.run:
            burst.n = 1
            burst.start = start
            burst.first_idx = idx
            burst.first_allocs = proc.n_allocs - (kind == _BIG_ALLOC)
        else:
            burst.n += 1
            if start < burst.start:
                burst.start = start
        burst.last_ts = ts
        burst.last_idx = idx
        phase = proc.phase
        if phase is _CAPTURE or phase is _EXITED:
            return
        if burst.start < proc.since:
            if burst is proc.cause:  # the burst that began this phase goes on with older evidence
                self._backdate(proc, burst.start)
            return
        cfg = self.config
        if kind == _CHURN:
            if burst.n >= proc.need_churn and phase is not _WARMUP \
                    and burst.n >= cfg.churn_share * (idx + 1 - burst.first_idx):
                self._enter(proc, Phase.WARMUP, burst.start, burst)
        elif kind == _LONG_FREE:
            if burst.n >= proc.need_long and phase is not _TEARDOWN \
                    and proc.n_allocs - burst.first_allocs <= cfg.teardown_alloc_ratio * burst.n:
                self._enter(proc, Phase.TEARDOWN, burst.start, burst)
        elif burst.n >= proc.need_load and (phase is _IDLE or phase is _RELEASED):
            self._enter(proc, Phase.LOADING, burst.start, burst)

    def _backdate(self, proc: _Proc, start: int) -> None:
        """Move the current phase's start back to ``start``, within the segment before it.

        The threshold of a rule is reached a few entries into its burst; entries after that can
        carry evidence that began earlier (a temporary allocated before the first one freed).
        Evidence from before the previous segment began does not count (as in :meth:`_entry`).
        """
        closed = proc.closed
        if not closed or start <= closed[-1].start_ns:
            return
        prev = closed[-1]
        closed[-1] = Segment(prev.pid, prev.devices, prev.phase, prev.start_ns, start)
        hint = proc.hints.pop(proc.since, None)
        if hint is not None:
            proc.hints[start] = hint
        proc.since = start

    def _check_quiet(self, proc: _Proc, now: int) -> None:
        quiet = now - proc.last_busy
        if proc.phase is Phase.CAPTURE:
            if quiet >= self._settle_ns:
                self._enter(proc, Phase.REPLAY, proc.last_trace_alloc)
        elif proc.phase in (Phase.LOADING, Phase.WARMUP) and quiet >= self._idle_ns:
            self._enter(proc, Phase.REPLAY if proc.trace else Phase.IDLE, proc.last_busy)

    # ------------------------------------------------------------------ segments
    def _enter(self, proc: _Proc, phase: Phase, start: int, cause: _Burst | None = None) -> None:
        """Switch ``proc`` to ``phase`` from ``start`` (clamped to the current segment's start).

        A current segment that would be left empty is replaced, and merged into the one before
        when that has the same phase: a short misdetection overtaken by backdated evidence vanishes.
        The evidence bursts start afresh (what led here never counts for the next transition), but
        for ``cause``, the burst that triggered the switch: it may still move the start back.
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
        for burst in (proc.churn, proc.long, proc.load):
            if burst is not cause:
                burst.n = 0
        proc.cause = cause
        self._arm(proc)

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
        if phase is Phase.WARMUP:
            return f"churn: {proc.churn.n} temporaries freed in the latest burst, {recent}"
        if phase is Phase.TEARDOWN:
            return f"{proc.long.n} long-lived buffers freed in the latest burst, {len(proc.live)} left"
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
