"""Totals-based usage: per device and per process, from a source that has no per-buffer events. Pure.

Why: TT-Metal's shared-memory statistics (``core/shm_layout``) give, per chip, totals by pool for
the chip and for every process attached to it, and nothing else. This module turns the parsed
regions of one scan into what the monitor shows, deciding the questions the raw regions leave
open:

* **Device rows.** One per region, numbered by the region's logical ``device_id`` (the numbering
  TT-Metal and the allocation server use). A region's totals already count every chip the region
  tracks; ``chip_stats`` entries for *other* chips appear only when allocations on a remote chip
  are attributed through this one (``record_allocation(..., chip_id)``). Such an entry becomes its
  own device row, taken out of the gateway's row, unless that chip has a region of its own (then
  its own region is the authority and the entry is ignored): nothing is counted twice.
* **Liveness.** A slot whose PID is dead (``alive`` is False) is marked, its bytes are not a live
  process's, and they are not shown as memory in use: the process that held them is gone, and the
  next TT-Metal process to attach will subtract them. A region with no live process at all is
  *stale* (files persist after every run): shown idle, its leftover bytes reported apart.
* **Collisions.** Two live regions claiming one logical id (two processes, each opening a
  different chip as its device 0) keep separate rows: the one with the lower chip id keeps the
  number, the other gets the next free one, and the region list says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .events import Event, EventKind
from .shm_layout import Region, RegionProblem

__all__ = ["ProcessUsage", "RegionStatus", "TotalsEvents", "UsageView", "build_view", "expand_recorded_totals"]

Wire = tuple[int, int, int, int, int, int]  # dram, l1, l1_small, trace, cb, kernel
_ZERO: Wire = (0, 0, 0, 0, 0, 0)


def _wire(pools: tuple[int, ...]) -> Wire:
    return (pools[0], pools[1], pools[2], pools[3], pools[4], pools[5] if len(pools) > 5 else 0)


def _add(a: Wire, b: Wire) -> Wire:
    return tuple(x + y for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _sub(a: Wire, b: Wire) -> Wire:
    return tuple(max(0, x - y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One PID's bytes per device. ``alive``: True / False, or None when it cannot be known (a replay)."""

    pid: int
    name: str
    alive: bool | None
    devices: Mapping[int, Wire]
    last_update_ns: int = 0

    def by_pool(self) -> Wire:
        total = _ZERO
        for t in self.devices.values():
            total = _add(total, t)
        return total


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """What the monitor says about one region file (the header, ``--json``'s ``shm.regions``)."""

    path: str
    state: str  # "active" | "stale" | "idle" | a RegionProblem kind
    message: str = ""
    chip_unique_id: int | None = None
    device: int | None = None  # the device row it feeds
    logical_id: int | None = None  # as written in the region
    version: int | None = None
    layout: str = ""
    last_update_ns: int = 0
    live_processes: int = 0
    dead_slots: tuple[int, ...] = ()  # PIDs
    leftover: Wire = _ZERO  # bytes not shown as in use: of dead slots, or of the whole stale region
    clamped: int = 0

    @property
    def readable(self) -> bool:
        return self.state in ("active", "stale", "idle")


@dataclass(slots=True)
class UsageView:
    totals: dict[int, Wire] = field(default_factory=dict)  # device -> bytes in use by live processes
    processes: dict[int, ProcessUsage] = field(default_factory=dict)
    regions: list[RegionStatus] = field(default_factory=list)
    chip_ids: dict[int, int] = field(default_factory=dict)  # device -> chip_unique_id
    remote: set[int] = field(default_factory=set)  # devices seen only through a gateway's chip_stats

    def problems(self) -> list[RegionStatus]:
        return [r for r in self.regions if not r.readable]


