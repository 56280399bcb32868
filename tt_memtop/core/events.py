"""Typed events: what happened to the registry, one record per change.

Every state change of a :class:`~tt_memtop.core.registry.Registry` is described by exactly one
:class:`Event`; applying the same events to an empty registry (``Registry.apply_event``) rebuilds
the same state. That is how a subscriber, a recording replay or a log replay mirror the server.

Events are the single currency between layers: the server produces them, the recording stores
them, the subscription streams them, phase inference and the UI consume them.
"""

from __future__ import annotations

from enum import IntEnum

from .protocol import BufferType


class EventKind(IntEnum):
    ALLOC = 1  # a new live buffer (ref_count 1); replaces any entry under the same key (CB/KERNEL overwrite)
    REF_INC = 2  # ALLOC of a key that is already live: ref_count is now ``ref_count``
    REF_DEC = 3  # FREE that left ``ref_count`` references
    FREE = 4  # final FREE: the buffer is gone
    FREE_UNKNOWN = 5  # FREE of a key that is not live; nothing changes
    CLEANUP = 6  # buffer removed because its owner process died
    PROCESS_EXIT = 7  # summary of one dead-PID cleanup: ``size`` bytes in ``ref_count`` buffers of ``pid``
    BAD_FRAME = 8  # bytes that were not a valid message; ``text`` says why
    DUMP = 9  # a DUMP_REMAINING (or DUMP_KERNELS) request was served
    TOTALS = 10  # a polled totals sample (poll source): ``size`` bytes of ``buffer_type`` on ``device``


#: Kinds that change registry state.
STATE_KINDS = frozenset({EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE, EventKind.CLEANUP})


class Event:
    """One thing that happened. Plain slots class: hundreds of thousands are made per second.

    ``seq`` is the server's sequence number (gap-free per server run; 0 if unknown), ``ts_ns`` the
    server's receive time (monotonic ns). ``pid`` is the process the event is about: the sender
    for ALLOC / FREE_UNKNOWN / BAD_FRAME, the owner for REF_DEC / FREE / CLEANUP.
    ``size`` and ``buffer_type`` are the stored buffer's for FREE-like events.
    """

    __slots__ = ("seq", "ts_ns", "kind", "pid", "device", "buffer_type", "buffer_id", "size", "ref_count",
                 "name", "stack_trace", "text")

    def __init__(self, kind: EventKind, *, seq: int = 0, ts_ns: int = 0, pid: int = 0, device: int = 0,
                 buffer_type: int = 0, buffer_id: int = 0, size: int = 0, ref_count: int = 0,
                 name: str = "", stack_trace: str = "", text: str = "") -> None:
        self.seq = seq
        self.ts_ns = ts_ns
        self.kind = kind
        self.pid = pid
        self.device = device
        self.buffer_type = buffer_type
        self.buffer_id = buffer_id
        self.size = size
        self.ref_count = ref_count
        self.name = name
        self.stack_trace = stack_trace
        self.text = text

    def as_dict(self) -> dict:
        d = {s: getattr(self, s) for s in self.__slots__}
        d["kind"] = self.kind.name
        try:
            d["buffer_type"] = BufferType(self.buffer_type).name
        except ValueError:
            pass
        return d

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__[3:] if getattr(self, s) not in (0, ""))
        return f"Event({self.kind.name}, seq={self.seq}, ts_ns={self.ts_ns}, {fields})"
