"""The live state machine: one :class:`PhaseTracker` folds events in arrival order, ticks with a clock.

Pure and deterministic: time comes only from event timestamps and from :meth:`PhaseTracker.tick`
(the monitor's clock mapped to the server's timeline, see :meth:`MonitorState.server_now`), never
from a clock of its own. Transitions are backdated to where their evidence began, so segments are
exact although detection needs a few events; the live view (:meth:`PhaseTracker.phase`) cannot be
backdated and shows each boundary once its evidence is in.
"""

from __future__ import annotations

from ..events import Event, EventKind
from . import evidence as ev_
from .deadlines import Deadlines
from .describe import evidence_text, mib
from .polled import PolledDevice
from .process import Proc
from .relabel import apply_hints
from .rules import EventRules
from .transitions import Transitions
from .types import Phase, PhaseConfig, PhaseState, Segment

__all__ = ["PhaseTracker"]

_NS = 1_000_000_000
_ALLOC, _FREE, _CLEANUP, _EXIT = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP, EventKind.PROCESS_EXIT
_IGNORED = frozenset({EventKind.BAD_FRAME, EventKind.DUMP, EventKind.TOTALS})
_IDLE, _LOADING, _EXITED = Phase.IDLE, Phase.LOADING, Phase.EXITED
#: The compiled twin's integer range (tt_memtop/_native/phases.c): a tracker that saw a value beyond
#: it (a crafted recording) stays on the Python path, which has no range.
_TS_LIM, _SIZE_LIM, _BID_LIM = 1 << 61, 1 << 48, 1 << 62


def _load_native():
    from ..._native import load_set_up
    from .evidence import TopDown, Window

    return load_set_up("phases", Proc, Window, TopDown, Event, tuple(Phase), EventKind.ALLOC, EventKind.FREE)


_native = _load_native()


def _in_compiled_range(ev: Event) -> bool:
    try:
        return (-_TS_LIM <= ev.ts_ns <= _TS_LIM and 0 <= ev.size < _SIZE_LIM and 0 <= ev.buffer_id < _BID_LIM
                and -(1 << 31) <= ev.device < 1 << 31)
    except TypeError:
        return False


