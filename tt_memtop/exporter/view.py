"""What one scrape exports, as plain data: figures per device × pool, per process, and about the source.

Why a snapshot instead of reading live objects while rendering: the registry changes on the event
loop thread, a scrape runs on the HTTP thread. The view is built on the loop (cheap: it copies the
registry's running totals, it never walks the buffers) and rendered anywhere.

Two builders: :func:`view_from_state` for a monitor's :class:`~tt_memtop.core.model.MonitorState`
(``memtop exporter``, any source) and :func:`view_from_ledger` for the server's own registry
(``memtop serve --metrics-port``). Optional figures (peak, largest allocatable, ledger-vs-SHM
drift) are dicts that stay empty until a producer knows them; the collector exports what is there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.devices import Inventory
from ..core.events import Event, EventKind
from ..core.model import MonitorState
from ..core.protocol import BufferType
from ..core.registry import Registry
from ..sources.base import Capability, EventBatch, Snapshot, TotalsSample, Update

__all__ = ["POOLS", "DeviceFigures", "LagTracker", "MetricsView", "ProcessFigures", "view_from_ledger",
           "view_from_state"]

#: Label values of ``pool``, in wire-total order (SYSTEM_MEMORY counts in l1_small, as on the wire).
POOLS = ("dram", "l1", "l1_small", "trace", "cb", "kernel")
#: Pools TT-Metal's shared memory and the event ledger both count (MonitorState.drift compares these).
DRIFT_POOLS = ("dram", "l1", "l1_small", "trace")
#: Pools with peaks and bank maps (MonitorState.insight), and their BufferType.
INSIGHT_POOLS = (("dram", int(BufferType.DRAM)), ("l1", int(BufferType.L1)), ("l1_small", int(BufferType.L1_SMALL)),
                 ("trace", int(BufferType.TRACE)))
#: Source states in which the exported figures are live.
UP_STATES = frozenset({"connected", "playing", "paused"})


def _wire(totals: list[int]) -> tuple[int, ...]:
    """Bytes by BufferType (registry order) -> the six wire pools."""
    return (totals[0], totals[1], totals[2] + totals[3], totals[4], totals[5], totals[6])


@dataclass(slots=True)
class DeviceFigures:
    device: int
    arch: str  # label value: "wormhole_b0", "blackhole", ... or "unknown"
    used: tuple[int, ...]  # bytes per POOLS entry
    capacity: dict[str, int] = field(default_factory=dict)  # pool -> bytes, where the inventory says
    buffers: int | None = None  # live buffers (CB/kernel excluded), None when only totals are known
    phase: str = ""
    peak: dict[str, int] = field(default_factory=dict)
    largest_allocatable: dict[str, int] = field(default_factory=dict)
    drift: dict[str, int] = field(default_factory=dict)  # pool -> ledger minus SHM bytes


@dataclass(slots=True)
class ProcessFigures:
    pid: int
    comm: str
    used: dict[int, tuple[int, ...]]  # device -> bytes per POOLS entry
    buffers: int | None = None
    phase: str = ""


@dataclass(slots=True)
class MetricsView:
    hostname: str
    source: str  # what the figures come from: "serve", "subscribe", "poll", ...
    up: bool
    lag_s: float | None
    events_total: int
    bad_frames_total: int
    devices: list[DeviceFigures] = field(default_factory=list)
    processes: list[ProcessFigures] = field(default_factory=list)


def _arch_label(inventory: Inventory, device: int) -> str:
    info = inventory.get(device)
    return info.arch_name.lower() if info is not None else "unknown"


def _capacity(inventory: Inventory, device: int) -> dict[str, int]:
    info = inventory.get(device)
    if info is None:
        return {}
    return {k: v for k, v in (("dram", info.total_dram), ("l1", info.total_l1)) if v > 0}


def _processes(registry: Registry, comm: Callable[[int], str], phase_of: Callable[[int], str]) -> list[ProcessFigures]:
    out = []
    for pid in registry.pids():
        per_dev = {d: _wire(t) for d, t in registry.pid_device_totals(pid).items()}
        out.append(ProcessFigures(pid, comm(pid), per_dev, registry.pid_count(pid), phase_of(pid)))
    return out


def view_from_ledger(registry: Registry, inventory: Inventory, *, events_total: int, bad_frames_total: int,
                     hostname: str, comm: Callable[[int], str]) -> MetricsView:
    """The server's own registry: authoritative, no lag, always up while the server runs."""
    devices = sorted({d.device_id for d in inventory.devices} | set(registry.devices()))
    figs = [DeviceFigures(d, _arch_label(inventory, d), _wire(registry.device_totals(d)), _capacity(inventory, d),
                          registry.device_count(d)) for d in devices]
    return MetricsView(hostname, "serve", True, 0.0, events_total, bad_frames_total, figs,
                       _processes(registry, comm, lambda _pid: ""))


