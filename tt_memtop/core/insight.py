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

from collections import deque
from dataclasses import dataclass

from .bankmap import PoolStats, SpaceMap
from .events import Event, EventKind
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
from .heap import give_back_free_heap
from .history import UsageHistory
from .leaks import LeakTracker, phase_before_exit
from .peaks import BAR_OF as _BAR_OF
from .peaks import BARS as _BARS
from .peaks import PeakCapture, PeakTracker
from .protocol import BufferType

__all__ = ["Headroom", "Insight", "warning_text"]

_ALLOC, _FREE, _CLEANUP = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP
_CB = int(BufferType.CB)
_KERNEL = int(BufferType.KERNEL)
RECENT = 64  # batches per pool whose (last) allocation sizes make the "typical" next one
PENDING_LIMIT = 200_000  # pending buffer changes folded into the maps without waiting for a query
NTYPES = len(BufferType)
_MAPPED = frozenset((DRAM, L1, L1_SMALL, TRACE))
TOP_N = 10
CAPTURE_MIN_GAP_NS = 250_000_000  # at most one what-was-live capture per quarter second (event time)
TRIM_MIN = 100_000  # snapshots of at least this many buffers end with the free heap given back (core/heap.py)


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


def warning_text(device: int, w: dict) -> str:
    """One headroom warning as a sentence, in the terms of TT-Metal's own out-of-memory error ("Not enough
    space to allocate X B L1 buffer across N banks, where each bank needs to store Y B ..."): what fails is
    the largest contiguous free range of one bank, not the total free."""
    banks = w.get("banks") or 0
    across = f" across {banks} banks" if banks else ""
    free = w.get("free_per_bank")
    total = f", {free * banks:,} B free in all" if free is not None and banks else ""
    verdict = "will not fit" if w["level"] == "would_fail" else "fits once more"
    return (f"device {device} {w['pool']}: the next {w['typical_bytes']:,} B buffer{across} needs "
            f"{w['typical_per_bank']:,} B per bank; the largest free range is {w['largest_free_bytes']:,} B per "
            f"bank{total}: it {verdict}")


