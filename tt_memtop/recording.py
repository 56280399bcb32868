"""Recordings: every event a server produced, with its receive timestamp, in an append-only file.

Format (docs/RECORDING.md): ``b"TTMEMREC"`` + u16 format version, then records, each
``u32 length`` + ``u32 crc32(record)`` + record, where a record is an
:mod:`~tt_memtop.core.eventcodec` record (kind byte + body). Each server run is a *session*: a
HEADER record (codec version, wall-clock and monotonic start times, socket path, inventory),
optionally a SNAPSHOT (the state the server restored from its journal), then EVENTS batches.
Starting a server again on the same file appends a session; nothing is ever truncated except a
torn last record, which no reader could use. A crash can only tear the last record: readers stop
there, silently, and report how many bytes they skipped. Readers stream: a recording of any
length is read in bounded memory (plus one entry per live buffer, to end a session cleanly).

Files are created ``0600`` and never opened through a symbolic link (``O_NOFOLLOW``); an existing
file that is not a recording is refused rather than appended to.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .core import eventcodec as codec
from .core.devices import Inventory
from .core.events import Event, EventKind
from .core.registry import Buffer
from .gzseek import GzipIndex, is_gzip_stream, open_gzip

__all__ = ["FILE_MAGIC", "ReadPosition", "RecordingError", "RecordingHeader", "RecordingReader", "RecordingWriter",
           "is_recording_file", "live_of", "open_stream", "read_header", "read_recording"]

FILE_MAGIC = b"TTMEMREC"
FORMAT_VERSION = 1
_FILE_HEAD = struct.Struct("<8sH")
_REC_HEAD = struct.Struct("<II")  # length, crc32
_HEADER_BODY = struct.Struct("<Hqq")  # codec version, wall ns, monotonic ns
READ_CHUNK = 1 << 20  # readers stream the file in pieces of this size
#: events between two entries of :attr:`RecordingReader.time_index` (16 M events: 1,000 entries)
INDEX_SPACING = 1 << 14
#: Record kind, recordings only: JSON ``{"pid", "uid", "host_pids"}``, who owns buffers reported as ``pid``
#: (peer credentials; restored with a journal). Readers of events skip it.
OWNER_RECORD = 0x20
#: text of the synthetic CLEANUP events with which readers end a session's buffers
RESTART_TEXT = "server restarted"


_KINDS = frozenset(int(k) for k in EventKind)
#: kinds whose device and buffer type a decoder checks (as :func:`~tt_memtop.core.eventcodec.decode_event` does)
_ENTRY_KINDS = frozenset(int(k) for k in (EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE,
                                          EventKind.FREE_UNKNOWN, EventKind.CLEANUP))


class RecordingError(ValueError):
    """Not a recording, or one of a version this build cannot read."""


@dataclass(slots=True)
class RecordingHeader:
    codec_version: int
    started_wall_ns: int
    started_mono_ns: int
    socket_path: str
    inventory: Inventory

    def clock_shift_from(self, first: RecordingHeader) -> int:
        """What to add to this session's monotonic times to put them on ``first``'s clock: each
        session's monotonic clock starts anew, the wall clock says how far apart they started."""
        return (self.started_wall_ns - first.started_wall_ns) - (self.started_mono_ns - first.started_mono_ns)


def open_private(path: str) -> int:
    """Open ``path`` for writing without following a symlink; create it ``0600``. Returns the fd.

    Refuses (OSError with a message) a symbolic link, anything but a regular file (a FIFO or a
    device would block or be damaged), and a file another user owns (planted in a shared directory).
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise OSError(exc.errno, f"{path} is a symbolic link; refusing to write through it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file; refusing to write to it")
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(f"{path} belongs to another user (uid {st.st_uid}); refusing to write to it")
    return fd


def _lock(fd: int, path: str) -> None:
    """Take the file's exclusive lock (held while the writer lives): two servers must not interleave records."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OSError(f"{path} is being written by another process (another memtop serve?); choose another "
                      f"file") from None


