"""Sources over files: follow a live server log, or replay a log / recording with pause, seek and speed.

Why: the original server prints every event to stdout but never pushes them to a monitor; its
log file is therefore the only per-buffer feed it offers. :class:`FollowLogSource` tails it
(rebuilding the state from the file's beginning first); :class:`ReplaySource` plays a finished
log or a tt-memtop recording back for post-mortems.

Memory stays bounded on multi-million-line logs and multi-million-event recordings: files are
streamed (1 MiB chunks of a log, one record of a recording at a time), and seeking uses a sparse
index of checkpoints (a log's file offset + parser state; a recording's reader position + its
state, encoded) that is thinned out as it grows, within a memory budget, so going back re-reads at
most one checkpoint interval. gzipped files are read as they are.
"""

from __future__ import annotations

import bisect
import gzip
import os
import time
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import anyio

from ..core.devices import Inventory
from ..core.events import Event, EventKind
from ..core.logparse import LogParser
from ..core.registry import Registry
from .base import Capability, Emit, EventBatch, Snapshot, Source, Status

__all__ = ["DEFAULT_RATE", "FollowLogSource", "ReplaySource", "is_recording", "open_log", "read_line_chunks"]

CHUNK = 1 << 20
#: Lines per second when replaying a log (logs carry no timestamps).
DEFAULT_RATE = 5000.0
LOG_CAPS = frozenset({Capability.EVENTS, Capability.TOTALS})
REPLAY_CAPS = frozenset({Capability.EVENTS, Capability.TOTALS, Capability.SEEK})


def read_line_chunks(f: BinaryIO, chunk_size: int = CHUNK) -> Iterator[tuple[list[bytes], int]]:
    """Yield (complete lines, file offset just past them) from ``f``'s current position.

    A final line without a newline is yielded too (a finished file); followers use
    :class:`_Tail` instead, which keeps it until its newline arrives.
    """
    rest = b""
    offset = f.tell()
    while chunk := _read_chunk(f, chunk_size):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        offset += len(chunk)
        if lines:
            yield [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines], offset - len(rest)
    if rest:
        yield [rest[:-1] if rest.endswith(b"\r") else rest], offset


def _read_chunk(f: BinaryIO, size: int) -> bytes:
    """``f.read(size)``; a truncated or damaged gzip stream becomes an OSError that names the file."""
    try:
        return f.read(size)
    except (EOFError, zlib.error) as exc:
        raise OSError(f"{getattr(f, 'name', 'the log')}: the gzip stream is truncated or damaged ({exc}); "
                      f"gunzip what is left of it (zcat FILE > LOG) to read the lines before the damage") from None


def open_log(path: str) -> BinaryIO:
    """A log for reading; a gzipped log (sniffed, whatever its name) is decompressed on the fly (seekable, slowly)."""
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    try:
        gzipped = f.read(2) == b"\x1f\x8b"
        f.seek(0)
    except BaseException:
        f.close()
        raise
    if gzipped:
        f.close()
        return gzip.open(path, "rb")  # noqa: SIM115
    return f


def is_recording(path: str) -> bool:
    """A tt-memtop recording (magic bytes, gzipped or not) rather than a text log?"""
    from ..recording import is_recording_file

    return is_recording_file(path)


class NotALogError(ValueError):
    """The file is neither an allocation-server log nor a tt-memtop recording."""


#: How much of a file :func:`check_log` looks at.
SNIFF_BYTES = 256 * 1024


def check_log(path: str, allow_empty: bool = False) -> None:
    """Raise :class:`NotALogError` (or OSError) unless ``path`` is a recording or looks like a server log.

    A log must have at least one line the parser understands (an allocation, a banner, a dump ...)
    in its first ``SNIFF_BYTES``; an empty or binary file, or prose, is refused with the reason,
    rather than reported as a run without allocations ("perfect cleanup")."""
    if is_recording(path):
        return
    from ..core.logparse import LogParser

    with open_log(path) as f:
        head = _read_chunk(f, SNIFF_BYTES)
    if not head:
        if allow_empty:
            return
        raise NotALogError(f"{path} is empty: not an allocation-server log or a memtop recording")
    if b"\0" in head:
        raise NotALogError(f"{path} is a binary file: not an allocation-server log or a memtop recording")
    lines = head.split(b"\n")
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # probably cut in the middle
    parser = LogParser(line_as_ts=True)
    parser.feed([ln.rstrip(b"\r") for ln in lines])
    st = parser.stats
    if not (st.event_lines or st.known):
        raise NotALogError(f"{path} is not an allocation-server log (none of its first {st.lines:,} lines is a line "
                           f"the server writes) nor a memtop recording")


def _stamp(events: list[Event], ts_ns: int) -> None:
    for ev in events:
        ev.ts_ns = ts_ns


# ---------------------------------------------------------------------------------------- follow
class _Tail:
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