class _Device:
    __slots__ = ("geom", "spaces", "trace_min", "small_min", "recent", "cbs", "dirty_geom")

    def __init__(self, geom: ArchGeometry) -> None:
        self.geom = geom
        self.spaces: dict[int, SpaceMap] = {}
        self.trace_min = 0  # lowest TRACE address seen (0: none)
        self.small_min = 0
        self.recent = {t: deque(maxlen=RECENT) for t in POOLS}
        self.cbs: dict[int, int] = {}  # live CBs with an address in the L1 range: start -> end
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
        # buffer_id << 8 | device -> size << 3 | type (alloc), -1 - type (free), in first-store order: a dict, or
        # the compiled twin of one that holds C integers (insight.c's Pending: no int objects per store)
        self._pending = _new_pending()
        self._last_alloc: dict[int, int] = {}  # device << 3 | type -> the batch's last allocation size
        self._cb_pending: list[tuple[int, int, int]] = []  # (device, address, +size alloc / -size free)
        self._region_pending: list[tuple[int, int, int]] = []  # (device, address, type) of TRACE / L1_SMALL allocs
        self._recorded: dict[int, list[int]] = {}  # device -> the values last written to the history
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
        self._flush()
        if dev.dirty_geom:
            dev.dirty_geom = False
            rng = self._ranges(dev)
            dev.spaces[DRAM].set_pools({DRAM: rng[DRAM], TRACE: rng[TRACE]})
            dev.spaces[L1].set_pools({L1: rng[L1], L1_SMALL: rng[L1_SMALL]})

    # ------------------------------------------------------------------ folding
    def observe(self, events, state=None) -> None:
        """Fold a batch (after the registry and the phase tracker saw it).

        One pass: the peak counters, and a store of each buffer's new state in a pending dict
        (alloc: size and type, free: the type) that :meth:`_flush` hands to the interval maps when
        someone asks. ~1 us per event.
        """
        if not events:
            return
        phases = state.phases if state is not None else None
        self._state = state
        peaks = self.peaks
        dev_rows: dict = {}
        pid_rows: dict = {}
        args = (events, peaks, dev_rows, pid_rows, self._pending, self._last_alloc, self._cb_pending,
                self._region_pending)
        if _native_pass is None or not _native_pass(*args):  # False: not all Events (the pure pass takes any)
            _observe_pass(*args)
        pend = self._pending
        if state is not None:
            # the registry is authoritative at the end of the batch: a CB / KERNEL re-ALLOC of a live id
            # replaces the old entry without a FREE, which running counters would count twice
            reg = state.registry
            for d, r in dev_rows.items():
                r[0][:] = reg.device_totals(d)
            for p, r in pid_rows.items():
                r[0][:] = reg.pid_totals(p)
        ts_end = events[-1].ts_ns
        ts = ts_end or self.last_ts_ns
        (_native_end or _end_pass)(dev_rows, pid_rows, peaks, ts_end, self._recorded, self.history.record, ts)
        if len(pend) > PENDING_LIMIT:
            self._flush()
        self.leaks.observe(events, phases.phase if phases is not None else None,
                           self._phase_before_exit if phases is not None else None,
                           phases.segments if phases is not None else None,
                           state.registry if state is not None else None)
        self.last_ts_ns = max(self.last_ts_ns, ts)
        self._pending_capture |= peaks.take_rose()
        self._events_since_capture += len(events)
        if state is not None and self._pending_capture:
            self._maybe_capture(state, ts)

    def _flush(self) -> None:
        """Hand the pending buffer changes to the devices' interval maps (cheap per change; see bankmap.py)."""
        if self._cb_pending:
            for d, bid, size in self._cb_pending:
                dev = self._devices.get(d) or self._device(d)
                if size > 0:
                    if dev.geom.l1_unreserved_base <= bid and bid + size <= dev.geom.worker_l1_size:
                        dev.cbs[bid] = bid + size
                else:
                    dev.cbs.pop(bid, None)
            self._cb_pending = []
        if self._last_alloc:
            for key, size in self._last_alloc.items():
                dev = self._devices.get(key >> 3) or self._device(key >> 3)
                dev.recent[key & 7].append(size)
            self._last_alloc = {}
        if self._region_pending:
            for d, bid, t in self._region_pending:
                dev = self._devices.get(d) or self._device(d)
                if t == TRACE:
                    if (not dev.trace_min or bid < dev.trace_min) and bid < dev.geom.dram_bank_size:
                        dev.trace_min = bid
                        dev.dirty_geom = True
                elif (not dev.small_min or bid < dev.small_min) and \
                        dev.geom.l1_unreserved_base <= bid < dev.geom.worker_l1_size:
                    dev.small_min = bid
                    dev.dirty_geom = True
            self._region_pending = []
        if not self._pending:
            return
        pend, self._pending = self._pending, _new_pending()
        devices = self._devices
        for key, val in pend.items():
            d = key & 255
            bid = key >> 8
            dev = devices.get(d) or self._device(d)
            if val >= 0:
                t = val & 7
                dev.spaces[SPACE_OF[t]].alloc(bid, val >> 3, t)
            else:
                dev.spaces[SPACE_OF[-1 - val]].free(bid)

    def _phase_before_exit(self, pid: int):
        phases = self._state.phases if self._state is not None else None
        return phase_before_exit(phases, pid) if phases is not None else None

    def _maybe_capture(self, state, ts: int) -> None:
        """Scan the live buffers for the pools whose peak rose, if the scan is paid for (see peaks.py):
        at least as many events since the last scan as there are live buffers, a quarter second of
        event time, and a peak at least 1 % above what the pool's last capture saw."""
        registry = state.registry
        n = len(registry)
        if n > 5000 and (self._events_since_capture < n or ts - self._last_capture_ns < CAPTURE_MIN_GAP_NS):
            return
        keys = set()
        for key in self._pending_capture:
            cap = self.captures.get(key)
            if cap is None or self.peaks.device_peak(*key)[0] * 100 > cap.bytes * 101:
                keys.add(key)
        self._pending_capture = set()
        if not keys:
            return
        self._events_since_capture = 0
        self._last_capture_ns = ts
        keys = list(keys)
        phase_of = state.phase_of
        # one pass over the registry's rows for all the pools, a Buffer only for each pool's top entries
        for key, (nbytes, top, by_pid) in zip(keys, registry.pools(keys, TOP_N), strict=True):
            d, t = key
            cap = PeakCapture(d, t, nbytes, ts)
            for b in top:
                cap.top_buffers.append({"buffer_id": b.buffer_id, "size": b.size, "pid": b.owner_pid, "name": b.name})
            cap.by_pid = by_pid
            for pid, nb in by_pid.items():
                ph = phase_of(pid) or "unknown"
                cap.by_phase[ph] = cap.by_phase.get(ph, 0) + nb
            self.captures[key] = cap

    def load(self, registry, inventory, ts_ns: int) -> None:
        """Start over from a snapshot of the registry (attaching to a running server, a replay seek)."""
        self._inventory = inventory
        self._devices = {}
        self._pending = _new_pending()
        self._last_alloc = {}
        self._cb_pending = []
        self._region_pending = []
        self._recorded = {}
        self.peaks.load(registry, ts_ns)
        self.peaks.take_rose()
        # Two passes over the rows, no list of a million items in between (freed, such a list leaves the
        # heap fragmented around the maps' entries): the regions first, then the maps, laid out for them.
        devs: dict[int, _Device] = {}
        mapped = _MAPPED
        view = registry.buffer_list()
        for b in view:
            t = b.buffer_type
            bid = b.buffer_id
            if bid <= 0 or (t not in mapped and t != _CB):
                continue
            d = b.device
            dev = devs.get(d)
            if dev is None:
                dev = devs[d] = self._device(d)
            if t == _CB:
                top = bid + b.size
                if dev.geom.l1_unreserved_base <= bid and top <= dev.geom.worker_l1_size:
                    dev.cbs[bid] = top
                continue
            if t == TRACE:
                if bid < dev.geom.dram_bank_size and (not dev.trace_min or bid < dev.trace_min):
                    dev.trace_min = bid
                    dev.dirty_geom = True
            elif t == L1_SMALL and dev.geom.l1_unreserved_base <= bid < dev.geom.worker_l1_size and \
                    (not dev.small_min or bid < dev.small_min):
                dev.small_min = bid
                dev.dirty_geom = True
        loaders: dict[int, dict] = {}  # device -> memory (DRAM, L1) -> add(start, size, type)
        for d, dev in devs.items():
            if dev.dirty_geom:  # the regions are known now: lay the maps out for them before loading
                dev.dirty_geom = False
                rng = self._ranges(dev)
                dev.spaces[DRAM].set_pools({DRAM: rng[DRAM], TRACE: rng[TRACE]})
                dev.spaces[L1].set_pools({L1: rng[L1], L1_SMALL: rng[L1_SMALL]})
            loaders[d] = {memory: dev.spaces[memory].loader() for memory in (DRAM, L1)}
        space_of = SPACE_OF
        for b in view:  # in allocation order: the last of each pool are its most recent allocations
            t = b.buffer_type
            bid = b.buffer_id
            if bid <= 0 or t not in mapped:
                continue
            loaders[b.device][space_of[t]](bid, b.size, t)
            # attached mid-run, no allocation seen yet: the live buffers' sizes are the typical ones (the
            # "next one will not fit" warning would otherwise wait for the next allocation)
            devs[b.device].recent[t].append(b.size)
        del view
        for d, per in loaders.items():
            for memory in per:
                devs[d].spaces[memory].set_loaded()
        for d in registry.devices():
            tot = registry.device_totals(d)
            for t, v in enumerate(tot):
                if v:
                    self.history.record((d, t), ts_ns, v, v)
        self.last_ts_ns = max(self.last_ts_ns, ts_ns)
        if len(registry) >= TRIM_MIN:  # the registry's and the maps' load freed their growth steps: give them back
            give_back_free_heap()

    def record_totals(self, ts_ns: int, totals: dict) -> None:
        """A totals-only source's sample (the original server polled, TT-Metal's shared memory): device ->
        (dram, l1, l1_small, trace, cb, kernel). Its samples are the usage history there is no event for."""
        if not ts_ns:
            return
        record = self.history.record
        for d, w in totals.items():
            seven = [0] * NTYPES
            for t, v in zip((0, 1, 3, 4, 5, 6), w, strict=False):  # a short tuple: the pools it has
                record((d, t), ts_ns, v, v)
                seven[t] = v
            self.peaks.observe_totals(d, seven, ts_ns)

    def reset_peaks(self, ts_ns: int) -> None:
        self.peaks.reset(ts_ns)
        self.captures = {}
        self._pending_capture = set()

    # ------------------------------------------------------------------ queries
    def devices(self) -> list[int]:
        """Devices that held something with an address (or any bytes) since the start."""
        self._flush()
        return sorted(set(self._devices) | set(self.peaks.current))

    def map_nbytes(self) -> int:
        """Memory the devices' bank maps hold (:meth:`.bankmap.SpaceMap.nbytes`), for benchmarks."""
        return sum(m.nbytes() for dev in self._devices.values() for m in dev.spaces.values())

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
        """The largest of the recent allocation sizes in ``pool`` (the last of each of the last RECENT
        batches that allocated there; 0: none seen)."""
        self._flush()
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
        cb_top = max(dev.cbs.values()) if dev.cbs else None
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
                             "largest_free_bytes": st.largest_free, "banks": st.banks,
                             "free_per_bank": st.free_per_bank})
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


