"""Async client for the allocation server: the original protocol plus our extension.

``AllocationClient`` speaks one layout on one persistent connection, like TT-Metal's own client
(PROTOCOL.md §1): fire-and-forget ALLOC/FREE/CB/KERNEL/DUMP, and QUERY / DEVICE_INFO_QUERY with
their one-struct replies. ``dump_report`` and :func:`subscribe` use the extension
(docs/EXTENSION.md); against an original server they raise :class:`ExtensionUnsupported` after a
timeout, because the original never answers those types. Never send them before
:func:`~tt_memtop.sources.probe.probe_server` said the server is ours: an original logs every one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .core import eventcodec as codec
from .core.devices import Inventory
from .core.protocol import AllocMessage, BufferType, Layout, MsgType, decode, encode
from .sources.base import EventBatch, Heartbeat, Snapshot

__all__ = ["AllocationClient", "ExtensionUnsupported", "Resync", "ServerInfo", "ServerStatus", "read_record",
           "subscribe"]

#: Size used for extension requests: every server layout accepts a lone 72-byte extension frame.
EXTENSION_LAYOUT = Layout.V72


class ExtensionUnsupported(ConnectionError):
    """The server did not answer an extension request (an original server, or ``--no-extensions``)."""


@dataclass(slots=True)
class Resync:
    """The subscription fell behind: ``dropped`` events were skipped; a fresh Snapshot follows."""

    dropped: int
    reason: str


@dataclass(slots=True)
class ServerInfo:
    """The server's INFO record (docs/EXTENSION.md): where its state came from, peer-credential counters."""

    info: dict

    def notes(self) -> list[str]:
        """What a monitor should say about the server, in words (empty when all is well)."""
        import time as _time

        d = self.info
        out = []
        started = d.get("started_wall_ns")
        when = _time.strftime("%H:%M:%S", _time.localtime(started / 1e9)) if isinstance(started, int) else "?"
        if d.get("prior_state") == "unknown":
            out.append(f"server started at {when} without a journal: memory allocated before then is not shown")
        elif d.get("prior_state") == "journal":
            out.append(f"server restarted at {when}; {d.get('restored_buffers', 0)} buffers restored from its journal")
        if d.get("pid_mismatch_connections"):
            out.append(f"{d['pid_mismatch_connections']} connection(s) report a PID that is not theirs")
        if d.get("refused_frees"):
            out.append(f"{d['refused_frees']} FREE(s) of another user's buffers refused")
        return out


@dataclass(slots=True)
class ServerStatus:
    """The server's health changed (recording stopped, allocations refused...): see docs/EXTENSION.md."""

    fields: dict

    def describe(self) -> str:
        """One line for a status bar, or "" when all is well."""
        f = self.fields
        parts = []
        if f.get("recording") == "stopped":
            parts.append(f"recording stopped ({f.get('recording_error', 'error')})")
        if f.get("refused_allocs"):
            parts.append(f"{f['refused_allocs']:,}+ allocations refused (--max-buffers {f.get('max_buffers', '?'):,})")
        return "server: " + "; ".join(parts) if parts else ""


async def read_record(buf: BufferedByteReceiveStream) -> tuple[int, memoryview]:
    """Read one length-prefixed record; returns (RecordKind value, body)."""
    (n,) = codec.U32.unpack(await buf.receive_exactly(4))
    if n == 0:
        raise codec.CodecError("empty record")
    rec = await buf.receive_exactly(n)
    return rec[0], memoryview(rec)[1:]


async def _expect_hello(buf: BufferedByteReceiveStream, timeout: float) -> memoryview:
    try:
        with anyio.fail_after(timeout):
            kind, body = await read_record(buf)
    except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
            ConnectionError) as exc:
        raise ExtensionUnsupported("the server did not answer the tt-memtop extension request "
                                   "(an original allocation server?)") from exc
    if kind != codec.RecordKind.HELLO:
        raise ExtensionUnsupported(f"unexpected reply record kind {kind} instead of HELLO")
    try:
        codec.decode_hello_body(body)
    except codec.CodecError as exc:
        raise ExtensionUnsupported(str(exc)) from exc
    return body