class FollowLogSource(Source):
    """Tail a live allocation-server log: rebuild the state from its beginning, then follow it.

    Truncation (``> log`` or logrotate's copytruncate) continues from the new start; rotation
    (the path now names a new file) drains the old file and moves to the new one. The parser's
    state carries over in both cases: a restarted server announces itself with its start
    banner, which resets the state. Limitation: truncation is noticed when the file is shorter
    than what was read, at the next idle poll; a file truncated and then rewritten past that
    point within one poll interval is read on from the old offset (``tail -F`` has the same
    blind spot).
    """

    def __init__(self, path: str, *, poll_interval: float = 0.25, clock=time.time_ns) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.clock = clock
        self.parser = LogParser(cb_kernel_totals=True)
        self.description = f"log {path}"
        self.ready_on_connect = True  # its "connected" Status means: caught up with the file
        self._inventory: Inventory | None = None

    def _emit_lines(self, emit: Emit, lines: list[bytes]) -> None:
        if not lines:
            return
        events = self.parser.feed(lines)
        self.parser.take_records()  # records are for reports; a live view only needs events
        if events:
            _stamp(events, self.clock())
            emit(EventBatch(events))
        inv = self.parser.inventory
        if inv.devices and inv != self._inventory:
            self._inventory = inv
            emit(Snapshot(self.parser.live_buffers(), self.parser.seq, self.clock(), inv))

    async def run(self, emit: Emit) -> None:
        tail = _Tail(self.path)
        emit(Status("connecting", f"waiting for {self.path}"))
        while not tail.open():
            await anyio.sleep(self.poll_interval)
        try:
            emit(Status("connecting", f"reading {self.path} from its beginning"))
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


# ---------------------------------------------------------------------------------------- replay timelines
#: Memory the checkpoints of one replay may hold (estimated bytes of their states): with many live
#: buffers they are fewer and further apart, never more than this, whatever the file's length.
CHECKPOINT_BUDGET = 64 << 20
#: A checkpoint costs O(live buffers) to take: they are spaced at least this many events (lines) per
#: live buffer apart, so that taking them stays a small part of the playback's work.
CHECKPOINT_SPACING = 4
#: Events (lines of a log) one playback tick reads at most: at a speed the monitor cannot follow the
#: replay falls behind its clock instead of reading millions of events into one batch.
MAX_PER_TICK = 100_000
_ALL = 1 << 62
#: Events (lines of a log) a seek reads between two looks at the clock (see SEEK_SLICE_S).
SEEK_STEP = 8192
#: A seek reads for at most about this long, then pauses SEEK_PAUSE_S for the UI (frames, keys).
SEEK_SLICE_S = 0.03
SEEK_PAUSE_S = 0.005
#: A player reads a recording ahead (for checkpoints) for at most this long per tick when idle.
INDEX_SLICE_S = 0.012
_K_ALLOC, _K_FREE, _K_CLEANUP = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP
_K_REF_INC, _K_REF_DEC, _K_TOTALS = EventKind.REF_INC, EventKind.REF_DEC, EventKind.TOTALS

#: Estimated bytes of a log parser's clone per live buffer (a dict entry; the entries are shared).
_PARSER_ENTRY_BYTES = 100


class _Checkpoints:
    """A sparse, bounded index of (position, state). Thinned by half when full, so the spacing doubles.

    Bounded twice: at most ``limit`` items, and at most ``budget`` in the sum of their ``cost``
    (the caller's estimate of a state's bytes) — a state of a million live buffers is not kept 64 times.
    """

    def __init__(self, interval: int, limit: int = 64, budget: int = CHECKPOINT_BUDGET) -> None:
        self.enabled = True  # False: nothing will seek back (a headless replay), none is taken
        self.interval = interval
        self.limit = limit
        self.budget = budget
        self.items: list[tuple[int, object]] = []
        self._costs: list[int] = []

    @property
    def cost(self) -> int:
        return sum(self._costs)

    def due(self, pos: int, size: int = 0) -> bool:
        """Time for a checkpoint at ``pos``, for a state of ``size`` live entries?"""
        if not self.enabled:
            return False
        last = self.items[-1][0] if self.items else 0
        return pos - last >= max(self.interval, CHECKPOINT_SPACING * size)

    def add(self, pos: int, state: object, cost: int = 0) -> None:
        if self.items and self.items[-1][0] >= pos:
            return
        self.items.append((pos, state))
        self._costs.append(cost)
        while len(self.items) > self.limit or (len(self.items) > 1 and sum(self._costs) > self.budget):
            self.items = self.items[1::2]
            self._costs = self._costs[1::2]
            self.interval *= 2

    def best(self, pos: int) -> tuple[int, object] | None:
        best = None
        for item in self.items:
            if item[0] <= pos:
                best = item
            else:
                break
        return best

    def last_where(self, pred) -> tuple[int, object] | None:
        """The last checkpoint whose state satisfies ``pred`` (states ordered as positions are)."""
        for item in reversed(self.items):
            if pred(item[1]):
                return item
        return None


