"""Compact binary records for events, buffers, inventories and snapshots (little-endian, versioned).

Pure. One encoding serves two carriers (both documented in docs/EXTENSION.md):

* the subscription stream: ``u32 length`` + record;
* the recording file: ``u32 length`` + ``u32 crc32`` + record.

A *record* is one :class:`RecordKind` byte followed by its body. Bodies are built from the fixed
structs below plus length-prefixed UTF-8 strings; decoding never trusts a length beyond the
buffer (it raises :class:`CodecError`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from .devices import DeviceInfo, Inventory
from .events import Event, EventKind
from .protocol import Arch
from .registry import Buffer

#: Bumped whenever a body layout changes. Readers refuse versions they do not know.
CODEC_VERSION = 1
#: Magic of the subscription hello and of the recording header.
MAGIC = b"TTMEMTOP"


class RecordKind(IntEnum):
    HELLO = 1  # magic(8) + u16 codec version + u16 flags
    SNAPSHOT = 2  # see encode_snapshot
    EVENTS = 3  # u32 count + count event records
    RESYNC = 4  # u64 events dropped + UTF-8 reason; a SNAPSHOT follows
    REPORT = 5  # UTF-8 text (the DUMP_REMAINING report)
    HEADER = 6  # recording header, see tt_memtop.recording
    HEARTBEAT = 7  # i64 server clock (ts_ns) + u64 seq: sent on a quiet subscription
    STATUS = 8  # UTF-8 JSON object: the server's health (recording stopped, refusals, dropped log lines)
    INFO = 9  # reserved: the server INFO object (docs/EXTENSION.md), today carried in the subscription HELLO


class CodecError(ValueError):
    """Bytes that are not a well-formed record."""


# seq, ts_ns, kind, pid, device, buffer_type, buffer_id, size, ref_count, len(name), len(trace), len(text)
EVENT = struct.Struct("<QqBiiBQQIHHH")
# device, buffer_id, buffer_type, size, owner_pid, ref_count, alloc_ts_ns, alloc_seq, len(name), len(trace)
BUFFER = struct.Struct("<iQBQiIqQHH")
# device_id, arch, num_dram_channels, dram_size_per_channel, l1_size_per_core, total_dram, total_l1, available
DEVICE = struct.Struct("<iBIQIQQB")
# device, num_buffers, bytes by BufferType (7)
TOTALS = struct.Struct("<iI7Q")
HELLO = struct.Struct("<8sHH")
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
SNAP_HEAD = struct.Struct("<Qq")  # seq, ts_ns

_MAX_STR = 0xFFFF
_EVENT_KINDS = {int(k): k for k in EventKind}
#: Kinds whose buffer_type and device index per-type / per-device state (a decoder checks them)
_ENTRY_KINDS = frozenset(int(k) for k in (EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE,
                                          EventKind.FREE_UNKNOWN, EventKind.CLEANUP))
_NTYPES = 7  # BufferType 0..6
_MAX_DEVICES = 256  # protocol.MAX_DEVICES: no server stores an entry for another device id


def _b(text: str) -> bytes:
    raw = text.encode("utf-8")
    return raw[:_MAX_STR] if len(raw) > _MAX_STR else raw


def _s(buf, off: int, n: int) -> str:
    if off + n > len(buf):
        raise CodecError("string runs past the end of the record")
    return bytes(buf[off:off + n]).decode("utf-8", "replace")


def _unpack(st: struct.Struct, buf, off: int) -> tuple:
    if off + st.size > len(buf):
        raise CodecError(f"record truncated: need {st.size} bytes at offset {off}, have {len(buf) - off}")
    return st.unpack_from(buf, off)


# ------------------------------------------------------------------------------------------------ events
def encode_event(ev: Event) -> bytes:
    if not (ev.name or ev.stack_trace or ev.text):
        return EVENT.pack(ev.seq, ev.ts_ns, ev.kind, ev.pid, ev.device, ev.buffer_type, ev.buffer_id, ev.size,
                          ev.ref_count, 0, 0, 0)
    n, t, x = _b(ev.name), _b(ev.stack_trace), _b(ev.text)
    return EVENT.pack(ev.seq, ev.ts_ns, ev.kind, ev.pid, ev.device, ev.buffer_type, ev.buffer_id, ev.size,
                      ev.ref_count, len(n), len(t), len(x)) + n + t + x


def _entry_error(k: EventKind, bt: int, dev: int) -> CodecError:
    """A buffer event naming a type or device no registry can hold (both decoders' message)."""
    return CodecError(f"{k.name} event with buffer_type {bt} on device {dev} "
                      f"(expected buffer_type 0..{_NTYPES - 1}, device -1..{_MAX_DEVICES - 1})")


def decode_event(buf, off: int = 0) -> tuple[Event, int]:
    """Decode one event at ``off``; returns (event, offset after it)."""
    seq, ts, kind, pid, dev, bt, bid, size, refs, ln, lt, lx = _unpack(EVENT, buf, off)
    off += EVENT.size
    name = trace = text = ""
    if ln or lt or lx:
        name = _s(buf, off, ln)
        trace = _s(buf, off + ln, lt)
        text = _s(buf, off + ln + lt, lx)
        off += ln + lt + lx
    k = _EVENT_KINDS.get(kind)
    if k is None:
        raise CodecError(f"unknown event kind {kind}")
    if kind in _ENTRY_KINDS and (bt >= _NTYPES or not -1 <= dev < _MAX_DEVICES):
        raise _entry_error(k, bt, dev)
    return Event(k, seq=seq, ts_ns=ts, pid=pid, device=dev, buffer_type=bt, buffer_id=bid, size=size,
                 ref_count=refs, name=name, stack_trace=trace, text=text), off


def encode_events(events: list[Event]) -> bytes:
    """An EVENTS record (kind byte included)."""
    return bytes((RecordKind.EVENTS,)) + U32.pack(len(events)) + b"".join(map(encode_event, events))


def _decode_events_body(buf, off: int = 0) -> list[Event]:
    """:func:`decode_event` in a loop, inlined: the events are made with ``object.__new__`` and slot
    stores (a keyword call of ``Event(...)`` costs several times more)."""
    (count,) = _unpack(U32, buf, off)
    off += 4
    out: list[Event] = []
    append = out.append
    unpack_from = EVENT.unpack_from
    size = EVENT.size
    end = len(buf)
    kinds = _EVENT_KINDS
    entries = _ENTRY_KINDS
    new = object.__new__
    for _ in range(count):
        if off + size > end:
            raise CodecError(f"record truncated: need {size} bytes at offset {off}, have {end - off}")
        seq, ts, kind, pid, dev, bt, bid, nbytes, refs, ln, lt, lx = unpack_from(buf, off)
        off += size
        name = trace = text = ""
        if ln or lt or lx:
            name = _s(buf, off, ln)
            trace = _s(buf, off + ln, lt)
            text = _s(buf, off + ln + lt, lx)
            off += ln + lt + lx
        k = kinds.get(kind)
        if k is None:
            raise CodecError(f"unknown event kind {kind}")
        if kind in entries and (bt >= _NTYPES or not -1 <= dev < _MAX_DEVICES):
            raise _entry_error(k, bt, dev)
        ev = new(Event)
        ev.seq = seq
        ev.ts_ns = ts
        ev.kind = k
        ev.pid = pid
        ev.device = dev
        ev.buffer_type = bt
        ev.buffer_id = bid
        ev.size = nbytes
        ev.ref_count = refs
        ev.name = name
        ev.stack_trace = trace
        ev.text = text
        append(ev)
    return out


def _native_decoder():
    """The compiled batch decoder (tt_memtop/_native/events.c), set up for this module; None without it."""
    from .._native import load_set_up

    mod = load_set_up("events", Event, dict(_EVENT_KINDS), CodecError, tuple(_ENTRY_KINDS), _NTYPES, _MAX_DEVICES)
    return mod.decode_events_body if mod is not None else None


#: ``decode_events_body(body, off=0) -> list[Event]``: the events of an EVENTS record body, all at once.
#: Compiled when the accelerator is built (same events, same CodecError messages), else pure Python.
decode_events_body = _native_decoder() or _decode_events_body
pure_decode_events_body = _decode_events_body


# ------------------------------------------------------------------------------------------------ buffers
def encode_buffer(b: Buffer, ref_count: int | None = None) -> bytes:
    """One BUFFER; ``ref_count`` overrides the entry's own (a frozen snapshot's value)."""
    refs = b.ref_count if ref_count is None else ref_count
    if not (b.name or b.stack_trace):
        return BUFFER.pack(b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, refs, b.alloc_ts_ns,
                           b.alloc_seq, 0, 0)
    n, t = _b(b.name), _b(b.stack_trace)
    return BUFFER.pack(b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, refs, b.alloc_ts_ns,
                       b.alloc_seq, len(n), len(t)) + n + t


def decode_buffer(buf, off: int = 0) -> tuple[Buffer, int]:
    dev, bid, bt, size, pid, refs, ts, seq, ln, lt = _unpack(BUFFER, buf, off)
    off += BUFFER.size
    if bt >= _NTYPES or not -1 <= dev < _MAX_DEVICES:
        raise CodecError(f"buffer with buffer_type {bt} on device {dev}")
    name = _s(buf, off, ln) if ln else ""
    trace = _s(buf, off + ln, lt) if lt else ""
    return Buffer(dev, bid, bt, size, pid, refs, ts, seq, name, trace), off + ln + lt


# ------------------------------------------------------------------------------------------------ inventory
def encode_inventory(inv: Inventory | None) -> bytes:
    devs = inv.devices if inv is not None else ()
    return U16.pack(len(devs)) + b"".join(
        DEVICE.pack(d.device_id, int(d.arch), d.num_dram_channels, d.dram_size_per_channel, d.l1_size_per_core,
                    d.total_dram, d.total_l1, int(d.available)) for d in devs)


def decode_inventory(buf, off: int = 0) -> tuple[Inventory, int]:
    (n,) = _unpack(U16, buf, off)
    off += 2
    devs = []
    for _ in range(n):
        did, arch, ch, per, l1, tot_d, tot_l1, avail = _unpack(DEVICE, buf, off)
        off += DEVICE.size
        try:
            a = Arch(arch)
        except ValueError:
            a = Arch.INVALID
        devs.append(DeviceInfo(did, a, ch, per, l1, tot_d, tot_l1, bool(avail)))
    return Inventory(tuple(devs)), off


# ------------------------------------------------------------------------------------------------ snapshot
@dataclass(slots=True)
class SnapshotRecord:
    """Everything a subscriber needs to start: live entries, totals and inventory as of ``seq``."""

    seq: int
    ts_ns: int
    inventory: Inventory
    totals: dict[int, tuple[int, list[int]]] = field(default_factory=dict)  # device -> (num_buffers, bytes by type)
    buffers: list[Buffer] = field(default_factory=list)


def encode_snapshot_head(seq: int, ts_ns: int, inventory: Inventory, totals: dict[int, tuple[int, list[int]]],
                         nbuf: int) -> bytes:
    """A SNAPSHOT record up to its buffers (which follow: ``nbuf`` × :func:`encode_buffer`)."""
    parts = [bytes((RecordKind.SNAPSHOT,)), SNAP_HEAD.pack(seq, ts_ns), encode_inventory(inventory),
             U16.pack(len(totals))]
    parts += [TOTALS.pack(dev, n, *t) for dev, (n, t) in sorted(totals.items())]
    parts.append(U32.pack(nbuf))
    return b"".join(parts)


def encode_snapshot(snap: SnapshotRecord) -> bytes:
    """SNAPSHOT record: seq, ts, inventory, u16 n + totals per device, u32 n + buffers."""
    head = encode_snapshot_head(snap.seq, snap.ts_ns, snap.inventory, snap.totals, len(snap.buffers))
    return head + b"".join([encode_buffer(b) for b in snap.buffers])


class BufferRecords:
    """The BUFFER records of a SNAPSHOT: checked when decoded, made into Buffers only while iterated.

    A million Buffers alive at once (~150 B each) would be most of an attaching monitor's memory, and
    freed they leave its heap fragmented; the registry keeps rows in columns, so nothing needs them
    all at once. Iterating again decodes again (each Buffer is new). A sequence: len, iteration,
    indexing (by decoding), equality with a list.
    """

    __slots__ = ("_buf", "_off", "_n")

    def __init__(self, buf, off: int, n: int) -> None:
        self._buf, self._off, self._n = buf, off, n

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        buf, off = self._buf, self._off
        for _ in range(self._n):
            b, off = decode_buffer(buf, off)
            yield b

    def __getitem__(self, i):
        return list(self)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (BufferRecords, list, tuple)):
            return len(other) == self._n and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BufferRecords({self._n} buffers)"