def view_from_state(state: MonitorState, *, source: str, hostname: str, comm: Callable[[int], str],
                    lag_s: float | None) -> MetricsView:
    """A monitor's state, whatever its source: per-buffer figures when it has events, else polled totals."""
    inv = state.inventory
    events = state.has_events
    figs = []
    for d in state.devices():
        figs.append(DeviceFigures(d, _arch_label(inv, d), tuple(state.device_wire_totals(d)), _capacity(inv, d),
                                  state.registry.device_count(d) if events else None, state.device_phase(d)))
    if events:
        ins = state.insight  # peaks and the bank maps need every event with its address (core/insight.py)
        for d in figs:
            for pool, t in INSIGHT_POOLS:
                if pool != "l1_small":  # insight's L1_SMALL peak leaves out system memory, which l1_small counts
                    d.peak[pool] = ins.peaks.device_peak(d.device, t)[0]
                d.largest_allocatable[pool] = ins.pool_stats(d.device, t).largest_allocatable
        procs = _processes(state.registry, comm, state.phase_of)
    else:  # per-process totals from TT-Metal's shared memory; a dead PID's slot is not a live process's
        procs = [ProcessFigures(p.pid, p.name or comm(p.pid), {d: tuple(t) for d, t in p.devices.items()}, None,
                                state.phase_of(p.pid))
                 for p in sorted(state.polled_procs.values(), key=lambda p: p.pid) if p.alive is not False]
    if state.crosscheck:  # shared-memory totals beside the event ledger: 0, or how far they disagree
        drifting = state.drift()
        for d in figs:
            if d.device in state.crosscheck:
                d.drift = {pool: 0 for pool in DRIFT_POOLS}
                for name, (ledger, shm) in drifting.get(d.device, {}).items():
                    d.drift[name.lower()] = ledger - shm
    return MetricsView(hostname, source, state.status.state in UP_STATES, lag_s, state.events_total,
                       state.bad_frames, figs, procs)


class LagTracker:
    """How stale the exported figures are, from what the source delivered and when (time passed in).

    Event streams: how far the newest event's server timestamp trailed its arrival (our server
    stamps with the monotonic clock of this host); a quiet stream is not stale. Totals-only
    sources (polling, shared memory): the age of the newest sample.
    """

    #: A timestamp further off than this is from another clock (a replayed log): not a lag.
    PLAUSIBLE_NS = 3600 * 10**9

    def __init__(self) -> None:
        self.last_sample_ns = 0  # monotonic time of the newest totals sample
        self.event_lag_ns: int | None = None

    def saw(self, update: Update, now_ns: int) -> None:
        if isinstance(update, EventBatch) and update.events:
            ev: Event = update.events[-1]
            delta = now_ns - ev.ts_ns
            if ev.ts_ns and ev.kind != EventKind.TOTALS and 0 <= delta < self.PLAUSIBLE_NS:
                self.event_lag_ns = delta
        elif isinstance(update, Snapshot):
            self.event_lag_ns = 0
        elif isinstance(update, TotalsSample):
            self.last_sample_ns = now_ns

    def lag_s(self, state: MonitorState, now_ns: int) -> float | None:
        if state.status.state not in UP_STATES:
            return None
        if Capability.EVENTS in state.capabilities:
            return (self.event_lag_ns or 0) / 1e9
        if self.last_sample_ns:
            return (now_ns - self.last_sample_ns) / 1e9
        return None
