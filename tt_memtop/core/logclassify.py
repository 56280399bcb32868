"""Classify one line of the original allocation server's stdout, out of context (every known version).

Why a module of its own: which of the ~50 line shapes of PROTOCOL.md §5 a line is (S1–S5, the
enhanced server, the 648-byte note) is a pure function of the line; what the lines mean
together (the shadow of live buffers, blocks, records) is :mod:`.logparse`'s. :func:`classify`
returns a tuple ``(kind, *fields)`` with one of the ``K_*`` kinds below and never raises.

The two hot formats (alloc / free, > 95 % of a log) are written as head + split byte + tail: the
split byte cannot occur in a valid head, so cutting a line at the byte's first occurrence and
matching both halves is exactly matching the whole line; :meth:`.logparse.LogParser._feed`'s fast
path parses each distinct half once with ``_alloc_head`` / ``_alloc_tail`` / ``_free_head`` /
``_free_tail``. Every other line goes through the slow-path patterns on decoded text.
"""

from __future__ import annotations

import re

from .protocol import BufferType

__all__ = ["TYPE_NAMES", "classify"]

#: Buffer type names exactly as the servers print them.
TYPE_NAMES = {t.name: int(t) for t in BufferType}
_TYPE_BY_BYTES = {k.encode(): v for k, v in TYPE_NAMES.items()}

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
