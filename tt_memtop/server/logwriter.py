"""The server's log output, written by a thread so that a log nobody reads cannot stall ingest.

``memtop serve | less`` that nobody scrolls, Ctrl-S in a terminal, a full pipe: a blocking
``write`` on the event loop would freeze every connection, and TT-Metal processes would block in
``send()`` after about 2,700 messages. Here the loop only appends lines to a bounded in-memory
queue (:meth:`LogWriter.write`, never blocks); one writer thread puts them on the file
descriptors in order (stdout and stderr share the thread, so their relative order is kept).

The loop does not wake the thread for each batch of lines (a wake-up per batch, each a hand-over of
the interpreter lock, cost more than formatting the lines): while lines keep coming, the thread
collects them every ``FLUSH_INTERVAL_S`` by itself and writes them in one ``write``; only the first
line after a quiet interval wakes it. So a line reaches the file at most about 10 ms after it was
logged, and an idle server's thread sleeps.

When the queue is full, further lines are dropped and counted; once the writer has caught up
it writes one line to the error stream: ``⚠️  memtop serve: N log lines dropped (log output
was not being read fast enough)``. Lines that are written are written byte for byte.

Streams without a file descriptor (``io.StringIO`` in tests) cannot block and are written
directly. A stream that is None (``memtop serve >&-``) or breaks (EPIPE, EBADF) is dropped
silently: logging never ends the server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import deque
from typing import TextIO

__all__ = ["LogWriter", "dropped_line"]

#: Bytes the queue may hold before lines are dropped (about 40k log lines).
DEFAULT_LIMIT = 4 << 20
#: How long the writer thread, once woken, lets lines gather before one write (seconds).
FLUSH_INTERVAL_S = 0.01


def dropped_line(n: int) -> str:
    return (f"⚠️  memtop serve: {n} log lines dropped (log output was not being read fast enough; "
            f"the server kept running)")


class _Sink:
    """One output stream: a file descriptor written by the thread, or a text stream written directly."""

    __slots__ = ("stream", "fd", "broken")

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.fd: int | None = None
        self.broken = stream is None
        if stream is not None:
            try:
                self.fd = stream.fileno()
                stream.flush()  # anything Python buffered before us goes first
            except (OSError, ValueError, AttributeError):
                self.fd = None  # io.StringIO and friends

    def write_direct(self, text: str) -> None:
        if self.broken or self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.broken = True

    def write_fd(self, data: bytes) -> int:
        """Write ``data``; returns the number of lines lost (0 when all was written).

        A pipe whose reader is gone, or a closed descriptor, ends this sink for good; other errors
        (a full disk under a log file, EIO) lose this piece only and later writes are tried again.
        """
        if self.broken or self.fd is None:
            return 0
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except (BrokenPipeError, ConnectionResetError):
            self.broken = True
        except OSError as exc:
            if exc.errno == errno.EBADF:
                self.broken = True
            else:
                return bytes(view).count(b"\n") or 1
        return 0


class LogWriter:
    """Bounded, non-blocking log output to ``out`` (normal lines) and ``err`` (warnings)."""

    def __init__(self, out: TextIO | None, err: TextIO | None = None, *, limit: int = DEFAULT_LIMIT) -> None:
        self._out = _Sink(out)
        same = err is None or err is out
        if not same and out is not None and err is not None and self._out.fd is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                same = err.fileno() == self._out.fd
        self._err = self._out if same else _Sink(err)
        self.limit = limit
        self.dropped = 0  # lines dropped since the last notice
        self.dropped_total = 0
        self._queue: deque[tuple[_Sink, bytes]] = deque()
        self._pending = 0  # bytes in the queue
        # a plain Lock under the Condition: ``with self._lock`` is C-level (Condition.__enter__ is not),
        # and write() takes it for every batch of lines
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread waits for lines (only then does write() wake it)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="memtop-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ loop side
    def write(self, lines: list[str], err: bool = False) -> None:
        """Queue ``lines`` (without newlines); never blocks. Dropped (counted) while the queue is full."""
        if not lines:
            return
        sink = self._err if err else self._out
        if sink.broken:
            return
        text = "\n".join(lines) + "\n"
        if sink.fd is None:
            sink.write_direct(text)
            return
        self._enqueue(sink, text.encode("utf-8", "replace"), len(lines))

    def write_bytes(self, data: bytes, nlines: int, err: bool = False) -> None:
        """Queue ``nlines`` lines already encoded as UTF-8, each ending in a newline; never blocks."""
        if not data:
            return
        sink = self._err if err else self._out
        if sink.broken:
            return
        if sink.fd is None:
            sink.write_direct(data.decode("utf-8", "replace"))
            return
        self._enqueue(sink, data, nlines)

    def _enqueue(self, sink: _Sink, data: bytes, nlines: int) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pending + len(data) > self.limit and self._pending:
                self.dropped += nlines
                self.dropped_total += nlines
                return
            self._queue.append((sink, data))
            self._pending += len(data)
            if self._thread is None:
                self._start()
            elif self._idle:
                self._idle = False
                self._cond.notify()

    @property
    def pending(self) -> int:
        """Bytes queued and not yet written."""
        return self._pending

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is queued (waiting at most ``timeout`` s for a stuck reader). True if all was written."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        wait: float | None = None  # None: nothing came for a while; sleep until write() wakes us
        while True:
            with self._cond:
                if not self._queue and not self._closed and not self.dropped:
                    self._idle = wait is None
                    self._cond.wait(wait)
                    self._idle = False
                if not self._queue:
                    dropped, self.dropped = self.dropped, 0
                    if not dropped and self._closed:
                        return
                    if not dropped:
                        wait = None  # a whole interval without lines
                        continue
                    items = []
                else:
                    dropped = 0
                    items = list(self._queue)
                    self._queue.clear()
            wait = FLUSH_INTERVAL_S  # lines are coming: gather them for an interval, unprompted
            if dropped:  # caught up after dropping: say so once
                self._err.write_fd((dropped_line(dropped) + "\n").encode("utf-8"))
                continue
            # group consecutive items of one sink into one write
            i = 0
            while i < len(items):
                sink = items[i][0]
                j = i
                while j < len(items) and items[j][0] is sink:
                    j += 1
                lost = sink.write_fd(b"".join(d for _, d in items[i:j]))
                if lost:
                    with self._cond:
                        self.dropped += lost
                        self.dropped_total += lost
                i = j
            with self._cond:
                self._pending -= sum(len(d) for _, d in items)
