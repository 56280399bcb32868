"""Recordings: every event a server produced, with its receive timestamp, in an append-only file.

Format (docs/RECORDING.md): ``b"TTMEMREC"`` + u16 format version, then records, each
``u32 length`` + ``u32 crc32(record)`` + record, where a record is an
:mod:`~tt_memtop.core.eventcodec` record (kind byte + body). The first record is a HEADER
(codec version, wall-clock and monotonic start times, socket path, inventory); the others are
EVENTS batches. A crash can only tear the last record: readers stop there, silently, and report
how many bytes they skipped. Readers stream: a recording of any length is read in bounded memory.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .core import eventcodec as codec
from .core.devices import Inventory
from .core.events import Event

__all__ = ["FILE_MAGIC", "RecordingError", "RecordingHeader", "RecordingReader", "RecordingWriter",
           "read_header", "read_recording"]

FILE_MAGIC = b"TTMEMREC"
FORMAT_VERSION = 1
_FILE_HEAD = struct.Struct("<8sH")
_REC_HEAD = struct.Struct("<II")  # length, crc32
_HEADER_BODY = struct.Struct("<Hqq")  # codec version, wall ns, monotonic ns
READ_CHUNK = 1 << 20  # readers stream the file in pieces of this size


class RecordingError(ValueError):
    """Not a recording, or one of a version this build cannot read."""


@dataclass(slots=True)
class RecordingHeader:
    codec_version: int
    started_wall_ns: int
    started_mono_ns: int
    socket_path: str
    inventory: Inventory


class RecordingWriter:
    """Append events to ``path`` (created or truncated). Buffered: call :meth:`flush` now and then."""

    def __init__(self, path: str, inventory: Inventory | None = None, *, socket_path: str = "",
                 clock: Callable[[], int] = time.monotonic_ns, wall_clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - kept open for the server's lifetime
        self._f.write(_FILE_HEAD.pack(FILE_MAGIC, FORMAT_VERSION))
        sp = socket_path.encode("utf-8")[:0xFFFF]
        body = (bytes((codec.RecordKind.HEADER,)) + _HEADER_BODY.pack(codec.CODEC_VERSION, wall_clock(), clock())
                + codec.U16.pack(len(sp)) + sp + codec.encode_inventory(inventory))
        self._write(body)
        self.flush()
        self.events = 0

    def _write(self, record: bytes) -> None:
        self._f.write(_REC_HEAD.pack(len(record), zlib.crc32(record)) + record)

    def write_events(self, events: list[Event]) -> None:
        if events and not self._f.closed:
            self._write(codec.encode_events(events))
            self.events += len(events)

    def write_record(self, record: bytes, nevents: int) -> None:
        """Append an already encoded EVENTS record (the server encodes each batch once for all consumers)."""
        if not self._f.closed:
            self._write(record)
            self.events += nevents

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class RecordingReader:
    """Iterate a recording's events, streaming: memory stays bounded by one record plus the read buffer.

    ``header`` is read on construction; the file is opened again by each iteration (a reader can be
    iterated more than once), read in ``chunk_size`` pieces and closed when the iteration ends.
    ``torn_bytes`` (after an iteration): bytes after the last good record (a torn or corrupt tail,
    skipped, not an error).
    """

    def __init__(self, path: str, *, chunk_size: int = READ_CHUNK) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.torn_bytes = 0
        self.damage: str | None = None  # why reading stopped before the end, if a record was undecodable
        with open(path, "rb", buffering=chunk_size) as f:
            head = f.read(_FILE_HEAD.size)
            if len(head) < _FILE_HEAD.size:
                raise RecordingError(f"{path}: too short to be a tt-memtop recording")
            magic, version = _FILE_HEAD.unpack(head)
            if magic != FILE_MAGIC:
                raise RecordingError(f"{path}: not a tt-memtop recording (bad magic)")
            if version != FORMAT_VERSION:
                raise RecordingError(f"{path}: recording format {version} is not supported (this build reads "
                                     f"{FORMAT_VERSION})")
            first = next(self._records(f), None)
            if first is None or first[0] != codec.RecordKind.HEADER:
                raise RecordingError(f"{path}: the header record is missing or damaged")
            self.header = self._parse_header(first[1])
            self._data_offset = f.tell()  # the first EVENTS record

    def _records(self, f: BinaryIO) -> Iterator[tuple[int, memoryview]]:
        """(kind, body) of each intact record from ``f``'s position; sets ``torn_bytes`` when it stops.

        A record is trusted only when its whole length is in the file and its CRC matches; a length
        that runs past the end of the file is never read (a corrupt length cannot make us buffer the
        file).
        """
        size = os.fstat(f.fileno()).st_size
        off = f.tell()
        while True:
            head = f.read(_REC_HEAD.size)
            if len(head) < _REC_HEAD.size:
                break
            n, crc = _REC_HEAD.unpack(head)
            if n == 0 or off + _REC_HEAD.size + n > size:
                size = os.fstat(f.fileno()).st_size  # a recording still being written may have grown
                if n == 0 or off + _REC_HEAD.size + n > size:
                    break
            rec = f.read(n)
            if len(rec) < n or zlib.crc32(rec) != crc:
                break
            off += _REC_HEAD.size + n
            view = memoryview(rec)
            yield view[0], view[1:]
        self.torn_bytes = max(0, os.fstat(f.fileno()).st_size - off)

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

    def batches(self) -> Iterator[list[Event]]:
        """The events, one list per EVENTS record, read lazily from the file."""
        with open(self.path, "rb", buffering=self.chunk_size) as f:
            f.seek(self._data_offset)
            for kind, body in self._records(f):
                if kind == codec.RecordKind.EVENTS:
                    try:
                        events = codec.decode_events_body(body)
                    except codec.CodecError as exc:  # an intact CRC over an undecodable body: stop as at a torn tail
                        self.damage = str(exc)
                        self.torn_bytes = max(0, os.fstat(f.fileno()).st_size - f.tell() + _REC_HEAD.size
                                              + len(body) + 1)
                        return
                    yield events

    def __iter__(self) -> Iterator[Event]:
        for events in self.batches():
            yield from events

    def torn_note(self) -> str | None:
        """After an iteration: one line saying what was skipped at a torn or damaged record, else None."""
        if not self.torn_bytes:
            return None
        try:
            size = os.stat(self.path).st_size
        except OSError:
            size = self.torn_bytes
        why = f"an undecodable record ({self.damage})" if self.damage else "a torn or damaged record"
        return (f"{self.path}: skipped the last {self.torn_bytes:,} bytes (from offset {size - self.torn_bytes:,}): "
                f"{why}; everything before it was read")


def read_header(path: str) -> RecordingHeader:
    return RecordingReader(path).header


def read_recording(path: str) -> Iterator[Event]:
    """Every event of the recording at ``path``, in order (a torn last record is skipped)."""
    return iter(RecordingReader(path))