class AllocationClient:
    """One connection to an allocation server, speaking ``layout``."""

    def __init__(self, stream: anyio.abc.ByteStream, layout: Layout = Layout.V144) -> None:
        self.stream = stream
        self.layout = Layout(layout)
        self._buf = BufferedByteReceiveStream(stream)
        self.pid = os.getpid()

    @classmethod
    async def connect(cls, path: str, layout: Layout | int = Layout.V144) -> AllocationClient:
        return cls(await anyio.connect_unix(path), Layout(layout))

    async def __aenter__(self) -> AllocationClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.stream.aclose()

    # ------------------------------------------------------------------ fire and forget
    async def send(self, msg: AllocMessage) -> None:
        await self.stream.send(encode(msg, self.layout))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def alloc(self, device: int, size: int, buffer_type: int = BufferType.DRAM, buffer_id: int = 0,
                    pid: int | None = None) -> None:
        await self.send(AllocMessage(type=MsgType.ALLOC, device_id=device, size=size, buffer_type=int(buffer_type),
                                     process_id=self.pid if pid is None else pid, buffer_id=buffer_id))

    async def free(self, device: int, buffer_id: int, pid: int | None = None) -> None:
        await self.send(AllocMessage(type=MsgType.FREE, device_id=device, buffer_id=buffer_id,
                                     process_id=self.pid if pid is None else pid))

    async def dump(self) -> None:
        """DUMP_REMAINING: the report goes to the server's log; nothing comes back."""
        await self.send(AllocMessage(type=MsgType.DUMP_REMAINING))

    # ------------------------------------------------------------------ request / reply
    async def reply(self, timeout: float) -> AllocMessage:
        """The next reply struct. A timeout loses nothing: a later call still gets that reply."""
        with anyio.fail_after(timeout):
            raw = await self._buf.receive_exactly(int(self.layout))
        return decode(raw, self.layout)

    async def query(self, device: int, timeout: float = 5.0) -> AllocMessage:
        """QUERY -> RESPONSE (dram/l1/l1_small/trace, + cb/kernel in v128/v144)."""
        await self.send(AllocMessage(type=MsgType.QUERY, device_id=device))
        return await self.reply(timeout)

    async def device_info(self, device: int, timeout: float = 5.0) -> AllocMessage:
        """DEVICE_INFO_QUERY -> DEVICE_INFO_RESPONSE; device -1 gives num_devices."""
        await self.send(AllocMessage(type=MsgType.DEVICE_INFO_QUERY, device_id=device))
        return await self.reply(timeout)

    async def inventory(self, timeout: float = 5.0) -> Inventory:
        """The server's devices, from DEVICE_INFO_QUERY(-1) then one query per device (v112+ layouts)."""
        from .core.devices import DeviceInfo
        from .core.protocol import Arch

        head = await self.device_info(-1, timeout)
        devs = []
        for i in range(head.num_devices):
            r = await self.device_info(i, timeout)
            try:
                arch = Arch(r.arch_type)
            except ValueError:
                arch = Arch.INVALID
            devs.append(DeviceInfo(i, arch, r.num_dram_channels, r.dram_size_per_channel, r.l1_size_per_core,
                                   r.total_dram_size, r.total_l1_size, bool(r.is_available)))
        return Inventory(tuple(devs))

    # ------------------------------------------------------------------ extension
    async def dump_report(self, timeout: float = 5.0) -> str:
        """DUMP_REPORT: the server runs DUMP_REMAINING and sends the report text back."""
        await self.stream.send(encode(AllocMessage(type=MsgType.DUMP_REPORT, process_id=self.pid), self.layout))
        await _expect_hello(self._buf, timeout)
        with anyio.fail_after(timeout):
            kind, body = await read_record(self._buf)
        if kind != codec.RecordKind.REPORT:
            raise codec.CodecError(f"expected a REPORT record, got kind {kind}")
        return bytes(body).decode("utf-8", "replace")

    async def hello(self, timeout: float = 1.0) -> bool:
        """Does the server speak the extension?"""
        await self.stream.send(encode(AllocMessage(type=MsgType.HELLO, process_id=self.pid), self.layout))
        try:
            await _expect_hello(self._buf, timeout)
        except ExtensionUnsupported:
            return False
        return True


async def subscribe(path: str, *, layout: Layout | int = EXTENSION_LAYOUT, hello_timeout: float = 2.0,
                    on_info: Callable[[ServerInfo], None] | None = None
                    ) -> AsyncIterator[Snapshot | EventBatch | Resync | Heartbeat | ServerStatus]:
    """Subscribe to the server at ``path``: yields a Snapshot, then EventBatches (and Resync + Snapshot,
    and a Heartbeat with the server's clock whenever the stream is quiet), and a ServerStatus whenever
    the server's health changes.

    The server's INFO (in its HELLO, or as an INFO record) goes to ``on_info``.
    Ends when the server closes the stream. Raises :class:`ExtensionUnsupported` when the server
    does not answer SUBSCRIBE, and OSError when it cannot be reached.
    """
    stream = await anyio.connect_unix(path)
    async with stream:
        await stream.send(encode(AllocMessage(type=MsgType.SUBSCRIBE, process_id=os.getpid()), Layout(layout)))
        buf = BufferedByteReceiveStream(stream)
        hello = await _expect_hello(buf, hello_timeout)
        info = codec.decode_hello_info(hello)
        if info is not None and on_info is not None:
            on_info(ServerInfo(info))
        while True:
            try:
                kind, body = await read_record(buf)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return
            if kind == codec.RecordKind.EVENTS:
                yield EventBatch(codec.decode_events_body(body))
            elif kind == codec.RecordKind.SNAPSHOT:
                s = codec.decode_snapshot_body(body)
                yield Snapshot(s.buffers, s.seq, s.ts_ns, s.inventory)
            elif kind == codec.RecordKind.RESYNC:
                dropped, reason = codec.decode_resync_body(body)
                yield Resync(dropped, reason)
            elif kind == codec.RecordKind.INFO and on_info is not None:
                try:
                    info = ServerInfo(codec.decode_info_body(body))
                except codec.CodecError:
                    continue
                on_info(info)
            elif kind == codec.RecordKind.HEARTBEAT:
                ts_ns, seq = codec.decode_heartbeat_body(body)
                yield Heartbeat(ts_ns, seq)
            elif kind == codec.RecordKind.STATUS:
                yield ServerStatus(codec.decode_status_body(body))
            # unknown record kinds are skipped: newer servers may add some
