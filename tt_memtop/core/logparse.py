"""Parse the original allocation server's stdout (every known version) back into events.

Why: most users already have logs (``allocation_server_poc > debug-llama.log``) and an
original server running. Turning its stdout into the same :class:`Event` stream our server
produces lets every pane, the replay and the report work on them unchanged.

Pure and incremental: feed raw ``bytes`` lines (no trailing newline) in order, get events
back. Formats are those of PROTOCOL.md §5 (S1–S5, the enhanced server, the 648-byte note):

* alloc / free / unknown-free lines become ALLOC, REF_INC, REF_DEC, FREE, FREE_UNKNOWN events;
  ids are decimal (S1–S3) or ``0x`` hex (S4+); an optional ``Line NNNN: `` prefix is dropped;
* a FREE line does not name the buffer type and a cleanup block does not list buffer ids,
  so the parser keeps a light *shadow* of the live buffers (key -> type, size, owner, refs).
  ``PID N is dead`` becomes one CLEANUP event per buffer that PID owns, then PROCESS_EXIT,
  exactly what :meth:`Registry.cleanup` emits; a registry rebuilt from the events therefore
  matches the server's state (checked against the log's own DUMP report in the tests);
* a ref_count / free line for a buffer the log never showed allocated (the log began late)
  is passed on with ``text`` saying so and counted in ``stats.orphans``; nothing is invented;
* ``🚀 ... started`` means a fresh server with empty state: every live buffer is removed
  with a CLEANUP event (``text="server restarted"``);
* validation / framing complaints become BAD_FRAME events carrying the line;
* blocks that are not events (DUMP_REMAINING reports, statistics, cleanup summaries, device
  detection, CB/KERNEL lines, DUMP_KERNELS, the 648-byte DUMP entries) become *records*
  (dataclasses below) collected in :attr:`LogParser.records`, each stamped with the line
  number and the sequence number of the last event before it, so order is never lost;
* anything else is counted (``unknown``, or ``malformed`` when it starts like an event line
  but does not parse) and a few samples are kept. A bad line never raises.

Speed (``benchmarks/bench_logparse.py``): alloc / free lines (> 95 % of a log) take a fast
path that cuts each line at one byte into two halves that repeat even when the line does not
(the buffer id sits in one half), each distinct half being parsed once by its part of the
full-line regex; lines that repeat whole are also served from a line cache while that pays.
Every other line goes through :func:`classify`. See :meth:`LogParser._feed`.
"""

from __future__ import annotations

import copy
import gc
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .devices import DeviceInfo, Inventory, arch_spec
from .events import Event, EventKind
from .protocol import MAX_DEVICES, Arch, BufferType
from .registry import Buffer

__all__ = [
    "CbKernelChange",
    "DeviceDetected",
    "DumpBuffer",
    "DumpGroup",
    "DumpReport",
    "KernelDump",
    "LogParser",
    "ParseStats",
    "ProcessCleanup",
    "Record",
    "ServerBanner",
    "SizeChange",
    "StatsReport",
    "TYPE_NAMES",
]

MiB = 1024 * 1024
GiB = 1024 * MiB
#: Buffer type names exactly as the servers print them.
TYPE_NAMES = {t.name: int(t) for t in BufferType}
_TYPE_BY_BYTES = {k.encode(): v for k, v in TYPE_NAMES.items()}


# ---------------------------------------------------------------------------------------- records
#: Group and buffer lines one DUMP report keeps (a real one lists the live buffers; a crafted or runaway
#: block of millions of lines is counted past this, not held)
MAX_DUMP_ENTRIES = 1 << 20


@dataclass(slots=True)
class DumpGroup:
    """``  L1: 28 buffers, 6.14453 MB total`` (``mb_text`` kept verbatim for exact comparison)."""

    device: int
    type_name: str
    count: int
    mb_text: str


@dataclass(slots=True)
class DumpBuffer:
    """``    - Buffer 0x19000: 64 KB (PID 8174, ref_count=1)`` or a 648-byte ``🔹 ID:`` entry."""

    device: int
    type_name: str  # "" when the format does not say (648-byte entries)
    buffer_id: int
    size: int  # bytes, from the KB figure (exact for multiples of 1 KiB / 6 significant digits)
    pid: int
    ref_count: int
    name: str = ""
    stack_trace: str = ""
    age_s: int | None = None


@dataclass(slots=True)
class DumpReport:
    """One DUMP_REMAINING report. ``complete`` is False for a fragment (no end line seen).

    ``seq`` is the last event before the report's last line: the state it lists is the state
    after the events up to ``seq`` (its own cleanup block included)."""

    line: int
    seq: int
    total_tracked: int | None = None
    groups: list[DumpGroup] = field(default_factory=list)
    buffers: list[DumpBuffer] = field(default_factory=list)
    total_remaining: int | None = None
    empty: bool = False  # "No buffers remaining - perfect cleanup!"
    complete: bool = False
    requested: bool = False  # preceded by "Received DUMP_REMAINING request"
    omitted: int = 0  # group / buffer lines past MAX_DUMP_ENTRIES (a crafted or runaway block), counted only

    def devices(self) -> list[int]:
        return sorted({g.device for g in self.groups})


@dataclass(slots=True)
class StatsReport:
    """``📊 Current Statistics:`` block: device -> {"buffers", "dram", "l1", "total"} (bytes)."""

    line: int
    seq: int
    devices: dict[int, dict[str, int]] = field(default_factory=dict)
    active: int | None = None


@dataclass(slots=True)
class ProcessCleanup:
    """One dead PID's cleanup: what we removed (from the shadow) and what the server said."""

    line: int
    seq: int
    pid: int
    removed: int  # buffers removed by us
    removed_bytes: int
    logged: dict[str, tuple[int, str]] = field(default_factory=dict)  # "buffers"/"CBs"/"kernels" -> (n, MB text)

    @property
    def consistent(self) -> bool:
        n = self.logged.get("buffers")
        return n is None or n[0] == self.removed


@dataclass(slots=True)
class DeviceDetected:
    """A detection line ``   Device 0: Wormhole_B0 (12GB DRAM, 171MB L1) [Local]``, with S5's raw values."""

    line: int
    seq: int
    device: int
    arch_name: str
    total_dram: int
    total_l1: int
    remote: bool | None = None
    num_dram_channels: int = 0
    dram_size_per_channel: int = 0
    l1_size_per_core: int = 0
    exact: bool = False  # totals known to the byte (S5 raw lines or matching arch defaults)

    def info(self) -> DeviceInfo:
        try:
            arch = arch_spec(self.arch_name).arch
        except ValueError:
            arch = Arch.INVALID
        return DeviceInfo(self.device, arch, self.num_dram_channels, self.dram_size_per_channel,
                          self.l1_size_per_core, self.total_dram, self.total_l1, True)


