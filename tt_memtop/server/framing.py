"""Per-connection frame reader: bytes in, whole ``AllocMessage`` s and bad-frame reports out.

A pure state machine (no sockets, no clock): the connection handler feeds every chunk it reads
with :meth:`FrameReader.feed`, tells it when the peer has gone quiet (:meth:`on_idle`) or closed
(:meth:`on_eof`), and acts on the :class:`FrameResult`. Nothing here raises on any input.

Why this exists: the wire has no length prefix, magic or version (PROTOCOL.md §1). The
originals ``recv`` one struct at a time and process short reads with stale tail bytes; we always
assemble whole frames.

**Layout detection (``layout="auto"``).** Candidates are tried smallest first (72, 112, 128,
144, 648). Candidate *L* is accepted when more than *L* bytes are buffered and a *plausible
header* (known type byte, zero pad bytes: :func:`protocol.header_plausible`) starts at *L* and at
every further multiple of *L* present in the buffer. It is rejected when one of those positions
is not plausible; then the next size is tried. This works because real clients ``memset`` their
structs, so the tail of a request is mostly zero: in a 144-byte stream the bytes at offsets 72,
112 and 128 are zero counters, i.e. type byte 0, which no message has. While the smallest
candidate not yet rejected is at least as long as the buffer, we wait. When exactly *L* bytes
are buffered and the peer goes quiet (the caller calls :meth:`on_idle` after a short idle
period) or closes (:meth:`on_eof`), *L* is accepted: a lone 72-byte DUMP request on its own
connection therefore works, as does a TT-Metal client that sends one 144-byte ALLOC and pauses.
The layout, once chosen, holds for the life of the connection. When every candidate is
contradicted (or the peer goes quiet with no candidate left that more bytes could decide), the
stream may be good frames followed by garbage in the same read: the candidate with the longest run
(at least two) of whole frames with plausible headers is taken, so those frames are applied and only
the garbage after them is reported, once.

Limits of the heuristic: a request whose tail is not zero where a smaller frame would begin
(e.g. a v648 ``buffer_name`` starting with a byte that is a known type followed by three NULs)
can make a smaller layout look right until a later frame contradicts it; a message split by the
sender across a pause longer than the idle period, with exactly *L'* < *L* bytes sent first,
would be taken for an *L'* frame. Neither happens with the public clients (blocking whole-struct
``send``). Pass an explicit layout to rule both out.

**Known layout** (forced, or once detected). A frame is a frame: at each frame start the reader
takes exactly one message of the layout, or reports exactly one bad frame of the layout's size
(unknown type, non-zero padding) and goes on with the next one, so one bad frame never costs the
next message. A *smaller* message (a 72- or 112-byte client on ``--protocol 144``, or a connection
that switches layout mid-stream) is taken at its own size when a plausible header of an original
type follows it at that size (inside a genuine frame those offsets are zero counters) or when it is
alone in the buffer and the peer is idle or closed: the originals, reading one ``sizeof`` per
``recv``, handle such a message alone in its read the same way. :attr:`FrameResult.layouts` says
the size each message was framed as.

**Whole chunks.** Once the layout is known (and is not 648), a chunk whose whole frames are all
plain messages of it (known type, zero pads, no original type byte where a smaller layout's frame
would begin) is checked and decoded at once, in C when ``tt_memtop._native.wire`` is built
(:meth:`FrameReader._run_whole`); anything else in a chunk sends it through the frame-by-frame
rules above, which give the same result for plain frames (tests/test_wire.py compares the two).
Its messages are then :class:`~tt_memtop.core.protocol.WireMessage` tuples, not AllocMessages.

**Garbage.** Off the frame grid (at the start of a stream, or after bytes that fit no frame) a
frame start that is not a plausible header is reported as a :class:`BadFrame` with
:func:`protocol.validate`'s reason and the reader scans forward to the next plausible header.
After ``max_bad_bytes`` consecutive bad bytes without a valid frame the result carries ``close``
with a message saying why; the caller should drop the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import _native
from ..core.protocol import (
    KNOWN_TYPES,
    LAYOUT_SIZES,
    ORIGINAL_TYPES,
    UNPADDED,
    WIRE_CLASSES,
    AllocMessage,
    Layout,
    WireMessage,
    decode,
    decode_frames,
    header_plausible,
    validate,
)

__all__ = ["BadFrame", "FrameReader", "FrameResult", "parse_layout"]

#: Type bytes from which tt-memtop extension messages start.
EXTENSION_MIN_TYPE = 64
DEFAULT_MAX_BAD_BYTES = 4096
_REJECTED = -1
#: bytes of a header that header_plausible checks (type, pad1 ... pad2)
_FULL_HEADER = 20
#: the compiled whole-chunk decoder (tt_memtop/_native/wire.c), or None: the pure path below
WIRE = _native.load("wire")
_KNOWN_BYTES = bytes(sorted(KNOWN_TYPES))
_ORIGINAL_BYTES = bytes(sorted(ORIGINAL_TYPES))
#: offsets of the pad bytes in a frame of each layout (pad1, pad2; v144's pad3 at its end)
_PAD_OFFSETS = {lay: (1, 2, 3, 17, 18, 19) + ((140, 141, 142, 143) if lay == Layout.V144 else ()) for lay in UNPADDED}


def parse_layout(value: Layout | int | str | None) -> Layout | None:
    """``"auto"`` / None -> None (detect), else a :class:`Layout` (accepts 72, "144", Layout.V112...)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    return Layout(int(value))


