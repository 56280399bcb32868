"""``memtop --record FILE``: record what the monitor receives, in the recording format (docs/RECORDING.md).

Why: ``memtop serve --record`` records a server's events, but a machine that runs a mainline
TT-Metal release has no server, only the shared-memory totals. This wrapper records any source
from the monitor's side: events as they come (a subscription's snapshot as the ALLOC events of
its buffers), totals samples as ``TOTALS`` events. A sample is a marker (``TOTALS`` with device
-1) then one event per non-zero pool: ``pid`` 0 for a device's total (DRAM always, so every device
is in the sample), else the process's bytes on that device with its ``name`` and ``ref_count`` 1
alive / 0 dead. :class:`~tt_memtop.core.model.MonitorState` folds them back into totals, so
``memtop replay FILE`` plays a shared-memory session like any other (bars, processes, phases).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..core.events import Event, EventKind
from ..core.model import SAMPLE_MARK
from ..recording import RecordingWriter
from .base import Emit, EventBatch, Snapshot, Source, TotalsSample

__all__ = ["RecordingSource", "sample_events"]

_TYPES = (0, 1, 3, 4, 5, 6)  # wire pool index -> BufferType
FLUSH_S = 0.2


def sample_events(sample: TotalsSample, ts_ns: int) -> list[Event]:
    """The TOTALS events that record ``sample`` (see the module docstring)."""
    kind = EventKind.TOTALS
    out = [Event(kind, ts_ns=ts_ns, device=SAMPLE_MARK, text="sample")]
    for dev, w in sorted(sample.totals.items()):
        for k, v in enumerate(w):
            if v or k == 0:
                out.append(Event(kind, ts_ns=ts_ns, device=dev, buffer_type=_TYPES[k], size=v))
    for pid, p in sorted((sample.processes or {}).items()):
        for dev, w in sorted(p.devices.items()):
            for k, v in enumerate(w):
                if v or k == 0:
                    out.append(Event(kind, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=_TYPES[k], size=v,
                                     name=p.name, ref_count=0 if p.alive is False else 1))
    return out


class RecordingSource(Source):
    """``source``, with everything it emits also written to ``path``."""

    def __init__(self, source: Source, path: str, *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.source = source
        self.path = path
        self.clock = clock
        self.description = f"{source.description} · recording to {path}"
        self.capabilities = getattr(source, "capabilities", frozenset())
        for attr in ("local", "short_description", "ready_on_connect"):
            if hasattr(source, attr):
                setattr(self, attr, getattr(source, attr))
        try:  # fail now, with nothing started, if the path cannot be written
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise OSError(f"cannot write the recording {path}: {exc.strerror or exc}") from None
        self.writer: RecordingWriter | None = None
        self._flushed = 0.0

    def _open(self, inventory) -> RecordingWriter:
        if self.writer is None:
            self.writer = RecordingWriter(self.path, inventory, socket_path=getattr(self.source, "socket_path", ""),
                                          clock=self.clock)
        return self.writer

    def _write(self, update) -> None:
        if isinstance(update, TotalsSample):
            if update.crosscheck:
                return
            self._open(update.inventory).write_events(sample_events(update, self.clock()))
        elif isinstance(update, Snapshot):
            self._open(update.inventory).write_events([
                Event(EventKind.ALLOC, seq=b.alloc_seq, ts_ns=b.alloc_ts_ns, pid=b.owner_pid, device=b.device,
                      buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size, ref_count=b.ref_count,
                      name=b.name) for b in update.buffers])
        elif isinstance(update, EventBatch):
            self._open(None).write_events(update.events)
        else:
            return
        now = time.monotonic()
        if now - self._flushed >= FLUSH_S:
            self.writer.flush()
            self._flushed = now

    async def run(self, emit: Emit) -> None:
        def tee(update) -> None:
            try:
                self._write(update)
            except OSError:  # a full disk must not stop the monitor; what was written stays readable
                pass
            emit(update)

        try:
            await self.source.run(tee)
        finally:
            if self.writer is not None:
                self.writer.close()