def _scan_end(f: BinaryIO, size: int) -> tuple[int, int]:
    """(offset after the last intact record, sessions) of an existing recording; only the last record's CRC is read."""
    off = _FILE_HEAD.size
    last = None
    sessions = 0
    while off + _REC_HEAD.size <= size:
        f.seek(off)
        n, crc = _REC_HEAD.unpack(f.read(_REC_HEAD.size))
        if n == 0 or off + _REC_HEAD.size + n > size:
            break
        kind = f.read(1)
        if kind and kind[0] == codec.RecordKind.HEADER:
            sessions += 1
        last = (off, n, crc)
        off += _REC_HEAD.size + n
    while last is not None:  # the last record must be intact, else it is the torn one
        start, n, crc = last
        f.seek(start + _REC_HEAD.size)
        if zlib.crc32(f.read(n)) == crc:
            break
        off, last = start, None
    return off, sessions


class RecordingWriter:
    """Append a session of events to ``path`` (created ``0600`` if absent; an existing recording is kept).

    Buffered: call :meth:`flush` now and then. ``durable`` (journals): every batch is written
    through to the file at once (a killed server loses nothing) and :meth:`sync` makes it survive
    a machine crash. ``restored``: the state this session starts from (written as a SNAPSHOT).
    After construction, ``previous_sessions`` says how many sessions the file already held and
    ``dropped_tail`` how many bytes of a torn last record were cut before appending.
    """

    def __init__(self, path: str, inventory: Inventory | None = None, *, socket_path: str = "",
                 clock: Callable[[], int] = time.monotonic_ns, wall_clock: Callable[[], int] = time.time_ns,
                 restored: tuple[int, list[Buffer]] | None = None, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        self.previous_sessions = 0
        self.dropped_tail = 0
        fd = open_private(path)
        try:
            _lock(fd, path)
            f = os.fdopen(fd, "r+b")
        except BaseException:
            os.close(fd)
            raise
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                f.write(_FILE_HEAD.pack(FILE_MAGIC, FORMAT_VERSION))
            else:
                head = f.read(_FILE_HEAD.size)
                if len(head) < _FILE_HEAD.size or _FILE_HEAD.unpack(head)[0] != FILE_MAGIC:
                    raise RecordingError(f"{path} exists and is not a tt-memtop recording; refusing to overwrite "
                                         f"or append to it (choose another file)")
                if _FILE_HEAD.unpack(head)[1] != FORMAT_VERSION:
                    raise RecordingError(f"{path} is a recording of format {_FILE_HEAD.unpack(head)[1]}; this "
                                         f"build appends only to format {FORMAT_VERSION} (choose another file)")
                end, self.previous_sessions = _scan_end(f, size)
                if end < size:
                    self.dropped_tail = size - end
                    f.truncate(end)
                f.seek(end)
        except BaseException:
            f.close()
            raise
        self._f = f
        sp = socket_path.encode("utf-8")[:0xFFFF]
        body = (bytes((codec.RecordKind.HEADER,)) + _HEADER_BODY.pack(codec.CODEC_VERSION, wall_clock(), clock())
                + codec.U16.pack(len(sp)) + sp + codec.encode_inventory(inventory))
        self._write(body)
        if restored is not None:
            seq, buffers = restored
            self._write(codec.encode_snapshot(codec.SnapshotRecord(seq, clock(), inventory or Inventory(), {},
                                                                   buffers)))
        self.flush()
        if durable:
            self.sync()
        self.events = 0

    def _write(self, record: bytes) -> None:
        self._f.write(_REC_HEAD.pack(len(record), zlib.crc32(record)) + record)

    def write_events(self, events: list[Event]) -> None:
        if events and not self._f.closed:
            self._write(codec.encode_events(events))
            self.events += len(events)
            if self.durable:
                self._f.flush()

    def write_owner(self, pid: int, uid: int | None, host_pids: Iterable[int] = ()) -> None:
        """Record who owns buffers reported as ``pid`` (see OWNER_RECORD)."""
        if not self._f.closed:
            doc = {"pid": pid, "uid": uid, "host_pids": sorted(host_pids)}
            self._write(bytes((OWNER_RECORD,)) + json.dumps(doc).encode())
            if self.durable:
                self._f.flush()

    def write_record(self, record: bytes, nevents: int) -> None:
        """Append an already encoded EVENTS record (the server encodes each batch once for all consumers)."""
        if not self._f.closed:
            self._write(record)
            self.events += nevents
            if self.durable:
                self._f.flush()

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def sync(self) -> None:
        """Flush and fsync (journals call this once a second and at shutdown)."""
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            if self.durable:
                try:
                    self.sync()
                except OSError:
                    pass
            self._f.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


GZIP_MAGIC = b"\x1f\x8b"


def open_stream(path: str, chunk_size: int = READ_CHUNK, index: GzipIndex | None = None) -> BinaryIO:
    """``path`` for reading, decompressed on the fly if it is gzipped (sniffed, whatever its name);
    a gzipped one seeks through ``index`` (shared by every opening of the file, see :mod:`.gzseek`)."""
    f = open(path, "rb", buffering=chunk_size)  # noqa: SIM115 - returned to the caller
    try:
        if f.peek(2)[:2] == GZIP_MAGIC:
            f.close()
            return open_gzip(path, index, chunk_size)
    except BaseException:
        f.close()
        raise
    return f


def _close(f: BinaryIO) -> None:
    f.close()


def is_recording_file(path: str) -> bool:
    """A tt-memtop recording (its magic bytes), gzipped or not?"""
    try:
        f = open_stream(path)
    except OSError:
        return False
    try:
        return f.read(len(FILE_MAGIC)) == FILE_MAGIC
    except (OSError, EOFError, zlib.error):  # a damaged gzip stream
        return False
    finally:
        _close(f)


#: the state a reader carries from record to record (a seek resumes from one of these)
@dataclass(slots=True, frozen=True)
class ReadPosition:
    offset: int  # of a record in the (decompressed) file
    sessions: int = 1
    seq_shift: int = 0
    ts_shift: int = 0
    last_seq: int = 0
    last_ts: int = 0


class RecordingReader:
    """Iterate a recording's events, streaming: memory stays bounded by one record plus the read buffer.

    ``header`` is read on construction; the file is opened again by each iteration (a reader can be
    iterated more than once), read in ``chunk_size`` pieces and closed when the iteration ends. A
    gzipped recording (``gzip rec``) is read the same way, decompressed on the fly.
    ``torn_bytes`` (after an iteration): bytes after the last good record (a torn or corrupt tail,
    skipped, not an error). While :meth:`batches` runs, ``at`` is the :class:`ReadPosition` of the
    record that produced the batch just yielded: ``batches(start=at, live=...)`` resumes there.
    """

    def __init__(self, path: str, *, chunk_size: int = READ_CHUNK) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.torn_bytes = 0
        self.sessions = 0
        self.owners: dict[int, dict] = {}
        self.damage: str | None = None  # why reading stopped before the end, if a record was undecodable
        self.at: ReadPosition | None = None
        self.time_index: list[tuple[int, int]] = []  # see scan()
        self._stop = 0  # (decompressed) offset where the last iteration stopped
        self._gzip_error: str | None = None  # why a compressed stream could not be read to its end
        #: the gzip resume points, shared by every opening of the file (a follower's too)
        self.gz_index = GzipIndex()
        f = open_stream(path, chunk_size, self.gz_index)
        self.compressed = is_gzip_stream(f)
        try:
            try:
                head = f.read(_FILE_HEAD.size)
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise RecordingError(f"{path}: damaged gzip stream ({exc})") from None
            if len(head) < _FILE_HEAD.size:
                raise RecordingError(f"{path}: too short to be a tt-memtop recording")
            magic, version = _FILE_HEAD.unpack(head)
            if magic != FILE_MAGIC:
                raise RecordingError(f"{path}: not a tt-memtop recording (bad magic)")
            if version != FORMAT_VERSION:
                raise RecordingError(f"{path}: recording format {version} is not supported (this build reads "
                                     f"{FORMAT_VERSION})")
            first = next(self._records(f, _FILE_HEAD.size), None)
            if first is None or first[1] != codec.RecordKind.HEADER:
                raise RecordingError(f"{path}: the header record is missing or damaged")
            self.header = self._parse_header(first[2])
            self._data_offset = first[0] + _REC_HEAD.size + 1 + len(first[2])  # the record after it
        finally:
            _close(f)

    def _size(self, f: BinaryIO) -> int | None:
        return None if self.compressed else os.fstat(f.fileno()).st_size

    def _read(self, f: BinaryIO, n: int) -> bytes:
        """``n`` bytes (fewer at the end of the data); a compressed stream is read in pieces, so that a corrupt
        length costs no more memory than the data that is really there."""
        if n <= self.chunk_size or not self.compressed:
            return f.read(n)
        parts = []
        while n > 0 and (piece := f.read(min(n, self.chunk_size))):
            parts.append(piece)
            n -= len(piece)
        return b"".join(parts)

    def _records(self, f: BinaryIO, off: int) -> Iterator[tuple[int, int, memoryview]]:
        """(offset, kind, body) of each intact record from offset ``off`` (``f`` is there); sets ``_stop``.

        A record is trusted only when its whole length is in the file and its CRC matches; a length
        that runs past the end of the file is never read (a corrupt length cannot make us buffer the
        file).
        """
        size = self._size(f)
        self._stop = off
        try:
            while True:
                head = f.read(_REC_HEAD.size)
                if len(head) < _REC_HEAD.size:
                    break
                n, crc = _REC_HEAD.unpack(head)
                if n == 0:
                    break
                if size is not None and off + _REC_HEAD.size + n > size:
                    size = os.fstat(f.fileno()).st_size  # a recording still being written may have grown
                    if off + _REC_HEAD.size + n > size:
                        break
                rec = self._read(f, n)
                if len(rec) < n or zlib.crc32(rec) != crc:
                    break
                view = memoryview(rec)
                yield off, view[0], view[1:]
                off += _REC_HEAD.size + n
                self._stop = off
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a truncated or damaged gzip stream: a torn tail
            self._gzip_error = str(exc) or type(exc).__name__

    def _torn(self, f: BinaryIO) -> int:
        """Bytes from ``_stop`` to the end of the (decompressed) data."""
        size = self._size(f)
        if size is not None:
            return max(0, size - self._stop)
        n = 0
        try:
            f.seek(self._stop)
            while piece := f.read(1 << 16):
                n += len(piece)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            self._gzip_error = str(exc) or type(exc).__name__
        return max(n, 1) if self._gzip_error else n

    def _parse_header(self, body: memoryview) -> RecordingHeader:
        try:
            cv, wall, mono = _HEADER_BODY.unpack_from(body)
            if cv != codec.CODEC_VERSION:
                raise RecordingError(f"{self.path}: event codec {cv} is not supported")
            off = _HEADER_BODY.size
            (n,) = codec.U16.unpack_from(body, off)
            if off + 2 + n > len(body):
                raise codec.CodecError("socket path runs past the end of the record")
            sp = bytes(body[off + 2: off + 2 + n]).decode("utf-8", "replace")
            inv, _ = codec.decode_inventory(body, off + 2 + n)
        except (struct.error, codec.CodecError) as exc:
            raise RecordingError(f"{self.path}: the header record is damaged ({exc})") from exc
        if any(not 0 <= d.device_id < 256 for d in inv.devices):
            raise RecordingError(f"{self.path}: the header record is damaged (device id out of range)")
        return RecordingHeader(cv, wall, mono, sp, inv)

    def batches(self, start: ReadPosition | None = None,
                live: dict[tuple[int, int, int], list] | None = None, *,
                live_source: Callable[[], dict[tuple[int, int, int], list]] | None = None) -> Iterator[list[Event]]:
        """The events, one list per EVENTS record, read lazily from the file, sessions joined into one run.

        Later sessions (the server was started again on the same file) are made to continue the
        first: their ``seq`` is shifted to follow the previous session's last one, their ``ts_ns``
        moved onto the first session's clock (through the wall-clock start times), and at each
        session boundary a batch of synthetic CLEANUP events (``text`` = :data:`RESTART_TEXT`) ends
        every buffer still live, since a restarted server starts empty. A session that restored its
        state from a journal then starts with ALLOC (and REF_INC) events rebuilding that state.
        After an iteration ``sessions`` is the number of sessions read and ``owners`` the last
        ownership record of each reported PID.

        ``start`` / ``live`` resume an iteration at a record (an earlier ``at``) with the buffers
        live there (:func:`live_of` of the state then), without reading what is before it.

        ``live_source``: the consumer keeps the state itself (a player folding every batch into a
        registry before it asks for the next one): the reader then tracks nothing per event and, at
        a session boundary, ends what ``live_source()`` says is live (``live`` is ignored). The
        synthetic CLEANUP events then come in the consumer's order, as after a resume with ``live``.
        """
        pos = start or ReadPosition(self._data_offset)
        self.sessions = pos.sessions
        self.owners = {}
        self.damage = None
        self.torn_bytes = 0
        self._gzip_error = None
        track = live_source is None
        live = {} if live is None or not track else live
        first = self.header
        seq_shift, ts_shift, last_seq, last_ts = pos.seq_shift, pos.ts_shift, pos.last_seq, pos.last_ts
        f = open_stream(self.path, self.chunk_size, self.gz_index)
        try:
            f.seek(pos.offset)
            for off, kind, body in self._records(f, pos.offset):
                at = ReadPosition(off, self.sessions, seq_shift, ts_shift, last_seq, last_ts)
                if kind == codec.RecordKind.EVENTS:
                    try:
                        events = codec.decode_events_body(body)
                    except codec.CodecError as exc:  # an intact CRC over an undecodable body: stop as at a torn tail
                        self.damage = str(exc)
                        self._stop = off
                        break
                    if track:
                        for ev in events:
                            if seq_shift and ev.seq:
                                ev.seq += seq_shift
                            if ts_shift:
                                ev.ts_ns += ts_shift
                            _track(live, ev)
                    elif seq_shift or ts_shift:
                        for ev in events:
                            if seq_shift and ev.seq:
                                ev.seq += seq_shift
                            ev.ts_ns += ts_shift
                    if events:
                        last_seq = events[-1].seq or last_seq
                        last_ts = events[-1].ts_ns
                    self.at = at
                    yield events
                elif kind == codec.RecordKind.HEADER:
                    try:
                        hdr = self._parse_header(body)
                    except (RecordingError, codec.CodecError, struct.error):
                        self._stop = off
                        break
                    self.sessions += 1
                    ts_shift = hdr.clock_shift_from(first)
                    seq_shift = last_seq
                    ts = max(last_ts, hdr.started_mono_ns + ts_shift)
                    if not track:
                        live = live_source()
                    ended = []
                    for (_, device, buffer_id), (pid, btype, size, refs, name) in live.items():
                        last_seq += 1
                        ended.append(Event(EventKind.CLEANUP, seq=last_seq, ts_ns=ts, pid=pid, device=device,
                                           buffer_type=btype, buffer_id=buffer_id, size=size, ref_count=refs,
                                           name=name, text=RESTART_TEXT))
                    live.clear()
                    seq_shift = last_seq
                    if ended:
                        last_ts = ts
                        self.at = at
                        yield ended
                elif kind == codec.RecordKind.SNAPSHOT:
                    try:
                        snap = codec.decode_snapshot_body(body)
                    except codec.CodecError:
                        continue
                    rebuilt = []
                    for b in snap.buffers:
                        last_seq += 1
                        ev = Event(EventKind.ALLOC, seq=last_seq, ts_ns=b.alloc_ts_ns + ts_shift, pid=b.owner_pid,
                                   device=b.device, buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size,
                                   ref_count=1, name=b.name, stack_trace=b.stack_trace)
                        rebuilt.append(ev)
                        if b.ref_count > 1:
                            last_seq += 1
                            rebuilt.append(Event(EventKind.REF_INC, seq=last_seq, ts_ns=ev.ts_ns, pid=b.owner_pid,
                                                 device=b.device, buffer_type=b.buffer_type, buffer_id=b.buffer_id,
                                                 size=b.size, ref_count=b.ref_count))
                    snap_seq = snap.seq
                    del snap  # its buffers: the events now say the same
                    if track:
                        for ev in rebuilt:
                            _track(live, ev)
                    seq_shift = last_seq - snap_seq  # the session's events follow the snapshot's seq
                    if rebuilt:
                        last_ts = rebuilt[-1].ts_ns
                        self.at = at
                        yield rebuilt
                elif kind == OWNER_RECORD:
                    try:
                        doc = json.loads(bytes(body))
                        self.owners[int(doc["pid"])] = doc
                    except (ValueError, KeyError, TypeError):
                        continue
            self.torn_bytes = self._torn(f)
        finally:
            _close(f)

    def scan(self) -> tuple[int, int | None, int | None]:
        """(events, first ``ts_ns``, last ``ts_ns``) of what :meth:`batches` yields, without making the events.

        Also fills ``time_index``: (``ts_ns`` of a record's last event, events up to it) every
        :data:`INDEX_SPACING` events or so, from which a player estimates how many events a time
        holds (its seek progress) without reading them.

        Several times faster than iterating (a player needs the length and the time span before it
        plays); the same stops (torn tail, damaged record) and the same counts: fixed parts are read
        in place, and a record that does not look right is handed to the real decoder.
        """
        ev_size = codec.EVENT.size
        unpack = codec.EVENT.unpack_from
        kinds = _KINDS
        entry = _ENTRY_KINDS
        live: dict = {}
        total = 0
        t0 = t1 = None
        self.time_index = index = []
        next_mark = INDEX_SPACING
        ts_shift = 0
        last_ts = 0
        first = self.header
        self.sessions = 1
        self.damage = None
        self.torn_bytes = 0
        self._gzip_error = None
        f = open_stream(self.path, self.chunk_size, self.gz_index)
        try:
            f.seek(self._data_offset)
            for off, kind, body in self._records(f, self._data_offset):
                if kind == codec.RecordKind.EVENTS:
                    blen = len(body)
                    ok = blen >= 4
                    n = codec.U32.unpack_from(body, 0)[0] if ok else 0
                    p = 4
                    ts = None
                    first_ts = None
                    for _ in range(n):
                        if p + ev_size > blen:
                            ok = False
                            break
                        _, ts, k, _, dev, bt, bid, _, _, ln, lt, lx = unpack(body, p)
                        p += ev_size + ln + lt + lx
                        if p > blen or k not in kinds or (k in entry and (bt >= 7 or not -1 <= dev < 256)):
                            ok = False
                            break
                        if first_ts is None:
                            first_ts = ts
                        if k == 1:
                            live[(bt if bt in (5, 6) else 0, dev, bid)] = None
                        elif k == 4 or k == 6:
                            live.pop((bt if bt in (5, 6) else 0, dev, bid), None)
                    if not ok:  # the real decoder says what is wrong, or that it is fine after all
                        try:
                            events = codec.decode_events_body(body)
                        except codec.CodecError as exc:
                            self.damage = str(exc)
                            self._stop = off
                            break
                        for ev in events:
                            _track(live, ev)
                        n = len(events)
                        first_ts = events[0].ts_ns if events else None
                        ts = events[-1].ts_ns if events else None
                    if n:
                        total += n
                        if t0 is None:
                            t0 = first_ts + ts_shift
                        t1 = last_ts = ts + ts_shift
                        if total >= next_mark:
                            index.append((t1, total))
                            next_mark = total + INDEX_SPACING
                elif kind == codec.RecordKind.HEADER:
                    try:
                        hdr = self._parse_header(body)
                    except (RecordingError, codec.CodecError, struct.error):
                        self._stop = off
                        break
                    self.sessions += 1
                    ts_shift = hdr.clock_shift_from(first)
                    if total:  # a session ends: the index spans the gap to the next one exactly
                        index.append((last_ts, total))
                    if live:
                        last_ts = max(last_ts, hdr.started_mono_ns + ts_shift)
                        total += len(live)
                        if t0 is None:
                            t0 = last_ts
                        t1 = last_ts
                        index.append((last_ts, total))
                    live.clear()
                elif kind == codec.RecordKind.SNAPSHOT:
                    try:
                        snap = codec.decode_snapshot_body(body)
                    except codec.CodecError:
                        continue
                    for b in snap.buffers:
                        total += 1 + (b.ref_count > 1)
                        live[(b.buffer_type if b.buffer_type in (5, 6) else 0, b.device, b.buffer_id)] = None
                        last_ts = b.alloc_ts_ns + ts_shift
                        if t0 is None:
                            t0 = last_ts
                        t1 = last_ts
            self.torn_bytes = self._torn(f)
        finally:
            _close(f)
        return total, t0, t1

    def __iter__(self) -> Iterator[Event]:
        for events in self.batches():
            yield from events

    def torn_note(self) -> str | None:
        """After an iteration: one line saying what was skipped at a torn or damaged record, else None."""
        if not self.torn_bytes:
            return None
        where = f"offset {self._stop:,}{' of the decompressed data' if self.compressed else ''}"
        why = (f"an undecodable record ({self.damage})" if self.damage
               else f"the gzip stream is truncated or damaged ({self._gzip_error})" if self._gzip_error
               else "a torn or damaged record")
        amount = "what follows" if self._gzip_error else f"the last {self.torn_bytes:,} bytes"
        return (f"{self.path}: skipped {amount} (from {where}): "
                f"{why}; everything before it was read")


def live_of(buffers: Iterable[Buffer]) -> dict[tuple[int, int, int], list]:
    """What :meth:`RecordingReader.batches` tracks (to end them at a session boundary) for a state of ``buffers``."""
    return {(b.buffer_type if b.buffer_type in (5, 6) else 0, b.device, b.buffer_id):
            [b.owner_pid, b.buffer_type, b.size, b.ref_count, b.name] for b in buffers}


def _track(live: dict[tuple[int, int, int], list], ev: Event) -> None:
    """Keep ``live`` = the buffers an event stream leaves alive (what a session boundary must end)."""
    k = ev.kind
    key = (ev.buffer_type if ev.buffer_type in (5, 6) else 0, ev.device, ev.buffer_id)
    if k == EventKind.ALLOC:
        live[key] = [ev.pid, ev.buffer_type, ev.size, ev.ref_count or 1, ev.name]
    elif k in (EventKind.FREE, EventKind.CLEANUP):
        live.pop(key, None)
    elif k in (EventKind.REF_INC, EventKind.REF_DEC):
        entry = live.get(key)
        if entry is not None:
            entry[3] = ev.ref_count


def read_header(path: str) -> RecordingHeader:
    return RecordingReader(path).header


def read_recording(path: str) -> Iterator[Event]:
    """Every event of the recording at ``path``, in order (a torn last record is skipped)."""
    return iter(RecordingReader(path))