class _LogTimeline:
    """A text log as a timeline of lines; position unit = line, time = line / rate."""

    unit = "lines"

    def __init__(self, path: str, rate: float, checkpoint_every: int = 20_000) -> None:
        self.path = path
        self.rate = rate
        self.total = self._count_lines(path)
        self.f: BinaryIO = open_log(path)
        self.parser = LogParser(cb_kernel_totals=True)
        self._pending: list[bytes] = []
        self._pending_at = 0
        self._offset = 0  # file offset just past the pending lines
        self._chunks = read_line_chunks(self.f)  # one generator per read position: it holds the partial line
        self.ckpt = _Checkpoints(checkpoint_every)

    @staticmethod
    def _count_lines(path: str) -> int:
        n = 0
        last = b"\n"
        with open_log(path) as f:
            while chunk := _read_chunk(f, CHUNK):
                n += chunk.count(b"\n")
                last = chunk[-1:]
        return n + (last != b"\n")

    def close(self) -> None:
        self.f.close()

    @property
    def pos(self) -> int:
        return self.parser.line

    @property
    def duration_s(self) -> float:
        return self.total / self.rate

    def time_of(self, pos: float) -> float:
        return pos / self.rate

    def pos_of(self, seconds: float) -> int:
        return int(seconds * self.rate)

    def inventory(self) -> Inventory | None:
        inv = self.parser.inventory
        return inv if inv.devices else None

    def _fill(self) -> bool:
        if self._pending_at < len(self._pending):
            return True
        size = self.parser.state_size()
        if self.ckpt.due(self.pos, size):  # only at chunk boundaries: the file offset is exact there
            self.ckpt.add(self.pos, (self._offset, self.parser.clone()), size * _PARSER_ENTRY_BYTES)
        for lines, offset in self._chunks:
            self._pending, self._pending_at, self._offset = lines, 0, offset
            return True
        return False

    def read(self, n: int) -> list[Event]:
        """The events of the next ``n`` lines."""
        out: list[Event] = []
        while n > 0 and self._fill():
            take = self._pending[self._pending_at:self._pending_at + n]
            self._pending_at += len(take)
            n -= len(take)
            out += self.parser.feed(take)
            self.parser.take_records()
        return out

    def read_events(self, n: int) -> list[Event]:
        """Lines up to and including the one that completes ``n`` events (lines without one are passed).
        Each event is stamped with its own line's log time."""
        out: list[Event] = []
        while len(out) < n and self._fill():
            evs = self.read(1)
            _stamp(evs, int(self.time_of(self.pos) * 1e9))
            out += evs
        return out

    def seek_steps(self, pos: int, step: int = SEEK_STEP) -> Iterator[float]:
        """Seek to line ``pos`` in steps of about ``step`` lines, yielding the progress (0..1) after each."""
        pos = max(0, min(pos, self.total))
        best = self.ckpt.best(pos)
        if pos < self.pos or (best is not None and best[0] > self.pos):
            if best is None:
                self.parser, offset = LogParser(cb_kernel_totals=True), 0
            else:
                offset, parser = best[1]
                self.parser = parser.clone()
            self.f.seek(offset)
            self._pending, self._pending_at, self._offset = [], 0, offset
            self._chunks = read_line_chunks(self.f)
        start = self.pos
        while self.pos < pos:
            if not self.read(min(pos - self.pos, step)) and not self._fill():
                break
            yield (self.pos - start) / max(1, pos - start)

    def seek(self, pos: int) -> None:
        for _ in self.seek_steps(pos, 65536):
            pass

    def state(self) -> tuple[list, int]:
        return self.parser.live_buffers(), self.parser.seq


def _encode_state(registry: Registry) -> bytes:
    """A registry's live entries, compactly (a checkpoint holds bytes, not a copy of every Buffer object):
    BUFFER records in row order, encoded from the table's columns (no Buffer is made)."""
    fz = registry.freeze()
    try:
        return fz.encode(0, len(fz) + 1)[0]
    finally:
        registry.thaw(fz)


def _decode_state(blob: bytes) -> list:
    from ..core.eventcodec import decode_buffer

    out = []
    off, end = 0, len(blob)
    view = memoryview(blob)
    while off < end:
        b, off = decode_buffer(view, off)
        out.append(b)
    return out


