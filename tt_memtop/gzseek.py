"""Seekable gzip reading: a backward seek in a gzipped log or recording resumes near its target.

Why: ``gzip.GzipFile`` can only seek back by decompressing again from the first byte, so in a
gzipped multi-hundred-MB recording every seek of the replay's player (and every restart at one of
its checkpoints) decompressed everything before it again, blocking the screen for seconds.
:class:`GzipIndex` keeps, every ``spacing`` bytes of output, a copy of the decompressor (its 32 KiB
window and any input it has not consumed, 40-100 KiB) with the input and output offsets it had
reached; :func:`open_gzip` reads through the index, so a seek decompresses at most ``spacing``
bytes. Reading the file once (a player's quick scan does) fills the index for every later opening
that shares it. Bounded: past ``limit`` points, every other one is dropped and the spacing doubles.

Reads what ``GzipFile`` reads: several members one after another, zero padding between or after
them; a truncated stream raises ``EOFError``, a damaged one (or a trailer of something else)
``zlib.error`` — errors the callers already turn into a clear message.
"""

from __future__ import annotations

import bisect
import io
import zlib
from typing import BinaryIO

__all__ = ["GzipIndex", "is_gzip_stream", "open_gzip"]

_GZIP = 16 + zlib.MAX_WBITS  # a gzip wrapper, the header and the CRC / size trailer checked by zlib
_IN_CHUNK = 1 << 16
_OUT_MAX = 1 << 20  # output per decompress call: a zero-filled region inflates ~1000x


class GzipIndex:
    """Resume points of one gzip file: (output offset, input offset, decompressor there), sorted."""

    def __init__(self, spacing: int = 8 << 20, limit: int = 64) -> None:
        self.spacing = spacing
        self.limit = limit
        self._outs: list[int] = []
        self._points: list[tuple[int, int, object]] = []

    def __len__(self) -> int:
        return len(self._points)

    def due(self, out: int) -> bool:
        return out - (self._outs[-1] if self._outs else 0) >= self.spacing and (not self._outs or out > self._outs[-1])

    def add(self, out: int, raw: int, decompressor) -> None:
        """Remember the state at ``out`` (a copy: the reader goes on with its own)."""
        if not self.due(out):
            return
        self._outs.append(out)
        self._points.append((out, raw, decompressor.copy()))
        if len(self._points) > self.limit:  # keep it bounded: every other point, twice the spacing
            self._points = self._points[1::2]
            self._outs = [p[0] for p in self._points]
            self.spacing *= 2

    def best(self, out: int) -> tuple[int, int, object] | None:
        """The last point at or before output offset ``out``."""
        i = bisect.bisect_right(self._outs, out)
        return self._points[i - 1] if i else None


class _IndexedGzipRaw(io.RawIOBase):
    """The decompressed bytes of a gzip file, seekable through a :class:`GzipIndex` it fills as it reads."""

    def __init__(self, f: BinaryIO, index: GzipIndex) -> None:
        self._f = f
        self._index = index
        self.name = getattr(f, "name", "")
        self._restart(None)

    def _restart(self, point: tuple[int, int, object] | None) -> None:
        if point is None:
            self._f.seek(0)
            self._d = zlib.decompressobj(_GZIP)
            self._pos = self._raw = 0
        else:
            self._pos, self._raw, d = point
            self._f.seek(self._raw)
            self._d = d.copy()  # the point stays reusable
        self._buf = b""
        self._at = 0  # next byte of _buf to return
        self._done = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Decompress some more into ``_buf`` (drained); False at the end of the data."""
        d = self._d
        if d.eof:  # the end of a member: another one, zero padding, or the end of the file (checked first:
            # a member that ends in a call cut by _OUT_MAX can keep a tail too, which unused_data also holds)
            rest = d.unused_data.lstrip(b"\0")
            while not rest:
                piece = self._f.read(_IN_CHUNK)
                if not piece:
                    self._done = True
                    return False
                self._raw += len(piece)
                rest = piece.lstrip(b"\0")
            self._d = d = zlib.decompressobj(_GZIP)
            self._buf = d.decompress(rest, _OUT_MAX)
        elif d.unconsumed_tail:  # the copy keeps its unconsumed input: resuming reads the file from _raw on
            self._index.add(self._pos, self._raw, d)
            self._buf = d.decompress(d.unconsumed_tail, _OUT_MAX)
        else:
            self._index.add(self._pos, self._raw, d)  # everything before _raw consumed, everything before _pos returned
            data = self._f.read(_IN_CHUNK)
            if not data:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            self._raw += len(data)
            self._buf = d.decompress(data, _OUT_MAX)
        self._at = 0
        return True

    def readinto(self, b) -> int:
        if self._done:
            return 0
        while self._at >= len(self._buf):
            if not self._fill():
                return 0
        n = min(len(b), len(self._buf) - self._at)
        b[:n] = self._buf[self._at:self._at + n]
        self._at += n
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("seek from the end of a gzip stream")
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        point = self._index.best(offset)
        if offset < self._pos or (point is not None and point[0] > self._pos):
            self._restart(point)
        while self._pos < offset:  # read on, dropping what comes before the target
            if self._at >= len(self._buf) and not self._fill():
                break
            n = min(offset - self._pos, len(self._buf) - self._at)
            self._at += n
            self._pos += n
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def open_gzip(path: str, index: GzipIndex | None = None, buffer_size: int = 1 << 16) -> io.BufferedReader:
    """``path`` (a gzip file) for reading its decompressed bytes, seekable through ``index`` (a new one if
    None; pass the same index to every opening of the file so they share what the others read)."""
    f = open(path, "rb")  # noqa: SIM115 - owned by the reader, closed with it
    try:
        return io.BufferedReader(_IndexedGzipRaw(f, index if index is not None else GzipIndex()), buffer_size)
    except BaseException:
        f.close()
        raise


def is_gzip_stream(f) -> bool:
    """Was ``f`` opened by :func:`open_gzip`?"""
    return isinstance(f, io.BufferedReader) and isinstance(f.raw, _IndexedGzipRaw)
