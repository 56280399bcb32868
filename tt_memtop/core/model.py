"""MonitorState: everything a monitor knows, folded from source updates. Pure; no clock, no I/O.

The UI and the one-shot printers both hold one of these and read it when they draw. Event
sources fill the mirror registry and the feed; the poll source fills ``polled``. Totals for the
bars come from whichever is authoritative (:meth:`device_wire_totals`).

Besides the registry, the state keeps what only a monitor needs, all of it bounded:

* ``feed`` — the last events, with ``feed_phases`` alongside (the phase of the event's process at
  the moment it was folded, so the feed can say "this happened during trace capture");
* ``history`` — per buffer id, its last :data:`HISTORY_PER_ID` events (allocs/frees at that
  address on any device, with the phase then), for the most recently touched
  :data:`HISTORY_IDS` ids;
* ``exited`` — PIDs whose buffers a dead-process cleanup removed;
* ``insight`` — peaks, per-bank maps (largest free range, segments, largest allocatable),
  headroom, leaks and the usage history (core/insight.py); :meth:`usage_history` and
  :meth:`phase_bands` are the chart's data.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from operator import attrgetter
from typing import NamedTuple

from ..sources.base import Capability, EventBatch, Heartbeat, Snapshot, Status, TotalsSample, Update
from .devices import Inventory
from .events import Event, EventKind
from .geometry import GeometryConfig
from .heap import give_back_free_heap
from .insight import TRIM_MIN, Insight
from .phases import PhaseTracker
from .protocol import BufferType
from .registry import Registry
from .usage import ProcessUsage, RegionStatus, TotalsEvents

FEED_LIMIT = 100_000
HISTORY_PER_ID = 16
SEED_LIMIT = 100_000  # resident buffers replayed into phase inference when attaching (see _seed_phases)
HISTORY_IDS = 20_000

_ALLOC = EventKind.ALLOC
_TRACE = int(BufferType.TRACE)
_BAD_FRAME = EventKind.BAD_FRAME
_PROCESS_EXIT = EventKind.PROCESS_EXIT
_TOTALS = EventKind.TOTALS
_kind_of = attrgetter("kind")
#: TOTALS event with this device id: a recorded totals sample starts (what follows replaces the last one)
SAMPLE_MARK = -1
#: Event ledger and shared-memory totals may differ for this long (sampling skew) before it is drift.
DRIFT_GRACE_NS = 1_000_000_000
#: Pools compared for drift, as indices of Registry.device_totals (DRAM, L1, L1_SMALL, TRACE). CB is
#: accounted differently by the two (CB_ALLOC messages vs the allocator's query), SYSTEM_MEMORY and
#: KERNEL not at all in shared memory.
_DRIFT_POOLS = ((0, 0), (1, 1), (3, 2), (4, 3))
_POOL_OF_TYPE = {int(BufferType.DRAM): 0, int(BufferType.L1): 1, int(BufferType.L1_SMALL): 2,
                 int(BufferType.TRACE): 3, int(BufferType.CB): 4, int(BufferType.KERNEL): 5}
_POOL_NAMES = ("DRAM", "L1", "L1_SMALL", "TRACE", "CB", "KERNEL")
_LOST = frozenset({"disconnected", "error"})  # Status states after which "connected" is a reconnect
_BUFFER_KINDS = frozenset({EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE,
                           EventKind.FREE_UNKNOWN, EventKind.CLEANUP})


class HistoryEntry(NamedTuple):
    """One past event at a buffer id, and the owner's trace phase when it happened ("" if unknown)."""

    event: Event
    phase: str


def _history_pass(events: list[Event], labels: list[str], history: dict[int, list], per_id: int, buffer_kinds,
                  bad_frame, process_exit, exited: set[int]) -> int:
    """Each buffer event (and its phase label) into its buffer id's history, kept at ``per_id`` items and
    moved to the end of the dict (LRU order); PROCESS_EXIT PIDs into ``exited``. Returns the BAD_FRAMEs
    seen. The reference of the compiled pass (tt_memtop/_native/history.c)."""
    bad = 0
    for ev, phase in zip(events, labels, strict=True):
        kind = ev.kind
        if kind in buffer_kinds:
            bid = ev.buffer_id
            h = history.pop(bid, None)  # re-insert: dict order doubles as LRU order
            if h is None:
                history[bid] = [ev, phase]
            else:
                h += (ev, phase)  # a transient pair, freed at once: nothing new for the collector
                if len(h) > per_id:
                    del h[:2]
                history[bid] = h
        elif kind == bad_frame:
            bad += 1
        elif kind == process_exit:
            exited.add(ev.pid)
    return bad