def fold_net(registry: Registry, batch: list[Event], limit_ts: int | None,
             last_sample: list[Event]) -> list[Event] | None:
    """Fold a whole batch that nobody will see (a seek passing through it) by its net effect.

    Per key only what decides the end state is applied: its last ALLOC or FREE / CLEANUP (an ALLOC
    replaces any entry under its key, so what came before it does not matter) and the last
    reference-count change after it; an allocation made and freed within the batch costs one no-op
    FREE. Applied in their original order, so the registry ends with the rows, their order, the
    totals and the ``seq`` that applying every event gives. Returns the last totals sample after the
    batch (``last_sample`` itself if it has none), or None, with nothing applied, when an event is
    later than ``limit_ts``: the caller then goes event by event.
    """
    last: dict[tuple[int, int, int], int] = {}  # key -> index of its last ALLOC / FREE / CLEANUP
    refs: dict[tuple[int, int, int], int] = {}  # key -> index of its last reference-count change after that
    rest: list[int] = []  # events of no buffer (FREE_UNKNOWN counts, the rest only moves seq)
    alloc, free, cleanup, inc, dec, totals = _K_ALLOC, _K_FREE, _K_CLEANUP, _K_REF_INC, _K_REF_DEC, _K_TOTALS
    sample = None  # a copy of last_sample once a TOTALS event changes it
    lim = _ALL if limit_ts is None else limit_ts
    for i, ev in enumerate(batch):
        if ev.ts_ns > lim:
            return None
        k = ev.kind
        if k == alloc or k == free or k == cleanup:
            bt = ev.buffer_type
            key = (1 if bt == 5 else 2 if bt == 6 else 0, ev.device, ev.buffer_id)
            last[key] = i
            if refs:
                refs.pop(key, None)
        elif k == inc or k == dec:  # reference counts are absolute: the last one is what stays
            bt = ev.buffer_type
            refs[(1 if bt == 5 else 2 if bt == 6 else 0, ev.device, ev.buffer_id)] = i
        elif k == totals:
            if ev.device == -1:  # a sample starts (tt_memtop.sources.record)
                sample = [ev]
            else:
                if sample is None:
                    sample = list(last_sample)
                sample.append(ev)
        else:
            rest.append(i)
    plan = [*last.values(), *refs.values(), *rest]
    plan.sort()
    registry.apply_batch([batch[i] for i in plan])
    for ev in reversed(batch):
        if ev.seq:
            registry.seq = ev.seq
            break
    return last_sample if sample is None else sample


