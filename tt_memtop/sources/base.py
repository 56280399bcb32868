"""The one interface every data source implements, and the updates it emits.

A source (our server's subscription, polling the original server, following or replaying a log,
replaying a recording, the built-in demo) is an object with a ``description`` and an async
``run(emit)`` that calls ``emit(update)`` for each :data:`Update` until it is cancelled or its
data ends. ``emit`` is a plain, cheap, synchronous callback: consumers (the UI, the one-shot
printer) fold updates into a :class:`~tt_memtop.core.model.MonitorState` and draw at their own
pace. The UI never cares which source it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from .._compat import StrEnum
from ..core.devices import Inventory
from ..core.events import Event
from ..core.registry import Buffer
from ..core.usage import ProcessUsage, RegionStatus


class Capability(StrEnum):
    """What a source can deliver; panes that need a missing one say why they are empty."""

    EVENTS = "events"  # per-buffer alloc/free events (feed, buffers, processes, details)
    TOTALS = "totals"  # per-device totals (bars)
    PROCESSES = "processes"  # per-process totals by device, with names (TT-Metal's shared memory)
    SEEK = "seek"  # pause / step / seek / speed (replays)


@dataclass(slots=True)
class Snapshot:
    """The full live state at sequence number ``seq``: replaces whatever the consumer had.

    ``reset``: the source moved in time (a replay's seek), so everything derived from earlier
    events (the feed, buffer histories, phases, counters) belongs to another timeline and must be
    dropped too, not just the registry.
    """

    buffers: list[Buffer]
    seq: int
    ts_ns: int
    inventory: Inventory | None = None
    reset: bool = False


@dataclass(slots=True)
class EventBatch:
    """Events in order. ``seq`` gap-free when the source is our server's subscription."""

    events: list[Event]


@dataclass(slots=True)
class Heartbeat:
    """The server's clock on a quiet subscription (nothing happened up to ``ts_ns``; ``seq`` the last event)."""

    ts_ns: int
    seq: int


@dataclass(slots=True)
class TotalsSample:
    """Polled per-device totals: device -> (dram, l1, l1_small, trace, cb, kernel), as the wire has them.

    ``processes``: per-PID totals by device, when the source has them (TT-Metal's shared memory);
    ``regions``: what the source read them from (one status per shared-memory region).
    ``crosscheck``: the sample is a second opinion beside an event source (not the bars' data).
    """

    ts_ns: int
    totals: dict[int, tuple[int, int, int, int, int, int]]
    inventory: Inventory | None = None
    processes: dict[int, ProcessUsage] | None = None
    regions: list[RegionStatus] | None = None
    crosscheck: bool = False


@dataclass(slots=True)
class Status:
    """Connection / playback state for the header, and what the source can deliver."""

    state: str  # "connecting" | "connected" | "disconnected" | "ended" | "error" | "paused" | "playing"
    message: str = ""
    capabilities: frozenset[Capability] = field(default_factory=frozenset)


Update = Snapshot | EventBatch | TotalsSample | Status | Heartbeat
Emit = Callable[[Update], None]


class Source(ABC):
    """A producer of :data:`Update` s."""

    description: str = "source"
    #: What is known before :meth:`run` starts; a source with ``Capability.SEEK`` here is a player
    #: (pause/resume/step/seek/set_speed, see :class:`~tt_memtop.sources.replay.ReplaySource`).
    capabilities: frozenset[Capability] = frozenset()

    @abstractmethod
    async def run(self, emit: Emit) -> None:
        """Emit updates until cancelled, or until the data ends (then emit ``Status("ended")`` and return)."""


def stamp(events: list, ts_ns: int) -> None:
    """Give every event of a batch the time ``ts_ns`` (sources whose input has no clock: logs)."""
    for ev in events:
        ev.ts_ns = ts_ns