def _labels(phases: list, names: dict) -> list[str]:
    """The display name of each phase (KeyError for one not named yet). Reference of history.c's labels_of."""
    return list(map(names.__getitem__, phases))


def _has_kind(events, kind) -> bool:
    """Whether any event of the batch is of ``kind`` (a C-level scan). Reference of history.c's has_kind."""
    return kind in map(_kind_of, events)


def _trim_oldest(d: dict, keep: int) -> None:
    """Delete the first ``len(d) - keep`` keys of ``d`` (the least recently touched). Reference of history.c's."""
    excess = len(d) - keep
    if excess > 0:
        for key in list(islice(d, excess)):
            del d[key]


def _load_native_module():
    from .._native import load_set_up

    return load_set_up("history", Event)


_native_mod = _load_native_module()


def _load_native_history():
    return _native_mod.history_pass if _native_mod is not None else None


_native_history = _load_native_history()
_labels_of = _native_mod.labels_of if _native_mod is not None else _labels
_any_kind = _native_mod.has_kind if _native_mod is not None else _has_kind
_trim = _native_mod.trim_oldest if _native_mod is not None else _trim_oldest


def _name(ph) -> str:
    """A Phase (a StrEnum) as its display name; "" for None."""
    return ph.value if ph is not None else ""


def new_state(phases: bool = True, geometry: GeometryConfig | None = None) -> MonitorState:
    """A MonitorState, with trace-phase inference unless ``phases`` is False; ``geometry``: bank overrides."""
    return MonitorState(phases=PhaseTracker() if phases else None, geometry=geometry)