def _skip_buffers(buf, off: int, n: int) -> int:
    """Check ``n`` BUFFER records from ``off`` (what :func:`decode_buffer` checks); return the offset after them."""
    unpack, size, end = BUFFER.unpack_from, BUFFER.size, len(buf)
    for _ in range(n):
        if off + size > end:
            raise CodecError(f"record truncated: need {size} bytes at offset {off}, have {end - off}")
        dev, _bid, bt, _size, _pid, _refs, _ts, _seq, ln, lt = unpack(buf, off)
        if bt >= _NTYPES or not -1 <= dev < _MAX_DEVICES:
            raise CodecError(f"buffer with buffer_type {bt} on device {dev}")
        off += size
        if ln or lt:
            if off + ln + lt > end:
                raise CodecError("string runs past the end of the record")
            off += ln + lt
    return off


def decode_snapshot_body(buf, off: int = 0) -> SnapshotRecord:
    seq, ts = _unpack(SNAP_HEAD, buf, off)
    inv, off = decode_inventory(buf, off + SNAP_HEAD.size)
    (nt,) = _unpack(U16, buf, off)
    off += 2
    totals = {}
    for _ in range(nt):
        dev, n, *t = _unpack(TOTALS, buf, off)
        off += TOTALS.size
        totals[dev] = (n, list(t))
    (nb,) = _unpack(U32, buf, off)
    off += 4
    _skip_buffers(buf, off, nb)  # bad bytes fail here, not later while iterating
    return SnapshotRecord(seq, ts, inv, totals, BufferRecords(buf, off, nb))