@dataclass(slots=True)
class CbKernelChange:
    """S5 ``[CB_ALLOC]`` / ``[CB_FREE]`` / ``[KERNEL_LOAD]`` / ``[KERNEL_UNLOAD]`` line.

    These lines carry neither an id nor a PID, so they cannot become registry entries; the
    per-device running totals (``total_mb``) are kept for reports.
    """

    line: int
    seq: int
    kind: str
    device: int
    kernel_type: str  # "" for CBs
    delta_mb: float
    total_mb: float


@dataclass(slots=True)
class KernelDump:
    """S5 DUMP_KERNELS block: device -> (MB, count) and the listed kernels."""

    line: int
    seq: int
    total: int | None = None
    devices: dict[int, tuple[float, int]] = field(default_factory=dict)
    kernels: list[dict] = field(default_factory=list)
    complete: bool = False


@dataclass(slots=True)
class ServerBanner:
    """Server start (state reset) or stop; ``text`` is the line."""

    line: int
    seq: int
    kind: str  # "start" | "stop"
    text: str


@dataclass(slots=True)
class SizeChange:
    """Enhanced server: ``Buffer reused with DIFFERENT size: old=.. new=..`` (it updates the stored size)."""

    line: int
    seq: int
    pid: int
    device: int
    buffer_id: int
    old: int
    new: int


Record = DumpReport | StatsReport | ProcessCleanup | DeviceDetected | CbKernelChange | KernelDump | ServerBanner | SizeChange


@dataclass(slots=True)
class ParseStats:
    """Line accounting. ``lines == events_lines + known + blank + unknown + malformed``."""

    lines: int = 0
    event_lines: int = 0  # lines that produced at least one event
    known: int = 0  # structure / noise lines understood (banners, blocks, history)
    blank: int = 0
    unknown: int = 0
    malformed: int = 0  # looked like an event line (glyph + "[PID") but did not parse
    orphans: int = 0  # ref/free lines for a buffer allocated before the log began
    samples: deque = field(default_factory=lambda: deque(maxlen=20))  # (line, text) of unknown/malformed

    def as_dict(self) -> dict:
        return {"lines": self.lines, "event_lines": self.event_lines, "known": self.known, "blank": self.blank,
                "unknown": self.unknown, "malformed": self.malformed, "orphans": self.orphans,
                "samples": [list(s) for s in self.samples]}


# ---------------------------------------------------------------------------------------- classification
# Line kinds. Hot kinds first; each classified line is a tuple (kind, *fields).
K_ALLOC, K_FREE, K_UNKNOWN_FREE, K_BLANK = 1, 2, 3, 4
(K_START, K_STOP, K_NOISE, K_LISTEN, K_DETECT, K_DETECT_DEV, K_DETECT_RAW, K_VALIDATION, K_CLEAN_START, K_CLEAN_PID,
 K_CLEAN_REMOVED, K_DUMP_START, K_DUMP_END, K_BOX_TITLE, K_TOTAL_TRACKED, K_DUMP_EMPTY, K_DUMP_DEVICE, K_DUMP_GROUP,
 K_DUMP_BUFFER, K_DUMP_REMAINING, K_D648, K_D648_TRACE, K_HISTORY, K_STATS_START, K_STATS_DEVICE, K_STATS_FIELD,
 K_STATS_END, K_CBK, K_KDUMP_TOTAL, K_KDUMP_DEVICE, K_KDUMP_FIELD, K_KDUMP_END, K_SIZE_CHANGE, K_DF_SUMMARY,
 K_DF_BUFFER, K_DF_COUNTS, K_UNKNOWN, K_MALFORMED) = range(10, 48)

_ID = rb"(0x[0-9a-f]+|0|[1-9][0-9]*)"  # exactly what int(x, 0) accepts
# The two hot formats, each written as head + split byte + tail. The split byte cannot occur
# in a valid head, so cutting a line at the byte's first occurrence and matching both halves
# is exactly matching the whole line; LogParser._feed's fast path relies on it (one-byte
# separators: bytes.partition is then a memchr).
_A_HEAD = "✓".encode() + rb" \[PID (-?\d+)\] Allocated (\d+) bytes of ([A-Z0-9_]+) on device (-?\d+) \(buffer_id"
_A_SPLIT = b"="  # the first "=" of an alloc line is buffer_id's
_A_TAIL = _ID + rb"(?:, ref_count=(\d+))?\)"
_F_HEAD = "✗".encode() + rb" \[PID (-?\d+)\] Freed buffer " + _ID + rb" on de"
_F_SPLIT = b"v"  # the first "v" of a free line is in "device"
_F_TAIL = rb"ice (-?\d+) \((\d+) bytes, (?:FINAL|ref_count=(\d+) remaining)\)"
_ALLOC_RE = re.compile(_A_HEAD + _A_SPLIT + _A_TAIL + rb"\Z")
_FREE_RE = re.compile(_F_HEAD + _F_SPLIT + _F_TAIL + rb"\Z")
_A_HEAD_RE, _A_TAIL_RE = re.compile(_A_HEAD + rb"\Z"), re.compile(_A_TAIL + rb"\Z")
_F_HEAD_RE, _F_TAIL_RE = re.compile(_F_HEAD + rb"\Z"), re.compile(_F_TAIL + rb"\Z")
# third byte of the glyphs, for the fast path's dispatch ("✓" is e2 9c 93, "✗" e2 9c 97)
_CHECK_3RD, _CROSS_3RD = "✓".encode()[2:], "✗".encode()[2:]
_UNKNOWN_RE = re.compile("⚠".encode() + rb" \[PID (-?\d+)\] Deallocation for (unknown|ALREADY FREED) buffer " + _ID
                         + rb" on device (-?\d+) \((allocated before tracking started|never tracked or allocated"
                           rb" before server started|allocs=(\d+) frees=(\d+))\)\Z")
_G_CHECK, _G_CROSS, _G_WARN = "✓".encode(), "✗".encode(), "⚠".encode()
_LINE_PREFIX = re.compile(rb"Line \d+: ")


