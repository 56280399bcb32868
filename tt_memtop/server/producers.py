"""Reading a producer connection straight from the event loop's reader callback.

Why not ``await stream.receive()``: anyio (asyncio backend) registers the socket with the selector
on every wait that finds no data and removes it after, and runs a task step per chunk. With many
producers each sending one frame per ``send()`` (TT-Metal's client), a chunk is a few frames, so
that machinery cost more than the frames. Here the socket is registered once
(``loop.add_reader``) and each readiness event reads up to 64 KiB, ingests it and sends the reply,
all in the callback; the connection's task only waits for the end.

The rules of the ``receive`` loop are kept: one read, then its frames are applied and the reply
(QUERY, DEVICE_INFO) is written before the next read; a reply the peer does not take at once
stops reading this connection (only this one) until the task has sent the rest; a peer that goes
quiet with an undecided frame buffered gets ``FrameReader.on_idle`` once after ``idle`` seconds;
EOF or a reset runs ``on_eof``. Whatever the callback raises ends this connection, through its task.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from .framing import FrameReader, FrameResult

__all__ = ["ProducerReader", "READ_SIZE"]

#: Bytes read from a connection at a time: ~450 frames of 144 B, a few ms of work, so that one busy
#: connection holds the loop (and every other producer) only briefly.
READ_SIZE = 1 << 16

#: what ends the reading of a connection (the task's ``wait`` returns it)
EOF, CLOSE, SUBSCRIBE, SEND = "eof", "close", "subscribe", "send"


class ProducerReader:
    """Feeds one connection's bytes to ``ingest`` from the loop's reader callback (see the module docstring).

    ``ingest(result) -> (reply bytes, subscribe?)`` applies a :class:`FrameResult`.
    :meth:`wait` returns ``(why, data)``: ``("eof", b"")``, ``("close", reason)``, ``("subscribe",
    reply)`` (the reply to send before the subscription starts), or ``("send", rest)``: the
    caller sends ``rest`` and calls :meth:`resume`, then :meth:`wait` again.
    """

    def __init__(self, sock: socket.socket, reader: FrameReader,
                 ingest: Callable[[FrameResult], tuple[bytes, Any]], idle: float) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._reader = reader
        self._ingest = ingest
        self._idle_s = idle
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reading = False
        # one receive buffer for the life of the connection: recv() would allocate (and the C
        # allocator give back and fault in again) 64 KiB for every read, however few bytes came
        self._rbuf = bytearray(READ_SIZE)
        self._rview = memoryview(self._rbuf)

    # ------------------------------------------------------------------ task side
    def resume(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    async def wait(self) -> tuple[str, Any]:
        self._done = self._loop.create_future()
        self.resume()
        if self._reader.wants_idle and self._idle_timer is None:  # after a late reply, as after a read
            self._idle_timer = self._loop.call_later(self._idle_s, self._on_idle)
        try:
            return await self._done
        finally:
            self._pause()
            self._done = None

    def close(self) -> None:
        self._pause()
        self._cancel_idle()

    # ------------------------------------------------------------------ loop callbacks
    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _finish(self, why: str, data: Any = b"") -> None:
        self._pause()
        self._cancel_idle()
        done = self._done
        if done is not None and not done.done():
            done.set_result((why, data))

    def _fail(self, exc: BaseException) -> None:
        self._pause()
        self._cancel_idle()
        done = self._done
        if done is not None and not done.done():
            done.set_exception(exc)

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_readable(self) -> None:
        try:
            try:
                n = self._sock.recv_into(self._rbuf)
            except (BlockingIOError, InterruptedError):
                return
            except (ConnectionError, OSError):
                n = 0
            if not n:
                self._handle(self._reader.on_eof(), eof=True)
                return
            self._cancel_idle()
            self._handle(self._reader.feed(self._rview[:n]), eof=False)
        except Exception as exc:  # noqa: BLE001 - ends this connection only (its task reports it)
            self._fail(exc)

    def _on_idle(self) -> None:
        self._idle_timer = None
        try:
            self._handle(self._reader.on_idle(), eof=False, idle=True)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _handle(self, res: FrameResult, eof: bool, idle: bool = False) -> None:
        reply, subscribe = self._ingest(res)
        if subscribe is not None and not eof:
            self._finish(SUBSCRIBE, reply)
            return
        if reply:
            try:
                sent = self._sock.send(reply)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(reply):
                # the peer does not take its reply now: stop reading it until its task has sent the rest
                self._finish(SEND, (reply[sent:], res.close, eof))
                return
        if res.close:
            self._finish(CLOSE, res.close)
        elif eof:
            self._finish(EOF)
        elif not idle and self._reader.wants_idle and self._idle_timer is None:
            self._idle_timer = self._loop.call_later(self._idle_s, self._on_idle)
