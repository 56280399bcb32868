"""The live state machine: one :class:`PhaseTracker` folds events in arrival order, ticks with a clock.

Pure and deterministic: time comes only from event timestamps and from :meth:`PhaseTracker.tick`
(the monitor's clock mapped to the server's timeline, see :meth:`MonitorState.server_now`), never
from a clock of its own. Transitions are backdated to where their evidence began, so segments are
exact although detection needs a few events; the live view (:meth:`PhaseTracker.phase`) cannot be
backdated and shows each boundary once its evidence is in.
"""

from __future__ import annotations

import math
from collections import deque

from ..events import Event, EventKind
from ..protocol import BufferType
from ..table import LiveMap
from . import evidence as ev_
from .polled import PolledDevice
from .relabel import apply_hints, capture_start, death_time, last_run
from .types import Phase, PhaseConfig, PhaseState, Segment

__all__ = ["PhaseTracker"]

_NS = 1_000_000_000
_MiB = 1024 * 1024
_NEVER = 1 << 62
_TRACE, _DRAM = int(BufferType.TRACE), int(BufferType.DRAM)
_CB, _KERNEL = int(BufferType.CB), int(BufferType.KERNEL)
_ALLOC, _FREE, _CLEANUP, _EXIT = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP, EventKind.PROCESS_EXIT
_IGNORED = frozenset({EventKind.BAD_FRAME, EventKind.DUMP, EventKind.TOTALS})
_IDLE, _LOADING, _WARMUP, _CAPTURE = Phase.IDLE, Phase.LOADING, Phase.WARMUP, Phase.CAPTURE
_REPLAY, _RELEASED, _TEARDOWN, _EXITED = Phase.REPLAY, Phase.RELEASED, Phase.TEARDOWN, Phase.EXITED
_COMPILE = ev_.COMPILE
_SEQ_MAX = 20_000  # allocation signatures kept per process for the capture search (the last ones)
_TRACE_MIN = 64 * 1024  # a trace buffer holds at least a few commands per bank


class _Proc:
    """Everything the tracker knows about one PID."""

    def __init__(self, pid: int, phase: Phase, ts: int, cfg: PhaseConfig) -> None:
        self.pid = pid
        self.phase = phase
        self.since = ts
        self.prev_phase = phase  # the phase before the current one (the live view's hold)
        self.seg_devices: set[int] = set()
        self.closed: list[Segment] = []
        # key -> (alloc ts, size, type), in columns (a dict of tuples was ~200 B per live buffer)
        self.live = LiveMap()
        self.live_dram = 0
        self.dev_live: dict[int, int] = {}
        self.trace: dict[tuple[int, int], int] = {}  # (device, buffer_id) -> size of resident trace buffers
        self.trace_keys: set[tuple[int, int, int]] = set()  # their live keys (TRACE, or DRAM top-down)
        self.capture_mesh: frozenset[int] = frozenset()
        self.capture_devs: set[int] = set()
        self.last_busy = ts
        self.phase_busy = 0  # busy events in the current phase
        self.loaded_until = -1  # buffers allocated up to here were loaded (weights): freeing them is teardown
        self.last_trace_alloc = ts
        self.last_compile = 0
        self.window = ev_.Window(cfg.window)
        self.replay_sigs: set[int] = set()
        self.last_lead: tuple[int, int] | None = None  # last busy allocation on the lead device
        self.pending_l1: tuple[int, tuple[int, int, int]] | None = None  # an activation held while loading
        self.compiled_since_busy = False
        self.compiling = False  # compile signatures seen in the current warm-up
        self.learn_until = 0  # the replay's own I/O is learned until then (its first iterations)
        self.mid_op = False  # the last busy event was an allocation: an op started (maybe compiling)
        self.tentative = False  # a warm-up begun on an activation hold alone
        self.dram_tail: tuple[int, int] | None = None  # (ts, buffer_id) of a DRAM allocation that may be a trace
        self.lead: int | None = None  # the device whose allocation sequence is kept
        # (ts, sig, key) of the allocations on the lead device, for the capture search (relabel)
        self.seq: deque[tuple[int, int, object]] = deque(maxlen=_SEQ_MAX)
        self.seq_floor = ts
        self.after_release = False
        self.hints: dict[int, int] = {}  # capture segment start -> where its capture run began
        self.exit_hint: tuple[int, int] | None = None  # (exited segment start, probable death)
        self.recent: deque[int] = deque(maxlen=8)  # last event times (death dating)
        self.allocs: deque[int] = deque()
        self.exit_note = ""
        self.quiet_at = _NEVER
        self.show_at = _NEVER
        self.show_ns = 0
        self.longest_pause = 0
        self.boundary_pause = 0  # ... of the pauses that began between runs (no temporary of the phase live)
        self.boundary_show_ns = 0
        self.temps = 0  # buffers allocated in the current warm-up and still live
        self.hold_until = 0  # the live view shows prev_phase until then (an unconfirmed release)
        self.need_churn = self.need_long = self.need_load = self.need_compile = 1

    def mesh_width(self) -> int:
        return max(1, len(self.dev_live))

    def devices(self) -> tuple[int, ...]:
        devs = set(self.dev_live) | {d for d, _ in self.trace}
        return tuple(sorted(devs or self.seg_devices))

    def on_device(self, device: int) -> bool:
        if self.dev_live or self.trace:
            return device in self.dev_live or any(d == device for d, _ in self.trace)
        return device in self.seg_devices


