"""The allocation-server wire protocol: message types, buffer types and every known layout.

Pure: bytes in, dataclasses out, and back. No sockets. The reference for every offset is
``PROTOCOL.md`` (shared with the team); the short version:

* every message is a packed little-endian ``AllocMessage`` of a fixed size that depends on the
  TT-Metal / server version that sent it: 72, 112, 128, 144 or 648 bytes;
* all layouts share a 40-byte header (type, device_id, size, buffer_type, process_id,
  buffer_id, timestamp);
* there is no length prefix, no magic, no version field: a connection's layout has to be known
  (``--protocol``) or inferred from the bytes (see :mod:`tt_memtop.server.framing`).

:func:`decode` never guesses: :func:`validate` names precisely what is wrong with a request.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from itertools import repeat

__all__ = [
    "Arch",
    "BufferType",
    "DecodeError",
    "HEADER",
    "LAYOUTS",
    "LAYOUT_SIZES",
    "Layout",
    "MAX_DEVICES",
    "MAX_SIZE",
    "PROBE_REPLY",
    "PROBE_REQUEST",
    "AllocMessage",
    "MsgType",
    "WireMessage",
    "decode",
    "decode_frames",
    "decode_header",
    "encode",
    "header_plausible",
    "validate",
]


class MsgType(IntEnum):
    """``AllocMessage::Type``. 1–12 are the original's; 64+ are tt-memtop extensions."""

    ALLOC = 1
    FREE = 2
    QUERY = 3
    RESPONSE = 4
    DUMP_REMAINING = 5
    DEVICE_INFO_QUERY = 6
    DEVICE_INFO_RESPONSE = 7
    CB_ALLOC = 8
    CB_FREE = 9
    KERNEL_LOAD = 10
    KERNEL_UNLOAD = 11
    DUMP_KERNELS = 12
    # --- tt-memtop extensions: values the original servers and clients never send. ---
    SUBSCRIBE = 64
    DUMP_REPORT = 65  # DUMP_REMAINING whose report text is sent back (docs/EXTENSION.md)
    HELLO = 66  # "do you speak the extension?" - answered with a HELLO record only


ORIGINAL_TYPES = frozenset(range(1, 13))

#: tt-memtop's silent probe (docs/EXTENSION.md): a QUERY(device 0) whose ``buffer_id`` is
#: PROBE_REQUEST. Every original answers a QUERY with a zeroed struct (only device_id and the
#: counters set) and logs nothing; ``memtop serve`` (extensions on) answers with
#: ``timestamp = PROBE_REPLY`` and ``size`` = its codec version. A different field from the
#: request's, so a server that echoed the request could not pass for ours.
PROBE_REQUEST = int.from_bytes(b"memtop?\0", "little")
PROBE_REPLY = int.from_bytes(b"TTMEMTOP", "little")
KNOWN_TYPES = frozenset(int(t) for t in MsgType)


class BufferType(IntEnum):
    """TT-Metal ``BufferType`` (0–4) plus the SHM tracker's CB/KERNEL (5, 6)."""

    DRAM = 0
    L1 = 1
    SYSTEM_MEMORY = 2
    L1_SMALL = 3
    TRACE = 4
    CB = 5
    KERNEL = 6

    @classmethod
    def parse(cls, text: str) -> BufferType:
        key = text.strip().upper().replace("-", "_")
        aliases = {"SYSTEM": "SYSTEM_MEMORY", "SYS": "SYSTEM_MEMORY", "L1SMALL": "L1_SMALL"}
        key = aliases.get(key, key)
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown buffer type {text!r} (expected one of {', '.join(t.name for t in cls)})") from None


#: Buffer types an ALLOC message may carry (the originals reject buffer_type > 4).
WIRE_BUFFER_TYPES = frozenset(range(0, 5))


class KernelType(IntEnum):
    """``buffer_type`` of KERNEL_LOAD messages (S5)."""

    APPLICATION = 0
    FABRIC = 1
    DISPATCH = 2


class Arch(IntEnum):
    """``tt::ARCH`` as sent in ``arch_type``."""

    INVALID = 0
    GRAYSKULL = 1
    WORMHOLE_B0 = 2
    BLACKHOLE = 3
    QUASAR = 4