def _alloc_head(head: bytes) -> tuple | bool:
    """``✓ [PID p] Allocated s bytes of T on device d (buffer_id`` -> (pid, size, buffer_type, device,
    shadow entry of a new buffer), or False."""
    m = _A_HEAD_RE.match(head)
    if m is None:
        return False
    pid, size, tname, dev = m.groups()
    bt = _TYPE_BY_BYTES.get(tname)
    if bt is None or bt > 4:
        return False  # classify() decides what such a line is
    pid, size = int(pid), int(size)
    return pid, size, bt, int(dev), (bt, size, pid, 1)


def _alloc_tail(tail: bytes) -> tuple | bool:
    """``0x1a0000)`` or ``0x1a0000, ref_count=2)`` -> (buffer_id, ref_count or 0), or False."""
    m = _A_TAIL_RE.match(tail)
    if m is None:
        return False
    bid, rc = m.groups()
    return int(bid, 0), int(rc) if rc else 0


def _free_head(head: bytes) -> tuple | bool:
    """``✗ [PID p] Freed buffer 0x1a0000 on de`` -> (pid, buffer_id), or False."""
    m = _F_HEAD_RE.match(head)
    if m is None:
        return False
    pid, bid = m.groups()
    return int(pid), int(bid, 0)


def _free_tail(tail: bytes) -> tuple | bool:
    """``ice 3 (4096 bytes, FINAL)`` or ``ice 3 (4096 bytes, ref_count=1 remaining)`` -> (device, size, ref_count or 0)."""
    m = _F_TAIL_RE.match(tail)
    if m is None:
        return False
    dev, size, rc = m.groups()
    return int(dev), int(size), int(rc) if rc else 0


def _int_id(text: str) -> int:
    return int(text, 16) if text[:2] == "0x" else int(text)


def _kb(text: str) -> int:
    return round(float(text) * 1024)


# Slow-path patterns on decoded text (structure lines are rare). Order matters within a glyph.
_S = re.compile
_SLOW: list[tuple[str, re.Pattern, int]] = [
    ("🚀", _S(r"🚀 (?:Enhanced )?Allocation Server started.*"), K_START),
    ("🛑", _S(r"🛑 Allocation Server stopped"), K_STOP),
    ("🔄", _S(r"🔄 Background cleanup thread (?:started|stopped).*"), K_NOISE),
    ("🔍", _S(r"🔍 Device detection.*"), K_DETECT),
    ("📋", _S(r"📋 Received DUMP_REMAINING request\.\.\."), K_DUMP_START),
    ("📋", _S(r"📋 DUMP_REMAINING complete\."), K_DUMP_END),
    ("📋", _S(r"📋 DUMP_KERNELS complete\."), K_KDUMP_END),
    ("📊", _S(r"📊 Current Statistics:"), K_STATS_START),
    ("📊", _S(r"📊 Device (\d+) - Total: ([\d.e+-]+) MB \((\d+) kernels\)"), K_KDUMP_DEVICE),
    ("║", _S(r"║\s*(.*?)\s*║"), K_BOX_TITLE),
    ("╔", _S(r"╔═+╗"), K_NOISE),
    ("╚", _S(r"╚═+╝"), K_NOISE),
    ("✓", _S(r"✓ No buffers remaining - perfect cleanup!"), K_DUMP_EMPTY),
    ("✓", _S(r"✓ \[(CB_ALLOC)\] ()Device (\d+): \+([\d.e+-]+) MB \(Total: ([\d.e+-]+) MB\)"), K_CBK),
    ("✗", _S(r"✗ \[(CB_FREE)\] ()Device (\d+): -([\d.e+-]+) MB \(Total: ([\d.e+-]+) MB\)"), K_CBK),
    ("✓", _S(r"✓ \[(KERNEL_LOAD)\] (\w+) kernel on Device (\d+): \+([\d.e+-]+) MB \(Total: ([\d.e+-]+) MB\)"), K_CBK),
    ("✗", _S(r"✗ \[(KERNEL_UNLOAD)\] (\w+) kernel on Device (\d+): -([\d.e+-]+) MB \(Total: ([\d.e+-]+) MB\)"), K_CBK),
    ("⚠", _S(r"⚠ \[PID (-?\d+)\] Buffer reused with DIFFERENT size: old=(\d+) new=(\d+) \(buffer_id=(\d+), device=(-?\d+)\)"),
     K_SIZE_CHANGE),
    ("⚠", _S(r"⚠️  Detected dead processes, cleaning up orphaned buffers\.\.\."), K_CLEAN_START),
    ("⚠", _S(r"⚠️  However, found (\d+) buffers that were DOUBLE-FREED during execution!"), K_DF_SUMMARY),
    ("⚠", _S(r"⚠️?\s+(?:\[PID -?\d+\] )?(?:Invalid (?:device_id|size|buffer_type) .*|Too many consecutive errors .*)"),
     K_VALIDATION),
    ("U", _S(r"Unknown message type: -?\d+"), K_VALIDATION),
    ("A", _S(r"Accept failed"), K_VALIDATION),
    ("E", _S(r"Error: .*"), K_VALIDATION),
    ("T", _S(r"Total tracked allocations: (\d+)"), K_TOTAL_TRACKED),
    ("T", _S(r"Total remaining buffers: (\d+)"), K_DUMP_REMAINING),
    ("T", _S(r"Total kernel allocations: (\d+)"), K_KDUMP_TOTAL),
    ("D", _S(r"Device (\d+):"), K_DUMP_DEVICE),
    ("D", _S(r"DRAM size per channel: (?P<per_channel>\d+)"), K_DETECT_RAW),
    ("N", _S(r"Number of DRAM channels: (?P<channels>\d+)"), K_DETECT_RAW),
    ("L", _S(r"L1 size per core: (?P<l1_per_core>\d+)"), K_DETECT_RAW),
    ("G", _S(r"Grid size: (?P<grid_x>\d+)x(?P<grid_y>\d+)"), K_DETECT_RAW),
    ("A", _S(r"Arch: (?P<arch>\w+)"), K_DETECT_RAW),
    ("I", _S(r"Is remote: (?P<remote>[01])"), K_DETECT_RAW),
    ("B", _S(r"Buffer (0x[0-9a-f]+|\d+) on device (-?\d+):"), K_DF_BUFFER),
    ("🔹", _S(r"🔹 ID: (0x[0-9a-f]+|\d+) \| Size: ([\d.e+]+) KB \| PID: (-?\d+) \| Refs: (\d+)(?: \| Age: (\d+)s)?"
             r"(?: \| 📝 (.*))?"), K_D648),
    ("└", _S(r"└─ 📍 ?(.*)"), K_D648_TRACE),
]
# Indented lines (first non-space character decides).
_INDENTED: list[tuple[re.Pattern, int]] = [
    (_S(r" {3}Listening on: (.*)"), K_LISTEN),
    (_S(r" {3}Press Ctrl\+C to stop"), K_NOISE),
    (_S(r" {3}Device (\d+): (\w+) \((\d+)GB DRAM, (\d+)MB L1\)(?: \[(Local|Remote)\])?"), K_DETECT_DEV),
    (_S(r" {3}(?:Warning: Found \d+ devices, limiting to \d+|No (?:PCIe )?devices detected|Server will track allocations.*"
        r"|Total: \d+ (?:PCIe )?device\(s\) detected|Warning: Could not query device .*|Error during device detection: .*)"),
     K_DETECT),
    (_S(r" {3}PID (-?\d+) is dead, removing its buffers\.\.\."), K_CLEAN_PID),
    (_S(r" {3}✓ Removed (\d+) (buffers|CBs|kernels) \(([\d.e+-]+) MB\) from PID (-?\d+)"), K_CLEAN_REMOVED),
    (_S(r" {3}Last \d+ events for this buffer:"), K_HISTORY),
    (_S(r" +(?:ALLOC|FREE|REUSE) size=\d+ pid=-?\d+ ref=-?\d+"), K_HISTORY),
    (_S(r" {6}History \(allocs=\d+ frees=\d+\):"), K_HISTORY),
    (_S(r"  History:"), K_HISTORY),
    (_S(r"  Total allocs: (\d+), Total frees: (\d+)"), K_DF_COUNTS),
    (_S(r"  Device (\d+):"), K_STATS_DEVICE),
    (_S(r" {4}(Buffers): (\d+)()"), K_STATS_FIELD),
    (_S(r" {4}(DRAM|L1|Total): (\d+) bytes(?: \(([\d.e+-]+) KB\))?"), K_STATS_FIELD),
    (_S(r" {4}(DRAM|L1|Total): ()([\d.e+-]+) KB"), K_STATS_FIELD),  # enhanced server prints KB only
    (_S(r"  Active allocations: (\d+)"), K_STATS_END),
    (_S(r"  ([A-Z0-9_]+): (\d+) buffers, ([\d.e+-]+) MB total"), K_DUMP_GROUP),
    (_S(r" {4}- Buffer (0x[0-9a-f]+|\d+): ([\d.e+-]+) KB \(PID (-?\d+), ref_count=(-?\d+)\)"), K_DUMP_BUFFER),
    (_S(r"  [┌└]─+[┐┘]"), K_NOISE),
    (_S(r"  │ (Kernel ID): (0x[0-9a-f]+)"), K_KDUMP_FIELD),
    (_S(r"  │   (Size): +([\d.e+-]+) KB"), K_KDUMP_FIELD),
    (_S(r"  │   (Owner PID): +(-?\d+)"), K_KDUMP_FIELD),
    (_S(r"  │   (Age): +(\d+) seconds"), K_KDUMP_FIELD),
    (_S(r"  │"), K_NOISE),
    (_S(r" *└─ 📍 ?(.*)"), K_D648_TRACE),
    (_S(r" *(🔹 .*)"), K_D648),  # indented 648-byte entry: re-classified without the indent
]


