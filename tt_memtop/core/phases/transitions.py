"""Transitions: switching a process to a new phase closes its current segment (backdated to the evidence).

A mixin of :class:`~tt_memtop.core.phases.machine.PhaseTracker`.
"""

from __future__ import annotations

from .process import Proc
from .types import Phase, Segment

__all__ = ["Transitions"]

_LOADING, _CAPTURE, _RELEASED = Phase.LOADING, Phase.CAPTURE, Phase.RELEASED


class Transitions:
    """Phase changes and the segments they close."""

    def _enter(self, proc: Proc, phase: Phase, start: int) -> None:
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

    def _backdate(self, proc: Proc, start: int) -> None:
        prev = proc.closed[-1]
        proc.closed[-1] = Segment(prev.pid, prev.devices, prev.phase, prev.start_ns, start)
        proc.since = start