#: Largest device count we accept (Galaxy is 32; the originals stop at 8).
MAX_DEVICES = 256
#: Largest single allocation we accept (S5's limit).
MAX_SIZE = 100 * 1024**3


class Layout(IntEnum):
    """A wire layout, named by its size in bytes."""

    V72 = 72
    V112 = 112
    V128 = 128
    V144 = 144
    V648 = 648


LAYOUT_SIZES = tuple(int(lay) for lay in Layout)

# Pads are decoded as 3-byte strings so that validation can insist they are zero.
_HEADER_FMT = "<B3siQB3siQQ"
HEADER = struct.Struct(_HEADER_FMT)
assert HEADER.size == 40

_TAIL_FMT = {
    Layout.V72: "4Q",
    Layout.V112: "4Q2Q6I",
    Layout.V128: "6Q2Q6I",
    Layout.V144: "6Q2Q6I4I",
    Layout.V648: "4Q64s512s",
}
LAYOUTS: dict[Layout, struct.Struct] = {lay: struct.Struct(_HEADER_FMT + fmt) for lay, fmt in _TAIL_FMT.items()}
for _lay, _st in LAYOUTS.items():
    assert _st.size == int(_lay), (_lay, _st.size)

_ZERO3 = b"\0\0\0"


@dataclass(slots=True)
class AllocMessage:
    """One ``AllocMessage``, whatever its layout. Fields a layout lacks stay 0 / empty."""

    type: int
    device_id: int = 0
    size: int = 0
    buffer_type: int = 0
    process_id: int = 0
    buffer_id: int = 0
    timestamp: int = 0
    dram_allocated: int = 0
    l1_allocated: int = 0
    l1_small_allocated: int = 0
    trace_allocated: int = 0
    cb_allocated: int = 0
    kernel_allocated: int = 0
    total_dram_size: int = 0
    total_l1_size: int = 0
    arch_type: int = 0
    num_dram_channels: int = 0
    dram_size_per_channel: int = 0
    l1_size_per_core: int = 0
    is_available: int = 0
    num_devices: int = 0
    ringbuffer_total_size: int = 0
    ringbuffer_used_bytes: int = 0
    ringbuffer_num_programs: int = 0
    buffer_name: str = ""
    stack_trace: str = ""
    #: bytes of the pad fields as received (pad1, pad2, and pad3 of v144); all zero when well formed
    pads: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    def with_(self, **changes) -> AllocMessage:
        return replace(self, **changes)


class DecodeError(ValueError):
    """Raised for bytes that are not a message of the given layout."""


def decode_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple:
    """Unpack just the 40-byte header: (type, pad1, device_id, size, buffer_type, pad2, pid, buffer_id, ts)."""
    return HEADER.unpack_from(buf, offset)


def header_plausible(buf: bytes | bytearray | memoryview, offset: int = 0, types=KNOWN_TYPES) -> bool:
    """Could a message start at ``offset``? (known type byte, zero pads). Used for framing."""
    if len(buf) - offset < 1:
        return False
    if buf[offset] not in types:
        return False
    if len(buf) - offset >= 4 and bytes(buf[offset + 1 : offset + 4]) != _ZERO3:
        return False
    if len(buf) - offset >= 20 and bytes(buf[offset + 17 : offset + 20]) != _ZERO3:
        return False
    return True


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode(buf: bytes | bytearray | memoryview, layout: Layout | int, offset: int = 0) -> AllocMessage:
    """Decode one message of ``layout`` at ``offset``. Raises :class:`DecodeError` if too short."""
    layout = Layout(layout)
    st = LAYOUTS[layout]
    if len(buf) - offset < st.size:
        raise DecodeError(f"need {st.size} bytes for a {st.size}-byte message, have {len(buf) - offset}")
    v = st.unpack_from(buf, offset)
    m = AllocMessage(
        type=v[0], device_id=v[2], size=v[3], buffer_type=v[4], process_id=v[6], buffer_id=v[7], timestamp=v[8],
    )
    pads = (v[1], v[5])
    if layout is Layout.V648:
        m.dram_allocated, m.l1_allocated, m.l1_small_allocated, m.trace_allocated = v[9:13]
        m.buffer_name = _cstr(v[13])
        m.stack_trace = _cstr(v[14])
    else:
        m.dram_allocated, m.l1_allocated, m.l1_small_allocated, m.trace_allocated = v[9:13]
        rest = v[13:]
        if layout in (Layout.V128, Layout.V144):
            m.cb_allocated, m.kernel_allocated = rest[0], rest[1]
            rest = rest[2:]
        if layout is not Layout.V72:
            (m.total_dram_size, m.total_l1_size, m.arch_type, m.num_dram_channels, m.dram_size_per_channel,
             m.l1_size_per_core, m.is_available, m.num_devices) = rest[:8]
        if layout is Layout.V144:
            m.ringbuffer_total_size, m.ringbuffer_used_bytes, m.ringbuffer_num_programs, pad3 = rest[8:12]
            pads = (v[1], v[5], pad3.to_bytes(4, "little"))
    m.pads = pads
    return m


