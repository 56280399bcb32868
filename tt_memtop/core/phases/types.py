"""The vocabulary of phase inference: phases, thresholds, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass

from ..._compat import StrEnum

__all__ = ["Phase", "PhaseConfig", "PhaseState", "Segment"]

MiB = 1024 * 1024


class Phase(StrEnum):
    """The trace life-cycle phase of a process (see :mod:`tt_memtop.core.phases` for the evidence)."""

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
    """Every threshold of the inference, in one place. Counts are per device of the process's mesh.

    Evidence is counted over the last ``window`` entries per device (allocations and frees that
    are neither I/O trickle nor program objects), not over wall-clock bursts: a compile run's
    program-cache misses put 15-300 ms between ops without making it less of a warm-up.
    """

    #: Buffers up to this size are I/O trickle (replay inputs / read-backs): never evidence, never "busy".
    io_max_bytes: int = 16 * 1024
    #: Evidence entries per device kept for the counting rules.
    window: int = 24
    #: A buffer freed younger than this was a temporary (churn evidence).
    young_s: float = 1.0
    #: Temporaries freed per device in the window that mean warm-up (compile or eager runs), ...
    churn_frees: float = 3.0
    #: ... if they are at least this share of the window's entries (a run frees about one temporary
    #: per op, ~0.5; a load with an on-device tilize temporary per layer, or even per weight, stays below).
    churn_share: float = 0.4
    #: ... and, with a trace resident, if the window's allocations have at least this many distinct
    #: (size, type) outside the replay's own I/O (untraced work runs many different ops; an output
    #: copy per replay iteration is one or two shapes).
    untraced_variety: int = 2
    #: While loading, a non-DRAM (activation) buffer held this long means a run has begun: its
    #: first op is compiling (the output is allocated before the program-cache miss).
    activation_hold_s: float = 0.03
    #: Program objects (CBs, application kernels: 144-byte clients only) per device that mean compiling.
    compile_objects: float = 2.0
    #: A buffer freed older than this was long-lived (teardown evidence).
    long_lived_s: float = 2.0
    #: Long-lived frees per device in the window that mean teardown, ...
    teardown_frees: float = 4.0
    #: ... while allocations in the window stay below this fraction of them.
    teardown_alloc_ratio: float = 0.25
    #: A DRAM allocation this large is model-load evidence, ...
    load_min_bytes: int = 1 * MiB
    #: ... when this many per device are in the window (from idle / released).
    load_allocs: float = 2.0
    #: No busy event for this long: a loading / warming-up process is idle (segments, backdated).
    idle_s: float = 0.8
    #: The live view shows a loading or eager process as idle after this much quiet already ...
    idle_show_s: float = 0.1
    #: ... but never less than this many times the longest pause of the current phase (capped at idle_s).
    idle_show_pause_factor: float = 2.0
    #: With a trace resident, this much quiet after untraced work is replay again (hysteresis).
    replay_return_s: float = 0.15
    #: TRACE on part of the mesh only: the capture is over after this much quiet.
    capture_settle_s: float = 0.5
    #: The live view shows "released" only once it lasted this long (a trace freed as teardown
    #: begins shows no blip). A trace freed among long-lived frees is teardown, not a release.
    release_confirm_s: float = 0.05
    #: A DRAM buffer this far above every bottom-up DRAM buffer of its device was allocated
    #: top-down: a trace buffer of a dynamic trace region (trace_region_size = 0).
    top_down_gap_bytes: int = 64 * MiB
    #: analyze(): the capture run is searched this far back from its trace buffer.
    capture_max_s: float = 30.0
    #: analyze(): a server cleanup this much after a replaying process's last event, relative to its
    #: usual interval between events, dates the death to just after that last event.
    death_gap_factor: float = 5.0
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