def classify(raw: bytes) -> tuple:
    """Classify one line (context-free). Never raises."""
    c = raw[:3]
    if c == _G_CHECK:
        m = _ALLOC_RE.match(raw)
        if m is not None:
            pid, size, tname, dev, bid, rc = m.groups()
            bt = _TYPE_BY_BYTES.get(tname)
            if bt is not None and bt <= 4:
                dev = int(dev)
                bid = int(bid, 0)
                return (K_ALLOC, int(pid), dev, bt, bid, int(size), int(rc) if rc else 0)
    elif c == _G_CROSS:
        m = _FREE_RE.match(raw)
        if m is not None:
            pid, bid, dev, size, rc = m.groups()
            dev = int(dev)
            bid = int(bid, 0)
            return (K_FREE, int(pid), dev, 0, bid, int(size), int(rc) if rc else 0)
    elif c == _G_WARN:
        m = _UNKNOWN_RE.match(raw)
        if m is not None:
            pid, variant, bid, dev, why, allocs, frees = m.groups()
            if variant == b"unknown":
                text = why.decode()
            else:
                text = f"ALREADY FREED (allocs={int(allocs)} frees={int(frees)})"
            return (K_UNKNOWN_FREE, int(pid), int(bid, 0), int(dev), text)
    elif not raw.strip():
        return (K_BLANK,)
    elif raw[:5] == b"Line ":
        m = _LINE_PREFIX.match(raw)
        if m is not None:
            return classify(raw[m.end():])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return (K_MALFORMED if b"[PID" in raw[:12] else K_UNKNOWN, raw.decode("utf-8", "replace"))
    return _classify_text(text.rstrip())


def _classify_text(text: str) -> tuple:
    if text[:1] == " ":
        for pat, kind in _INDENTED:
            m = pat.fullmatch(text)
            if m is not None:
                if kind == K_D648 and text.lstrip() != text:
                    return _classify_text(text.lstrip())
                return (kind, *m.groups())
    else:
        first = text[:1]
        for glyph, pat, kind in _SLOW:
            if glyph == first:
                m = pat.fullmatch(text)
                if m is not None:
                    if kind == K_DETECT_RAW:
                        return (kind, tuple(m.groupdict().items()))
                    return (kind, *m.groups()) if kind != K_VALIDATION else (kind, text)
    if text[:1] in "✓✗⚠" and "[PID" in text[:12]:
        return (K_MALFORMED, text)
    return (K_UNKNOWN, text)


# ---------------------------------------------------------------------------------------- the parser
_new = object.__new__
_ALLOC, _REF_INC, _REF_DEC, _FREE = EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE
_FREE_UNKNOWN, _CLEANUP, _EXIT = EventKind.FREE_UNKNOWN, EventKind.CLEANUP, EventKind.PROCESS_EXIT
_BAD, _DUMP = EventKind.BAD_FRAME, EventKind.DUMP


def _event(kind: EventKind, seq: int, pid: int, device: int, buffer_type: int, buffer_id: int, size: int,
           ref_count: int, text: str = "") -> Event:
    # Event.__init__ takes keywords; setting the slots directly is ~3x faster on the hot path.
    ev = _new(Event)
    ev.seq = seq
    ev.ts_ns = 0
    ev.kind = kind
    ev.pid = pid
    ev.device = device
    ev.buffer_type = buffer_type
    ev.buffer_id = buffer_id
    ev.size = size
    ev.ref_count = ref_count
    ev.name = ""
    ev.stack_trace = ""
    ev.text = text
    return ev


