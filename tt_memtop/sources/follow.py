"""Follow a live allocation-server log: the original server's only per-buffer feed.

Why: the original server prints every event to stdout but never pushes them to a monitor; its
log file is therefore the only per-buffer feed it offers. :class:`FollowLogSource` rebuilds the
state from the file's beginning, then tails it through truncation and rotation (:class:`Tail`).
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO

import anyio

from ..core.devices import Inventory
from ..core.logparse import LogParser
from .base import Capability, Emit, EventBatch, Snapshot, Source, Status
from .logfile import CHUNK, NotALogError, check_log, is_recording

__all__ = ["LOG_CAPS", "FollowLogSource", "Tail", "not_followable"]

LOG_CAPS = frozenset({Capability.EVENTS, Capability.TOTALS})


class Tail:
    """Incremental reader of a growing file that survives truncation and rotation."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.f: BinaryIO | None = None
        self.ino: tuple[int, int] | None = None
        self.partial = b""

    def open(self) -> bool:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except OSError:
            return False
        st = os.fstat(f.fileno())
        self.close()
        self.f, self.ino, self.partial = f, (st.st_dev, st.st_ino), b""
        return True

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    def read(self, limit: int = CHUNK) -> list[bytes]:
        """Complete lines appended since the last call (at most about ``limit`` bytes)."""
        assert self.f is not None
        data = self.f.read(limit)
        if not data:
            return []
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # an unfinished last line waits for its newline
        return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]

    def check(self) -> str | None:
        """'rotated', 'truncated', 'gone' or None, comparing the path with the open file."""
        assert self.f is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return "gone"
        if (st.st_dev, st.st_ino) != self.ino:
            return "rotated"
        if st.st_size < self.f.tell():
            return "truncated"
        return None


def not_followable(path: str) -> str | None:
    """Why ``path`` cannot be followed as a server log being written (None: it can, or it is not there
    yet): a directory, a gzipped file or a recording (finished files: replay them), or not a log."""
    if os.path.isdir(path):
        return f"{path} is a directory: --follow takes the allocation server's log file"
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if is_recording(path):
        return f"{path} is a memtop recording, not a log being written: play it with `memtop replay {path}`"
    if head == b"\x1f\x8b":
        return f"{path} is gzipped, not a log being written: read it with `memtop replay {path}` or `memtop report`"
    try:
        check_log(path, allow_empty=True)
    except NotALogError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


class FollowLogSource(Source):
    """Tail a live allocation-server log: rebuild the state from its beginning, then follow it.

    Truncation (``> log`` or logrotate's copytruncate) continues from the new start; rotation
    (the path now names a new file) drains the old file and moves to the new one. The parser's
    state carries over in both cases: a restarted server announces itself with its start
    banner, which resets the state. Limitation: truncation is noticed when the file is shorter
    than what was read, at the next idle poll; a file truncated and then rewritten past that
    point within one poll interval is read on from the old offset (``tail -F`` has the same
    blind spot). Log lines carry no time: events are stamped when read, with this host's monotonic
    clock, as our server stamps its events (the monitor shows them in wall-clock time; a wall-clock
    stamp showed hours off).
    """

    def __init__(self, path: str, *, poll_interval: float = 0.25, clock=time.monotonic_ns,
                 arch: str | None = None) -> None:
        self.path = path
        # capacities for a log without a device-detection block (S1): --arch, else "capacity unknown"
        self.assumed = Inventory.uniform(1, arch) if arch else None
        self.poll_interval = poll_interval
        self.clock = clock
        self.parser = LogParser(cb_kernel_totals=True)
        self.description = f"log {path}"
        self.ready_on_connect = True  # its "connected" Status means: caught up with the file
        self._inventory: Inventory | None = None
        self._last_ts = 0  # the newest event's stamp

    def _emit_lines(self, emit: Emit, lines: list[bytes]) -> None:
        if not lines:
            return
        events = self.parser.feed(lines)
        self.parser.take_records()  # records are for reports; a live view only needs events
        if events:
            # one nanosecond apart, never behind the last batch: a chunk read at once (the catch-up reads
            # the file in 1 MiB chunks) keeps its order in time, so what was allocated while loading is
            # never taken for what came after it (phase spans, leak attribution compare times)
            t = max(self.clock(), self._last_ts + 1)
            for ev in events:
                ev.ts_ns = t
                t += 1
            self._last_ts = t - 1
            emit(EventBatch(events))
        inv = self.parser.inventory
        if inv.devices and inv != self._inventory:
            self._inventory = inv
            emit(Snapshot(self.parser.live_buffers(), self.parser.seq, self.clock(), inv))

    async def run(self, emit: Emit) -> None:
        tail = Tail(self.path)
        problem = not_followable(self.path)
        if problem:
            emit(Status("error", problem))
            return
        emit(Status("connecting", f"waiting for {self.path} (no such file yet)"))
        while not tail.open():
            await anyio.sleep(self.poll_interval)
            problem = not_followable(self.path)
            if problem:
                emit(Status("error", problem))
                return
        problem = not_followable(self.path)
        if problem:
            tail.close()
            emit(Status("error", problem))
            return
        try:
            emit(Status("connecting", f"reading {self.path} from its beginning"))
            if self.assumed is not None:  # until (unless) the log's own detection block says otherwise
                emit(Snapshot([], self.parser.seq, self.clock(), self.assumed))
            while lines := tail.read():
                self._emit_lines(emit, lines)
                await anyio.sleep(0)
            st = self.parser.stats
            odd = f", {st.unknown + st.malformed:,} not recognised" if st.unknown + st.malformed else ""
            emit(Status("connected", f"following {self.path} (caught up on {st.lines:,} lines{odd})", LOG_CAPS))
            while True:
                lines = tail.read()
                if lines:
                    self._emit_lines(emit, lines)
                    await anyio.sleep(0)
                    continue
                change = tail.check()
                if change == "truncated":
                    tail.f.seek(0)
                    tail.partial = b""
                    emit(Status("connected", f"{self.path} was truncated; following it from its start", LOG_CAPS))
                elif change == "rotated":
                    while lines := tail.read():  # whatever was written before the switch
                        self._emit_lines(emit, lines)
                    if tail.partial:  # the old file is finished: its last line will get no newline
                        self._emit_lines(emit, [tail.partial])
                    if tail.open():
                        emit(Status("connected", f"{self.path} was rotated; following the new file", LOG_CAPS))
                elif change == "gone":
                    emit(Status("disconnected", f"{self.path} disappeared; waiting for it to come back", LOG_CAPS))
                    while not os.path.exists(self.path):
                        await anyio.sleep(self.poll_interval)
                    if tail.open():
                        emit(Status("connected", f"following the new {self.path}", LOG_CAPS))
                    continue
                await anyio.sleep(self.poll_interval)
        finally:
            tail.close()