def _key(device: int, buffer_id: int, buffer_type: int) -> tuple[int, int, int]:
    """Buffers, CBs and kernels live in separate id spaces (as in the registry)."""
    return (device, buffer_id, 1 if buffer_type == ev_._CB else 2 if buffer_type == ev_._KERNEL else 0)


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


class PhaseTracker:
    """Incremental phase inference over an event stream (see :mod:`tt_memtop.core.phases`)."""

    def __init__(self, config: PhaseConfig | None = None) -> None:
        cfg = self.config = config or PhaseConfig()
        self._procs: dict[int, _Proc] = {}
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
            proc.exit_note = ev.text or f"process died; the server removed {ev.ref_count} buffers ({_mib(ev.size)})"
            self._died(proc, ts)
        else:
            proc.seg_devices.add(ev.device)

    def observe_batch(self, events) -> list[Phase]:
        """:meth:`observe` each event in turn; returns, per event, :meth:`phase` of its PID right after it.

        The monitor's fold: one call per batch instead of two per event (the live phase labels the feed)."""
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
        proc = self._procs.get(pid)
        if proc is None or proc.phase is _EXITED:
            return
        if now_ns > self._now:
            self._now = now_ns
        proc.exit_note = "the process is gone (liveness check); the server will remove its buffers"
        self._enter(proc, _EXITED, max(now_ns, proc.since))

    def observe_totals(self, ts_ns: int, device: int, wire_totals: tuple[int, ...]) -> None:
        """Fold one polled totals sample ``(dram, l1, l1_small, trace, cb, kernel)`` of ``device``."""
        if ts_ns > self._now:
            self._now = ts_ns
        polled = self._polled.get(device)
        if polled is None:
            polled = self._polled[device] = PolledDevice(device, ts_ns)
        polled.observe(ts_ns, wire_totals, self.config)

    def tick(self, now_ns: int) -> None:
        """Let time pass without events: quiet processes become idle, replay again, or end their capture."""
        if now_ns > self._now:
            self._now = now_ns
        now = self._now
        for proc in self._procs.values():
            if now >= proc.quiet_at:
                self._check_quiet(proc, now)

    @property
    def now_ns(self) -> int:
        return self._now

    # ------------------------------------------------------------------ queries
    def _shown(self, proc: _Proc) -> Phase:
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
        return PhaseState(pid, proc.phase, proc.devices(), proc.since, self._evidence(proc))

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

    def _device_proc(self, device: int) -> _Proc | None:
        best: _Proc | None = None
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

    # ------------------------------------------------------------------ per-event rules
    def _new_proc(self, pid: int, ts: int, phase: Phase) -> _Proc:
        old = self._procs.get(pid)
        proc = self._procs[pid] = _Proc(pid, phase, ts, self.config)
        self._width(proc)
        self._arm(proc)
        if old is not None:  # PID reused after an exit: keep the old life's segments
            last = Segment(pid, tuple(sorted(old.seg_devices)), old.phase, old.since, ts)
            proc.closed = apply_hints(old.closed + [last], old.hints, old.exit_hint)
        return proc

    def _width(self, proc: _Proc) -> None:
        cfg = self.config
        width = proc.mesh_width()
        proc.need_churn = max(1, math.ceil(cfg.churn_frees * width))
        proc.need_long = max(1, math.ceil(cfg.teardown_frees * width))
        proc.need_load = max(1, math.ceil(cfg.load_allocs * width))
        proc.need_compile = max(1, math.ceil(cfg.compile_objects * width))
        proc.window.resize(cfg.window * width)

    def _on_alloc(self, proc: _Proc, ev: Event, ts: int) -> None:
        dev, size, btype = ev.device, ev.size, ev.buffer_type
        key = (dev, ev.buffer_id, 1 if btype == _CB else 2 if btype == _KERNEL else 0)  # _key, inlined
        top = self._topdown.classify(dev, ev.buffer_id, size) if btype == _DRAM and size > self._io_max else 0
        is_trace = btype == _TRACE or top == 2
        old = proc.live.get(key)
        proc.live[key] = (ts, size, btype)
        if old is None:
            n = proc.dev_live.get(dev)
            proc.dev_live[dev] = 1 if n is None else n + 1
            if n is None:
                self._width(proc)
        elif old[2] == _DRAM:
            proc.live_dram -= old[1]
        if btype == _DRAM:
            proc.live_dram += size
        allocs = proc.allocs
        allocs.append(ts)
        horizon = ts - self._evwin_ns
        while allocs[0] < horizon:
            allocs.popleft()
        if is_trace:
            proc.trace_keys.add(key)
            self._on_trace_alloc(proc, dev, ev.buffer_id, size, ts)
            return
        if btype == _CB or btype == _KERNEL:
            proc.compiled_since_busy = True
            if proc.phase is _WARMUP:
                proc.compiling = True  # program-cache misses: pauses are compiles, not idleness
            if ev_.is_compile_signature(btype, ev.name) and proc.phase is not _LOADING or btype == ev_._CB:
                proc.last_compile = ts
                self._entry(proc, ev_.COMPILE, ts, ts)
            return
        if size <= self._io_max:
            return
        sig = size << 8 | btype  # the (size, type) shape, as one int (hashed at no cost)
        if proc.lead is None:
            proc.lead = dev
        tail = proc.dram_tail
        if tail is not None and not (btype == _DRAM and ev.buffer_id == tail[1]):
            proc.dram_tail = None  # the stream went on after it: not the end of a run
        if top and dev == proc.lead and size >= _TRACE_MIN and proc.phase is _WARMUP and not proc.trace:
            proc.dram_tail = (ts, ev.buffer_id)  # maybe a trace buffer: see _maybe_trace
            proc.quiet_at = min(proc.quiet_at, ts + self._return_ns)
        if dev == proc.lead:
            proc.seq.append((ts, sig, key))
        phase = proc.phase
        if phase is _REPLAY and dev == proc.lead:
            last = proc.last_lead
            proc.last_lead = (sig, ts)
            # the replay's own I/O: the same shape twice in a row, an iteration apart
            if last is not None and last[0] == sig and ts - last[1] >= self._iter_ns and len(proc.replay_sigs) < 8 \
                    and ts < proc.learn_until:
                proc.replay_sigs.add(sig)
        if phase is _REPLAY:
            if sig in proc.replay_sigs:
                self._entry(proc, ev_.ALLOC, ts, ts, sig, key)
                return
        elif phase is _WARMUP and proc.trace and sig in proc.replay_sigs:
            self._entry(proc, ev_.ALLOC, ts, ts, sig, key)
            return
        was_mid, proc.mid_op = proc.mid_op, True
        boundary = not proc.temps
        proc.temps += 1
        self._busy(proc, ts, was_mid, boundary)
        if (phase is _LOADING or phase is _REPLAY or phase is _IDLE) and btype != _DRAM \
                and sig not in proc.replay_sigs:  # the latest activation: is the stream pausing after it?
            proc.pending_l1 = (ts, key)
            proc.quiet_at = min(proc.quiet_at, ts + self._hold_ns)
        kind = ev_.BIG if btype == _DRAM and size >= self.config.load_min_bytes else ev_.ALLOC
        self._entry(proc, kind, ts, ts, sig, key)

    def _on_trace_alloc(self, proc: _Proc, dev: int, buffer_id: int, size: int, ts: int) -> None:
        proc.trace[(dev, buffer_id)] = size
        self._busy(proc, ts)
        proc.last_trace_alloc = ts
        if proc.phase is not _CAPTURE:
            proc.capture_mesh = frozenset(proc.dev_live) | {dev}
            proc.capture_devs = set()
            live = proc.live
            seq = [(t, sig, key in live and live[key][0] == t) for t, sig, key in proc.seq]
            start = capture_start(seq, ts, proc.seq_floor, proc.last_compile, proc.after_release)
            self._enter(proc, _CAPTURE, ts)
            if start is not None and ts - start <= self.config.capture_max_s * _NS:
                proc.hints[proc.since] = start
        proc.capture_devs.add(dev)
        if proc.capture_devs >= proc.capture_mesh:
            self._trace_done(proc, ts)

    def _trace_done(self, proc: _Proc, ts: int) -> None:
        proc.seq.clear()
        proc.seq_floor = ts
        proc.after_release = False
        proc.replay_sigs = set()
        proc.learn_until = ts + self._learn_ns
        self._enter(proc, _REPLAY, ts)

    def _on_free(self, proc: _Proc, ev: Event, ts: int) -> None:
        got = self._drop(proc, ev.device, ev.buffer_id, ev.buffer_type)
        if got is None:
            return
        born, size, btype, was_trace = got
        if was_trace:
            young = ts - born < self._young_ns and proc.phase is not _REPLAY and proc.phase is not _TEARDOWN
            if young and proc.phase is not _CAPTURE:  # a top-down DRAM temporary, not a trace after all
                self._busy(proc, ts)
                self._entry(proc, ev_.CHURN, ts, born)
            elif not proc.trace and proc.phase is not _TEARDOWN \
                    and proc.window.counts[ev_.LONG] < proc.mesh_width():  # else freed inside a teardown
                proc.after_release = True
                proc.seq.clear()
                proc.seq_floor = ts
                self._enter(proc, _RELEASED, ts)
                proc.hold_until = ts + self._confirm_ns
        elif size > self._io_max and not ev_.is_program_object(btype):
            age = ts - born
            sig = size << 8 | btype  # the (size, type) shape, as one int (hashed at no cost)
            if (proc.phase is _REPLAY or (proc.phase is _WARMUP and proc.trace)) and sig in proc.replay_sigs:
                self._entry(proc, ev_.FREE, ts, ts)
            else:
                was_mid, proc.mid_op = proc.mid_op, False
                boundary = not proc.temps
                if born >= proc.since and proc.temps:
                    proc.temps -= 1
                self._busy(proc, ts, was_mid, boundary)
                if born <= proc.loaded_until and proc.phase is not _LOADING:
                    self._entry(proc, ev_.LONG, ts, ts)  # a buffer of the load (a weight): whatever its age
                elif age < self._young_ns:
                    self._entry(proc, ev_.CHURN, ts, born, None, sig)  # key slot: the temporary's shape
                elif age >= self._long_ns:
                    self._entry(proc, ev_.LONG, ts, ts)
                else:
                    self._entry(proc, ev_.FREE, ts, ts)
        if not proc.live and proc.phase in (_TEARDOWN, _RELEASED):
            self._enter(proc, _EXITED, ts)

    def _drop(self, proc: _Proc, dev: int, buffer_id: int, btype: int) -> tuple[int, int, int, bool] | None:
        key = _key(dev, buffer_id, btype)
        got = proc.live.pop(key, None)
        if got is None:
            return None
        if got[2] == _DRAM:
            proc.live_dram -= got[1]
        was_trace = key in proc.trace_keys
        if was_trace:
            proc.trace_keys.discard(key)
            proc.trace.pop((dev, buffer_id), None)
        n = proc.dev_live[dev] - 1
        if n:
            proc.dev_live[dev] = n
        else:
            del proc.dev_live[dev]
            self._width(proc)
        return got[0], got[1], got[2], was_trace

    def _died(self, proc: _Proc, ts: int) -> None:
        if proc.phase is _EXITED:
            return
        death = death_time(list(proc.recent), ts, self.config.death_gap_factor)
        self._enter(proc, _EXITED, ts)
        if death is not None and death < proc.since:
            proc.exit_hint = (proc.since, death)

    def _busy(self, proc: _Proc, ts: int, mid_op: bool = False, boundary: bool = False) -> None:
        """A busy event: move the quiet deadlines. ``mid_op``: the pause before it began inside an op;
        ``boundary``: it began between runs (every temporary freed)."""
        pause = ts - proc.last_busy
        proc.last_busy = ts
        proc.phase_busy += 1
        phase = proc.phase
        # a pause that ended in kernels / CBs, or began right after an op's output was allocated, was a
        # compile (a program-cache miss), not host idleness: it does not raise the bar for showing idle
        jit = proc.compiled_since_busy or (mid_op and phase is _WARMUP)
        proc.compiled_since_busy = False
        idle_ns = self._idle_ns
        if phase is _LOADING or (phase is _WARMUP and not proc.trace):
            if pause > proc.longest_pause and pause < idle_ns and not jit:
                proc.longest_pause = pause
                proc.show_ns = min(idle_ns, max(self._show_ns, int(self._pause_factor * pause)))
            if boundary and pause > proc.boundary_pause and pause < idle_ns and not jit:
                proc.boundary_pause = pause  # host work between runs (sampling, tokenising)
                proc.boundary_show_ns = min(idle_ns, max(self._show_ns, int(self._pause_factor * pause)))
            # an op that began (its output allocated) and has not gone on may be compiling: no early idle
            slow = proc.window.counts[_COMPILE] or (phase is _WARMUP and proc.mid_op)
            # between runs of a warm-up only the pauses between runs set the bar (a GC pause mid-run does not)
            show = proc.boundary_show_ns if phase is _WARMUP and not proc.temps else proc.show_ns
            proc.show_at = ts + (idle_ns if slow else show)
            quiet_at = ts + idle_ns
            if proc.pending_l1 is not None and proc.quiet_at < quiet_at:
                quiet_at = proc.quiet_at
            if proc.dram_tail is not None:  # a possible trace buffer: look again once the stream is quiet
                quiet_at = min(quiet_at, ts + self._return_ns)
            proc.quiet_at = quiet_at
        elif phase is _WARMUP:  # untraced work with a trace resident; compiling pauses are no return to replay
            slow = proc.window.counts[_COMPILE] or proc.mid_op
            proc.quiet_at = ts + (idle_ns if slow else self._return_ns)
        elif phase is _CAPTURE:
            proc.quiet_at = ts + self._settle_ns
        elif (phase is _REPLAY or phase is _IDLE) and proc.pending_l1 is not None:
            proc.quiet_at = min(proc.quiet_at, proc.pending_l1[0] + self._hold_ns)

    def _arm(self, proc: _Proc) -> None:
        """Set the deadlines of the time rules for ``proc``'s (new) phase."""
        phase = proc.phase
        proc.show_at = _NEVER
        if phase is _LOADING or (phase is _WARMUP and not proc.trace):
            proc.longest_pause = proc.boundary_pause = 0
            proc.show_ns = proc.boundary_show_ns = self._show_ns
            slow = phase is _WARMUP and proc.mid_op
            proc.show_at = max(proc.last_busy, proc.since) + (self._idle_ns if slow else proc.show_ns)
            proc.quiet_at = proc.last_busy + self._idle_ns
            if proc.pending_l1 is not None:
                proc.quiet_at = min(proc.quiet_at, proc.pending_l1[0] + self._hold_ns)
        elif phase is _WARMUP:
            proc.quiet_at = proc.last_busy + (self._idle_ns if proc.mid_op else self._return_ns)
        elif phase is _CAPTURE:
            proc.quiet_at = proc.last_busy + self._settle_ns
        else:
            proc.quiet_at = _NEVER

    def _entry(self, proc: _Proc, kind: int, ts: int, start: int, sig: int | None = None,
               key: object = None) -> None:
        """One piece of evidence: into the window, then the rule of its kind."""
        win = proc.window
        win.add(kind, ts, start, sig, key)
        phase = proc.phase
        if phase is _CAPTURE or phase is _EXITED:
            return
        counts = win.counts
        cfg = self.config
        if kind == ev_.CHURN or kind == ev_.COMPILE:
            if counts[ev_.CHURN] >= proc.need_churn or counts[ev_.COMPILE] >= proc.need_compile:
                proc.tentative = False  # a run confirmed (a load's tilize temporary does not)
            if phase is _WARMUP and start < proc.since and proc.closed and proc.closed[-1].phase is _LOADING \
                    and start > proc.closed[-1].start_ns:  # a temporary of the run's first op (its JIT pause)
                self._backdate(proc, start)
            if phase is _WARMUP or phase is _TEARDOWN:
                return
            compiling = counts[ev_.COMPILE] >= proc.need_compile
            churn = counts[ev_.CHURN] >= proc.need_churn and counts[ev_.CHURN] >= cfg.churn_share * len(win.entries)
            if not (compiling or churn) and phase is _LOADING and counts[ev_.CHURN] >= proc.need_churn:
                churn = self._run_in_load(proc)
            if not (compiling or churn):
                return
            if proc.trace and not compiling and win.variety(proc.replay_sigs) < cfg.untraced_variety:
                return
            self._enter(proc, _WARMUP, self._warmup_start(proc))
        elif kind == ev_.LONG:
            if phase is _TEARDOWN or counts[ev_.LONG] < proc.need_long:
                return
            if counts[ev_.ALLOC] + counts[ev_.BIG] > cfg.teardown_alloc_ratio * counts[ev_.LONG]:
                return
            self._enter(proc, _TEARDOWN, min(e[2] for e in win.entries if e[0] == ev_.LONG))
        elif kind == ev_.ALLOC:
            if phase is _WARMUP and proc.tentative and counts[ev_.ALLOC] >= 6 * proc.mesh_width() \
                    and not counts[ev_.CHURN]:
                self._enter(proc, _LOADING, proc.since)  # buffers kept one after another: a load (L1 weights)
        elif kind == ev_.BIG:
            if phase is _WARMUP and proc.tentative and counts[ev_.BIG] >= 3 * proc.need_load:
                self._enter(proc, _LOADING, proc.since)  # the load went on: that was no run
            elif (phase is _IDLE or phase is _RELEASED) and counts[ev_.BIG] >= proc.need_load:
                self._enter(proc, _LOADING, min(e[2] for e in win.entries if e[0] == ev_.BIG))

    def _run_in_load(self, proc: _Proc) -> bool:
        """While loading: do the latest temporaries look like a run (several op shapes, a churn share
        that holds since the first of them was born) rather than a load's tilize temporaries (one shape)?
        Program-cache misses stretch a compile run's first layer, so the window is mostly weights."""
        entries = proc.window.entries
        churns = [e for e in entries if e[0] == ev_.CHURN]
        if len({e[4] for e in churns}) < 3:
            return False
        first = min(e[2] for e in churns)
        since = sum(1 for e in entries if e[1] >= first)
        return len(churns) >= 0.45 * since  # a run frees about one temporary per op; a load far fewer

    def _backdate(self, proc: _Proc, start: int) -> None:
        prev = proc.closed[-1]
        proc.closed[-1] = Segment(prev.pid, prev.devices, prev.phase, prev.start_ns, start)
        proc.since = start

    def _warmup_start(self, proc: _Proc) -> int:
        """Where the warm-up evidence in the window began: from loading, the first allocation after the
        last weight (a big DRAM buffer still live, allocated before the run's first temporary); else its
        earliest temporary or program object."""
        entries = proc.window.entries
        starts = [e[2] for e in entries if (e[0] == ev_.CHURN or e[0] == ev_.COMPILE) and e[2] >= proc.since]
        if not starts:
            return proc.last_busy
        first = min(starts)
        if proc.phase is _LOADING:
            live = proc.live
            bound = -1
            for kind, ts, _start, _sig, key in entries:
                if kind == ev_.BIG and ts < first and key in live and live[key][0] == ts and ts > bound:
                    bound = ts
            if bound >= 0:
                after = [e[1] for e in entries if e[1] > bound and (e[0] == ev_.ALLOC or e[0] == ev_.BIG)]
                return min(after + [first])
        if proc.trace:  # untraced work: from its first allocation that was not the replay's own I/O
            firsts = [e[1] for e in entries if (e[0] == ev_.ALLOC or e[0] == ev_.BIG) and e[3] not in proc.replay_sigs
                      and e[1] >= proc.since]
            first = min(firsts[:1] + [first])
        return first

    def _check_quiet(self, proc: _Proc, now: int) -> None:
        quiet = now - proc.last_busy
        phase = proc.phase
        pending = proc.pending_l1
        if pending is not None and (phase is _LOADING or phase is _REPLAY or phase is _IDLE):
            at, key = pending
            got = proc.live.get(key)
            if got is None or got[0] != at:
                proc.pending_l1 = None
            elif now - at >= self._hold_ns and proc.last_busy - at <= 2_000_000:
                # an activation allocated, then the stream paused: the first op of a run is compiling
                proc.pending_l1 = None
                self._enter(proc, _WARMUP, at)
                proc.tentative = phase is _LOADING  # until churn or compiling confirms it (weights may go on)
                return
            elif proc.last_busy - at > 2_000_000:  # the stream went on: not a compile pause
                proc.pending_l1 = None
            else:
                proc.quiet_at = min(proc.quiet_at, at + self._hold_ns)
        if phase is _CAPTURE:
            if quiet >= self._settle_ns:
                self._trace_done(proc, proc.last_trace_alloc)
        elif phase is _WARMUP and proc.trace:
            if quiet >= (self._idle_ns if proc.window.counts[ev_.COMPILE] or proc.mid_op else self._return_ns):
                self._enter(proc, _REPLAY, proc.last_busy)
        elif phase is _WARMUP and proc.dram_tail is not None and quiet >= self._return_ns and self._maybe_trace(proc):
            return
        elif (phase is _LOADING or phase is _WARMUP) and quiet >= self._idle_ns:
            self._enter(proc, _REPLAY if proc.trace else _IDLE, proc.last_busy)

    def _maybe_trace(self, proc: _Proc) -> bool:
        """A DRAM buffer at the highest address seen, allocated at the end of a repeated run on every
        device of the mesh and held while the stream went quiet: a trace buffer (trace_region_size = 0)."""
        ts, bid = proc.dram_tail
        if proc.window.counts[ev_.COMPILE]:  # compiling: this quiet may be a JIT pause; look again later
            proc.quiet_at = self._now + self._return_ns
            return False
        proc.dram_tail = None
        mesh = list(proc.dev_live)
        held = [(d, proc.live.get(_key(d, bid, _DRAM))) for d in mesh]
        if not all(v is not None and v[2] == _DRAM and v[0] >= ts - 5_000_000 for _d, v in held):
            return False
        live = proc.live
        seq = [(t, sig, key in live and live[key][0] == t) for t, sig, key in proc.seq]
        run = last_run(seq)
        # a capture run: a real repetition (not a load's tilize temporaries), with no compile inside it
        if run is None or run[1] < 12 or run[2] < 3 or proc.last_compile >= run[0]:
            return False
        start = run[0]
        for d, v in held:
            proc.trace_keys.add(_key(d, bid, _DRAM))
            proc.trace[(d, bid)] = v[1]
        proc.capture_mesh = frozenset(mesh)
        proc.capture_devs = set(mesh)
        proc.last_trace_alloc = ts
        self._enter(proc, _CAPTURE, ts)
        if ts - start <= self.config.capture_max_s * _NS:
            proc.hints[proc.since] = start
        self._trace_done(proc, ts)
        return True

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
        # keep even an instant capture (analyze() widens it), an instant release and an instant load
        # that allocated (a recording whose events arrived in one socket read: no time passed, but it
        # happened)
        if start > proc.since or proc.phase is _CAPTURE or proc.phase is _RELEASED \
                or (proc.phase is _LOADING and proc.phase_busy):
            proc.closed.append(Segment(proc.pid, tuple(sorted(devices)), proc.phase, proc.since, start))
            proc.seg_devices = set(proc.devices())
        elif proc.closed and proc.closed[-1].phase is phase:
            prev = proc.closed.pop()
            hint = proc.hints.pop(prev.start_ns, None)
            start = prev.start_ns
            if hint is not None:
                proc.hints[start] = hint
            proc.seg_devices = set(prev.devices) | devices
        if proc.phase is _LOADING:
            proc.loaded_until = start  # what was allocated until now is the load
        proc.prev_phase = self._shown(proc) if self._now >= proc.since else proc.phase
        proc.phase = phase
        proc.since = start
        proc.hold_until = 0
        proc.phase_busy = 0
        proc.temps = 0
        if phase is not _LOADING:  # an activation held from idle still says a run began, not a load
            proc.pending_l1 = None
        proc.compiling = False
        proc.tentative = False
        proc.dram_tail = None
        proc.window.clear()
        self._arm(proc)

    def _evidence(self, proc: _Proc) -> str:
        cfg = self.config
        horizon = self._now - int(cfg.evidence_window_s * _NS)
        while proc.allocs and proc.allocs[0] < horizon:
            proc.allocs.popleft()
        recent = f"{len(proc.allocs)} allocs in last {cfg.evidence_window_s:.1f} s"
        phase = proc.phase
        trace_devs = {d for d, _ in proc.trace}
        kinds = "DRAM (dynamic trace region)" if proc.trace_keys and all(
            k in proc.live and proc.live[k][2] == _DRAM for k in proc.trace_keys) else "TRACE"
        win = proc.window
        if phase is _REPLAY:
            per_dev = sum(proc.trace.values()) // max(1, len(trace_devs))
            return f"trace {_mib(per_dev)} {kinds} on {len(trace_devs)} devices held, {recent}"
        if phase is _CAPTURE:
            return f"trace buffer ({kinds}) on {len(proc.capture_devs)}/{len(proc.capture_mesh)} devices of the mesh"
        if phase is _EXITED:
            return proc.exit_note or "every buffer freed"
        if phase is _WARMUP:
            what = "untraced work with a trace resident" if proc.trace else "churn"
            return (f"{what}: {win.counts[ev_.CHURN]} temporaries freed, {win.counts[ev_.COMPILE]} program objects, "
                    f"{win.variety(proc.replay_sigs)} op shapes in the last {len(win.entries)} entries, {recent}")
        if phase is _TEARDOWN:
            return f"{win.counts[ev_.LONG]} long-lived buffers freed, {len(proc.live)} left"
        if phase is _LOADING:
            return f"DRAM {_mib(proc.live_dram)} in {len(proc.live)} live buffers, {recent}"
        if phase is _RELEASED:
            return f"trace freed, {len(proc.live)} buffers left, {recent}"
        return f"no busy allocation for {(self._now - proc.last_busy) / _NS:.1f} s"