class PhaseTracker(EventRules, Deadlines, Transitions):
    """Incremental phase inference over an event stream (see :mod:`tt_memtop.core.phases`).

    This module holds the input (:meth:`observe`, :meth:`tick`, ...) and the queries; the rules are
    mixins: per event (:mod:`.rules`), per deadline (:mod:`.deadlines`), per transition
    (:mod:`.transitions`); the evidence text is :mod:`.describe`'s.
    """

    def __init__(self, config: PhaseConfig | None = None, pure: bool | None = None) -> None:
        """``pure``: True keeps :meth:`observe_batch` on the Python reference (None: the compiled twin when built)."""
        cfg = self.config = config or PhaseConfig()
        self._native = None if pure else _native
        self._python_only = False  # a value beyond the compiled twin's range was seen: Python from now on
        self._procs: dict[int, Proc] = {}
        self._polled: dict[int, PolledDevice] = {}
        self._now = 0
        self._topdown = ev_.TopDown(cfg)
        self._io_max = cfg.io_max_bytes
        self._young_ns = int(cfg.young_s * _NS)
        self._long_ns = int(cfg.long_lived_s * _NS)
        self._idle_ns = int(cfg.idle_s * _NS)
        self._show_ns = min(self._idle_ns, int(cfg.idle_show_s * _NS))
        self._return_ns = int(cfg.replay_return_s * _NS)
        self._settle_ns = int(cfg.capture_settle_s * _NS)
        self._confirm_ns = int(cfg.release_confirm_s * _NS)
        self._evwin_ns = int(cfg.evidence_window_s * _NS)
        self._iter_ns = 2_000_000  # replay iterations are at least 2 ms apart
        self._learn_ns = 500_000_000  # ... and their own I/O shows in the first iterations after the capture
        self._hold_ns = int(cfg.activation_hold_s * _NS)
        self._pause_factor = cfg.idle_show_pause_factor

    def observe(self, ev: Event) -> None:
        """Fold one event in. Events must come in server order (non-decreasing ``ts_ns``)."""
        kind = ev.kind
        if kind in _IGNORED:
            return
        ts = ev.ts_ns
        if self._native is not None and not self._python_only and not _in_compiled_range(ev):
            self._python_only = True  # (a pure tracker never takes the compiled path: no check)
        if ts > self._now:
            self._now = ts
        proc = self._procs.get(ev.pid)
        if kind == _ALLOC:
            if proc is None or proc.phase is _EXITED:
                proc = self._new_proc(ev.pid, ts, _LOADING)
            elif ts >= proc.quiet_at:
                self._check_quiet(proc, ts)
            proc.recent.append(ts)
            proc.seg_devices.add(ev.device)
            self._on_alloc(proc, ev, ts)
            return
        if proc is None:
            proc = self._new_proc(ev.pid, ts, _IDLE)
        elif ts >= proc.quiet_at:
            self._check_quiet(proc, ts)
        if kind == _FREE:
            proc.recent.append(ts)
            proc.seg_devices.add(ev.device)
            self._on_free(proc, ev, ts)
        elif kind == _CLEANUP:
            proc.seg_devices.add(ev.device)
            self._drop(proc, ev.device, ev.buffer_id, ev.buffer_type)
            self._died(proc, ts)
        elif kind == _EXIT:
            # a source without a server (TT-Metal's shared memory) says what became of the process's bytes
            proc.exit_note = ev.text or f"process died; the server removed {ev.ref_count} buffers ({mib(ev.size)})"
            self._died(proc, ts)
        else:
            proc.seg_devices.add(ev.device)

    def observe_batch(self, events) -> list[Phase]:
        """:meth:`observe` each event in turn; returns, per event, :meth:`phase` of its PID right after it.

        The monitor's fold: one call per batch instead of two per event (the live phase labels the feed).
        Compiled when built (``tt_memtop/_native/phases.c``: the same rules on the same objects)."""
        if self._native is not None and not self._python_only:
            return self._native.observe_batch(self, events)
        out: list[Phase] = []
        append = out.append
        observe = self.observe
        procs = self._procs
        for ev in events:
            observe(ev)
            proc = procs.get(ev.pid)
            if proc is None:
                append(_IDLE)
                continue
            now = self._now  # _shown, inlined
            if now >= proc.show_at:
                append(_IDLE)
            elif now < proc.hold_until:
                append(proc.prev_phase)
            else:
                append(proc.phase)
        return out

    def process_gone(self, pid: int, now_ns: int) -> None:
        """A liveness check (e.g. ``/proc/PID`` gone on this host) found ``pid`` dead: it exited now.

        Sooner than the server's dead-PID cleanup (every 3-5 s); the server's CLEANUP events then
        change nothing.
        """
        if not -_TS_LIM <= now_ns <= _TS_LIM:
            self._python_only = True
        proc = self._procs.get(pid)
        if proc is None or proc.phase is _EXITED:
            return
        if now_ns > self._now:
            self._now = now_ns
        proc.exit_note = "the process is gone (liveness check); the server will remove its buffers"
        self._enter(proc, _EXITED, max(now_ns, proc.since))

    def observe_totals(self, ts_ns: int, device: int, wire_totals: tuple[int, ...]) -> None:
        """Fold one polled totals sample ``(dram, l1, l1_small, trace, cb, kernel)`` of ``device``."""
        if not -_TS_LIM <= ts_ns <= _TS_LIM:
            self._python_only = True
        if ts_ns > self._now:
            self._now = ts_ns
        polled = self._polled.get(device)
        if polled is None:
            polled = self._polled[device] = PolledDevice(device, ts_ns)
        polled.observe(ts_ns, wire_totals, self.config)

    def tick(self, now_ns: int) -> None:
        """Let time pass without events: quiet processes become idle, replay again, or end their capture."""
        if not -_TS_LIM <= now_ns <= _TS_LIM:
            self._python_only = True
        if now_ns > self._now:
            self._now = now_ns
        now = self._now
        for proc in self._procs.values():
            if now >= proc.quiet_at:
                self._check_quiet(proc, now)

    @property
    def now_ns(self) -> int:
        return self._now

    def _shown(self, proc: Proc) -> Phase:
        now = self._now
        if now >= proc.show_at:
            return _IDLE
        if now < proc.hold_until:
            return proc.prev_phase
        return proc.phase

    def phase(self, pid: int) -> Phase:
        """The phase of ``pid`` as the live view shows it (O(1), no evidence text)."""
        proc = self._procs.get(pid)
        return _IDLE if proc is None else self._shown(proc)

    def current(self, pid: int) -> PhaseState:
        proc = self._procs.get(pid)
        if proc is None:
            return PhaseState(pid, _IDLE, (), self._now, "no allocations seen")
        shown = self._shown(proc)
        if shown is _IDLE and proc.phase is not _IDLE:
            return PhaseState(pid, _IDLE, proc.devices(), proc.last_busy,
                              f"no busy allocation for {(self._now - proc.last_busy) / _NS:.2f} s after {proc.phase}")
        if shown is not proc.phase:
            return PhaseState(pid, shown, proc.devices(), proc.since, "TRACE freed (confirming the release)")
        return PhaseState(pid, proc.phase, proc.devices(), proc.since, evidence_text(proc, self._now, self.config))

    def pids(self) -> list[int]:
        """Every PID seen (cheap: no evidence text)."""
        return list(self._procs)

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
        best = self._device_proc(device)
        if best is not None:
            return self._shown(best)
        polled = self._polled.get(device)
        return polled.phase if polled is not None else None

    def _device_proc(self, device: int) -> Proc | None:
        best: Proc | None = None
        for proc in self._procs.values():
            if proc.phase is not _EXITED and proc.on_device(device):
                if best is None or proc.last_busy > best.last_busy:
                    best = proc
        return best

    def segments(self, relabel_capture: bool = False) -> list[Segment]:
        """Every segment so far, open ones ending now, ordered by start then pid.

        ``relabel_capture`` applies hindsight (see :mod:`.relabel`): each capture starts where its
        capture run began, a killed process's exit where it stopped sending.
        """
        out: list[Segment] = []
        for proc in self._procs.values():
            segs = proc.closed + [Segment(proc.pid, tuple(sorted(proc.seg_devices)), proc.phase, proc.since,
                                          max(self._now, proc.since))]
            out.extend(apply_hints(segs, proc.hints, proc.exit_hint) if relabel_capture else segs)
        for polled in self._polled.values():
            out.extend(polled.segments(self._now))
        out.sort(key=lambda s: (s.start_ns, s.pid))
        return out

    def _new_proc(self, pid: int, ts: int, phase: Phase) -> Proc:
        old = self._procs.get(pid)
        proc = self._procs[pid] = Proc(pid, phase, ts, self.config)
        self._width(proc)
        self._arm(proc)
        if old is not None:  # PID reused after an exit: keep the old life's segments
            last = Segment(pid, tuple(sorted(old.seg_devices)), old.phase, old.since, ts)
            proc.closed = apply_hints(old.closed + [last], old.hints, old.exit_hint)
        return proc

