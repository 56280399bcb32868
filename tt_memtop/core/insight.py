"""Insight: the answers to "why will (did) this allocation fail", kept up to date from the event stream.

One object per monitor (``MonitorState.insight``) that folds every batch into

* :class:`~.peaks.PeakTracker` — current and peak bytes per device x type and per PID x type, and
  what was live near each new device peak (:class:`~.peaks.PeakCapture`, taken lazily);
* one :class:`~.bankmap.SpaceMap` per device and memory (DRAM with the TRACE region, L1 with
  L1_SMALL) over the bank geometry of :mod:`.geometry` — largest free range per bank, free
  segments, largest allocatable interleaved buffer, fragmentation;
* :class:`~.history.UsageHistory` — max-preserving usage history per device x type;
* :class:`~.leaks.LeakTracker` — reclaimed and outliving buffers per PID;
* the recent allocation sizes per pool, for the "next one will not fit" warning.

Pure: no clock (timestamps come from the events), no I/O. Per event the cost is a few dict
stores; the interval work is deferred to the first query (:mod:`.bankmap`).

Address-0 buffers (graph capture's "hooked" allocations, which never reach the device
allocator) and SYSTEM_MEMORY (host) have no place in a bank and are left out of the maps.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from .bankmap import PoolStats, SpaceMap
from .events import EventKind
from .geometry import (
    DRAM,
    L1,
    L1_SMALL,
    POOLS,
    SPACE_OF,
    TRACE,
    ArchGeometry,
    GeometryConfig,
    device_geometry,
    pool_ranges,
    round_region,
)
from .history import UsageHistory
from .leaks import LeakTracker, phase_before_exit
from .peaks import PeakCapture, PeakTracker
from .protocol import BufferType

__all__ = ["Headroom", "Insight"]

_ALLOC, _FREE, _CLEANUP = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP
_CB = int(BufferType.CB)
RECENT = 64  # allocations per pool whose sizes make the "typical" next one
TOP_N = 10
CAPTURE_MIN_GAP_NS = 250_000_000  # at most one what-was-live capture per quarter second (event time)


@dataclass(frozen=True, slots=True)
class Headroom:
    """How close one device is to failing an allocation; ``None`` = unknown from what the wire shows."""

    device: int
    trace_bytes: int  # live TRACE bytes (summed over the device's trace buffers, as end_trace_capture counts)
    trace_peak_bytes: int
    trace_region_size: int | None  # per bank, configured (--trace-region-size) or inferred
    trace_region_known: bool
    suggested_trace_region_size: int  # the peak captured, rounded as generate_config rounds it
    l1_cb_top: int | None  # top of the circular buffers (from CB addresses, when they are addresses)
    l1_lowest_buffer: int | None
    l1_headroom: int | None  # between the two
    warnings: tuple[dict, ...]  # {"pool", "level": "tight" | "would_fail", "typical_per_bank", "largest_free"}

    def as_dict(self) -> dict:
        return {"trace_bytes": self.trace_bytes, "trace_peak_bytes": self.trace_peak_bytes,
                "trace_region_size": self.trace_region_size, "trace_region_known": self.trace_region_known,
                "suggested_trace_region_size": self.suggested_trace_region_size,
                "l1_cb_top": self.l1_cb_top, "l1_lowest_buffer": self.l1_lowest_buffer,
                "l1_headroom": self.l1_headroom, "warnings": list(self.warnings)}


class _Device:
    __slots__ = ("geom", "spaces", "trace_min", "small_min", "recent", "cb_top", "dirty_geom")

    def __init__(self, geom: ArchGeometry) -> None:
        self.geom = geom
        self.spaces: dict[int, SpaceMap] = {}
        self.trace_min = 0  # lowest TRACE address seen (0: none)
        self.small_min = 0
        self.recent = {t: deque(maxlen=RECENT) for t in POOLS}
        self.cb_top = 0
        self.dirty_geom = False


class Insight:
    def __init__(self, config: GeometryConfig | None = None) -> None:
        self.config = config or GeometryConfig()
        self.peaks = PeakTracker()
        self.history = UsageHistory()
        self.leaks = LeakTracker()
        self.captures: dict[tuple[int, int], PeakCapture] = {}
        self._devices: dict[int, _Device] = {}
        self._inventory = None
        self._events_since_capture = 0
        self._last_capture_ns = -CAPTURE_MIN_GAP_NS
        self._pending_capture: set[tuple[int, int]] = set()
        self.last_ts_ns = 0
        self.origin_ns = 0  # display origin of times (a recording's start); peaks keep the events' clock
        self._state = None

    # ------------------------------------------------------------------ geometry
    def set_inventory(self, inventory) -> None:
        if inventory is self._inventory:
            return
        self._inventory = inventory
        for d, dev in self._devices.items():
            g = self._geom_for(d)
            if g != dev.geom:
                dev.geom = g
                dev.dirty_geom = True

    def _geom_for(self, device: int) -> ArchGeometry:
        info = self._inventory.get(device) if self._inventory is not None else None
        return device_geometry(info.arch if info is not None else None, self.config, info)

    def _ranges(self, dev: _Device) -> dict:
        g = dev.geom
        cfg = self.config
        if cfg.trace_region_size is not None:
            trace, trace_known = round_region(cfg.trace_region_size, g.dram_alignment, g.dram_banks), True
        else:
            trace, trace_known = (g.dram_bank_size - dev.trace_min if dev.trace_min else 0), False
        if cfg.l1_small_size is not None:
            small, small_known = -(-cfg.l1_small_size // g.dram_alignment) * g.dram_alignment, True
        else:
            small, small_known = (g.worker_l1_size - dev.small_min if dev.small_min else 0), False
        return pool_ranges(g, trace, trace_known, small, small_known)

    def _device(self, d: int) -> _Device:
        dev = self._devices.get(d)
        if dev is None:
            dev = self._devices[d] = _Device(self._geom_for(d))
            rng = self._ranges(dev)
            dev.spaces = {DRAM: SpaceMap({DRAM: rng[DRAM], TRACE: rng[TRACE]}),
                          L1: SpaceMap({L1: rng[L1], L1_SMALL: rng[L1_SMALL]})}
        return dev

    def _settle(self, dev: _Device) -> None:
        if dev.dirty_geom:
            dev.dirty_geom = False
            rng = self._ranges(dev)
            dev.spaces[DRAM].set_pools({DRAM: rng[DRAM], TRACE: rng[TRACE]})
            dev.spaces[L1].set_pools({L1: rng[L1], L1_SMALL: rng[L1_SMALL]})

    # ------------------------------------------------------------------ folding
    def observe(self, events, state=None) -> None:
        """Fold a batch (after the registry and the phase tracker saw it)."""
        if not events:
            return
        self.peaks.observe(events)
        phases = state.phases if state is not None else None
        phase_of = phases.phase if phases is not None else None
        self.leaks.observe(events, phase_of, self._phase_before_exit if phases is not None else None)
        self._state = state
        devices = self._devices
        last_dev = None
        last_d = None
        for ev in events:
            k = ev.kind
            if k != _ALLOC and k != _FREE and k != _CLEANUP:
                continue
            t = ev.buffer_type
            bid = ev.buffer_id
            if t == _CB:
                if k == _ALLOC and bid > 0:
                    if last_d != ev.device:
                        last_d = ev.device
                        last_dev = devices.get(last_d) or self._device(last_d)
                    top = bid + ev.size
                    if last_dev.geom.l1_unreserved_base <= bid and top <= last_dev.geom.worker_l1_size \
                            and top > last_dev.cb_top:
                        last_dev.cb_top = top
                continue
            space = SPACE_OF.get(t)
            if space is None or bid <= 0:
                continue
            if last_d != ev.device:
                last_d = ev.device
                last_dev = devices.get(last_d) or self._device(last_d)
            dev = last_dev
            if k == _ALLOC:
                dev.spaces[space].alloc(bid, ev.size, t)
                dev.recent[t].append(ev.size)
                if t == TRACE:
                    if not dev.trace_min or bid < dev.trace_min:
                        if bid < dev.geom.dram_bank_size:
                            dev.trace_min = bid
                            dev.dirty_geom = True
                elif t == L1_SMALL and (not dev.small_min or bid < dev.small_min) and bid < dev.geom.worker_l1_size:
                    dev.small_min = bid
                    dev.dirty_geom = True
            else:
                dev.spaces[space].free(bid)
        # history: one point per series that changed, at the batch's end time
        ts = events[-1].ts_ns or self.last_ts_ns
        self.last_ts_ns = max(self.last_ts_ns, ts)
        rose = self.peaks.take_rose()
        self._pending_capture |= rose
        self._events_since_capture += len(events)
        touched = {(ev.device, ev.buffer_type) for ev in events
                   if ev.kind == _ALLOC or ev.kind == _FREE or ev.kind == _CLEANUP}
        cur = self.peaks.current
        for d, t in touched:
            row = cur.get(d)
            if row is not None and 0 <= t < len(row):
                v = row[t]
                peak, at = self.peaks.device_peak(d, t)
                self.history.record((d, t), ts, peak if (d, t) in rose and at >= events[0].ts_ns else v, v)
        if state is not None and self._pending_capture:
            self._maybe_capture(state, ts)

    def _phase_before_exit(self, pid: int):
        phases = self._state.phases if self._state is not None else None
        return phase_before_exit(phases, pid) if phases is not None else None

    def _maybe_capture(self, state, ts: int) -> None:
        """Scan the live buffers for the pools whose peak rose, if the scan is paid for (see peaks.py)."""
        registry = state.registry
        n = len(registry)
        if n > 5000 and self._events_since_capture < n // 4:
            return
        if ts - self._last_capture_ns < CAPTURE_MIN_GAP_NS and n > 5000:
            return
        keys = self._pending_capture
        self._pending_capture = set()
        self._events_since_capture = 0
        self._last_capture_ns = ts
        want = {k for k in keys}
        groups: dict[tuple[int, int], list] = {k: [] for k in want}
        for b in registry.buffer_list() if n else ():
            g = groups.get((b.device, b.buffer_type))
            if g is not None:
                g.append(b)
        phase_of = state.phase_of
        for key, bufs in groups.items():
            d, t = key
            cap = PeakCapture(d, t, sum(b.size for b in bufs), ts)
            for b in heapq.nlargest(TOP_N, bufs, key=lambda b: b.size):
                cap.top_buffers.append({"buffer_id": b.buffer_id, "size": b.size, "pid": b.owner_pid, "name": b.name})
            for b in bufs:
                cap.by_pid[b.owner_pid] = cap.by_pid.get(b.owner_pid, 0) + b.size
            for pid, nbytes in cap.by_pid.items():
                ph = phase_of(pid) or "unknown"
                cap.by_phase[ph] = cap.by_phase.get(ph, 0) + nbytes
            self.captures[key] = cap

    def load(self, registry, inventory, ts_ns: int) -> None:
        """Start over from a snapshot of the registry (attaching to a running server, a replay seek)."""
        self._inventory = inventory
        self._devices = {}
        self.peaks.load(registry, ts_ns)
        self.peaks.take_rose()
        for b in registry.buffer_list():
            t = b.buffer_type
            dev = self._device(b.device)
            if t == _CB:
                top = b.buffer_id + b.size
                if dev.geom.l1_unreserved_base <= b.buffer_id and top <= dev.geom.worker_l1_size:
                    dev.cb_top = max(dev.cb_top, top)
                continue
            space = SPACE_OF.get(t)
            if space is None or b.buffer_id <= 0:
                continue
            dev.spaces[space].alloc(b.buffer_id, b.size, t)
            if t == TRACE and b.buffer_id < dev.geom.dram_bank_size and (not dev.trace_min or b.buffer_id < dev.trace_min):
                dev.trace_min = b.buffer_id
                dev.dirty_geom = True
            if t == L1_SMALL and b.buffer_id < dev.geom.worker_l1_size and (not dev.small_min or b.buffer_id < dev.small_min):
                dev.small_min = b.buffer_id
                dev.dirty_geom = True
        for d in registry.devices():
            tot = registry.device_totals(d)
            for t, v in enumerate(tot):
                if v:
                    self.history.record((d, t), ts_ns, v, v)
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)

    def reset_peaks(self, ts_ns: int) -> None:
        self.peaks.reset(ts_ns)
        self.captures = {}
        self._pending_capture = set()

    # ------------------------------------------------------------------ queries
    def devices(self) -> list[int]:
        return sorted(self._devices)

    def geometry(self, device: int) -> ArchGeometry:
        dev = self._devices.get(device)
        return dev.geom if dev is not None else self._geom_for(device)

    def space(self, device: int, memory: int) -> SpaceMap:
        """The interval map of ``memory`` (DRAM or L1) on ``device`` (created empty if never used)."""
        dev = self._device(device)
        self._settle(dev)
        return dev.spaces[SPACE_OF[memory]]

    def pool_stats(self, device: int, pool: int) -> PoolStats:
        return self.space(device, pool).stats(pool)

    def typical_size(self, device: int, pool: int) -> int:
        """The largest of the last RECENT allocations in ``pool`` (0: none seen)."""
        dev = self._devices.get(device)
        r = dev.recent.get(pool) if dev is not None else None
        return max(r) if r else 0

    def headroom(self, device: int) -> Headroom:
        dev = self._device(device)
        self._settle(dev)
        g = dev.geom
        trace_now = self.peaks.current.get(device, [0] * 8)[TRACE]
        trace_peak = self.peaks.device_peak(device, TRACE)[0]
        trace_stats = dev.spaces[DRAM].stats(TRACE)
        region = trace_stats.bank_size if (trace_stats.range_known or dev.trace_min) else None
        lowest = dev.spaces[L1].lowest(L1)
        cb_top = dev.cb_top or None
        warnings = []
        for pool in (DRAM, L1, L1_SMALL, TRACE):
            typical = self.typical_size(device, pool)
            if not typical:
                continue
            st = dev.spaces[SPACE_OF[pool]].stats(pool)
            if st.bank_size <= 0:
                continue
            per = -(-typical // st.banks)
            per = -(-per // (g.dram_alignment if SPACE_OF[pool] == DRAM else g.l1_alignment)) * \
                (g.dram_alignment if SPACE_OF[pool] == DRAM else g.l1_alignment)
            if st.largest_free < per:
                level = "would_fail"
            elif st.largest_free < 2 * per:
                level = "tight"
            else:
                continue
            warnings.append({"pool": POOLS[pool], "level": level, "typical_bytes": typical, "typical_per_bank": per,
                             "largest_free_bytes": st.largest_free})
        return Headroom(device, trace_now, trace_peak, region, trace_stats.range_known,
                        round_region(trace_peak, g.dram_alignment, g.dram_banks) if trace_peak else 0,
                        cb_top, lowest, (lowest - cb_top) if (lowest is not None and cb_top is not None) else None,
                        tuple(warnings))

    def device_doc(self, device: int) -> dict:
        """Per pool: peak, map figures (``--json`` fields), plus headroom and the last peak capture."""
        pools = {}
        for t in (DRAM, L1, L1_SMALL, TRACE):
            st = self.pool_stats(device, t)
            peak, at = self.peaks.device_peak(device, t)
            d = st.as_dict()
            d.update({"current_bytes": self.peaks.current.get(device, [0] * 8)[t], "peak_bytes": peak,
                      "peak_at": at})
            cap = self.captures.get((device, t))
            if cap is not None:
                d["at_peak"] = cap.as_dict()
            pools[POOLS[t]] = d
        return {"pools": pools, "headroom": self.headroom(device).as_dict()}
