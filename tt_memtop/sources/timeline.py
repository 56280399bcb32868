"""Seekable timelines of a finished log or recording, for the replay: read on, or seek anywhere.

Why: a post-mortem seeks back and forth in multi-million-line logs and multi-million-event
recordings, yet memory must stay bounded: files are streamed (1 MiB chunks of a log, one record
of a recording at a time), and seeking uses a sparse index of checkpoints (:class:`Checkpoints`:
a log's file offset + parser state; a recording's reader position + its state, encoded) thinned
out as it grows, within a memory budget, so going back re-reads at most one checkpoint interval.
:class:`LogTimeline` counts in lines (time = line / rate), :class:`RecordingTimeline` in events
(the events' own timestamps). Played by :class:`~.replay.ReplaySource`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import BinaryIO

from ..core.devices import Inventory
from ..core.events import Event, EventKind
from ..core.logparse import LogParser
from ..core.registry import Registry
from ..gzseek import GzipIndex
from .base import stamp
from .logfile import CHUNK, open_log, read_chunk, read_line_chunks

__all__ = ["CHECKPOINT_BUDGET", "CHECKPOINT_SPACING", "Checkpoints", "LogTimeline", "RecordingTimeline"]

#: Memory the checkpoints of one replay may hold (estimated bytes of their states): with many live
#: buffers they are fewer and further apart, never more than this, whatever the file's length.
CHECKPOINT_BUDGET = 64 << 20
#: A checkpoint costs O(live buffers) to take: they are spaced at least this many events (lines) per
#: live buffer apart, so that taking them stays a small part of the playback's work.
CHECKPOINT_SPACING = 4
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


class Checkpoints:
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


class LogTimeline:
    """A text log as a timeline of lines; position unit = line, time = line / rate."""

    unit = "lines"

    #: lines after which a log that named no device (S1 prints no detection block; S2+ print it first)
    #: takes the assumed architecture's capacities
    DETECTION_LINES = 20

    def __init__(self, path: str, rate: float, checkpoint_every: int = 20_000, arch: str | None = None) -> None:
        self.path = path
        self.rate = rate
        self.assumed = Inventory.uniform(1, arch) if arch else None  # --arch: capacities the log does not say
        self.gz_index = GzipIndex()  # a gzipped log: the count's pass leaves resume points for the seeks
        self.total = self._count_lines(path, self.gz_index)
        self.f: BinaryIO = open_log(path, self.gz_index)
        self.parser = LogParser(cb_kernel_totals=True)
        self._pending: list[bytes] = []
        self._pending_at = 0
        self._offset = 0  # file offset just past the pending lines
        self._chunks = read_line_chunks(self.f)  # one generator per read position: it holds the partial line
        self.ckpt = Checkpoints(checkpoint_every)

    @staticmethod
    def _count_lines(path: str, index: GzipIndex | None = None) -> int:
        n = 0
        last = b"\n"
        with open_log(path, index) as f:
            while chunk := read_chunk(f, CHUNK):
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
        if inv.devices:
            return inv
        past_detection = self.parser.stats.lines >= min(self.DETECTION_LINES, self.total)
        return self.assumed if past_detection else None

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
            stamp(evs, int(self.time_of(self.pos) * 1e9))
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


class RecordingTimeline:
    """A tt-memtop recording as a timeline of events; time = the events' own timestamps.

    Streams: one record's events are held at a time. Seeking goes back to a checkpoint (the
    reader's position at a record, the state there encoded compactly, see :class:`Checkpoints`)
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
        self.ckpt = Checkpoints(checkpoint_every)
        self._restart()

    def follower(self) -> RecordingTimeline:
        """Another reading of the same recording (its own reader and state) that shares this one's quick
        scan and checkpoints: an indexer reading ahead adds checkpoints that this timeline's seeks use."""
        from ..recording import RecordingReader

        tl = object.__new__(RecordingTimeline)
        tl.path = self.path
        tl._reader = RecordingReader(self.path)
        tl._reader.time_index = self._reader.time_index
        tl._reader.gz_index = self._reader.gz_index
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