class MonitorState:
    def __init__(self, feed_limit: int = FEED_LIMIT, phases=None, history_ids: int = HISTORY_IDS,
                 history_per_id: int = HISTORY_PER_ID, geometry: GeometryConfig | None = None) -> None:
        self.registry = Registry()
        self.feed: deque[Event] = deque(maxlen=feed_limit)
        self.feed_phases: deque[str] = deque(maxlen=feed_limit)
        # buffer id -> its last events and their phases, oldest first, flat: [ev, phase, ev, phase, ...]
        # (no tuple per event: fewer objects for the collector to scan); read through buffer_history()
        self.history: dict[int, list] = {}
        self.history_ids = history_ids
        self.history_per_id = history_per_id
        self.inventory = Inventory()
        self.inventory_grown = 0  # first device whose capacities were assumed (0: none; see devices())
        self.polled: dict[int, tuple[int, int, int, int, int, int]] = {}
        self.polled_ts_ns = 0
        #: per-process totals (TT-Metal's shared memory, or a recording of it), when the source has them
        self.polled_procs: dict[int, ProcessUsage] = {}
        self.regions: list[RegionStatus] = []  # what the shared-memory source read, region by region
        #: shared-memory totals beside an event source: device -> wire totals, and where they disagree
        self.crosscheck: dict[int, tuple[int, int, int, int, int, int]] = {}
        self.crosscheck_ts_ns = 0
        self._drift_since: dict[int, int] = {}
        self.totals_events = 0  # recorded TOTALS events folded (a replayed shared-memory recording)
        self._totals_events = TotalsEvents()
        self._rec_totals: dict[int, list[int]] = {}
        self._rec_procs: dict[int, dict] = {}
        self._rec_ts = 0
        self.status = Status("connecting")
        self.capabilities: frozenset[Capability] = frozenset()
        self.events_total = 0  # events folded since start
        self.gaps = 0  # sequence gaps seen (should stay 0 on our server's subscription)
        #: registry size at which the free C heap is given back next (core/heap.py): each time it doubles
        #: past 100k, as after a snapshot, since growing the columns and tables freed their old copies
        self._trim_at = TRIM_MIN
        self.bad_frames = 0
        self.first_ts_ns = 0  # earliest timestamp seen: the origin of relative times on screen
        self.last_ts_ns = 0
        self.exited: set[int] = set()
        self.phases = phases  # a PhaseTracker when phase inference is available
        self._clock_ref = (0, 0)  # (server ns, monitor ns) of the latest arrival: server_now()
        self._phase_names: dict[object, str] = {}  # tracker's phase value -> display name
        # peaks, bank maps, headroom, leaks, usage history (core/insight.py)
        self.insight = Insight(geometry)

    def apply(self, update: Update, local_ns: int | None = None) -> None:
        """Fold one update; ``local_ns``: the monitor's clock when it arrived (maps it to the server's timeline)."""
        if isinstance(update, EventBatch):
            self.apply_events(update.events)
            if local_ns is not None and update.events:
                self._arrived(update.events[-1].ts_ns, local_ns)
        elif isinstance(update, Heartbeat):
            self._saw_ts(update.ts_ns)
            if local_ns is not None:
                self._arrived(update.ts_ns, local_ns)
        elif isinstance(update, Snapshot):
            if self.phases is not None and update.buffers and not self.phases.processes():
                self._seed_phases(update.buffers, update.ts_ns)
            self.registry.load_snapshot(update.buffers, update.seq)
            if update.inventory is not None:
                self.inventory = update.inventory
            self._saw_ts(update.ts_ns)
            self.insight.load(self.registry, self.inventory, update.ts_ns)
        elif isinstance(update, TotalsSample):
            if update.crosscheck:
                self._crosscheck(update)
                return
            self.polled = dict(update.totals)
            self.polled_ts_ns = update.ts_ns
            self._saw_ts(update.ts_ns)
            if not self.has_events:  # the samples are the usage history (the chart's and the sparklines')
                self.insight.record_totals(update.ts_ns, update.totals)
            if update.inventory is not None:
                self.inventory = update.inventory
                self.insight.set_inventory(self.inventory)
            if update.regions is not None:
                self.regions = list(update.regions)
            if update.processes is not None:
                self.polled_procs = dict(update.processes)
                if self.phases is not None:
                    self._observe_processes(update.ts_ns)
            elif self.phases is not None:
                for dev, tot in update.totals.items():
                    self.phases.observe_totals(update.ts_ns, dev, tot)
        elif isinstance(update, Status):
            if update.state == "connected" and self.status.state in _LOST and self.phases is not None:
                # A reconnect: the server may have restarted (0 B, no processes); what phase inference
                # knew belongs to the old session. The fresh snapshot / samples that follow seed it again.
                self.phases = type(self.phases)()
                self._phase_names = {}
            self.status = update
            if update.capabilities:
                self.capabilities = update.capabilities

    def _observe_processes(self, ts_ns: int) -> None:
        """Phase inference from per-process totals: the allocations that explain their changes."""
        observe = self.phases.observe
        for ev in self._totals_events.events(ts_ns, self.polled_procs):
            observe(ev)
        if ts_ns:
            self.phases.tick(ts_ns)

    def _crosscheck(self, update: TotalsSample) -> None:
        """Shared-memory totals beside the event ledger: remember where they disagree, and since when."""
        self.crosscheck = dict(update.totals)
        self.crosscheck_ts_ns = update.ts_ns
        if update.regions is not None:
            self.regions = list(update.regions)
        # a stale region (an earlier run's file, no live process) says nothing about this run's events
        active = None if update.regions is None else {r.device for r in update.regions if r.state == "active"}
        for dev, shm in update.totals.items():
            if active is not None and dev not in active:
                self._drift_since.pop(dev, None)
            elif self._differs(dev, shm):
                self._drift_since.setdefault(dev, update.ts_ns)
            else:
                self._drift_since.pop(dev, None)
        for dev in [d for d in self._drift_since if d not in update.totals]:
            del self._drift_since[dev]

    def _differs(self, dev: int, shm: tuple[int, ...]) -> bool:
        led = self.registry.device_totals(dev)
        return any(led[i] != shm[j] for i, j in _DRIFT_POOLS)

    def _fold_recorded_totals(self, ev: Event) -> None:
        """A TOTALS event of a recorded shared-memory sample (see :mod:`tt_memtop.sources.record`)."""
        self.totals_events += 1
        if ev.device == SAMPLE_MARK:
            self._commit_recorded_sample()
            self._rec_totals, self._rec_procs = {}, {}
            self._rec_ts = ev.ts_ns
            return
        pool = _POOL_OF_TYPE.get(ev.buffer_type)
        if pool is None:
            return
        if ev.pid == 0:
            self._rec_totals.setdefault(ev.device, [0] * 6)[pool] += ev.size
        else:
            p = self._rec_procs.setdefault(ev.pid, {"name": ev.name, "alive": bool(ev.ref_count), "devices": {}})
            p["devices"].setdefault(ev.device, [0] * 6)[pool] += ev.size

    def _commit_recorded_sample(self) -> None:
        if not self._rec_totals and not self._rec_procs:
            return
        self.apply(TotalsSample(self._rec_ts, {d: tuple(t) for d, t in self._rec_totals.items()}, None,
                                {pid: ProcessUsage(pid, p["name"], p["alive"],
                                                   {d: tuple(t) for d, t in p["devices"].items()})
                                 for pid, p in self._rec_procs.items()}))

    def drift(self, now_ns: int | None = None) -> dict[int, dict[str, tuple[int, int]]]:
        """Devices whose event ledger and shared-memory totals have disagreed for ``DRIFT_GRACE_NS``:
        device -> {pool: (ledger bytes, shared-memory bytes)} for the pools that differ. Lost or
        unreported events (or a process that reports to one and not the other) show up here."""
        now = self.crosscheck_ts_ns if now_ns is None else now_ns
        out = {}
        for dev, since in self._drift_since.items():
            if now - since < DRIFT_GRACE_NS:
                continue
            led = self.registry.device_totals(dev)
            shm = self.crosscheck.get(dev, (0,) * 6)
            diff = {_POOL_NAMES[j]: (led[i], shm[j]) for i, j in _DRIFT_POOLS if led[i] != shm[j]}
            if diff:
                out[dev] = diff
        return out

    def _seed_phases(self, buffers: list, now_ns: int) -> None:
        """Attaching mid-run: show the allocations of what is resident to phase inference, oldest first.

        A monitor that starts while a model replays its trace has seen no event yet; without this it
        would say nothing until the next TRACE allocation. Resident buffers are the evidence left:
        large DRAM weights (loading), a TRACE buffer on every device (capture, then replay once
        quiet). Frees are gone, so churn (warm-up) cannot be reconstructed. Past SEED_LIMIT buffers
        only TRACE buffers are replayed, to keep attaching to a huge state cheap.
        """
        if len(buffers) > SEED_LIMIT:
            buffers = [b for b in buffers if b.buffer_type == _TRACE]
        observe = self.phases.observe
        for b in sorted(buffers, key=lambda b: (b.alloc_ts_ns, b.alloc_seq)):
            observe(Event(_ALLOC, seq=b.alloc_seq, ts_ns=b.alloc_ts_ns, pid=b.owner_pid, device=b.device,
                          buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size, ref_count=1))
        if now_ns:
            self.phases.tick(now_ns)

    def _arrived(self, server_ns: int, local_ns: int) -> None:
        if server_ns >= self._clock_ref[0]:
            self._clock_ref = (server_ns, local_ns)

    def server_now(self, local_ns: int) -> int:
        """The server's clock now: its last timestamp (event or heartbeat) plus the monitor time since.

        Phase time rules (idle, capture settle, return to replay) tick with this, not with the last
        event's timestamp, so they fire while the stream is quiet.
        """
        server, local = self._clock_ref
        if not server or Capability.SEEK in self.capabilities:  # a replay's clock is the recording's
            return self.last_ts_ns
        return max(self.last_ts_ns, server + max(0, local_ns - local))

    def check_liveness(self, alive, now_ns: int) -> None:
        """Exit processes a local liveness check says are gone (``alive(pid)`` False), ahead of the
        server's dead-PID cleanup. ``alive`` returns None when it cannot tell (not on this host)."""
        if self.phases is None or Capability.SEEK in self.capabilities:  # a replay's PIDs are not this host's now
            return
        for pid in self.phases.pids():
            if pid and self.phases.phase(pid).value != "exited" and alive(pid) is False:
                self.phases.process_gone(pid, now_ns)

    def _saw_ts(self, ts_ns: int) -> None:
        if ts_ns:
            if not self.first_ts_ns or ts_ns < self.first_ts_ns:
                self.first_ts_ns = ts_ns
            if ts_ns > self.last_ts_ns:
                self.last_ts_ns = ts_ns

    def apply_events(self, events: list[Event]) -> None:
        """Fold a batch of events: registry, phases, feed, history. The hot path of every monitor.

        Per event this does only what must be per event, in one pass per consumer (the registry,
        the tracker, the feed, the history of the buffer id) so each pass is a tight loop (the
        feed's is C-level); counters, timestamps and the history's size bound are settled once per
        batch. A batch holding recorded totals samples (a replayed shared-memory recording) takes
        the event-by-event path, since a sample is folded where it sits in the stream.
        """
        if not events:
            return
        phases = self.phases
        observe_batch = getattr(phases, "observe_batch", None) if phases is not None else None
        if (observe_batch is None and phases is not None) or _any_kind(events, _TOTALS):
            self._apply_one_by_one(events)
            return
        gaps = self.registry.apply_batch(events)
        if observe_batch is None:
            labels = [""] * len(events)
        else:
            names = self._phase_names
            phs = observe_batch(events)
            labels_of = _labels_of if type(phs) is list else _labels
            try:
                labels = labels_of(phs, names)
            except KeyError:  # a phase not named yet
                for ph in phs:
                    if ph not in names:
                        names[ph] = _name(ph)
                labels = labels_of(phs, names)
        self.feed.extend(events)
        self.feed_phases.extend(labels)
        if not isinstance(events, list):
            events = list(events)
        self.bad_frames += (_native_history or _history_pass)(events, labels, self.history, 2 * self.history_per_id,
                                                              _BUFFER_KINDS, _BAD_FRAME, _PROCESS_EXIT, self.exited)
        self._end_batch(events, gaps, 0)

    def _end_batch(self, events: list[Event], gaps: int, totals: int) -> None:
        if len(self.history) > self.history_ids:
            _trim(self.history, self.history_ids)
        self.gaps += gaps
        self.events_total += len(events) - totals
        if totals:
            self._commit_recorded_sample()
        self._saw_ts(events[0].ts_ns)
        self._saw_ts(events[-1].ts_ns)
        self.insight.set_inventory(self.inventory)
        self.insight.observe(events, self)
        if len(self.registry) >= self._trim_at:  # watched growth: its doubling steps freed the old copies
            self._trim_at = 2 * len(self.registry)
            give_back_free_heap()

    def _apply_one_by_one(self, events: list[Event]) -> None:
        """:meth:`apply_events` event by event (recorded totals samples in the batch, or a tracker
        without ``observe_batch``): the same state."""
        apply_event = self.registry.apply_event
        feed_append = self.feed.append
        phases_append = self.feed_phases.append
        phases = self.phases
        history = self.history
        per_id = 2 * self.history_per_id  # flat list: two items per event
        buffer_kinds = _BUFFER_KINDS
        observe = phases.observe if phases is not None else None
        quick = phases.phase if phases is not None else None  # O(1), no evidence text to build
        names = self._phase_names
        phase = ""
        gaps = 0
        last_seq = self.registry.seq
        totals = 0
        for ev in events:
            if ev.kind is _TOTALS:  # a recorded shared-memory sample: totals, not a buffer event
                self._fold_recorded_totals(ev)
                totals += 1
                continue
            seq = ev.seq
            if seq:
                if last_seq and seq > last_seq + 1:
                    gaps += 1
                last_seq = seq
            apply_event(ev)
            kind = ev.kind
            if observe is not None:
                observe(ev)
                ph = quick(ev.pid)
                phase = names.get(ph)
                if phase is None:
                    phase = names[ph] = _name(ph)
            feed_append(ev)
            phases_append(phase)
            if kind in buffer_kinds:
                bid = ev.buffer_id
                h = history.pop(bid, None)
                if h is None:
                    history[bid] = [ev, phase]
                else:
                    h += (ev, phase)
                    if len(h) > per_id:
                        del h[:2]
                    history[bid] = h
            elif kind == _BAD_FRAME:
                self.bad_frames += 1
            elif kind == _PROCESS_EXIT:
                self.exited.add(ev.pid)
        self._end_batch(events, gaps, totals)

    def tick(self, now_ns: int) -> None:
        """Let time-based phase rules run (the caller owns the clock)."""
        if self.phases is not None:
            self.phases.tick(now_ns)

    # ------------------------------------------------------------------ queries
    @property
    def has_events(self) -> bool:
        if len(self.registry) > 0 or self.events_total > 0:
            return True
        # a replayed recording of shared-memory samples announces events but holds only totals
        return Capability.EVENTS in self.capabilities and not self.totals_events

    @property
    def has_process_totals(self) -> bool:
        """Per-process totals without per-buffer events (TT-Metal's shared memory)."""
        return not self.has_events and (Capability.PROCESSES in self.capabilities or bool(self.polled_procs))

    def devices(self) -> list[int]:
        """Devices to show: the inventory's, plus any that reported something.

        A device beyond the inventory (a Galaxy's 32 chips on a server configured for 8, S2 counting
        only PCIe chips) is added to it like the inventory's last device, so its bars have capacities;
        ``inventory_grown`` then says from which device on the capacities are assumed."""
        ids = {d.device_id for d in self.inventory.devices}  # may be sparse: the chips with a region
        grown = self.inventory_grown
        devs = {d for d in ids if not grown or d < grown}  # a device only grown into is shown if it reports
        devs.update(self.registry.devices())
        devs.update(self.polled)
        top = max(devs, default=-1)
        n = max(ids) + 1 if ids else 0
        if top >= n and n and top < 4096:
            self.inventory = self.inventory.grown_to(top)
            self.inventory_grown = self.inventory_grown or n
        return sorted(devs)

    def device_wire_totals(self, device: int) -> tuple[int, int, int, int, int, int]:
        """(dram, l1, l1_small, trace, cb, kernel): from events when we have them, else from polling."""
        if self.has_events or device not in self.polled:
            return self.registry.wire_totals(device)
        return self.polled[device]

    def buffer_history(self, buffer_id: int) -> list[HistoryEntry]:
        """Past events at ``buffer_id`` (any device), oldest first; empty if none kept."""
        h = self.history.get(buffer_id, ())
        return [HistoryEntry(h[i], h[i + 1]) for i in range(0, len(h), 2)]

    def alloc_phase(self, device: int, buffer_id: int) -> str:
        """The owner's phase when the live buffer (device, buffer_id) was allocated, if still in history."""
        h = self.history.get(buffer_id, ())
        for i in range(len(h) - 2, -1, -2):
            ev = h[i]
            if ev.device == device and ev.kind == _ALLOC:
                return h[i + 1]
        return ""

    def phase_of(self, pid: int) -> str:
        """The current phase of ``pid`` ("" when unknown or no tracker)."""
        return _name(self.phases.phase(pid)) if self.phases is not None else ""

    # ------------------------------------------------------------------ insight (peaks, maps, history)
    def usage_history(self, device: int, buffer_type: int, span_ns: int | None = None,
                      resolution_ns: int = 0) -> list[tuple[int, int, int]]:
        """``[(bucket_start_ns, max_bytes, last_bytes), ...]`` of one pool up to now, for a chart.

        Max-preserving (a peak survives any zoom level), as long as the session (core/history.py);
        scale it to the pool's capacity. ``span_ns``: only the last stretch (None: everything);
        ``resolution_ns``: the time one cell of the chart stands for (coarser buckets will do).
        """
        return self.insight.history.series((device, buffer_type), self.last_ts_ns, span_ns, resolution_ns)

    def phase_bands(self) -> list:
        """Phase segments on the same clock as :meth:`usage_history` (for bands under the chart); [] without phases."""
        return self.phases.segments() if self.phases is not None else []

    def device_phase(self, device: int) -> str:
        return _name(self.phases.device_phase_only(device)) if self.phases is not None else ""
