"""A tiny deterministic Source for UI tests and the snapshot fixtures: no server, no clock."""

from __future__ import annotations

import anyio

from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import BufferType
from tt_memtop.sources.base import Capability, EventBatch, Snapshot, Source, Status

CAPS = frozenset({Capability.EVENTS, Capability.TOTALS})
MiB = 1024 * 1024
TRACE_ADDR = 0x3E363C80
TRACE_SIZE = 12_503_040


class FakeSource(Source):
    """Emits a status, an inventory snapshot, then the given batches; then waits (or pushes more)."""

    description = "fake"
    local = False

    def __init__(self, devices: int, batches: list[list[Event]]) -> None:
        self.devices = devices
        self.batches = batches
        self.emit = None
        self.done = anyio.Event()

    async def run(self, emit) -> None:
        self.emit = emit
        emit(Status("connected", capabilities=CAPS))
        emit(Snapshot([], 0, 1_000_000_000, Inventory.uniform(self.devices)))
        for b in self.batches:
            emit(EventBatch(b))
        self.done.set()
        await anyio.sleep_forever()

    def push(self, events: list[Event]) -> None:
        self.emit(EventBatch(events))


def llama_events(devices: int = 8, t0: int = 1_000_000_000) -> list[Event]:
    """A small Llama-on-T3K-like story: weights, L1 churn, a TRACE at one address on every device, refs."""
    seq = 0
    out: list[Event] = []

    def ev(kind, dt_ms, **kw):
        nonlocal seq
        seq += 1
        out.append(Event(kind, seq=seq, ts_ns=t0 + int(dt_ms * 1_000_000), **kw))

    pid = 919068
    t = 0.0
    for d in range(devices):
        for i in range(3):
            t += 1.5
            ev(EventKind.ALLOC, t, pid=pid, device=d, buffer_type=int(BufferType.DRAM),
               buffer_id=0x10000000 + i * 0x4000000, size=(40 + 20 * i + d) * MiB, ref_count=1)
        for i in range(4):
            t += 0.5
            ev(EventKind.ALLOC, t, pid=pid, device=d, buffer_type=int(BufferType.L1), buffer_id=0x1000 + i * 0x40000,
               size=6 * MiB + 256 * 1024, ref_count=1)
        t += 0.2
        ev(EventKind.ALLOC, t, pid=pid, device=d, buffer_type=int(BufferType.L1_SMALL), buffer_id=0x20000,
           size=64 * 1024, ref_count=1)
    for d in range(devices):
        t += 0.3
        ev(EventKind.ALLOC, t, pid=pid, device=d, buffer_type=int(BufferType.TRACE), buffer_id=TRACE_ADDR,
           size=TRACE_SIZE, ref_count=1)
    # a temporary freed again, a ref bump on device 0, a second process
    t += 1
    ev(EventKind.ALLOC, t, pid=pid, device=0, buffer_type=int(BufferType.DRAM), buffer_id=0x7000000, size=2 * MiB,
       ref_count=1)
    t += 1
    ev(EventKind.FREE, t, pid=pid, device=0, buffer_type=int(BufferType.DRAM), buffer_id=0x7000000, size=2 * MiB)
    t += 1
    ev(EventKind.REF_INC, t, pid=pid, device=0, buffer_type=int(BufferType.DRAM), buffer_id=0x10000000,
       size=40 * MiB, ref_count=2)
    t += 1
    ev(EventKind.ALLOC, t, pid=4242, device=devices - 1, buffer_type=int(BufferType.DRAM), buffer_id=0x9000000,
       size=1 * MiB, ref_count=1)
    return out
