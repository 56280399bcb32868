"""MonitorState: everything a monitor knows, folded from source updates. Pure; no clock, no I/O.

The UI and the one-shot printers both hold one of these and read it when they draw. Event
sources fill the mirror registry and the feed; the poll source fills ``polled``. Totals for the
bars come from whichever is authoritative (:meth:`device_wire_totals`).
"""

from __future__ import annotations

from collections import deque

from ..sources.base import Capability, EventBatch, Snapshot, Status, TotalsSample, Update
from .devices import Inventory
from .events import Event, EventKind
from .registry import Registry

FEED_LIMIT = 100_000


class MonitorState:
    def __init__(self, feed_limit: int = FEED_LIMIT) -> None:
        self.registry = Registry()
        self.feed: deque[Event] = deque(maxlen=feed_limit)
        self.inventory = Inventory()
        self.polled: dict[int, tuple[int, int, int, int, int, int]] = {}
        self.polled_ts_ns = 0
        self.status = Status("connecting")
        self.capabilities: frozenset[Capability] = frozenset()
        self.events_total = 0  # events folded since start
        self.gaps = 0  # sequence gaps seen (should stay 0 on our server's subscription)
        self.bad_frames = 0
        self.last_ts_ns = 0
        self.phases = None  # a PhaseTracker when phase inference is available

    def apply(self, update: Update) -> None:
        if isinstance(update, EventBatch):
            self.apply_events(update.events)
        elif isinstance(update, Snapshot):
            self.registry.load_snapshot(update.buffers, update.seq)
            if update.inventory is not None:
                self.inventory = update.inventory
            self.last_ts_ns = max(self.last_ts_ns, update.ts_ns)
        elif isinstance(update, TotalsSample):
            self.polled = dict(update.totals)
            self.polled_ts_ns = update.ts_ns
            self.last_ts_ns = max(self.last_ts_ns, update.ts_ns)
            if update.inventory is not None:
                self.inventory = update.inventory
            if self.phases is not None and hasattr(self.phases, "observe_totals"):
                for dev, tot in update.totals.items():
                    self.phases.observe_totals(update.ts_ns, dev, tot)
        elif isinstance(update, Status):
            self.status = update
            if update.capabilities:
                self.capabilities = update.capabilities

    def apply_events(self, events: list[Event]) -> None:
        reg = self.registry
        feed = self.feed
        phases = self.phases
        for ev in events:
            if ev.seq and reg.seq and ev.seq != reg.seq + 1 and ev.seq > reg.seq:
                self.gaps += 1
            reg.apply_event(ev)
            feed.append(ev)
            if ev.kind == EventKind.BAD_FRAME:
                self.bad_frames += 1
            if phases is not None:
                phases.observe(ev)
        if events:
            self.events_total += len(events)
            self.last_ts_ns = max(self.last_ts_ns, events[-1].ts_ns)

    @property
    def has_events(self) -> bool:
        return Capability.EVENTS in self.capabilities or len(self.registry) > 0 or self.events_total > 0

    def devices(self) -> list[int]:
        """Devices to show: the inventory's, plus any that reported something."""
        devs = {d.device_id for d in self.inventory.devices}
        devs.update(self.registry.devices())
        devs.update(self.polled)
        return sorted(devs)

    def device_wire_totals(self, device: int) -> tuple[int, int, int, int, int, int]:
        """(dram, l1, l1_small, trace, cb, kernel): from events when we have them, else from polling."""
        if self.has_events or device not in self.polled:
            return self.registry.wire_totals(device)
        return self.polled[device]
