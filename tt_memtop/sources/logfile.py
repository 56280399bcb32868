"""Log files: the original allocation server's stdout as lines, read in chunks, gzipped or not.

Why: a log of a long run has millions of lines; everything that reads one (follow, replay,
``report``, ``analyze``) streams it in 1 MiB chunks of whole lines (:func:`read_line_chunks`),
opens it gzipped or not whatever its name (:func:`open_log`), turns a damaged gzip stream into one
clear OSError (:func:`read_chunk`) and refuses, with the reason, a file that is neither a log nor a
recording before reading it all (:func:`check_log`). The sources over these files:
:mod:`.follow` (tail a live log), :mod:`.replay` over :mod:`.timeline` (play a finished one).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from ..gzseek import GzipIndex, open_gzip

__all__ = ["CHUNK", "SNIFF_BYTES", "NotALogError", "check_log", "is_recording", "open_log", "read_chunk",
           "read_line_chunks"]

CHUNK = 1 << 20


def read_line_chunks(f: BinaryIO, chunk_size: int = CHUNK) -> Iterator[tuple[list[bytes], int]]:
    """Yield (complete lines, file offset just past them) from ``f``'s current position.

    A final line without a newline is yielded too (a finished file); followers use
    :class:`~.follow.Tail` instead, which keeps it until its newline arrives.
    """
    rest = b""
    offset = f.tell()
    while chunk := read_chunk(f, chunk_size):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        offset += len(chunk)
        if lines:
            yield [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines], offset - len(rest)
    if rest:
        yield [rest[:-1] if rest.endswith(b"\r") else rest], offset


def read_chunk(f: BinaryIO, size: int) -> bytes:
    """``f.read(size)``; a truncated or damaged gzip stream becomes an OSError that names the file."""
    try:
        return f.read(size)
    except (EOFError, zlib.error) as exc:
        raise OSError(f"{getattr(f, 'name', 'the log')}: the gzip stream is truncated or damaged ({exc}); "
                      f"gunzip what is left of it (zcat FILE > LOG) to read the lines before the damage") from None


def open_log(path: str, index: GzipIndex | None = None) -> BinaryIO:
    """A log for reading; a gzipped log (sniffed, whatever its name) is decompressed on the fly, seekable
    through ``index`` (pass the same one to every opening of the file: :mod:`tt_memtop.gzseek`)."""
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    try:
        gzipped = f.read(2) == b"\x1f\x8b"
        f.seek(0)
    except BaseException:
        f.close()
        raise
    if gzipped:
        f.close()
        return open_gzip(path, index)
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
    if os.path.isdir(path):
        raise NotALogError(f"{path} is a directory: give an allocation-server log or a memtop recording")
    try:
        if is_recording(path):
            return
        from ..core.logparse import LogParser

        with open_log(path) as f:
            head = read_chunk(f, SNIFF_BYTES)
    except FileNotFoundError:
        raise NotALogError(f"{path}: no such file") from None
    except PermissionError:
        raise NotALogError(f"{path}: permission denied (not readable by this user)") from None
    if not head:
        if allow_empty:
            return
        raise NotALogError(f"{path} is empty: not an allocation-server log or a memtop recording")
    if b"\0" in head:
        raise NotALogError(f"{path} is a binary file: not an allocation-server log or a memtop recording")
    lines = head.split(b"\n")
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # probably cut in the middle
    elif lines[-1] == b"":
        lines.pop()  # what follows the last newline: not a line
    parser = LogParser(line_as_ts=True)
    parser.feed([ln.rstrip(b"\r") for ln in lines])
    st = parser.stats
    if not (st.event_lines or st.known):
        which = "its only line is not" if st.lines == 1 else f"none of its first {st.lines:,} lines is"
        raise NotALogError(f"{path} is not an allocation-server log ({which} a line the server writes) nor a memtop "
                           f"recording")