class _RecordingTimeline:
    """A tt-memtop recording as a timeline of events; time = the events' own timestamps.

    Streams: one record's events are held at a time. Seeking goes back to a checkpoint (the
    reader's position at a record, the state there encoded compactly, see :class:`_Checkpoints`)
    and reads on from there; nothing before it is read again.
    """

    unit = "events"

    def __init__(self, path: str, checkpoint_every: int = 20_000) -> None:
        from ..recording import RecordingReader

        self.path = path
        self._reader = reader = RecordingReader(path)
        self.header = reader.header
        self.total, self.t0, self.t1 = reader.scan()  # one quick pass for the length and the time span
        #: what was skipped at a torn or damaged record (one line), or None
        self.torn_note = reader.torn_note()
        self.t0 = self.t0 or 0
        self.t1 = self.t1 or self.t0
        self.ckpt = _Checkpoints(checkpoint_every)
        self._restart()

    def follower(self) -> _RecordingTimeline:
        """Another reading of the same recording (its own reader and state) that shares this one's quick
        scan and checkpoints: an indexer reading ahead adds checkpoints that this timeline's seeks use."""
        from ..recording import RecordingReader

        tl = object.__new__(_RecordingTimeline)
        tl.path = self.path
        tl._reader = RecordingReader(self.path)
        tl._reader.time_index = self._reader.time_index
        tl.header, tl.total, tl.t0, tl.t1, tl.torn_note = self.header, self.total, self.t0, self.t1, None
        tl.ckpt = self.ckpt
        tl._restart(self.ckpt.items[-1] if self.ckpt.items else None)
        return tl

    def index_step(self, step: int = SEEK_STEP) -> bool:
        """Read ``step`` more events only to take checkpoints (an indexer, see :meth:`follower`); False at the end.
        Checkpoints another reading took further on are jumped to rather than read up to."""
        items = self.ckpt.items
        if items and items[-1][0] > self.pos + self.ckpt.interval:
            self._restart(items[-1])
        before = self.pos
        self._run(step, None, None)
        return self.pos > before and self.pos < self.total

    def _live(self) -> dict:
        """What the reader ends at a session boundary: the registry's live entries (it has folded every
        batch before the reader reads on), so the reader tracks nothing per event."""
        from ..recording import live_of

        return live_of(self.registry.buffers())

    def events_until(self, seconds: float) -> int:
        """About how many events the first ``seconds`` of log time hold: the quick scan's index,
        interpolated between its entries (a seek's progress)."""
        ts = self.t0 + int(seconds * 1e9)
        index = self._reader.time_index
        i = bisect.bisect_right(index, (ts, 1 << 62))
        t_a, n_a = index[i - 1] if i else (self.t0, 0)
        t_b, n_b = index[i] if i < len(index) else (self.t1, self.total)
        if t_b <= t_a:
            return min(self.total, n_a)
        return max(0, min(self.total, n_a + int((n_b - n_a) * (ts - t_a) / (t_b - t_a))))

    def _restart(self, ckpt: tuple[int, object] | None = None) -> None:
        self.registry = Registry()
        #: the TOTALS events of the last recorded totals sample (a shared-memory recording): a seek's
        #: snapshot has no buffers for them, so they are sent after it
        self.last_sample: list[Event] = []
        if ckpt is None:
            self.pos, start = 0, None
            self.last_ts = self.t0
        else:
            self.pos, (start, blob, seq, self.last_ts, sample) = ckpt
            self.registry.load_snapshot(_decode_state(blob), seq)
            self.last_sample = list(sample)
        self._batches = self._reader.batches(start, live_source=self._live)
        self._batch: list[Event] = []
        self._i = 0

    def close(self) -> None:
        self._batches.close()

    @property
    def duration_s(self) -> float:
        return (self.t1 - self.t0) / 1e9

    def time_of(self, pos: float) -> float:
        """Log time of the current position: the last delivered event's timestamp."""
        return (self.last_ts - self.t0) / 1e9

    def inventory(self) -> Inventory | None:
        inv = self.header.inventory
        return inv if inv.devices else None

    def _next(self) -> Event | None:
        while self._i >= len(self._batch):
            batch = next(self._batches, None)
            if batch is None:
                self.total = self.pos  # what there is (the file may have changed since the scan)
                return None
            self._batch, self._i = batch, 0
        return self._batch[self._i]

    def _checkpoint(self) -> None:
        """At the start of a batch (the reader's ``at`` is its record): remember the state before it."""
        blob = _encode_state(self.registry)
        self.ckpt.add(self.pos, (self._reader.at, blob, self.registry.seq, self.last_ts, list(self.last_sample)),
                      len(blob))

    def _run(self, n: int, limit_ts: int | None, out: list[Event] | None) -> None:
        """Apply up to ``n`` events (those with ``ts_ns <= limit_ts``, if given), appended to ``out`` unless None."""
        apply = self.registry.apply_event
        totals = EventKind.TOTALS
        while n > 0 and self._next() is not None:
            batch, i = self._batch, self._i
            if i == 0 and self.ckpt.due(self.pos, len(self.registry)):
                self._checkpoint()
            if (out is None and i == 0 and len(batch) <= n
                    and (sample := fold_net(self.registry, batch, limit_ts, self.last_sample)) is not None):
                self.last_sample = sample
                self.last_ts = batch[-1].ts_ns
                self.pos += len(batch)
                n -= len(batch)
                self._i = len(batch)
                continue
            j = min(len(batch), i + n)
            if limit_ts is not None:  # up to the first later event (as a clock would deliver them)
                end, j = j, i
                while j < end and batch[j].ts_ns <= limit_ts:
                    j += 1
                if j == i:
                    return
            for ev in batch[i:j] if (i or j < len(batch)) else batch:
                if ev.kind == totals:
                    if ev.device == -1:  # a sample starts (tt_memtop.sources.record)
                        self.last_sample = [ev]
                    else:
                        self.last_sample.append(ev)
                apply(ev)
            if out is not None:
                out += batch[i:j] if (i or j < len(batch)) else batch
            self.last_ts = batch[j - 1].ts_ns
            self.pos += j - i
            n -= j - i
            self._i = j

    def read(self, n: int) -> list[Event]:
        out: list[Event] = []
        self._run(n, None, out)
        return out

    def read_events(self, n: int) -> list[Event]:
        return self.read(n)

    def read_until(self, seconds: float, max_events: int | None = None) -> list[Event]:
        out: list[Event] = []
        self._run(_ALL if max_events is None else max_events, self.t0 + int(seconds * 1e9), out)
        return out

    def seek_steps(self, pos: int, step: int = SEEK_STEP) -> Iterator[float]:
        """Seek to event ``pos`` in steps of about ``step`` events, yielding the progress (0..1) after
        each: between two steps the timeline is consistent (a player may stop or retarget there)."""
        pos = max(0, min(pos, self.total))
        best = self.ckpt.best(pos)
        if pos < self.pos or (best is not None and best[0] > self.pos):
            self._restart(best)
        start = self.pos
        while self.pos < pos:
            before = self.pos
            self._run(min(step, pos - self.pos), None, None)
            if self.pos == before:
                break
            yield (self.pos - start) / max(1, pos - start)

    def seek_time_steps(self, seconds: float, step: int = SEEK_STEP) -> Iterator[float]:
        """Seek to log time ``seconds`` (every event up to it, none after) in steps, as :meth:`seek_steps`."""
        if seconds <= 0:  # the very start: before the first event, even when others share its timestamp
            yield from self.seek_steps(0, step)
            return
        limit = self.t0 + int(seconds * 1e9)
        # the last checkpoint whose events before it all came no later than the target
        best = self.ckpt.last_where(lambda state: state[3] <= limit)
        behind = (ev := self._next()) is not None and ev.ts_ns > limit or self.pos >= self.total
        if behind or (best is not None and best[0] > self.pos):
            self._restart(best)
        start = self.pos
        goal = max(self.events_until(seconds), start + 1)
        while True:
            before = self.pos
            self._run(step, limit, None)
            if self.pos - before < step:
                return
            yield min(0.99, (self.pos - start) / max(1, goal - start))

    def seek(self, pos: int) -> None:
        for _ in self.seek_steps(pos, _ALL):
            pass

    def seek_time(self, seconds: float) -> None:
        for _ in self.seek_time_steps(seconds, _ALL):
            pass

    def state(self) -> tuple[list, int]:
        return self.registry.snapshot(), self.registry.seq


