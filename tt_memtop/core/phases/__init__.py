"""Trace-phase inference: what each TT-Metal process is doing, guessed from its allocations.

========= ==================================================================================
phase     evidence
========= ==================================================================================
loading   a new process allocating: device init, then weights / KV cache — large DRAM
          allocations that stay alive
warm-up   churn counted per N allocations per device (temporaries freed young), or compile
          signatures (CBs, application kernels); with a trace resident, untraced work: churn
          through many op shapes (eager prefill, a text encoder, a VAE)
capture   the model run recorded into a trace, ending with the trace buffer on every device of
          the mesh. Live it shows from the trace buffer on; offline (:func:`analyze`) it starts
          where the capture run began: the last repetition of the compile run's allocation
          sequence (:mod:`.relabel`)
replay    a trace resident and quiet: no allocation, or the replay's own I/O (tiny read-backs,
          an output copy per iteration). Back from untraced work after ``replay_return_s``
released  every trace buffer freed (shown once confirmed: a trace freed as teardown begins is
          teardown)
teardown  frees of long-lived buffers with hardly any allocations
exited    everything freed after teardown / release, a dead-PID cleanup by the server, or a
          local liveness check (:meth:`PhaseTracker.process_gone`)
idle      nothing busy for a while, no trace resident
========= ==================================================================================

A trace buffer is a TRACE buffer, or — with ``trace_region_size = 0``, the default in current
TT-Metal — a DRAM buffer allocated top-down (far above every bottom-up DRAM buffer), held while
the stream goes quiet (:mod:`.evidence`).

Modules: :mod:`.types` (the vocabulary), :mod:`.evidence` (what one event says),
:mod:`.machine` (the live state machine: input and queries), :mod:`.process` (what it knows of one
PID), :mod:`.rules` (per-event rules), :mod:`.deadlines` (time rules), :mod:`.transitions` (phase
changes and segments), :mod:`.describe` (the evidence text), :mod:`.relabel` (hindsight for
:func:`analyze`), :mod:`.polled` (a coarse per-device phase from polled totals).

What live input cannot know, and :func:`analyze` can: where a capture starts (before its trace
buffer exists the capture run looks like any other run), and when a killed process died if no
liveness check could see it (the server notices at its next 3-5 s check).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..events import Event
from .machine import PhaseTracker
from .types import Phase, PhaseConfig, PhaseState, Segment

__all__ = ["Phase", "PhaseConfig", "PhaseState", "PhaseTracker", "Segment", "analyze"]

_BATCH = 4096


def analyze(events: Iterable[Event], config: PhaseConfig | None = None) -> list[Segment]:
    """Offline inference: the live tracker over every event, then hindsight (capture starts, deaths)."""
    tracker = PhaseTracker(config)
    last = 0
    batch: list[Event] = []
    for ev in events:  # in batches: the compiled twin's path when built (the same state as observe() each)
        batch.append(ev)
        if len(batch) == _BATCH:
            tracker.observe_batch(batch)
            last = max(last, max(e.ts_ns for e in batch))
            batch = []
    if batch:
        tracker.observe_batch(batch)
        last = max(last, max(e.ts_ns for e in batch))
    tracker.tick(last)
    return tracker.segments(relabel_capture=True)