def build_view(scanned: Iterable[tuple[str, Region | RegionProblem]], alive: Mapping[int, bool | None]) -> UsageView:
    """The usage of one scan: ``scanned`` is ``(path, parse result)`` per file, ``alive`` the
    liveness of every slot PID (missing = unknown, treated as alive)."""
    view = UsageView()
    good: list[tuple[str, Region]] = []
    for path, parsed in scanned:
        if isinstance(parsed, RegionProblem):
            view.regions.append(RegionStatus(path, parsed.kind, parsed.message, version=parsed.version))
        else:
            good.append((path, parsed))

    def live_slots(r: Region) -> list:
        return [s for s in r.slots if s.pid > 0 and alive.get(s.pid) is not False]

    # Live regions first (they own their logical id), then by chip id: deterministic numbering.
    good.sort(key=lambda pr: (not live_slots(pr[1]) and bool(pr[1].slots), pr[1].chip_unique_id))
    own_chips = {r.device_id for _p, r in good if live_slots(r) or not r.slots}
    used: set[int] = set()
    procs: dict[int, dict] = {}
    for path, r in good:
        live = live_slots(r)
        dead = [s for s in r.slots if s.pid > 0 and alive.get(s.pid) is False]
        releasing = [s for s in r.slots if s.pid < 0]
        stale = bool(r.slots) and not live and not releasing
        if not r.slots and r.version >= 4:
            stale = True  # v4 claims a slot at attach: no slot, nobody attached
        elif not r.slots:
            stale = r.reference_count == 0 and not any(r.totals)
        device: int | None = r.device_id
        note = ""
        if device in used and stale:
            device = None  # an old run's file for a number a live region has: listed, no row of its own
            note = f"logical id {r.device_id} belongs to a live region now"
        elif device in used:
            device = max(used | set(view.totals)) + 1
            while device in used:
                device += 1
            note = f"logical id {r.device_id} is taken by another live region: shown as device {device}"
        region_total = _wire(r.totals)
        leftover = _ZERO
        for s in dead:
            leftover = _add(leftover, _wire(s.bytes))
        if stale:
            state = "stale"
            leftover = region_total
            shown = _ZERO
            msg = "no live process: leftover of an earlier run" if any(region_total) else "no live process"
            if not any(region_total):
                state = "idle"
        else:
            state = "active"
            shown = _sub(region_total, leftover)
            msg = ""
        if dead:
            msg = (msg + "; " if msg else "") + f"dead PID{'s' if len(dead) > 1 else ''} " + \
                ", ".join(str(s.pid) for s in dead) + " left a slot"
        if note:
            msg = (msg + "; " if msg else "") + note
        # remote chips attributed through this region, and without a region of their own
        if not stale:
            for c in r.chips:
                if c.chip_id == r.device_id or c.chip_id in own_chips or not any(c.bytes):
                    continue
                cw = _wire(c.bytes)
                shown = _sub(shown, cw)
                view.totals[c.chip_id] = _add(view.totals.get(c.chip_id, _ZERO), cw)
                view.remote.add(c.chip_id)
        if device is not None:
            used.add(device)
            view.totals[device] = _add(view.totals.get(device, _ZERO), shown)
            view.chip_ids[device] = r.chip_unique_id
        view.regions.append(RegionStatus(
            path, state, msg, r.chip_unique_id, device, r.device_id, r.version, r.layout, r.last_update_ns,
            len(live), tuple(s.pid for s in dead), leftover, r.clamped))
        if device is None:
            continue
        # dead slots are listed (marked dead: whose leftovers these are) even in a stale region
        for s in (live + dead if not stale else dead):
            p = procs.setdefault(s.pid, {"name": s.name, "alive": alive.get(s.pid), "devices": {}, "ts": 0})
            p["name"] = p["name"] or s.name
            p["devices"][device] = _add(p["devices"].get(device, _ZERO), _wire(s.bytes))
            p["ts"] = max(p["ts"], s.last_update_ns)
    view.processes = {pid: ProcessUsage(pid, p["name"], p["alive"], p["devices"], p["ts"])
                      for pid, p in sorted(procs.items())}
    return view