# ---------------------------------------------------------------------------------------- replay
class ReplaySource(Source):
    """Replay a server log or a recording, with the controls a player needs.

    Logs have no timestamps: they play at ``rate`` lines per second (log time = line / rate).
    Recordings play with their own timestamps. ``speed`` scales both. The control methods are
    meant to be called from the UI's event loop while :meth:`run` is running; after a seek the
    new state is sent as a :class:`Snapshot` with ``reset=True`` (consumers drop their feed and
    history: they belong to another point in time), then playback continues from there.

    ``min_duration_s`` (logs): when the whole log would play in less than this at ``rate``, the
    rate is lowered so that it lasts that long (a 200-line log at 5000 lines/s is over before
    it is drawn).
    """

    capabilities = REPLAY_CAPS
    local = False  # recorded PIDs belong to another time (or machine): never look them up in /proc

    def __init__(self, path: str, speed: float = 1.0, *, rate: float = DEFAULT_RATE, paused: bool = False,
                 tick: float = 0.05, hold_at_end: bool = True, checkpoint_every: int = 20_000,
                 min_duration_s: float = 0.0) -> None:
        self.path = path
        self.speed = speed
        self.rate = rate
        self.tick = tick
        self.hold_at_end = hold_at_end
        self.recording = is_recording(path)
        self.timeline = (_RecordingTimeline(path, checkpoint_every) if self.recording
                         else _LogTimeline(path, rate, checkpoint_every))
        if not self.recording and min_duration_s > 0 and self.timeline.total / rate < min_duration_s:
            self.rate = self.timeline.rate = max(1.0, self.timeline.total / min_duration_s)
        self.paused = paused
        self.description = f"replay of {'recording' if self.recording else 'log'} {path}"
        self.short_description = f"{'recording' if self.recording else 'log'} {os.path.basename(path)}"
        self._clock_s = 0.0  # playback position in log time (seconds)
        #: a seek in progress (see :meth:`_work_on_seek`): steps of the timeline, each yielding its progress
        self._job: Iterator[float] | None = None
        self._job_target_s = 0.0  # where it goes (log time)
        self._job_back = False  # it goes back to where the seek started (Esc): nothing to send at its end
        self._origin: tuple[int, float, list[Event]] | None = None  # (position, clock, carry) on screen
        #: how far the seek in progress has got (0..1), None when not seeking
        self.seek_progress: float | None = None
        #: longest stretch of seeking between two chances for the UI to draw and take keys, and the
        #: pause given it then (0: a headless replay, nothing else to run)
        self.seek_slice_s = SEEK_SLICE_S
        self.seek_pause_s = SEEK_PAUSE_S
        self.seek_step = SEEK_STEP  # events (lines) read between two looks at the clock
        #: a recording is read ahead while the player has nothing else to do, to take checkpoints
        #: (a first seek forward then starts near its target); INDEX_SLICE_S of each tick at most
        self.index_ahead = self.recording
        self.index_slice_s = INDEX_SLICE_S
        self._indexer: _RecordingTimeline | None = None
        self._behind = False  # the last tick of playback read all it may (MAX_PER_TICK): no idle time
        self._ops: list[tuple[str, float]] = []
        self._carry: list[Event] = []  # read but not sent: a step of N events ended inside a line's events
        self._wake: anyio.Event | None = None

    # ------------------------------------------------------------------ controls
    def _push(self, op: str, arg: float = 0.0) -> None:
        self._ops.append((op, arg))
        if self._wake is not None:
            self._wake.set()

    def pause(self) -> None:
        self._push("pause")

    def resume(self) -> None:
        self._push("resume")

    def toggle(self) -> None:
        """Pause or resume; at the end, play again from the start (as a media player does)."""
        self._push("toggle")

    def step(self, n: int = 1) -> None:
        """Pause and advance ``n`` lines (logs) or events (recordings)."""
        self._push("step", n)

    def step_events(self, n: int = 1) -> None:
        """Pause and advance by ``n`` events (a log's lines without an event are passed over)."""
        self._push("step_events", n)

    def seek(self, fraction: float | None = None, *, seconds: float | None = None) -> None:
        """Jump to a fraction of the file (0..1) or to a time in seconds of log time."""
        if seconds is None:
            seconds = max(0.0, min(1.0, fraction or 0.0)) * self.duration_s
        self._push("seek", max(0.0, seconds))

    def skip(self, seconds: float) -> None:
        """Seek relative to the current position (negative: back). Queued skips add up."""
        self._push("skip", seconds)

    def cancel_seek(self) -> None:
        """Stop the seek in progress: the player goes back to where it was (what the screen still shows)."""
        self._push("cancel")

    def no_seeking(self) -> None:
        """Nothing will seek back or draw (a headless replay to the end): take no checkpoints, and
        let a seek run without pauses."""
        self.timeline.ckpt.enabled = False
        self.seek_pause_s = 0.0
        self.index_ahead = False

    @property
    def indexed(self) -> float:
        """How much of a recording the indexer has read ahead (0..1; 1 when there is nothing left to read)."""
        ix = self._indexer
        if ix is None:
            return 0.0 if self.index_ahead else 1.0
        return ix.pos / ix.total if ix.total and self.index_ahead else 1.0

    def _index_some(self) -> None:
        """Read ahead for at most ``index_slice_s`` (idle time: no seek in progress)."""
        if self._indexer is None:
            self._indexer = self.timeline.follower()
        deadline = time.perf_counter() + self.index_slice_s
        while time.perf_counter() < deadline:
            if not self._indexer.index_step(self.seek_step):
                self.index_ahead = False
                self._indexer.close()
                return

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.01, float(speed))
        self._push("noop")

    @property
    def duration_s(self) -> float:
        return self.timeline.duration_s

    @property
    def seeking(self) -> bool:
        """A seek is in progress (its progress: :attr:`seek_progress`, its target: :attr:`seek_target_s`);
        until it ends, the position is still the one on screen."""
        return self._job is not None

    @property
    def seek_target_s(self) -> float:
        return self._job_target_s

    @property
    def position_s(self) -> float:
        return self._clock_s

    @property
    def fraction(self) -> float:
        return self.position / self.timeline.total if self.timeline.total else 1.0

    @property
    def at_end(self) -> bool:
        return not self.seeking and self.timeline.pos >= self.timeline.total and not self._carry

    @property
    def position(self) -> int:
        """Lines (logs) or events (recordings) played so far; see :attr:`length` and :attr:`unit`."""
        return self._origin[0] if self._origin is not None else self.timeline.pos

    @property
    def length(self) -> int:
        return self.timeline.total

    @property
    def unit(self) -> str:
        return self.timeline.unit

    @property
    def origin_ns(self) -> int:
        """The timestamp of the file's start: events' ``ts_ns`` minus this is log time."""
        return self.timeline.t0 if self.recording else 0

    # ------------------------------------------------------------------ playback
    def _status(self, emit: Emit, state: str | None = None) -> None:
        tl = self.timeline
        state = state or ("ended" if self.at_end else "paused" if self.paused else "playing")
        seeking = f", seeking to {self._job_target_s:.1f} s" if self.seeking else ""
        emit(Status(state, f"{self.description}: {self.position:,}/{tl.total:,} {tl.unit}, "
                           f"{self._clock_s:.1f}/{self.duration_s:.1f} s at {self.speed:g}x{seeking}", REPLAY_CAPS))

    def _batch(self, emit: Emit, events: list[Event], stamped: bool = False) -> None:
        if not events:
            return
        if not self.recording and not stamped:
            _stamp(events, int(self._clock_s * 1e9))
        emit(EventBatch(events))

    def _snapshot(self, emit: Emit, reset: bool = False) -> None:
        buffers, seq = self.timeline.state()
        ts = self.origin_ns + int(self._clock_s * 1e9)
        emit(Snapshot(buffers, seq, ts, self.timeline.inventory(), reset=reset))
        sample = getattr(self.timeline, "last_sample", None)
        if sample:  # a recording of sampled totals: the snapshot's buffers do not hold them
            emit(EventBatch(list(sample)))

    def _seek_to(self, emit: Emit, seconds: float) -> None:
        """Start seeking to ``seconds`` (or retarget the seek in progress). The reading is done in
        slices by :meth:`_work_on_seek`; the new state is sent when it is there."""
        tl = self.timeline
        seconds = max(0.0, min(seconds, self.duration_s))
        if self._origin is None:
            self._origin = (tl.pos, self._clock_s, self._carry)
        self._carry = []
        self._job_target_s = seconds
        self._job_back = False
        self._job = (tl.seek_time_steps(seconds, self.seek_step) if self.recording
                     else tl.seek_steps(tl.pos_of(seconds), self.seek_step))
        self.seek_progress = 0.0

    def _cancel_seek(self) -> None:
        """Esc during a seek: read back to the position on screen (through a checkpoint: quick), silently."""
        if self._job is None or self._job_back or self._origin is None:
            return
        pos, clock_s, _carry = self._origin
        self._job_target_s = clock_s
        self._job_back = True
        self._job = self.timeline.seek_steps(pos, self.seek_step)
        self.seek_progress = 0.0

    def _work_on_seek(self, emit: Emit) -> None:
        """Read on for at most ``seek_slice_s``; when the seek is done, send the new state (a reset)."""
        assert self._job is not None
        deadline = time.perf_counter() + self.seek_slice_s
        for progress in self._job:
            self.seek_progress = progress
            if time.perf_counter() >= deadline:
                return
        self._job, self.seek_progress = None, None
        origin, self._origin = self._origin, None
        if self._job_back:  # back where it started: the screen already shows this state
            self._job_back = False
            _pos, self._clock_s, self._carry = origin
        else:
            self._clock_s = self._job_target_s
            self._carry = []
            self._snapshot(emit, reset=True)
        self._status(emit)

    def _advance(self, emit: Emit, dt: float) -> None:
        tl = self.timeline
        self._clock_s = min(self.duration_s, self._clock_s + dt * self.speed)
        if self.recording:
            events = tl.read_until(self._clock_s, MAX_PER_TICK)
            self._behind = len(events) >= MAX_PER_TICK
            if self._behind:  # behind: the clock waits for the events
                self._clock_s = tl.time_of(tl.pos)
        else:
            want = max(0, tl.pos_of(self._clock_s) - tl.pos)
            events = tl.read(min(want, MAX_PER_TICK))
            if want > MAX_PER_TICK:
                self._clock_s = tl.time_of(tl.pos)
        if self._carry:
            events, self._carry = self._carry + events, []
        self._batch(emit, events)

    def _apply_ops(self, emit: Emit) -> None:
        ops, self._ops = self._ops, []
        tl = self.timeline
        later: list[tuple[str, float]] = []  # steps wait for the seek in progress to end
        for op, arg in ops:
            if self.seeking and op in ("step", "step_events", "toggle"):
                if op == "toggle":  # no end to play again from while seeking: just pause / resume
                    self.paused = not self.paused
                else:
                    later.append((op, arg))
                continue
            if op == "cancel":
                self._cancel_seek()
            elif op == "pause":
                self.paused = True
            elif op == "resume":
                self.paused = False
            elif op == "toggle":
                if self.at_end:
                    self._seek_to(emit, 0.0)
                    self.paused = False
                else:
                    self.paused = not self.paused
            elif op == "step":
                self.paused = True
                events, self._carry = self._carry + tl.read(int(arg)), []
                self._clock_s = tl.time_of(tl.pos)
                self._batch(emit, events)
            elif op == "step_events":  # exactly n: a line with several events may leave some for later
                self.paused = True
                n = int(arg)
                events = self._carry + tl.read_events(max(0, n - len(self._carry)))
                events, self._carry = events[:n], events[n:]
                self._clock_s = tl.time_of(tl.pos)
                self._batch(emit, events, stamped=True)
            elif op == "seek":
                self._seek_to(emit, arg)
            elif op == "skip":  # from where a seek in progress goes: queued skips add up
                base = self._job_target_s if self.seeking and not self._job_back else self._clock_s
                self._seek_to(emit, base + arg)
        self._ops[:0] = later
        if len(ops) > len(later):
            self._status(emit)

    async def run(self, emit: Emit) -> None:
        self._wake = anyio.Event()
        inv = self.timeline.inventory()
        if inv is not None:
            emit(Snapshot([], 0, 0, inv))
        self._status(emit)
        last = time.monotonic()
        announced_inventory = inv is not None
        ended = False
        try:
            while True:
                self._apply_ops(emit)
                if self._job is not None:
                    self._work_on_seek(emit)
                    if self._job is not None:  # more to read: let the UI draw and take keys meanwhile
                        await anyio.sleep(self.seek_pause_s)
                        last = time.monotonic()
                        continue
                    last = time.monotonic()  # the time spent seeking is not playback time
                now = time.monotonic()
                if not self.paused and not self.at_end:
                    self._advance(emit, now - last)
                    if not announced_inventory and (inv := self.timeline.inventory()) is not None:
                        announced_inventory = True
                        self._snapshot(emit)
                last = now
                if self.at_end and not ended:
                    ended = True
                    self._status(emit, "ended")
                    if not self.hold_at_end:
                        return
                elif not self.at_end:
                    ended = False
                if self.index_ahead and not self._ops and not (self._behind and not self.paused):
                    self._index_some()  # idle time only: not while playing faster than the events can be read
                with anyio.move_on_after(self.tick):
                    await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self.timeline.close()
            if self._indexer is not None:
                self._indexer.close()