_ORPHAN = "buffer allocated before the log began"
#: Buffer ids of the per-device CB and KERNEL totals taken from S5's ``[CB_*]`` / ``[KERNEL_*]`` lines
#: (see ``LogParser(cb_kernel_totals=True)``): those lines carry neither an id nor a PID, only the
#: server's running total, so each device gets one entry per kind whose size is that total.
LOG_CB_TOTAL_ID = 0xFFFF_FFFF_FFFF_0CB0
LOG_KERNEL_TOTAL_ID = 0xFFFF_FFFF_FFFF_0CE0
_CBK_ENTRY = {"CB_ALLOC": (int(BufferType.CB), LOG_CB_TOTAL_ID), "CB_FREE": (int(BufferType.CB), LOG_CB_TOTAL_ID),
              "KERNEL_LOAD": (int(BufferType.KERNEL), LOG_KERNEL_TOTAL_ID),
              "KERNEL_UNLOAD": (int(BufferType.KERNEL), LOG_KERNEL_TOTAL_ID)}
_CBK_ENTRY_ID = {int(BufferType.CB): LOG_CB_TOTAL_ID, int(BufferType.KERNEL): LOG_KERNEL_TOTAL_ID}
_CBK_NAME = {int(BufferType.CB): "CB total (S5 log lines carry no ids)",
             int(BufferType.KERNEL): "kernel total (S5 log lines carry no ids)"}