def _observe_pass(events, peaks, dev_rows: dict, pid_rows: dict, pend: dict, last_alloc: dict, cbs: list,
                  regions: list) -> None:
    """Insight's per-event pass (see :meth:`Insight.observe`): running peak counters per device x type
    (with the batch's max, for the history) and per PID x type, and each buffer's new state queued
    for the bank maps. The reference of the compiled pass (tt_memtop/_native/insight.c)."""
    rose = peaks.rose
    mapped = _MAPPED
    bar_mask = peaks.bar_mask
    for ev in events:
        k = ev.kind
        if k is _ALLOC:
            size = ev.size
        elif k is _FREE or k is _CLEANUP:
            size = -ev.size
        else:
            continue
        t = ev.buffer_type
        if not 0 <= t < NTYPES:
            continue
        d = ev.device
        r = dev_rows.get(d)
        if r is None:
            cur, peak, at = peaks._dev(d)
            # then the batch's max (for the history; its CB / KERNEL stay the batch's start until the end),
            # the bars' peaks and their times
            r = dev_rows[d] = (cur, peak, at, list(cur), *peaks._bars(d))
        cur = r[0]
        v = cur[t] + size
        cur[t] = v
        if size > 0 and t < _CB:  # CB / KERNEL peaks: from the registry's totals after the batch
            if v > r[3][t]:
                r[3][t] = v
                if v > r[1][t]:
                    r[1][t] = v
                    r[2][t] = ev.ts_ns
                    rose.add((d, t))
            if bar_mask >> t & 1:  # the bar's stacked sum, CB / KERNEL as of the batch's start
                b = _BAR_OF[t]
                s = 0
                for u in _BARS[b]:
                    if bar_mask >> u & 1:
                        s += cur[u] if u < _CB else r[3][u]
                if s > r[4][b]:
                    r[4][b] = s
                    r[5][b] = ev.ts_ns
        p = ev.pid
        r = pid_rows.get(p)
        if r is None:
            r = pid_rows[p] = peaks._pid(p)
        cur = r[0]
        v = cur[t] + size
        cur[t] = v
        if size > 0 and t < _CB and v > r[1][t]:
            r[1][t] = v
            r[2][t] = ev.ts_ns
        bid = ev.buffer_id
        if bid > 0 and 0 <= d < 256:
            if t in mapped:
                if size > 0:
                    pend[bid << 8 | d] = size << 3 | t
                    last_alloc[d << 3 | t] = size
                    if t == TRACE or t == L1_SMALL:  # rare: the regions' lowest addresses, even if freed at once
                        regions.append((d, bid, t))
                else:
                    pend[bid << 8 | d] = -1 - t
            elif t == _CB:
                cbs.append((d, bid, size))