# ------------------------------------------------------------------------------------------------ small records
def encode_hello(flags: int = 0, info: dict | None = None) -> bytes:
    """HELLO; ``info`` (the subscription greeting's server INFO) follows the fixed struct as UTF-8 JSON.

    Readers that know only the struct ignore the trailing bytes."""
    rec = bytes((RecordKind.HELLO,)) + HELLO.pack(MAGIC, CODEC_VERSION, flags)
    if info is not None:
        import json

        rec += json.dumps(info, sort_keys=True).encode("utf-8")
    return rec


def decode_hello_info(buf, off: int = 0) -> dict | None:
    """The INFO JSON after a HELLO's struct, or None (absent or not a JSON object)."""
    rest = bytes(buf[off + HELLO.size:])
    if not rest:
        return None
    try:
        return decode_info_body(rest)
    except CodecError:
        return None


def decode_hello_body(buf, off: int = 0) -> tuple[int, int]:
    """Returns (codec version, flags); raises CodecError on a wrong magic or an unknown version."""
    magic, version, flags = _unpack(HELLO, buf, off)
    if magic != MAGIC:
        raise CodecError(f"bad magic {magic!r}")
    if version != CODEC_VERSION:
        raise CodecError(f"unsupported codec version {version} (this build reads {CODEC_VERSION})")
    return version, flags