# ---------------------------------------------------------------------------------------- whole chunks
#: The fields each fixed-size layout carries, in wire order (the pads are checked apart, not kept).
_HEAD_FIELDS = ("type", "device_id", "size", "buffer_type", "process_id", "buffer_id", "timestamp",
                "dram_allocated", "l1_allocated", "l1_small_allocated", "trace_allocated")
_INFO_FIELDS = ("total_dram_size", "total_l1_size", "arch_type", "num_dram_channels", "dram_size_per_channel",
                "l1_size_per_core", "is_available", "num_devices")
_CBK_FIELDS = ("cb_allocated", "kernel_allocated")
_RING_FIELDS = ("ringbuffer_total_size", "ringbuffer_used_bytes", "ringbuffer_num_programs")
WIRE_FIELDS: dict[Layout, tuple[str, ...]] = {
    Layout.V72: _HEAD_FIELDS,
    Layout.V112: _HEAD_FIELDS + _INFO_FIELDS,
    Layout.V128: _HEAD_FIELDS + _CBK_FIELDS + _INFO_FIELDS,
    Layout.V144: _HEAD_FIELDS + _CBK_FIELDS + _INFO_FIELDS + _RING_FIELDS,
}
#: The same layouts without their pad fields (pad1, pad2, and v144's pad3 skipped): one tuple per frame.
UNPADDED: dict[Layout, struct.Struct] = {
    Layout.V72: struct.Struct("<B3xiQB3xiQQ4Q"),
    Layout.V112: struct.Struct("<B3xiQB3xiQQ4Q2Q6I"),
    Layout.V128: struct.Struct("<B3xiQB3xiQQ6Q2Q6I"),
    Layout.V144: struct.Struct("<B3xiQB3xiQQ6Q2Q6I3I4x"),
}
_MESSAGE_FIELDS = tuple(f.name for f in fields(AllocMessage) if f.name != "pads")


class WireMessage(tuple):
    """What :func:`decode_frames` returns for each frame: one immutable tuple, read like an AllocMessage.

    One subclass per layout (``WIRE_CLASSES[layout]``): a named tuple of the layout's fields, with
    every AllocMessage field the layout lacks at its default (0 / "") and ``pads`` empty (the pads
    of a decoded frame are zero: framing checks them). Building one is a C-level tuple copy, several
    times cheaper than an AllocMessage; it compares equal to the AllocMessage of the same fields
    (:meth:`to_message` gives that one).
    """

    __slots__ = ()
    layout: Layout
    pads: tuple[bytes, ...] = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (AllocMessage, WireMessage)):
            return all(getattr(self, f) == getattr(other, f) for f in _MESSAGE_FIELDS)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # as AllocMessage

    def __repr__(self) -> str:
        return repr(self.to_message())

    def to_message(self) -> AllocMessage:
        return AllocMessage(**{f: getattr(self, f) for f in WIRE_FIELDS[self.layout]})

    def with_(self, **changes) -> AllocMessage:
        return self.to_message().with_(**changes)


def _wire_class(layout: Layout) -> type:
    names = WIRE_FIELDS[layout]
    ns = {f.name: f.default for f in fields(AllocMessage) if f.name not in names and f.name != "pads"}
    ns.update(__slots__=(), __module__=__name__, layout=layout, __repr__=WireMessage.__repr__,
              __doc__=f"A decoded {int(layout)}-byte frame (see WireMessage).")
    return type(f"WireMessage{int(layout)}", (namedtuple(f"_Wire{int(layout)}", names), WireMessage), ns)


