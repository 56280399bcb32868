"""What the tracker knows about one process: its phase, its live buffers, its evidence window, its deadlines."""

from __future__ import annotations

from collections import deque

from ..._native import load
from ..table import LiveMap
from . import evidence as ev_
from .types import Phase, PhaseConfig, Segment

__all__ = ["NEVER", "Proc", "live_key"]

NEVER = 1 << 62
_SEQ_MAX = 20_000  # allocation signatures kept per process for the capture search (the last ones)


def _compact_classes():
    """A process's live map and recent allocation times, compiled when built (tt_memtop/_native/phases.c):
    ``LiveTable`` (16-byte slots, ~22 B a live buffer; else LiveMap, table rows, core/table.py), a
    dict ``key -> (ts, size, type)``; ``Stamps`` (a ring of int64, 8 B a time; else a deque of ints,
    ~40 B), a deque of times."""
    mod = load("phases")
    return getattr(mod, "LiveTable", None) or LiveMap, getattr(mod, "Stamps", None) or deque


LiveTable, Stamps = _compact_classes()


class Proc:
    """Everything the tracker knows about one PID.

    Slots, not a dict: the compiled twin of the per-event rules (``tt_memtop/_native/phases.c``) reads
    and writes these fields through their member descriptors, as Python does.
    """

    __slots__ = ("pid", "phase", "since", "prev_phase", "seg_devices", "closed", "live", "live_dram", "dev_live", "trace",
                 "trace_keys", "capture_mesh", "capture_devs", "last_busy", "phase_busy", "loaded_until", "last_trace_alloc",
                 "last_compile", "window", "replay_sigs", "last_lead", "pending_l1", "compiled_since_busy", "compiling",
                 "learn_until", "mid_op", "tentative", "dram_tail", "lead", "seq", "seq_floor", "after_release", "hints",
                 "exit_hint", "recent", "allocs", "exit_note", "quiet_at", "show_at", "show_ns", "longest_pause",
                 "boundary_pause", "boundary_show_ns", "temps", "hold_until", "need_churn", "need_long", "need_load",
                 "need_compile")

    def __init__(self, pid: int, phase: Phase, ts: int, cfg: PhaseConfig) -> None:
        self.pid = pid
        self.phase = phase
        self.since = ts
        self.prev_phase = phase  # the phase before the current one (the live view's hold)
        self.seg_devices: set[int] = set()
        self.closed: list[Segment] = []
        # key -> (alloc ts, size, type), compact (a dict of tuples was ~200 B per live buffer)
        self.live = LiveTable()
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
        self.recent: deque[int] = Stamps(maxlen=8)  # last event times (death dating)
        self.allocs: deque[int] = Stamps()  # allocation times in the evidence window, oldest first
        self.exit_note = ""
        self.quiet_at = NEVER
        self.show_at = NEVER
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


def live_key(device: int, buffer_id: int, buffer_type: int) -> tuple[int, int, int]:
    """Buffers, CBs and kernels live in separate id spaces (as in the registry)."""
    return (device, buffer_id, 1 if buffer_type == ev_._CB else 2 if buffer_type == ev_._KERNEL else 0)
