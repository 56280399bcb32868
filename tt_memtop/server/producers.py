"""Producer connections: read from the event loop's reader callback, their frames applied a chunk at a time.

:class:`ProducerIngest` is the server's ingest path (AllocationServer inherits it): one
connection's reads, the checks each message gets (as the original of its layout validates it,
peer credentials, --max-buffers), the registry, the log lines and the replies. The rest of the
server (lifecycle, subscriptions, recording, cleanup) is in server.py.

**Reading.** Why not ``await stream.receive()``: anyio (asyncio backend) registers the socket with the selector
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
import functools
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..core import eventcodec as codec
from ..core import logformat as lf
from ..core.events import Event, EventKind
from ..core.protocol import (
    MAX_DEVICES,
    MAX_SIZE,
    PROBE_REPLY,
    PROBE_REQUEST,
    WIRE_BUFFER_TYPES,
    AllocMessage,
    Layout,
    MsgType,
    encode,
    validate,
)
from ..core.registry import NO_PID, wire_applier
from .framing import FrameReader, FrameResult

if TYPE_CHECKING:
    from .server import _Conn

__all__ = ["ProducerIngest", "ProducerReader", "READ_SIZE"]

_STATE_TYPES = frozenset({MsgType.ALLOC, MsgType.FREE, MsgType.CB_ALLOC, MsgType.CB_FREE, MsgType.KERNEL_LOAD,
                          MsgType.KERNEL_UNLOAD})
#: Types 8-12 exist only in the 128/144-byte (S5-era) protocol. The servers that speak 72/112 bytes
#: (S1-S4; the 648-byte note extends the 72-byte struct) log them as "Unknown message type: N" and
#: change nothing, so a v72/v112/v648 connection gets the same (checked against S1 and S4).
_S5_ONLY_TYPES = frozenset({MsgType.CB_ALLOC, MsgType.CB_FREE, MsgType.KERNEL_LOAD, MsgType.KERNEL_UNLOAD,
                            MsgType.DUMP_KERNELS})
_PRE_S5_LAYOUTS = frozenset({Layout.V72, Layout.V112, Layout.V648})
_ALLOC_TYPES = frozenset({MsgType.ALLOC, MsgType.CB_ALLOC, MsgType.KERNEL_LOAD})
_U64 = (1 << 64) - 1
#: protocol.validate's reason for a type byte no version knows
_UNKNOWN_TYPE = re.compile(r"unknown message type (\d+)")


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


class ProducerIngest:
    """The ingest path of :class:`~tt_memtop.server.server.AllocationServer` (a mixin: it uses the server's
    registry, stats, config, ownership, log and publishing; see server.py)."""

    #: applies runs of ordinary ALLOC / FREE messages (registry.apply_wire, compiled when built); None:
    #: every message through the general loop of _ingest (the reference: tests compare the two)
    _apply_runs = staticmethod(wire_applier())

    async def _serve_connection(self, stream: anyio.abc.ByteStream, conn: _Conn) -> None:
        """Read the connection from the loop's reader callback (ProducerReader); a subscription goes on here."""
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not the asyncio backend: the portable loop
            sock = None
        if sock is None:
            await self._serve_connection_stream(stream, conn)
            return
        pump = ProducerReader(sock, conn.reader, functools.partial(self._ingest, conn), self.config.detect_idle_s)
        try:
            while True:
                why, data = await pump.wait()
                if why == SEND:  # a reply the peer did not take at once: only this connection waits for it
                    rest, close, eof = data
                    await stream.send(rest)
                    if close:
                        self._once("close", [f"⚠️  Connection {conn.cid}: {close}"])
                        return
                    if eof:
                        return
                    continue
                if why == SUBSCRIBE:
                    if data:
                        await stream.send(data)
                    await self._serve_subscriber(stream, conn)
                elif why == CLOSE:
                    self._once("close", [f"⚠️  Connection {conn.cid}: {data}"])
                return
        finally:
            pump.close()

    async def _serve_connection_stream(self, stream: anyio.abc.ByteStream, conn: _Conn) -> None:
        """The same as :meth:`_serve_connection` with anyio's stream API (any backend)."""
        reader = conn.reader
        idle = self.config.detect_idle_s
        idle_tried = False
        async with stream:
            while True:
                eof = False
                data = b""
                try:
                    if reader.wants_idle and not idle_tried:
                        with anyio.move_on_after(idle):
                            data = await stream.receive(READ_SIZE)
                        if not data:
                            idle_tried = True
                    else:
                        data = await stream.receive(READ_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    eof = True
                if eof:
                    res = reader.on_eof()
                elif data:
                    idle_tried = False
                    res = reader.feed(data)
                else:
                    res = reader.on_idle()
                reply, ext = self._ingest(conn, res)
                if reply:
                    await stream.send(reply)
                if ext is not None and not eof:
                    await self._serve_subscriber(stream, conn)
                    return
                if res.close:
                    self._once("close", [f"⚠️  Connection {conn.cid}: {res.close}"])
                    return
                if eof:
                    return

    def _ingest(self, conn: _Conn, res) -> tuple[bytes, MsgType | None]:
        """Apply one chunk of frames. Returns (reply bytes, SUBSCRIBE if the connection subscribed).

        The common chunk, only ordinary ALLOC / FREE messages, is one call of registry.apply_wire (the
        same decisions as :meth:`_ingest_all`, which takes anything else: see there)."""
        ts = self._clock()
        msgs = res.messages
        fast = self._apply_runs
        cfg = self.config
        if fast is None or res.bad or not msgs or cfg.strict:
            return self._ingest_all(conn, res, ts)
        peer = conn.peer
        if peer is None:
            ok_pid = None
            frees_ok = False
        else:
            own = self.ownership
            ok = conn.alloc_ok
            ok_pid = ok[0] if ok is not None and ok[1] == own.version else NO_PID
            frees_ok = own.only_uid(peer.uid)
        quiet = cfg.quiet
        layout = conn.reader.layout
        nxt, blob, text, nlines = fast(
            self.registry, msgs, 0, ts, layout is None or layout in _PRE_S5_LAYOUTS, self._max_buffers, ok_pid,
            frees_ok, len(cfg.inventory) if cfg.grow_inventory else -1,
            bool(self._subs) or self._recorder is not None or self._journal is not None,
            0 if quiet else 1 if self._id_format == "hex" else 2)
        if nxt < len(msgs):  # something else in the chunk: the general loop goes on from there
            return self._ingest_all(conn, res, ts, nxt, [blob] if blob else [],
                                    None if quiet else [(text, nlines)] if nlines else [])
        self.stats.messages += nxt
        if nlines:
            self._logw.write_bytes(text, nlines)
        if blob:
            self._publish([blob])
        return b"", None

    def _ingest_all(self, conn: _Conn, res, ts: int, start: int = -1, events: list | None = None,
                    lines: list | None = None) -> tuple[bytes, MsgType | None]:
        """:meth:`_ingest` for any chunk: each message by the rules of its type, runs of ordinary ALLOC / FREE
        messages by registry.apply_wire. ``start`` >= 0: a run stopped there (the chunk has no bad
        frames); the messages before it were applied, with these ``events`` and ``lines``."""
        reg = self.registry
        cfg = self.config
        stopped = start
        if start < 0:
            start, events, lines = 0, [], None if cfg.quiet else []
        replies: list[bytes] = []
        subscribe = None
        layout = conn.reader.layout or Layout.V72
        for bad in res.bad:
            self.stats.bad_frames += 1
            self.stats.bad_bytes += bad.nbytes
            events.append(reg.note(Event(EventKind.BAD_FRAME, ts_ns=ts, size=bad.nbytes,
                                         text=f"connection {conn.cid}: {bad.reason}")))
            unknown = _UNKNOWN_TYPE.fullmatch(bad.reason)
            if unknown and bad.nbytes in (int(layout), 72, 112, 128, 144, 648):  # a whole frame: the original's line
                self._warn(f"type:{unknown[1]}", lf.unknown_type_line(int(unknown[1])))
                continue
            self._once("bad:" + _kind(bad.reason), [f"⚠️  Bad frame on connection {conn.cid}: {bad.reason} "
                                                    f"({bad.nbytes} bytes skipped at offset {bad.offset})"])
        pre_s5 = layout in _PRE_S5_LAYOUTS
        ext_on = cfg.extensions
        cap = self._max_buffers
        strict = cfg.strict
        grow = cfg.grow_inventory
        peer = conn.peer
        checked = peer is not None  # peer credentials to check (_permitted)
        own = self.ownership
        # What _permitted would decide without looking: for the whole chunk (no other connection runs
        # meanwhile, and this one can only add its own UID), a FREE while this sender's UID is the only
        # one; an ALLOC of the PID whose last ALLOC on this connection was checked, while there is one
        # UID and the owners are as they were then (Ownership.version).
        frees_ok = checked and own.only_uid(peer.uid)
        alloc_ok_pid: int | None = None
        ok = conn.alloc_ok
        if ok is not None and ok[1] == own.version:
            alloc_ok_pid = ok[0]
        apply = reg.apply
        add_event = events.append
        add_line = lines.append if lines is not None else None
        # Runs of ordinary ALLOC / FREE messages go to registry.apply_wire (compiled when built): the same
        # changes, events and lines as the loop below makes of them, as bytes. It leaves anything else to
        # the loop, then takes over again.
        fast = self._apply_runs if not strict else None
        encode = bool(self._subs) or self._recorder is not None or self._journal is not None
        line_mode = 0 if lines is None else 1 if self._id_format == "hex" else 2
        inv_len = len(cfg.inventory) if grow else -1
        misses = 0
        msgs = res.messages
        n = len(msgs)
        i = start
        while i < n:
            m = msgs[i]
            t = m.type
            if fast is not None and (t == 1 or t == 2) and i != stopped:
                if checked:
                    ok_pid = NO_PID if alloc_ok_pid is None or conn.alloc_ok[1] != own.version else alloc_ok_pid
                else:
                    ok_pid = None
                nxt, blob, text, nlines = fast(reg, msgs, i, ts, pre_s5, cap, ok_pid, frees_ok, inv_len, encode,
                                               line_mode)
                if nxt > i:
                    misses = 0
                    if blob:
                        add_event(blob)
                    if nlines:
                        add_line((text, nlines))  # written in order with the chunk's other lines (_flush)
                    i = nxt
                    continue
                misses += 1
                if misses >= 2:  # two unusual messages in a row: the rest of this chunk goes the general way
                    fast = None
            i += 1
            if t == 1 or t == 2:
                # ALLOC / FREE, the bulk of the traffic: the checks of the general case below, inline.
                # A FREE is never invalid as the originals see it; an ALLOC is when _original_reason says so.
                if strict:
                    reason = validate(m)
                elif t == 1 and not (0 <= m.device_id < MAX_DEVICES and m.buffer_type <= 4
                                     and (pre_s5 or 0 < m.size <= MAX_SIZE)):
                    reason = _original_reason(m, pre_s5)
                else:
                    reason = None
                if reason is not None:
                    self._invalid(m, reason, ts, events, pre_s5)
                    continue
                if cap and t == 1 and len(reg) >= cap and not self._replaces(m):
                    self._refuse_alloc(conn, m, ts, events)
                    continue
                if checked:
                    if t == 2:
                        if not frees_ok and not self._permitted(conn, m, ts, events):
                            continue
                    elif m.process_id != alloc_ok_pid or conn.alloc_ok[1] != own.version:
                        if not self._permitted(conn, m, ts, events):
                            continue
                        if not own.several_uids:
                            alloc_ok_pid = m.process_id
                            conn.alloc_ok = (alloc_ok_pid, own.version)
                if grow and m.device_id >= len(self.config.inventory):
                    self._grow_inventory(m.device_id)
                    inv_len = len(self.config.inventory)
                ev = apply(m, ts)
                add_event(ev)
                if add_line is not None:
                    if ev.buffer_type < 5:
                        add_line(ev)  # formatted with the rest of the chunk (_flush): the line needs no later state
                    else:  # a FREE in the CB / kernel space: its line carries the device's total now
                        line = lf.event_line(ev, self._id_format, reg)
                        if line is not None:
                            add_line(line)
            elif pre_s5 and t in _S5_ONLY_TYPES:
                self._warn(f"type:{t}", lf.unknown_type_line(t))
            elif t in _STATE_TYPES:
                reason = validate(m) if strict else _original_reason(m, pre_s5)
                if reason is not None:
                    self._invalid(m, reason, ts, events, pre_s5)
                    continue
                if cap and t in _ALLOC_TYPES and len(reg) >= cap and not self._replaces(m):
                    self._refuse_alloc(conn, m, ts, events)
                    continue
                if checked and not self._permitted(conn, m, ts, events):
                    continue
                if grow and m.device_id >= len(self.config.inventory):
                    self._grow_inventory(m.device_id)
                    inv_len = len(self.config.inventory)
                ev = apply(m, ts)
                add_event(ev)
                if add_line is not None:
                    # CB / KERNEL lines carry the device's total right after this event: formatted now
                    line = lf.event_line(ev, self._id_format, reg)
                    if line is not None:
                        add_line(line)
            elif t == MsgType.QUERY:
                # in the connection's layout, as the original's one send(sizeof): a smaller client reads
                # its own size first, and every layout begins with the same 72 bytes
                replies.append(self._response(m, layout))
            elif t == MsgType.DEVICE_INFO_QUERY:
                replies.append(self._device_info(m, layout))
            elif t == MsgType.DUMP_REMAINING or (t == MsgType.DUMP_REPORT and ext_on):
                self._flush(lines, events)
                report = self.dump_lines()
                self._out(report)
                if t == MsgType.DUMP_REPORT:
                    replies.append(codec.frame(codec.encode_hello()) + codec.frame(
                        codec.encode_report("\n".join(report) + "\n")))
            elif t == MsgType.DUMP_KERNELS:
                self._flush(lines, events)
                self._out(lf.dump_kernels(reg, ts))
                self._publish([reg.note(Event(EventKind.DUMP, ts_ns=ts, text="DUMP_KERNELS"))])
            elif t == MsgType.HELLO and ext_on:
                replies.append(codec.frame(codec.encode_hello()))
            elif t == MsgType.SUBSCRIBE and ext_on:
                subscribe = MsgType.SUBSCRIBE
                break  # the rest of this connection is a subscription stream
            else:
                self._warn(f"type:{t}", lf.unknown_type_line(t))
        self.stats.messages += i
        if lines or events:
            self._flush(lines, events)
        return b"".join(replies) if replies else b"", subscribe

    def _replaces(self, m: AllocMessage) -> bool:
        """Does this ALLOC-like message hit a live entry (a ref-count bump or a CB/kernel overwrite)?"""
        reg = self.registry
        if m.type == MsgType.CB_ALLOC:
            return reg.get(m.device_id, m.buffer_id, 5) is not None
        if m.type == MsgType.KERNEL_LOAD:
            return reg.get(m.device_id, m.buffer_id, 6) is not None
        return reg.get(m.device_id, m.buffer_id, 0) is not None

    def _grow_inventory(self, device: int) -> None:
        """A device beyond the inventory: DEVICE_INFO and snapshots report it from now on (item: Galaxy on 8)."""
        inv = self.config.inventory
        grown = inv.grown_to(device)
        if grown is not inv:
            self._once("inventory", [lf.inventory_grown_line(device, len(inv), inv.devices[-1].arch_name)])
            self.config.inventory = grown

    def _flush(self, lines: list | None, events: list[Event]) -> None:
        """Write pending per-event lines and publish pending events (keeps log and stream in order).

        ``lines`` holds the chunk's log lines so far: text, or the Event of a buffer's line, formatted
        here for the whole chunk at once (logformat.render_lines; compiled when available), or
        ``(UTF-8 bytes, number of lines)`` of a run of lines already rendered (registry.apply_wire).
        """
        if lines:
            first = lines[0]
            if len(lines) == 1 and first.__class__ is tuple:
                data, n = first
            else:
                data, n = self._render_mixed(lines)
            self._logw.write_bytes(data, n)
            lines.clear()
        if events:
            self._publish(events)
            events.clear()

    def _render_mixed(self, lines: list) -> tuple[bytes, int]:
        """:meth:`_flush`'s lines as one piece of UTF-8: pieces already rendered as they are, the rest rendered."""
        hex_ids = self._id_format == "hex"
        parts: list[bytes] = []
        total = 0
        run: list = []
        for item in lines:
            if item.__class__ is tuple:
                if run:
                    data, n = self._render(run, hex_ids)
                    parts.append(data)
                    total += n
                    run = []
                parts.append(item[0])
                total += item[1]
            else:
                run.append(item)
        if run:
            data, n = self._render(run, hex_ids)
            parts.append(data)
            total += n
        return b"".join(parts), total

    def _invalid(self, m: AllocMessage, reason: str, ts: int, events: list[Event], pre_s5: bool = False) -> None:
        self.stats.invalid_messages += 1
        events.append(self.registry.note(Event(EventKind.BAD_FRAME, ts_ns=ts, pid=m.process_id, device=m.device_id,
                                               buffer_type=m.buffer_type & 0xFF, buffer_id=m.buffer_id,
                                               text=f"invalid {MsgType(m.type).name}: {reason}")))
        if reason.startswith("device_id"):
            kind, line = "device", lf.invalid_device_line(m.device_id)
        elif reason.startswith("absurd size"):
            kind, line = "size", lf.invalid_size_line(m.size)
        elif reason.startswith("bad buffer_type"):
            # S1-S4 (72/112-byte servers) print the sender's PID; S5 does not
            kind, line = "btype", lf.invalid_buffer_type_line(m.buffer_type, m.buffer_id, m.device_id,
                                                              m.process_id if pre_s5 else None)
        else:
            kind, line = _kind(reason), f"⚠️  Invalid message ({reason}) - ignoring message"
        self._warn("invalid:" + kind, line)

    def _warn(self, kind: str, line: str) -> None:
        """An original-format warning (stderr): every time, as the original, unless --dedupe-warnings."""
        if self.config.dedupe_warnings:
            self._once(kind, [line])
        else:
            self._out([line], err=True)

    def _permitted(self, conn: _Conn, m: AllocMessage, ts: int, events: list[Event]) -> bool:
        """Peer-credential checks on a state message (peers.py): note PID mismatches, refuse foreign FREEs."""
        own = self.ownership
        peer = conn.peer
        if peer is None:  # no peer credentials on this platform: the original's rules
            return True
        t = m.type
        if t == MsgType.ALLOC or t == MsgType.CB_ALLOC or t == MsgType.KERNEL_LOAD:
            new, mismatch = own.observe_alloc(m.process_id, peer)
            if m.process_id != peer.pid and not conn.pid_noted:
                conn.pid_noted = True
                if len(self._peer_notes) < 1024 or m.process_id in self._peer_notes:
                    self._peer_notes[m.process_id] = {"pid": m.process_id, "host_pid": peer.pid, "uid": peer.uid,
                                                      "kind": "mismatch" if mismatch else "namespace"}
                if mismatch:
                    self.stats.pid_mismatch += 1
                    self._out([f"⚠️  Connection {conn.cid}: messages report PID {m.process_id}, but the sender is "
                               f"PID {peer.pid} (uid {peer.uid}), which has no such PID in any namespace; "
                               f"shown as reported"], err=True)
                else:
                    self.stats.pid_namespace += 1
                    self._out([f"Connection {conn.cid}: PID {m.process_id} is PID {peer.pid} on this host (uid "
                               f"{peer.uid}, another PID namespace); its buffers live as long as PID {peer.pid}"],
                              err=True)
            if new and self._journal is not None:
                o = own.owners().get(m.process_id)
                if o is not None:
                    try:
                        self._journal.write_owner(m.process_id, o.uid, o.host_pids)
                    except OSError as exc:
                        self._journal_failed(exc)
            if t == MsgType.ALLOC and own.several_uids:  # with one user, no entry can belong to another
                b = self.registry.get(m.device_id, m.buffer_id, 0)
                if b is not None:
                    ouid = own.owner_uid(b.owner_pid)
                    if not own.trust_all and ouid is not None and ouid != peer.uid:
                        # Another user's process cannot hold this device address now: the live entry
                        # is stale or a squatter's claim. Replace it instead of raising its ref_count.
                        self.stats.evicted_claims += 1
                        why = (f"connection {conn.cid}: ALLOC of buffer {m.buffer_id:#x} on device {m.device_id} by "
                               f"PID {m.process_id} (uid {peer.uid}) replaces the entry of PID {b.owner_pid} "
                               f"(uid {ouid})")
                        ev = self.registry.evict(m.device_id, m.buffer_id, 0, ts, text=why)
                        if ev is not None:
                            events.append(ev)
                        self._once("evict", [f"⚠️  {why[0].upper()}{why[1:]}"])
                    else:
                        own.observe_share((0, m.device_id, m.buffer_id), b.owner_pid, peer)
            return True
        if not own.several_uids and own.sole_uid in (None, peer.uid):
            return True  # one user so far, and it is this sender: nothing to check
        space = 5 if t == MsgType.CB_FREE else 6 if t == MsgType.KERNEL_UNLOAD else (
            m.buffer_type if m.buffer_type in (5, 6) else 0)
        b = self.registry.get(m.device_id, m.buffer_id, space)
        if b is None:
            return True
        key = (space, m.device_id, m.buffer_id)
        if own.may_free(key, b.owner_pid, peer):
            if space != 0 or b.ref_count <= 1:
                own.freed(key)
            return True
        self.stats.refused_frees += 1
        why = (f"connection {conn.cid}: {MsgType(t).name} of buffer {m.buffer_id:#x} on device {m.device_id} refused: "
               f"it belongs to PID {b.owner_pid} (uid {own.owner_uid(b.owner_pid)}), the sender is PID "
               f"{peer.pid} (uid {peer.uid})")
        events.append(self.registry.note(Event(EventKind.BAD_FRAME, ts_ns=ts, pid=m.process_id, device=m.device_id,
                                               buffer_type=b.buffer_type, buffer_id=m.buffer_id, text=why)))
        if not conn.refusal_noted:
            conn.refusal_noted = True
            self._out([f"⚠️  {why[0].upper()}{why[1:]} (further refusals on this connection are counted; "
                       f"--trust-all accepts them)"], err=True)
        return False

    # ================================================================== replies
    def _response(self, m: AllocMessage, layout: Layout) -> bytes:
        # modulo 2**64 as the original's uint64 counters: sizes the 72/112-byte rules accept can sum past it
        dram, l1, l1s, trace, cb, kern = (x & _U64 for x in self.registry.wire_totals(m.device_id))
        r = AllocMessage(type=MsgType.RESPONSE, device_id=m.device_id, dram_allocated=dram, l1_allocated=l1,
                         l1_small_allocated=l1s, trace_allocated=trace, cb_allocated=cb, kernel_allocated=kern)
        if m.buffer_id == PROBE_REQUEST and self.config.extensions:  # tt-memtop's silent probe (EXTENSION.md)
            r.timestamp, r.size = PROBE_REPLY, codec.CODEC_VERSION
        return encode(r, layout)

    def _device_info(self, m: AllocMessage, layout: Layout) -> bytes:
        inv = self.config.inventory
        r = AllocMessage(type=MsgType.DEVICE_INFO_RESPONSE, device_id=m.device_id)
        if m.device_id == -1:
            r.num_devices = len(inv)
            r.is_available = int(len(inv) > 0)
        else:
            d = inv.get(m.device_id)
            if d is not None:
                r.is_available = int(d.available)
                r.arch_type = int(d.arch)
                r.num_dram_channels = d.num_dram_channels
                r.dram_size_per_channel = d.dram_size_per_channel
                r.l1_size_per_core = d.l1_size_per_core
                r.total_dram_size = d.total_dram
                r.total_l1_size = d.total_l1
        return encode(r, layout)

    def _refuse_alloc(self, conn: _Conn, m: AllocMessage, ts: int, events: list[Event]) -> None:
        st = self.stats
        st.refused_allocs += 1
        conn.refused += 1
        if conn.refused == 1:  # one line per connection, and a STATUS every power of two
            self._out([f"⚠️  Refusing ALLOC on connection {conn.cid} (PID {m.process_id}): {len(self.registry):,} "
                       f"live entries reached --max-buffers {self._max_buffers:,}; refused allocations are "
                       f"counted, not tracked"], err=True)
        if st.refused_allocs & (st.refused_allocs - 1) == 0:
            self._set_status(refused_allocs=st.refused_allocs, max_buffers=self._max_buffers)
        events.append(self.registry.note(Event(
            EventKind.BAD_FRAME, ts_ns=ts, pid=m.process_id, device=m.device_id, buffer_id=m.buffer_id, size=m.size,
            text=f"connection {conn.cid}: ALLOC refused: --max-buffers {self._max_buffers} live entries reached")))


def _original_reason(m: AllocMessage, pre_s5: bool) -> str | None:
    """Why the original of the connection's layout would drop ``m``, or None (PROTOCOL.md §3, §5.8).

    Every version rejects an ALLOC with buffer_type > 4; S5 (128/144 bytes) also a size outside
    (0, 100 GiB]. The device range is ours (256 devices): S1-S4 index past their 8-entry array, S5
    drops ids >= 8. CB_ALLOC / KERNEL_LOAD are checked for the device only (any kernel type is
    counted, as "Unknown"); FREE-like messages are never rejected (an unknown key is reported).
    """
    t = m.type
    if t == MsgType.ALLOC or t == MsgType.CB_ALLOC or t == MsgType.KERNEL_LOAD:
        if not 0 <= m.device_id < MAX_DEVICES:
            return f"device_id {m.device_id} out of range [0, {MAX_DEVICES})"
        if t == MsgType.ALLOC:
            if not pre_s5 and not 0 < m.size <= MAX_SIZE:
                return f"absurd size {m.size} (expected 0 < size <= {MAX_SIZE})"
            if m.buffer_type not in WIRE_BUFFER_TYPES:
                return f"bad buffer_type {m.buffer_type} (expected 0..4)"
    return None


def _kind(reason: str) -> str:
    """A reason with its numbers blanked: what "once per kind" logging keys on."""
    return re.sub(r"\d+", "N", reason)
