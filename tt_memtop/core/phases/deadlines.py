"""The time rules: when quiet means idle, a return to replay, the end of a capture, or a trace buffer.

A mixin of :class:`~tt_memtop.core.phases.machine.PhaseTracker`. Each busy event moves a process's
deadlines (``quiet_at``: look again then; ``show_at``: the live view shows idle from then on);
:meth:`PhaseTracker.tick` and the next event of the process check them.
"""

from __future__ import annotations

import math

from ..protocol import BufferType
from . import evidence as ev_
from .process import NEVER, Proc, live_key
from .relabel import last_run
from .types import Phase

__all__ = ["Deadlines"]

_NS = 1_000_000_000
_TRACE, _DRAM = int(BufferType.TRACE), int(BufferType.DRAM)
_CB, _KERNEL = int(BufferType.CB), int(BufferType.KERNEL)
_IDLE, _LOADING, _WARMUP, _CAPTURE = Phase.IDLE, Phase.LOADING, Phase.WARMUP, Phase.CAPTURE
_REPLAY, _RELEASED, _TEARDOWN, _EXITED = Phase.REPLAY, Phase.RELEASED, Phase.TEARDOWN, Phase.EXITED


class Deadlines:
    """Quiet deadlines and the rules that fire when they pass."""

    def _width(self, proc: Proc) -> None:
        cfg = self.config
        width = proc.mesh_width()
        proc.need_churn = max(1, math.ceil(cfg.churn_frees * width))
        proc.need_long = max(1, math.ceil(cfg.teardown_frees * width))
        proc.need_load = max(1, math.ceil(cfg.load_allocs * width))
        proc.need_compile = max(1, math.ceil(cfg.compile_objects * width))
        proc.window.resize(cfg.window * width)

    def _busy(self, proc: Proc, ts: int, mid_op: bool = False, boundary: bool = False) -> None:
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
            slow = proc.window.counts[ev_.COMPILE] or (phase is _WARMUP and proc.mid_op)
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
            slow = proc.window.counts[ev_.COMPILE] or proc.mid_op
            proc.quiet_at = ts + (idle_ns if slow else self._return_ns)
        elif phase is _CAPTURE:
            proc.quiet_at = ts + self._settle_ns
        elif (phase is _REPLAY or phase is _IDLE) and proc.pending_l1 is not None:
            proc.quiet_at = min(proc.quiet_at, proc.pending_l1[0] + self._hold_ns)

    def _arm(self, proc: Proc) -> None:
        """Set the deadlines of the time rules for ``proc``'s (new) phase."""
        phase = proc.phase
        proc.show_at = NEVER
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
            proc.quiet_at = NEVER

    def _check_quiet(self, proc: Proc, now: int) -> None:
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

    def _maybe_trace(self, proc: Proc) -> bool:
        """A DRAM buffer at the highest address seen, allocated at the end of a repeated run on every
        device of the mesh and held while the stream went quiet: a trace buffer (trace_region_size = 0)."""
        ts, bid = proc.dram_tail
        if proc.window.counts[ev_.COMPILE]:  # compiling: this quiet may be a JIT pause; look again later
            proc.quiet_at = self._now + self._return_ns
            return False
        proc.dram_tail = None
        mesh = list(proc.dev_live)
        held = [(d, proc.live.get(live_key(d, bid, _DRAM))) for d in mesh]
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
            proc.trace_keys.add(live_key(d, bid, _DRAM))
            proc.trace[(d, bid)] = v[1]
        proc.capture_mesh = frozenset(mesh)
        proc.capture_devs = set(mesh)
        proc.last_trace_alloc = ts
        self._enter(proc, _CAPTURE, ts)
        if ts - start <= self.config.capture_max_s * _NS:
            proc.hints[proc.since] = start
        self._trace_done(proc, ts)
        return True