def encode_resync(dropped: int, reason: str) -> bytes:
    return bytes((RecordKind.RESYNC,)) + U64.pack(dropped) + reason.encode("utf-8")


def decode_resync_body(buf, off: int = 0) -> tuple[int, str]:
    (dropped,) = _unpack(U64, buf, off)
    return dropped, bytes(buf[off + 8:]).decode("utf-8", "replace")


def encode_report(text: str) -> bytes:
    return bytes((RecordKind.REPORT,)) + text.encode("utf-8")


_HEARTBEAT = struct.Struct("<qQ")


def encode_heartbeat(ts_ns: int, seq: int) -> bytes:
    """A subscription's "still here, nothing happened up to ts_ns": the server's clock for monitors."""
    return bytes((RecordKind.HEARTBEAT,)) + _HEARTBEAT.pack(ts_ns, seq)


def decode_heartbeat_body(buf, off: int = 0) -> tuple[int, int]:
    return _unpack(_HEARTBEAT, buf, off)


def _encode_json(kind: RecordKind, doc: dict) -> bytes:
    import json

    return bytes((kind,)) + json.dumps(doc, sort_keys=True).encode("utf-8")


def _decode_json_body(kind: RecordKind, buf, off: int) -> dict:
    """The JSON object a record carries after its kind byte (INFO, STATUS)."""
    import json

    try:
        doc = json.loads(bytes(buf[off:]).decode("utf-8", "replace"))
    except ValueError as exc:
        raise CodecError(f"{kind.name} record is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CodecError(f"{kind.name} record is not a JSON object")
    return doc


def encode_info(info: dict) -> bytes:
    return _encode_json(RecordKind.INFO, info)


def decode_info_body(buf, off: int = 0) -> dict:
    return _decode_json_body(RecordKind.INFO, buf, off)


def encode_status(status: dict) -> bytes:
    """A STATUS record: the server's health as a JSON object (keys in docs/EXTENSION.md)."""
    return _encode_json(RecordKind.STATUS, status)


def decode_status_body(buf, off: int = 0) -> dict:
    return _decode_json_body(RecordKind.STATUS, buf, off)


def frame(record: bytes) -> bytes:
    """Stream framing: u32 length + record."""
    return U32.pack(len(record)) + record