class TotalsEvents:
    """Per-process totals, sample after sample, turned into the ALLOC / FREE events that explain them.

    Why: phase inference (:class:`~tt_memtop.core.phases.PhaseTracker`) reads allocations. From
    totals alone, a process's DRAM growing is a large allocation (loading), a TRACE total appearing
    is a trace buffer (capture, then replay while everything stays flat), TRACE going back to zero
    is its release, a dead slot is the process's exit. Each increase of a (pid, device, pool) total
    becomes one ALLOC of the difference; each decrease frees the most recent of those synthetic
    buffers until it is covered (re-allocating any excess). Churn within one sampling interval is
    invisible, which is the limit of totals. These events feed phase inference only: they are no
    buffers, and go neither into the registry nor the feed.
    """

    #: pool index -> BufferType value (DRAM 0, L1 1, L1_SMALL 3, TRACE 4, CB 5, KERNEL 6)
    TYPES = (0, 1, 3, 4, 5, 6)

    def __init__(self) -> None:
        self._prev: dict[tuple[int, int], Wire] = {}
        self._live: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        self._next = 1
        self._exited: set[int] = set()

    def events(self, ts_ns: int, processes: Mapping[int, ProcessUsage]) -> list[Event]:
        out: list[Event] = []
        alloc, free, cleanup, exit_ = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP, EventKind.PROCESS_EXIT
        seen: set[tuple[int, int]] = set()
        # The same growth on several devices in one sample is one mesh tensor: one id on each device,
        # as TT-Metal allocates a mesh buffer at one address on every device of the mesh.
        mesh_ids: dict[tuple[int, int, int], int] = {}

        def new_id(pid: int, t: int, size: int) -> int:
            key = (pid, t, size)
            bid = mesh_ids.get(key)
            if bid is None:
                bid = mesh_ids[key] = self._next
                self._next += 1
            return bid
        for pid, p in processes.items():
            if p.alive is False:
                if pid not in self._exited:
                    self._exited.add(pid)
                    dropped = self._drop(pid, ts_ns, cleanup)
                    out.extend(dropped)
                    held = sum(p.by_pool())
                    # no server removes anything here: the dead PID's slot keeps its bytes until TT-Metal's
                    # next attaching process reaps it (they are not counted meanwhile)
                    note = (f"process died; its shared-memory slot still holds {held / 1048576:.1f} MiB (not "
                            f"counted; TT-Metal releases it when the next process attaches)") if held else \
                        "process died; its shared-memory slot holds nothing"
                    out.append(Event(exit_, ts_ns=ts_ns, pid=pid, size=sum(e.size for e in dropped),
                                     ref_count=len(dropped), text=note))
                continue
            self._exited.discard(pid)
            for dev, now in p.devices.items():
                key = (pid, dev)
                seen.add(key)
                prev = self._prev.get(key, _ZERO)
                if now == prev:
                    continue
                self._prev[key] = now
                for k, (a, b) in enumerate(zip(prev, now, strict=True)):
                    if a == b:
                        continue
                    t = self.TYPES[k]
                    stack = self._live.setdefault((pid, dev, t), [])
                    if b > a:
                        bid = new_id(pid, t, b - a)
                        out.append(Event(alloc, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=t,
                                         buffer_id=bid, size=b - a, ref_count=1))
                        stack.append((bid, b - a))
                        continue
                    need = a - b
                    while need > 0 and stack:
                        bid, size = stack.pop()
                        out.append(Event(free, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=t, buffer_id=bid,
                                         size=size))
                        need -= size
                    if need < 0:  # freed more than the decrease: the rest is still allocated
                        bid = new_id(pid, t, -need)
                        out.append(Event(alloc, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=t,
                                         buffer_id=bid, size=-need, ref_count=1))
                        stack.append((bid, -need))
        for key in [k for k in self._prev if k not in seen and k[0] not in self._exited]:
            pid, dev = key  # the slot was released: everything it held is freed
            del self._prev[key]
            out.extend(self._drop(pid, ts_ns, free, dev))
        return out

    def _drop(self, pid: int, ts_ns: int, kind: EventKind, device: int | None = None) -> list[Event]:
        out = []
        for key in [k for k in self._live if k[0] == pid and (device is None or k[1] == device)]:
            _pid, dev, t = key
            for bid, size in reversed(self._live.pop(key)):
                out.append(Event(kind, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=t, buffer_id=bid, size=size))
        if device is None:
            for key in [k for k in self._prev if k[0] == pid]:
                del self._prev[key]
        return out


def expand_recorded_totals(events: Iterable[Event]) -> Iterator[Event]:
    """A recording's events with every recorded totals sample (``TOTALS`` events, see
    :mod:`tt_memtop.sources.record`) replaced by the allocations that explain it (:class:`TotalsEvents`),
    so offline phase analysis reads a shared-memory recording like an event recording. Other
    events pass through unchanged."""
    conv = TotalsEvents()
    procs: dict[int, dict] = {}
    ts = 0
    open_sample = False
    for ev in events:
        if ev.kind != EventKind.TOTALS:
            yield ev
            continue
        if ev.device == -1:
            if open_sample:
                yield from conv.events(ts, _usage(procs))
            procs, ts, open_sample = {}, ev.ts_ns, True
            continue
        if ev.pid and ev.buffer_type in _POOL_INDEX:
            p = procs.setdefault(ev.pid, {"name": ev.name, "alive": bool(ev.ref_count), "devices": {}})
            p["devices"].setdefault(ev.device, [0] * 6)[_POOL_INDEX[ev.buffer_type]] += ev.size
    if open_sample:
        yield from conv.events(ts, _usage(procs))


_POOL_INDEX = {0: 0, 1: 1, 3: 2, 4: 3, 5: 4, 6: 5}


def _usage(procs: dict[int, dict]) -> dict[int, ProcessUsage]:
    return {pid: ProcessUsage(pid, p["name"], p["alive"], {d: tuple(t) for d, t in p["devices"].items()})
            for pid, p in procs.items()}