@dataclass(slots=True)
class BadFrame:
    """``nbytes`` bytes starting at stream offset ``offset`` were discarded because of ``reason``."""

    reason: str
    nbytes: int
    offset: int


@dataclass(slots=True)
class FrameResult:
    #: AllocMessages, or WireMessage tuples from a whole chunk (read alike, compare equal)
    messages: list[AllocMessage | WireMessage] = field(default_factory=list)
    #: the size each message was framed as (normally the connection's layout; see FrameReader._frame_size)
    layouts: list[Layout] = field(default_factory=list)
    bad: list[BadFrame] = field(default_factory=list)
    #: set when the connection should be closed; says why
    close: str | None = None


def _header_reason(buf: bytearray, pos: int) -> str:
    """Why the bytes at ``pos`` are not a header, in :func:`validate`'s words."""
    pads = (bytes(buf[pos + 1:pos + 4]), bytes(buf[pos + 17:pos + 20]))
    return validate(AllocMessage(type=buf[pos], pads=pads)) or "not a message header"


class FrameReader:
    """Reassembles fixed-size frames for one connection; see the module docstring for the rules."""

    def __init__(self, layout: Layout | int | str | None = "auto", *, max_bad_bytes: int = DEFAULT_MAX_BAD_BYTES,
                 candidates: tuple[int, ...] = LAYOUT_SIZES) -> None:
        self.layout: Layout | None = parse_layout(layout)
        self.forced = self.layout is not None
        self.max_bad_bytes = max_bad_bytes
        self.candidates = tuple(sorted(candidates))
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._bad_run = 0  # consecutive bad bytes since the last valid frame
        self._closed: str | None = None
        #: True while ``_buf[0]`` is where the previous whole frame ended (a bad header there is one bad frame)
        self._aligned = False
        self.frames = 0
        self.bad_bytes = 0
        self._wire = WIRE  # read at construction: tests compare both paths

    # ------------------------------------------------------------------ public
    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a whole frame."""
        return len(self._buf)

    @property
    def wants_idle(self) -> bool:
        """Would :meth:`on_idle` possibly decide something? (the caller then reads with a timeout)"""
        if not self._buf or self._closed:
            return False
        return self.layout is None or len(self._buf) < self.layout

    def feed(self, data: bytes | bytearray | memoryview) -> FrameResult:
        if self._closed:
            return FrameResult(close=self._closed)
        self._buf += data
        if self.layout in UNPADDED and len(self._buf) >= self.layout:
            return self._run_whole()
        return self._run(None)

    def on_idle(self) -> FrameResult:
        """The peer sent nothing for a while: a lone complete message may now be taken as such."""
        if self._closed:
            return FrameResult(close=self._closed)
        return self._run("idle")

    def on_eof(self) -> FrameResult:
        """The peer closed: take what is whole, report the rest as truncated."""
        if self._closed:
            return FrameResult(close=self._closed)
        res = self._run("eof")
        if self._buf and not res.close:
            expected = f"{int(self.layout)}-byte" if self.layout is not None else "complete"
            res.bad.append(BadFrame(f"truncated message: {len(self._buf)} bytes at end of stream "
                                    f"(expected a {expected} message)", len(self._buf), self._base))
            self._consume(len(self._buf))
        return res

    # ------------------------------------------------------------------ internals
    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n

    def _run(self, why: str | None) -> FrameResult:
        res = FrameResult()
        buf = self._buf
        pos = 0
        try:
            while pos < len(buf):
                layout = self.layout
                if layout is None:
                    if not header_plausible(buf, pos):
                        pos = self._skip(pos, _header_reason(buf, pos), res)
                        if res.close:
                            break
                        continue
                    size = self._detect(pos, why)
                    if size is None:
                        break
                    if size == _REJECTED:
                        pos = self._skip(pos, "no known layout fits: no plausible next header at "
                                              f"{'/'.join(map(str, self.candidates))} bytes", res)
                        if res.close:
                            break
                        continue
                    layout = self.layout = Layout(size)
                avail = len(buf) - pos
                if not header_plausible(buf, pos):
                    if avail < layout and why is None and self._aligned:
                        break  # maybe a bad frame, maybe not: wait until its whole size is here
                    if self._aligned and avail >= layout and (avail == layout or header_plausible(buf, pos + layout)):
                        # On the frame grid of a known layout: one bad frame, exactly one frame long.
                        pos = self._bad_frame(pos, layout, _header_reason(buf, pos), res)
                    else:
                        self._aligned = False
                        pos = self._skip(pos, _header_reason(buf, pos), res)
                    if res.close:
                        break
                    continue
                size = self._frame_size(pos, layout, why)
                if size is None:
                    break
                pos = self._take(pos, size, res)
                if res.close:
                    break
        except Exception as exc:  # defensive: a framing bug must never kill the server
            res.close = f"internal framing error ({type(exc).__name__}: {exc}); closing connection"
            self._closed = res.close
            pos = len(buf)
        self._consume(pos)
        return res

    def _run_whole(self) -> FrameResult:
        """The common case at C speed: every whole frame in the buffer is a plain message of the layout.

        Checked for all frames at once on strided slices (one per header byte that matters): a
        known type byte, zero pads, and no original type byte where a smaller layout's frame would
        begin (the rule of :meth:`_frame_size`; zero counters there in real requests). Then every
        frame would be taken whole by :meth:`_run`, so they are decoded in one pass. If any frame
        fails a check, :meth:`_run` does the chunk frame by frame. The partial frame at the end, if
        any, is left to :meth:`_run`, as before.
        """
        layout = self.layout
        buf = self._buf
        n = len(buf) // layout
        try:
            msgs = self._whole_frames(buf, layout, n)
        except Exception:  # noqa: BLE001 - defensive, as in _run: the frame-by-frame path decides
            msgs = None
        if msgs is None:
            return self._run(None)
        end = n * layout
        self.frames += n
        self._bad_run = 0
        self._aligned = True
        self._consume(end)
        res = FrameResult(msgs, [layout] * n)
        if buf:
            rest = self._run(None)
            res.messages += rest.messages
            res.layouts += rest.layouts
            res.bad, res.close = rest.bad, rest.close
        return res

    def _whole_frames(self, buf: bytearray, layout: Layout, n: int) -> list | None:
        """The ``n`` whole frames at the start of ``buf`` decoded, or None if one is not a plain message."""
        if self._wire is not None:
            return self._wire.decode_whole(buf, layout, WIRE_CLASSES[layout])
        end = n * layout
        if buf[0:end:layout].translate(None, _KNOWN_BYTES):
            return None
        for off in _PAD_OFFSETS[layout]:
            if buf[off:end:layout].count(0) != n:
                return None
        for size in LAYOUT_SIZES:
            if size >= layout:
                break
            if len(buf[size:end:layout].translate(None, _ORIGINAL_BYTES)) != n:
                return None
        return decode_frames(buf, layout, n)

    def _detect(self, pos: int, why: str | None) -> int | None:
        buf = self._buf
        avail = len(buf) - pos
        for size in self.candidates:
            if avail > size:
                if all(header_plausible(buf, off) for off in range(pos + size, len(buf), size)):
                    return size
                continue  # rejected: try the next size
            if avail == size and why is not None:
                return size
            if why is None:
                return None  # wait for more bytes
            break  # quiet or closed: the bigger sizes will get no more bytes to be told by
        # Every size that could be told was contradicted somewhere in the buffer: good frames, then
        # garbage, in one read? Take the frames before the garbage rather than skip them as garbage.
        size = self._longest_run(pos)
        if size is not None:
            return size
        return _REJECTED if avail > self.candidates[-1] else None

    def _longest_run(self, pos: int) -> int | None:
        """The candidate size with the most (at least two) whole frames from ``pos`` on whose headers are all
        plausible (the smaller on a tie), or None. A wrong size fails at once in real streams: its first
        boundary falls on zero counters inside the real frame."""
        buf = self._buf
        best, best_n = None, 1
        for size in self.candidates:
            n = 1
            while pos + (n + 1) * size <= len(buf) and header_plausible(buf, pos + n * size):
                n += 1
            if n > best_n:
                best, best_n = size, n
        return best

    def _frame_size(self, pos: int, layout: Layout, why: str | None) -> Layout | None:
        """Size of the frame at ``pos`` on a connection of ``layout``; None: wait for more bytes.

        Normally ``layout``. A smaller message (an older client on a bigger ``--protocol``, or a
        connection that switched layout mid-stream) is recognised, as the originals do by their
        one ``recv`` per message, when a plausible header of an original type follows it at a
        smaller layout's boundary (real clients zero the tail of their struct, so inside a genuine
        frame of ``layout`` those offsets hold zero counters), or when it is alone in the buffer and
        the peer has gone quiet or closed.
        """
        buf = self._buf
        avail = len(buf) - pos
        for size in LAYOUT_SIZES:
            if size >= layout:
                break
            if avail > size:
                nxt = pos + size
                if buf[nxt] in ORIGINAL_TYPES and header_plausible(buf, nxt, ORIGINAL_TYPES):
                    if avail - size >= _FULL_HEADER or avail >= layout:
                        return Layout(size)
                    if avail < layout:
                        return None  # looks like a smaller frame; make sure once its header is whole
            elif avail == size and why is not None:
                return Layout(size)
        if avail >= layout:
            return layout
        return None

    def _take(self, pos: int, layout: Layout, res: FrameResult) -> int:
        """Decode one whole frame at ``pos`` (header already plausible). Returns the new position."""
        msg = decode(self._buf, layout, pos)
        if any(p.strip(b"\0") for p in msg.pads):
            # The header looked right but the frame is not: drop exactly this frame.
            return self._bad_frame(pos, layout, validate(msg) or "non-zero padding", res)
        res.messages.append(msg)
        res.layouts.append(layout)
        self.frames += 1
        self._bad_run = 0
        self._aligned = True
        return pos + layout

    def _bad_frame(self, pos: int, size: int, reason: str, res: FrameResult) -> int:
        """Report the ``size`` bytes at ``pos`` as one bad frame (the connection stays on its frame grid)."""
        res.bad.append(BadFrame(reason, size, self._base + pos))
        self.bad_bytes += size
        self._bad_run += size
        if self._bad_run >= self.max_bad_bytes:
            res.close = (f"too many consecutive invalid bytes ({self._bad_run}) without a valid message - "
                         f"closing connection (likely protocol mismatch; last reason: {reason})")
            self._closed = res.close
            return len(self._buf)
        return pos + size

    def _skip(self, pos: int, reason: str, res: FrameResult, min_skip: int = 1) -> int:
        """Discard bytes from ``pos`` to the next plausible header (or the end). Returns the new position."""
        buf = self._buf
        nxt = min(pos + min_skip, len(buf))
        while nxt < len(buf) and not header_plausible(buf, nxt):
            nxt += 1
        n = nxt - pos
        res.bad.append(BadFrame(reason, n, self._base + pos))
        self.bad_bytes += n
        self._bad_run += n
        if self._bad_run >= self.max_bad_bytes:
            res.close = (f"too many consecutive invalid bytes ({self._bad_run}) without a valid message - "
                         f"closing connection (likely protocol mismatch; last reason: {reason})")
            self._closed = res.close
            return len(buf)
        return nxt