WIRE_CLASSES: dict[Layout, type] = {lay: _wire_class(lay) for lay in UNPADDED}


def decode_frames(buf: bytes | bytearray | memoryview, layout: Layout | int, count: int) -> list:
    """Decode ``count`` consecutive frames of a fixed-size ``layout`` (not 648) from the start of ``buf``.

    The caller has checked the frames (framing.py: known type, zero pads). One C-level pass: no
    per-frame Python code.
    """
    layout = Layout(layout)
    it = UNPADDED[layout].iter_unpack(memoryview(buf)[: count * int(layout)])
    return list(map(tuple.__new__, repeat(WIRE_CLASSES[layout], count), it))


def _cbytes(text: str, n: int) -> bytes:
    raw = text.encode("utf-8")[: n - 1]
    return raw + b"\0" * (n - len(raw))


def encode(msg: AllocMessage, layout: Layout | int) -> bytes:
    """Encode ``msg`` in ``layout``. Fields the layout lacks are dropped; pads are zero."""
    layout = Layout(layout)
    head = (msg.type, _ZERO3, msg.device_id, msg.size, msg.buffer_type, _ZERO3, msg.process_id, msg.buffer_id,
            msg.timestamp, msg.dram_allocated, msg.l1_allocated, msg.l1_small_allocated, msg.trace_allocated)
    if layout is Layout.V72:
        return LAYOUTS[layout].pack(*head)
    if layout is Layout.V648:
        return LAYOUTS[layout].pack(*head, _cbytes(msg.buffer_name, 64), _cbytes(msg.stack_trace, 512))
    info = (msg.total_dram_size, msg.total_l1_size, msg.arch_type, msg.num_dram_channels,
            msg.dram_size_per_channel & 0xFFFFFFFF, msg.l1_size_per_core, msg.is_available, msg.num_devices)
    if layout is Layout.V112:
        return LAYOUTS[layout].pack(*head, *info)
    cbk = (msg.cb_allocated, msg.kernel_allocated)
    if layout is Layout.V128:
        return LAYOUTS[layout].pack(*head, *cbk, *info)
    ring = (msg.ringbuffer_total_size, msg.ringbuffer_used_bytes, msg.ringbuffer_num_programs, 0)
    return LAYOUTS[layout].pack(*head, *cbk, *info, *ring)


def validate(msg: AllocMessage, max_devices: int = MAX_DEVICES) -> str | None:
    """Return why ``msg`` is not a well-formed request, or None if it is.

    The checks follow S5's validation (device range, 0 < size ≤ 100 GiB, buffer_type ≤ 4 for
    ALLOC) with the 8-device limit lifted to ``max_devices``, plus checks the originals lacked
    (unknown type, non-zero padding).
    """
    t = msg.type
    if t not in KNOWN_TYPES:
        return f"unknown message type {t}"
    if any(p.strip(b"\0") for p in msg.pads):
        return "non-zero padding (wrong layout or garbage)"
    if t in (MsgType.ALLOC, MsgType.CB_ALLOC, MsgType.KERNEL_LOAD):
        if not 0 <= msg.device_id < max_devices:
            return f"device_id {msg.device_id} out of range [0, {max_devices})"
        if not 0 < msg.size <= MAX_SIZE:
            return f"absurd size {msg.size} (expected 0 < size <= {MAX_SIZE})"
        if t == MsgType.ALLOC and msg.buffer_type not in WIRE_BUFFER_TYPES:
            return f"bad buffer_type {msg.buffer_type} (expected 0..4)"
        if t == MsgType.KERNEL_LOAD and msg.buffer_type > 2:
            return f"bad kernel type {msg.buffer_type} (expected 0..2)"
    elif t in (MsgType.FREE, MsgType.CB_FREE, MsgType.KERNEL_UNLOAD):
        if not 0 <= msg.device_id < max_devices:
            return f"device_id {msg.device_id} out of range [0, {max_devices})"
    elif t in (MsgType.QUERY,):
        if not -1 <= msg.device_id < 1 << 20:
            return f"device_id {msg.device_id} out of range"
    return None