def _end_pass(dev_rows: dict, pid_rows: dict, peaks, ts_end: int, recorded: dict, record, ts: int) -> None:
    """The end of :meth:`Insight.observe`'s batch, after the registry's totals replaced the running counters:
    CB / KERNEL peaks from those totals, the bars with the batch's final CB / KERNEL, and one usage-history
    point per series that changed in the batch (its max within the batch, its last value). The reference
    of the compiled end_pass (tt_memtop/_native/insight.c)."""
    rose = peaks.rose
    for rows, is_dev in ((dev_rows, True), (pid_rows, False)):
        for key, r in rows.items():
            cur, peak, at = r[0], r[1], r[2]
            for t in (_CB, _KERNEL):
                if cur[t] > peak[t]:
                    peak[t] = cur[t]
                    at[t] = ts_end
                    if is_dev:
                        rose.add((key, t))
                        r[3][t] = max(r[3][t], cur[t])
            if is_dev:
                peaks.raise_bars(key, cur, ts_end)
    for d, (cur, _peak, _at, bmax, *_bars) in dev_rows.items():
        last = recorded.get(d)
        if last is None:
            last = recorded[d] = [-1] * NTYPES
        for t in range(NTYPES):
            v = cur[t]
            if v != last[t] or bmax[t] > v:
                last[t] = v
                record((d, t), ts, max(bmax[t], v), v)


def _load_native_pass():
    """The compiled pass, set up for this module; None without it (or with MEMTOP_PURE_PYTHON=1)."""
    from .._native import load_set_up

    mod = load_set_up("insight", Event, _ALLOC, _FREE, _CLEANUP, NTYPES, _CB, TRACE, L1_SMALL, tuple(_MAPPED), _BARS)
    return mod.observe_pass if mod is not None else None


def _load_native_end():
    """The compiled end of a batch (it takes KERNEL as the type after CB); None without it."""
    from .._native import load

    mod = load("insight") if _native_pass is not None and _KERNEL == _CB + 1 else None
    return getattr(mod, "end_pass", None)


_native_pass = _load_native_pass()


def _load_pending_class():
    """What holds the pending buffer changes: insight.c's Pending with the compiled pass, else a dict."""
    from .._native import load

    mod = load("insight") if _native_pass is not None else None
    return getattr(mod, "Pending", dict)


_new_pending = _load_pending_class()
_native_end = _load_native_end()