class LogParser:
    """Incremental parser: :meth:`feed` lines in order, read events back; records pile up in
    :attr:`records` (drain with :meth:`take_records`)."""

    CACHE_LIMIT = 1 << 16
    ADAPT_LINES = 1 << 14  # lines between two decisions about the line cache (see _adapt)
    FAST_PATH = True  # False sends every line through classify() (for tests: both give the same result)

    def __init__(self, first_seq: int = 0, *, line_as_ts: bool = False, cb_kernel_totals: bool = False) -> None:
        #: stamp each event's ``ts_ns`` with its line number (logs have no clock; reports want positions)
        self.line_as_ts = line_as_ts
        #: turn S5 CB / KERNEL lines into one live entry per device and kind holding the server's running
        #: total (LOG_CB_TOTAL_ID / LOG_KERNEL_TOTAL_ID), so that monitors show CB and KERNEL bytes
        self.cb_kernel_totals = cb_kernel_totals
        self._cbk: dict[tuple[int, int], int] = {}  # (device, buffer_type) -> bytes, with cb_kernel_totals
        self.stats = ParseStats()
        self.records: list[Record] = []
        self.seq = first_seq
        self.line = 0
        # shadow of live buffers: (device, buffer_id) -> (buffer_type, size, owner_pid, ref_count); entries are
        # immutable (a new buffer's entry is shared with the classification cache), changes replace them
        self._live: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        # line caches (see _feed): alloc / free lines -> their tuple, other lines -> classify()
        self._hot: dict[bytes, tuple] = {}
        self._cache: dict[bytes, tuple] = {}
        self._hot_on = True  # whether alloc / free lines use their line cache (see _adapt)
        self._hot_stats = [0, 0]  # [lines, alloc / free lines that missed the cache] since the last decision
        self._hot_retry = 0  # line number from which to try the cache again
        self._hot_backoff = self.ADAPT_LINES
        # halves of alloc / free lines (see _feed): alloc head, alloc tail, free head, free tail
        self._parts: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
        self._block: object | None = None  # the record being assembled (dump, stats, kernel dump)
        self._dev: int = 0  # current "Device N:" inside a block
        self._type: str = ""
        self._cleanup: ProcessCleanup | None = None
        self._raw: dict[str, object] = {}  # pending S5 detection values
        self._detected: dict[int, DeviceDetected] = {}
        self._kernel: dict | None = None

    # ------------------------------------------------------------------ public API
    def feed(self, lines: Iterable[bytes]) -> list[Event]:
        """Parse complete lines (bytes, without newline). Returns the events they produced.

        The cyclic garbage collector is paused for the call: a chunk creates hundreds of
        thousands of acyclic objects, and collecting them while they are still referenced
        more than halves the speed. Reference counting is unaffected.
        """
        if not gc.isenabled():
            return self._feed(lines)
        gc.disable()
        try:
            return self._feed(lines)
        finally:
            gc.enable()

    def _feed(self, lines: Iterable[bytes]) -> list[Event]:
        """The loop. Each line is classified into a tuple (``K_*`` kind first), then handled.

        Classification, fastest first:

        * **line cache**: a model run repeats the same lines every iteration, so the tuple of
          each distinct line is cached and most lines cost one dict look-up. While most lines
          are new (model load, or a log where ids never repeat) the cache would only cost
          time and memory, so alloc / free lines then skip it (:meth:`_adapt` decides);
        * **fast path** for alloc / free lines (> 95 % of a real log): such a line differs
          from its neighbours mostly in one field (the buffer id), so it is cut with one
          ``bytes.partition`` into two halves that do repeat (see ``_A_HEAD``, ``_F_HEAD``):
          alloc = head (pid, size, type, device) + tail (id, ref_count), free = head (pid, id)
          + tail (device, size, ref_count). Each distinct half is matched once against its
          part of the full-line regex and its fields are cached (``_parts``), so a new line
          costs a partition and two dict look-ups, however many distinct ids the log has;
        * **general path**: every other line, and any whose halves are not both valid, goes
          through :func:`classify`; non-event lines then go to :meth:`_structure`.

        Alloc / free tuples are ``(kind, pid, device, buffer_type, buffer_id, size, ref_count,
        key, entry)``; the Event is built inline (see :func:`_event`) and the shadow updated.
        """
        out: list[Event] = []
        app = out.append
        cache = self._cache
        cache_get = cache.get
        hot = self._hot
        hot_get = hot.get
        use_hot = self._hot_on or self.line >= self._hot_retry
        limit = self.CACHE_LIMIT
        a_heads, a_tails, f_heads, f_tails = self._parts
        a_head_get, a_tail_get, f_head_get, f_tail_get = a_heads.get, a_tails.get, f_heads.get, f_tails.get
        learn = self._learn
        check_3rd, cross_3rd = (_CHECK_3RD, _CROSS_3RD) if self.FAST_PATH else (None, None)
        live = self._live
        live_get, live_pop = live.get, live.pop
        new = _new
        line_ts = self.line_as_ts
        stats = self.stats
        seq = seq_start = self.seq
        lineno = start = self.line
        misses = 0
        slow_events = slow_lines = 0  # events / event lines from structure lines (the rest are 1:1)
        for lineno, raw in enumerate(lines, start + 1):  # noqa: B007 - lineno is read after the loop
            c = hot_get(raw) if use_hot else None
            if c is not None:  # line cache hit
                kind, pid, dev, bt, bid, size, rc, key, entry = c
            else:
                kind = 0
                third = raw[2:3]
                if third == check_3rd:  # fast path, alloc
                    head, _, tail = raw.partition(_A_SPLIT)
                    h = a_head_get(head)
                    if h is None:
                        h = learn(a_heads, head, _alloc_head)
                    t = a_tail_get(tail)
                    if t is None:
                        t = learn(a_tails, tail, _alloc_tail)
                    if h and t:
                        kind = K_ALLOC
                        pid, size, bt, dev, entry = h
                        bid, rc = t
                elif third == cross_3rd:  # fast path, free
                    head, _, tail = raw.partition(_F_SPLIT)
                    h = f_head_get(head)
                    if h is None:
                        h = learn(f_heads, head, _free_head)
                    t = f_tail_get(tail)
                    if t is None:
                        t = learn(f_tails, tail, _free_tail)
                    if h and t:
                        kind = K_FREE
                        pid, bid = h
                        dev, size, rc = t
                        bt, entry = 0, None
                if kind:
                    key = (dev, bid)
                    if use_hot:
                        misses += 1
                        if len(hot) >= limit:
                            hot.clear()
                        hot[raw] = (kind, pid, dev, bt, bid, size, rc, key, entry)
                else:  # general path
                    c = cache_get(raw)
                    if c is None:
                        c = classify(raw)
                        if len(cache) >= limit:
                            cache.clear()
                        cache[raw] = c
                    kind = c[0]
                    if kind == K_ALLOC or kind == K_FREE:  # e.g. behind a "Line NNNN: " prefix
                        _, pid, dev, bt, bid, size, rc = c
                        key, entry = (dev, bid), (bt, size, pid, 1)
                    else:
                        if kind == K_UNKNOWN_FREE:
                            seq += 1
                            ev = _event(_FREE_UNKNOWN, seq, c[1], c[3], 0, c[2], 0, 0, c[4])
                            if line_ts:
                                ev.ts_ns = lineno
                            app(ev)
                        elif kind == K_BLANK:
                            stats.blank += 1
                        else:
                            self.seq, self.line = seq, lineno
                            before = len(out)
                            self._structure(c, out)
                            if len(out) > before:
                                slow_events += len(out) - before
                                slow_lines += 1
                                stats.known -= 1
                            seq = self.seq
                        continue
            seq += 1
            ev = new(Event)
            ev.seq = seq
            ev.ts_ns = lineno if line_ts else 0
            ev.pid = pid
            ev.name = ev.stack_trace = ev.text = ""
            ev.device = dev
            ev.buffer_id = bid
            ev.size = size
            if kind == K_ALLOC:
                if rc:
                    ev.kind = _REF_INC
                    ev.ref_count = rc
                    ent = live_get(key)
                    if ent is None:
                        stats.orphans += 1
                        ev.buffer_type = bt
                        ev.text = _ORPHAN
                    else:
                        live[key] = (ent[0], ent[1], ent[2], rc)
                        ev.buffer_type = ent[0]
                else:
                    ev.kind = _ALLOC
                    ev.ref_count = 1
                    ev.buffer_type = bt
                    live[key] = entry
            else:
                ev.ref_count = rc
                if rc:
                    ev.kind = _REF_DEC
                    ent = live_get(key)
                    if ent is not None:
                        live[key] = (ent[0], ent[1], ent[2], rc)
                else:
                    ev.kind = _FREE
                    ent = live_pop(key, None)
                if ent is None:
                    stats.orphans += 1
                    ev.buffer_type = 0
                    ev.text = _ORPHAN
                else:
                    ev.buffer_type = ent[0]
            app(ev)
        stats.lines += lineno - start
        stats.event_lines += seq - seq_start - slow_events + slow_lines
        self.seq, self.line = seq, lineno
        if use_hot:
            self._adapt(lineno - start, misses)
        return out

    def _adapt(self, lines: int, misses: int) -> None:
        """Keep alloc / free lines in the line cache only while it pays.

        Decided every ``ADAPT_LINES`` lines: when more than half of them were new (model
        load, a log whose ids never repeat) the cache is skipped for the next ``backoff``
        lines, doubling each time the retry fails; a mostly-hit period resets the backoff.
        Only speed depends on this: both ways give the same tuples.
        """
        st = self._hot_stats
        st[0] += lines
        st[1] += misses
        if st[0] < self.ADAPT_LINES:
            return
        if st[1] * 2 > st[0]:
            self._hot_on = False
            self._hot_retry = self.line + self._hot_backoff
            self._hot_backoff = min(self._hot_backoff * 2, 64 * self.ADAPT_LINES)
        else:
            self._hot_on = True
            self._hot_backoff = self.ADAPT_LINES
        st[0] = st[1] = 0

    def _learn(self, cache: dict, part: bytes, parse) -> tuple | bool:
        """Parse one half of an alloc / free line (fast path) and remember the result, valid or not."""
        if len(cache) >= self.CACHE_LIMIT:
            cache.clear()
        value = cache[part] = parse(part)
        return value

    def feed_text(self, text: str) -> list[Event]:
        """Convenience for tests and small inputs."""
        return self.feed(text.encode("utf-8").splitlines())

    def finish(self) -> list[Event]:
        """End of input: close any open block (a DUMP fragment becomes an incomplete record)."""
        self._close_block()
        return []

    def clone(self) -> LogParser:
        """An independent copy of the parsing state (for replay checkpoints); records are not copied."""
        other = copy.copy(self)
        other.stats = copy.deepcopy(self.stats)
        other.records = []
        other._live = dict(self._live)
        other._cbk = dict(self._cbk)
        other._hot_stats = list(self._hot_stats)
        other._block = copy.deepcopy(self._block)
        other._cleanup = copy.deepcopy(self._cleanup)
        other._raw = dict(self._raw)
        other._detected = dict(self._detected)
        other._kernel = dict(self._kernel) if self._kernel is not None else None
        return other  # the caches are context-free and stay shared

    def take_records(self) -> list[Record]:
        out, self.records = self.records, []
        return out

    def state_size(self) -> int:
        """Live entries in the shadow state (what a :meth:`clone` costs, roughly: one dict entry each)."""
        return len(self._live) + len(self._cbk)

    def live_buffers(self) -> list[Buffer]:
        """The shadow state as registry buffers (for a Snapshot)."""
        out = [Buffer(d, b, e[0], e[1], e[2], e[3]) for (d, b), e in self._live.items()]
        out += [Buffer(d, _CBK_ENTRY_ID[t], t, size, 0, 1, name=_CBK_NAME[t]) for (d, t), size in self._cbk.items()]
        return out

    @property
    def inventory(self) -> Inventory:
        """Devices named by the log's detection block (empty for S1 logs)."""
        if not self._detected:
            return Inventory()
        infos = []
        # positions are device ids: fill gaps, but never past MAX_DEVICES (a log line may name device 2**31-1)
        for i in range(min(max(self._detected), MAX_DEVICES - 1) + 1):
            det = self._detected.get(i)
            infos.append(det.info() if det else DeviceInfo(i, Arch.INVALID, 0, 0, 0, 0, 0, False))
        return Inventory(tuple(infos))

    # ------------------------------------------------------------------ structure lines
    def _record(self, rec: Record) -> None:
        self.records.append(rec)

    def _emit(self, out: list[Event], ev: Event) -> None:
        self.seq += 1
        ev.seq = self.seq
        if self.line_as_ts:
            ev.ts_ns = self.line
        out.append(ev)

    def _close_block(self) -> None:
        blk = self._block
        if blk is not None:
            self._flush_kernel()
            self._record(blk)
            self._block = None

    def _structure(self, c: tuple, out: list[Event]) -> None:
        kind = c[0]
        st = self.stats
        st.known += 1
        blk = self._block
        if kind == K_START:
            self._close_block()
            self._cleanup = None
            for (dev, bid), e in list(self._live.items()):
                self._emit(out, _event(_CLEANUP, 0, e[2], dev, e[0], bid, e[1], e[3], "server restarted"))
            self._live.clear()
            for (dev, btype), size in list(self._cbk.items()):
                self._emit(out, _event(_CLEANUP, 0, 0, dev, btype, _CBK_ENTRY_ID[btype], size, 1, "server restarted"))
            self._cbk.clear()
            self._record(ServerBanner(self.line, self.seq, "start", "Allocation Server started"))
        elif kind == K_STOP:
            self._close_block()
            self._record(ServerBanner(self.line, self.seq, "stop", "Allocation Server stopped"))
        elif kind == K_BOX_TITLE:
            if "KERNEL" in c[1]:
                self._close_block()
                self._block = KernelDump(self.line, self.seq)
            elif "REMAINING" in c[1]:
                d = blk if isinstance(blk, DumpReport) else None
                if d is None or d.total_tracked is not None or d.groups or d.buffers:
                    self._close_block()  # a new report (the previous one was a fragment)
                    self._block = DumpReport(self.line, self.seq)
        elif kind in (K_NOISE, K_LISTEN, K_DETECT, K_HISTORY, K_DF_BUFFER, K_DF_COUNTS, K_DF_SUMMARY):
            pass
        elif kind == K_DETECT_RAW:
            self._detect_raw(c)
        elif kind == K_DETECT_DEV:
            self._detect_device(c)
        elif kind == K_VALIDATION:
            self._emit(out, _event(_BAD, 0, 0, 0, 0, 0, 0, 0, c[1]))
        elif kind == K_SIZE_CHANGE:
            pid, old, new, bid, dev = (int(x) for x in c[1:])
            ent = self._live.get((dev, bid))
            if ent is not None:
                self._live[(dev, bid)] = (ent[0], new, ent[2], ent[3])
            self._record(SizeChange(self.line, self.seq, pid, dev, bid, old, new))
        elif kind == K_CLEAN_START:
            self._cleanup = None
        elif kind == K_CLEAN_PID:
            self._clean_pid(int(c[1]), out)
        elif kind == K_CLEAN_REMOVED:
            n, what, mb, pid = int(c[1]), c[2], c[3], int(c[4])
            cl = self._cleanup
            if cl is None or cl.pid != pid:
                st.known -= 1
                st.malformed += 1
                st.samples.append((self.line, f"cleanup summary without its 'PID {pid} is dead' line"))
            else:
                cl.logged[what] = (n, mb)
        elif kind == K_DUMP_START:
            self._close_block()
            self._block = DumpReport(self.line, self.seq, requested=True)
            self._emit(out, _event(_DUMP, 0, 0, 0, 0, 0, 0, 0, "DUMP_REMAINING"))
        elif kind == K_DUMP_END:
            if isinstance(blk, DumpReport):
                blk.complete = True
                blk.seq = self.seq
                self._close_block()
        elif kind == K_TOTAL_TRACKED:
            self._dump(start=True).total_tracked = int(c[1])
        elif kind == K_DUMP_EMPTY:
            self._dump(start=True).empty = True
        elif kind == K_DUMP_DEVICE:
            self._dump(start=True)
            self._dev = int(c[1])
        elif kind == K_DUMP_GROUP:
            self._type = c[1]
            d = self._dump()
            if len(d.groups) < MAX_DUMP_ENTRIES:
                d.groups.append(DumpGroup(self._dev, c[1], int(c[2]), c[3]))
            else:
                d.omitted += 1
        elif kind == K_DUMP_BUFFER:
            d = self._dump()
            if len(d.buffers) < MAX_DUMP_ENTRIES:
                d.buffers.append(DumpBuffer(self._dev, self._type, _int_id(c[1]), _kb(c[2]), int(c[3]), int(c[4])))
            else:
                d.omitted += 1
        elif kind == K_DUMP_REMAINING:
            self._dump().total_remaining = int(c[1])
            if not self._dump().requested:  # a server without the request/complete lines (none known)
                self._dump().complete = True
        elif kind == K_D648:
            bid, kb, pid, refs, age, name = c[1:]
            d = self._dump(start=True)
            if len(d.buffers) >= MAX_DUMP_ENTRIES:
                d.omitted += 1
            else:
                d.buffers.append(DumpBuffer(self._dev, "", _int_id(bid), _kb(kb), int(pid), int(refs),
                                            (name or "").strip(), age_s=int(age) if age else None))
        elif kind == K_D648_TRACE:
            d = self._dump(start=True)
            if d.buffers and not d.omitted:  # (past the limit, the last buffer kept is not the one traced)
                b = d.buffers[-1]
                b.stack_trace = f"{b.stack_trace}\n{c[1]}" if b.stack_trace else c[1]
        elif kind == K_STATS_START:
            self._close_block()
            self._block = StatsReport(self.line, self.seq)
        elif kind == K_STATS_DEVICE:
            if isinstance(blk, StatsReport):
                self._dev = int(c[1])
                blk.devices[self._dev] = {}
            else:
                self._misplaced(c)
        elif kind == K_STATS_FIELD:
            if isinstance(blk, StatsReport) and self._dev in blk.devices:
                name, exact, kb = c[1], c[2], c[3]
                blk.devices[self._dev][name.lower()] = int(exact) if exact else _kb(kb)
            else:
                self._misplaced(c)
        elif kind == K_STATS_END:
            if isinstance(blk, StatsReport):
                blk.active = int(c[1])
                self._close_block()
            else:
                self._misplaced(c)
        elif kind == K_CBK:
            what, ktype, dev, delta, total = c[1:]
            self._record(CbKernelChange(self.line, self.seq, what, int(dev), ktype, float(delta), float(total)))
            if self.cb_kernel_totals:
                self._cb_kernel_total(out, what, int(dev), float(total))
        elif kind == K_KDUMP_TOTAL:
            if not isinstance(blk, KernelDump):
                self._close_block()
                self._block = blk = KernelDump(self.line, self.seq)
            blk.total = int(c[1])
        elif kind == K_KDUMP_DEVICE:
            if isinstance(blk, KernelDump):
                self._flush_kernel()
                self._dev = int(c[1])
                blk.devices[self._dev] = (float(c[2]), int(c[3]))
            else:
                self._misplaced(c)
        elif kind == K_KDUMP_FIELD:
            if isinstance(blk, KernelDump):
                self._kernel_field(c[1], c[2])
            else:
                self._misplaced(c)
        elif kind == K_KDUMP_END:
            if isinstance(blk, KernelDump):
                blk.complete = True
                self._close_block()
        elif kind == K_MALFORMED:
            st.known -= 1
            st.malformed += 1
            st.samples.append((self.line, c[1]))
        else:  # K_UNKNOWN
            st.known -= 1
            st.unknown += 1
            st.samples.append((self.line, c[1]))

    def _cb_kernel_total(self, out: list[Event], what: str, dev: int, total_mb: float) -> None:
        """The per-device CB / KERNEL entry follows the line's ``Total:`` (6 significant digits, as printed)."""
        btype, bid = _CBK_ENTRY[what]
        size = max(0, round(total_mb * 1048576))
        key = (dev, btype)
        old = self._cbk.get(key)
        if size == (old or 0):
            return
        if size:
            self._cbk[key] = size
            ev = _event(_ALLOC, 0, 0, dev, btype, bid, size, 1)
            ev.name = _CBK_NAME[btype]
        else:
            del self._cbk[key]
            ev = _event(_FREE, 0, 0, dev, btype, bid, old, 0)
        self._emit(out, ev)

    def _misplaced(self, c: tuple) -> None:
        st = self.stats
        st.known -= 1
        st.unknown += 1
        st.samples.append((self.line, f"{c!r} outside its block"))

    def _dump(self, start: bool = False) -> DumpReport:
        blk = self._block
        if not isinstance(blk, DumpReport):
            # a DUMP fragment (e.g. quoted in a note) without the request line
            self._close_block()
            blk = self._block = DumpReport(self.line, self.seq)
        blk.seq = self.seq  # the state it lists is the one after its own cleanup block
        return blk

    def _clean_pid(self, pid: int, out: list[Event]) -> None:
        victims = [(k, e) for k, e in self._live.items() if e[2] == pid]
        total = 0
        for (dev, bid), e in victims:
            del self._live[(dev, bid)]
            total += e[1]
            self._emit(out, _event(_CLEANUP, 0, pid, dev, e[0], bid, e[1], e[3]))
        if victims:
            self._emit(out, _event(_EXIT, 0, pid, 0, 0, 0, total, len(victims)))
        self._cleanup = ProcessCleanup(self.line, self.seq, pid, len(victims), total)
        self._record(self._cleanup)

    def _detect_raw(self, c: tuple) -> None:
        for key, value in c[1]:
            self._raw[key] = value if key == "arch" else int(value)

    def _detect_device(self, c: tuple) -> None:
        dev, arch, gb, mb, where = int(c[1]), c[2], int(c[3]), int(c[4]), c[5]
        det = DeviceDetected(self.line, self.seq, dev, arch, gb * GiB, mb * MiB,
                             None if where is None else where == "Remote")
        spec = None
        try:
            spec = arch_spec(arch)
        except ValueError:
            pass
        raw, self._raw = self._raw, {}
        if raw:  # S5 printed the exact figures just before this line
            det.num_dram_channels = raw.get("channels", 0)
            det.dram_size_per_channel = raw.get("per_channel", 0)
            det.l1_size_per_core = raw.get("l1_per_core", 0)
            if "remote" in raw and det.remote is None:
                det.remote = bool(raw["remote"])
            if det.num_dram_channels and det.dram_size_per_channel and det.l1_size_per_core and "grid_y" in raw:
                det.total_dram = det.num_dram_channels * det.dram_size_per_channel
                det.total_l1 = det.l1_size_per_core * raw["grid_x"] * raw["grid_y"]
                det.exact = True
        if not det.exact and spec is not None and spec.total_dram // GiB == gb and spec.total_l1 // MiB == mb:
            # The line's GB/MB are integer divisions; the arch defaults explain them exactly.
            det.total_dram, det.total_l1 = spec.total_dram, spec.total_l1
            det.num_dram_channels, det.dram_size_per_channel = spec.num_dram_channels, spec.dram_size_per_channel
            det.l1_size_per_core = spec.l1_size_per_core
            det.exact = True
        self._detected[dev] = det
        self._record(det)

    def _kernel_field(self, name: str, value: str) -> None:
        if value.startswith("0x"):  # "Kernel ID" opens an entry
            self._flush_kernel()
            self._kernel = {"device": self._dev, "kernel_id": int(value, 16)}
        elif self._kernel is not None:
            key = {"Size": "size", "Owner PID": "pid", "Age": "age_s"}[name]
            self._kernel[key] = _kb(value) if key == "size" else int(value)

    def _flush_kernel(self) -> None:
        k, self._kernel = self._kernel, None
        if k is not None and isinstance(self._block, KernelDump):
            self._block.kernels.append(k)

