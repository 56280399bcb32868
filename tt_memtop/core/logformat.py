"""The stdout/stderr lines of the original allocation server, reproduced exactly (PROTOCOL.md §5).

Pure: registry state and events in, lines (without newline) out. Our server writes these so that
its log can be read by anyone (and any tool) used to ``allocation_server_poc``; the log source
parses the same lines back.

Number formatting follows C++ iostream defaults: integers in decimal, doubles as ``%g`` with six
significant digits (Python's ``format(x, 'g')`` gives the same text). Buffer ids in the
alloc/free/unknown lines are decimal in S1–S3 and ``0x``-hex from S4 on (``id_format``); the
DUMP report always prints them in hex.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from .devices import Inventory
from .events import Event, EventKind
from .protocol import BufferType
from .registry import Registry

IdFormat = Literal["hex", "decimal"]

_MiB = 1024.0 * 1024.0
_CB = int(BufferType.CB)
_KERNEL = int(BufferType.KERNEL)
_TYPE_NAMES = ("DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE")
_BOX_TOP = "╔══════════════════════════════════════════════════════════════╗"
_BOX_BOTTOM = "╚══════════════════════════════════════════════════════════════╝"
_KERNEL_BOX_TOP = "  ┌─────────────────────────────────────────────────────────┐"
_KERNEL_BOX_BOTTOM = "  └─────────────────────────────────────────────────────────┘"

DUMP_REQUEST = "📋 Received DUMP_REMAINING request..."
DUMP_COMPLETE = "📋 DUMP_REMAINING complete."
CLEANUP_STARTED = "🔄 Background cleanup thread started (checking every 10s)"  # sic: the original says 10s
CLEANUP_STOPPED = "🔄 Background cleanup thread stopped"


def g(x: float) -> str:
    """C++ ``operator<<(double)`` with default precision."""
    return format(x, "g")


def type_name(buffer_type: int) -> str:
    return _TYPE_NAMES[buffer_type] if 0 <= buffer_type < len(_TYPE_NAMES) else "UNKNOWN"


def fmt_id(buffer_id: int, id_format: IdFormat = "hex") -> str:
    return f"0x{buffer_id:x}" if id_format == "hex" else str(buffer_id)


# ---------------------------------------------------------------------------------------- per event (§5.1–5.4, 5.9)
def alloc_line(pid: int, size: int, buffer_type: int, device: int, buffer_id: int, id_format: IdFormat = "hex",
               ref_count: int | None = None) -> str:
    refs = f", ref_count={ref_count}" if ref_count is not None else ""
    return (f"✓ [PID {pid}] Allocated {size} bytes of {type_name(buffer_type)} on device {device} "
            f"(buffer_id={fmt_id(buffer_id, id_format)}{refs})")


def free_line(owner_pid: int, buffer_id: int, device: int, size: int, remaining: int,
              id_format: IdFormat = "hex") -> str:
    tail = f"ref_count={remaining} remaining" if remaining > 0 else "FINAL"
    return f"✗ [PID {owner_pid}] Freed buffer {fmt_id(buffer_id, id_format)} on device {device} ({size} bytes, {tail})"


def unknown_free_line(pid: int, buffer_id: int, device: int, id_format: IdFormat = "hex") -> str:
    return (f"⚠ [PID {pid}] Deallocation for unknown buffer {fmt_id(buffer_id, id_format)} on device {device} "
            f"(allocated before tracking started)")


def cb_line(alloc: bool, device: int, size: int, device_cb_total: int) -> str:
    sign, glyph, tag = ("+", "✓", "CB_ALLOC") if alloc else ("-", "✗", "CB_FREE")
    return f"{glyph} [{tag}] Device {device}: {sign}{g(size / _MiB)} MB (Total: {g(device_cb_total / _MiB)} MB)"


def kernel_line(load: bool, kind_name: str, device: int, size: int, device_kernel_total: int) -> str:
    sign, glyph, tag = ("+", "✓", "KERNEL_LOAD") if load else ("-", "✗", "KERNEL_UNLOAD")
    return (f"{glyph} [{tag}] {kind_name or 'Unknown'} kernel on Device {device}: {sign}{g(size / _MiB)} MB "
            f"(Total: {g(device_kernel_total / _MiB)} MB)")


def event_line(ev: Event, id_format: IdFormat = "hex", registry: Registry | None = None) -> str | None:
    """The line the original prints for a message-driven event, or None if it prints nothing.

    CB/KERNEL lines show the device's CB/kernel total after the event, read from ``registry``
    (which must already include the event).
    """
    k = ev.kind
    bt = ev.buffer_type
    if bt == _CB or bt == _KERNEL:
        total = registry.device_totals(ev.device)[bt] if registry is not None else 0
        if bt == _CB:
            if k in (EventKind.ALLOC, EventKind.FREE, EventKind.FREE_UNKNOWN):
                return cb_line(k == EventKind.ALLOC, ev.device, ev.size, total)
            return None
        if k in (EventKind.ALLOC, EventKind.FREE):  # unloading an unknown kernel prints nothing
            return kernel_line(k == EventKind.ALLOC, ev.name, ev.device, ev.size, total)
        return None
    if k == EventKind.ALLOC:
        return alloc_line(ev.pid, ev.size, bt, ev.device, ev.buffer_id, id_format)
    if k == EventKind.REF_INC:
        return alloc_line(ev.pid, ev.size, bt, ev.device, ev.buffer_id, id_format, ev.ref_count)
    if k == EventKind.REF_DEC or k == EventKind.FREE:
        return free_line(ev.pid, ev.buffer_id, ev.device, ev.size, ev.ref_count, id_format)
    if k == EventKind.FREE_UNKNOWN:
        return unknown_free_line(ev.pid, ev.buffer_id, ev.device, id_format)
    return None


def render_lines(items: list, hex_ids: bool = True) -> tuple[bytes, int]:
    """A chunk's per-event lines at once: (UTF-8 bytes, each line ending in a newline; number of lines).

    ``items`` are lines (str, taken as they are) or events of buffers (not CB / KERNEL: those lines
    need the registry at the time of the event, so the caller formats them then), formatted as
    :func:`event_line` does. The compiled ``ingest.render_lines`` does the same (see :func:`line_renderer`).
    """
    out = []
    add = out.append
    names = _TYPE_NAMES
    alloc, ref_inc, ref_dec, free = int(EventKind.ALLOC), int(EventKind.REF_INC), int(EventKind.REF_DEC), \
        int(EventKind.FREE)
    for ev in items:
        if ev.__class__ is str:
            add(ev)
            continue
        k = ev.kind
        bid = ev.buffer_id
        ids = f"0x{bid:x}" if hex_ids else str(bid)
        if k == alloc or k == ref_inc:
            bt = ev.buffer_type
            refs = f", ref_count={ev.ref_count}" if k == ref_inc else ""
            add(f"✓ [PID {ev.pid}] Allocated {ev.size} bytes of {names[bt] if 0 <= bt < 5 else 'UNKNOWN'} "
                f"on device {ev.device} (buffer_id={ids}{refs})")
        elif k == free or k == ref_dec:
            rc = ev.ref_count
            tail = f"ref_count={rc} remaining" if rc > 0 else "FINAL"
            add(f"✗ [PID {ev.pid}] Freed buffer {ids} on device {ev.device} ({ev.size} bytes, {tail})")
        elif k == EventKind.FREE_UNKNOWN:
            add(f"⚠ [PID {ev.pid}] Deallocation for unknown buffer {ids} on device {ev.device} "
                f"(allocated before tracking started)")
    if not out:
        return b"", 0
    out.append("")
    return "\n".join(out).encode("utf-8", "replace"), len(out) - 1


def line_renderer() -> Callable[[list, bool], tuple[bytes, int]]:
    """:func:`render_lines`, compiled (``tt_memtop._native.ingest``) when it is built and not turned off.

    The compiled one hands back what it cannot render exactly as :func:`render_lines` does (a value
    out of range, a str that is not UTF-8): then this one renders the chunk.
    """
    from .. import _native

    ingest = _native.load("ingest")
    if ingest is None:
        return render_lines
    fast = ingest.render_lines

    def render(items: list, hex_ids: bool = True) -> tuple[bytes, int]:
        out = fast(items, hex_ids)
        return out if out is not None else render_lines(items, hex_ids)

    return render


# ---------------------------------------------------------------------------------------- blocks (§5.5–5.7, 5.10)
def cleanup_block(events: Iterable[Event]) -> list[str]:
    """The dead-process block for the CLEANUP / PROCESS_EXIT events of one cleanup run ([] if none)."""
    per_pid: dict[int, list[list[int]]] = {}  # pid -> [[n, bytes] buffers, [n, bytes] CBs, [n, bytes] kernels]
    for ev in events:
        if ev.kind != EventKind.CLEANUP:
            continue
        slot = 1 if ev.buffer_type == _CB else 2 if ev.buffer_type == _KERNEL else 0
        acc = per_pid.setdefault(ev.pid, [[0, 0], [0, 0], [0, 0]])[slot]
        acc[0] += 1
        acc[1] += ev.size
    if not per_pid:
        return []
    lines = ["", "⚠️  Detected dead processes, cleaning up orphaned buffers..."]
    for pid in sorted(per_pid):
        (nb, bb), (nc, bc), (nk, bk) = per_pid[pid]
        lines.append(f"   PID {pid} is dead, removing its buffers...")
        lines.append(f"   ✓ Removed {nb} buffers ({g(bb / _MiB)} MB) from PID {pid}")
        if nc:
            lines.append(f"   ✓ Removed {nc} CBs ({g(bc / _MiB)} MB) from PID {pid}")
        if nk:
            lines.append(f"   ✓ Removed {nk} kernels ({g(bk / _MiB)} MB) from PID {pid}")
    lines.append("")
    return lines


def stats_block(registry: Registry) -> list[str]:
    """``📊 Current Statistics:`` — devices with a non-zero total or buffer count."""
    lines = ["", "📊 Current Statistics:"]
    for dev in registry.devices():
        t = registry.device_totals(dev)
        n = registry.device_count(dev)
        total = t[0] + t[1] + t[2] + t[3] + t[4]
        if total > 0 or n > 0:
            lines += [f"  Device {dev}:", f"    Buffers: {n}", f"    DRAM: {t[0]} bytes ({g(t[0] / 1024.0)} KB)",
                      f"    L1: {t[1]} bytes ({g(t[1] / 1024.0)} KB)", f"    Total: {total} bytes"]
    lines.append(f"  Active allocations: {registry.num_buffers}")
    return lines


def dump_report(registry: Registry) -> list[str]:
    """The DUMP_REMAINING report proper (between the request and the completion lines, cleanup aside).

    Devices ascending, buffer types ascending; per-buffer lines only for groups of at most 10.
    Within a group the original's order is a hash-map walk; we sort by buffer id.
    """
    bufs = [b for b in registry.buffers() if b.buffer_type < _CB]
    lines = ["", _BOX_TOP, "║           REMAINING ALLOCATED BUFFERS                       ║", _BOX_BOTTOM,
             f"Total tracked allocations: {len(bufs)}", ""]
    if not bufs:
        lines.append("✓ No buffers remaining - perfect cleanup!")
        return lines
    groups: dict[int, dict[int, list]] = {}
    for b in bufs:
        groups.setdefault(b.device, {}).setdefault(b.buffer_type, []).append(b)
    for dev in sorted(groups):
        lines.append(f"Device {dev}:")
        for bt in sorted(groups[dev]):
            group = sorted(groups[dev][bt], key=lambda b: b.buffer_id)
            total = sum(b.size for b in group)
            lines.append(f"  {type_name(bt)}: {len(group)} buffers, {g(total / _MiB)} MB total")
            if len(group) <= 10:
                lines += [f"    - Buffer 0x{b.buffer_id:x}: {g(b.size / 1024.0)} KB (PID {b.owner_pid}, "
                          f"ref_count={b.ref_count})" for b in group]
        lines.append("")
    lines += [f"Total remaining buffers: {len(bufs)}", ""]
    return lines


def dump_kernels(registry: Registry, now_ns: int) -> list[str]:
    """The DUMP_KERNELS table (S5). Ages are whole seconds since the kernel's load."""
    kernels = [b for b in registry.buffers() if b.buffer_type == _KERNEL]
    lines = ["", _BOX_TOP, "║           DETAILED KERNEL ALLOCATIONS                       ║", _BOX_BOTTOM,
             f"Total kernel allocations: {len(kernels)}"]
    by_dev: dict[int, list] = {}
    for b in kernels:
        by_dev.setdefault(b.device, []).append(b)
    for dev in sorted(by_dev):
        group = sorted(by_dev[dev], key=lambda b: b.buffer_id)
        total = sum(b.size for b in group)
        lines += ["", f"📊 Device {dev} - Total: {g(total / _MiB)} MB ({len(group)} kernels)", _KERNEL_BOX_TOP]
        for b in group:
            age = max(0, (now_ns - b.alloc_ts_ns) // 1_000_000_000)
            lines += [f"  │ Kernel ID: 0x{b.buffer_id:x}", f"  │   Size:      {g(b.size / 1024.0)} KB",
                      f"  │   Owner PID: {b.owner_pid}", f"  │   Age:       {age} seconds", "  │"]
        lines.append(_KERNEL_BOX_BOTTOM)
    lines += ["", "📋 DUMP_KERNELS complete."]
    return lines


# ---------------------------------------------------------------------------------------- start / stop (§5.11)
#: What the originals (S2-S4) say they detect with; ``memtop serve`` says where its inventory came from instead.
ORIGINAL_DETECTION = "using TT-Metal APIs"


def detection_block(inventory: Inventory, origin: str = ORIGINAL_DETECTION) -> list[str]:
    """S3/S4-style device detection lines; the one place that writes them.

    ``origin`` says where the inventory came from (``memtop serve`` probes nothing: "configured: 8 ×
    Wormhole_B0 (--devices/--arch)", or what /dev/tenstorrent lists). The default is the original's
    wording, for logs byte-identical to S4's. The per-device lines keep the original's format, so
    every parser of the original's log reads the inventory from ours.

    S4 (the hex-id server our default log format follows) counts with GetNumAvailableDevices and
    prints "No devices detected" / "Total: N device(s) detected"; only S2 said "PCIe" there.
    """
    lines = [f"🔍 Device detection ({origin}):"]
    if not inventory.devices:
        return lines + ["   No devices detected", "   Server will track allocations anyway"]
    for d in inventory.devices:
        lines.append(f"   Device {d.device_id}: {d.arch_name} ({d.total_dram // 1024**3}GB DRAM, "
                     f"{d.total_l1 // 1024**2}MB L1)")
    lines.append(f"   Total: {len(inventory.devices)} device(s) detected")
    return lines


def start_banner(socket_path: str, inventory: Inventory | None = None, origin: str = ORIGINAL_DETECTION) -> list[str]:
    """Start-up lines; the detection block only when an inventory is given (S2+; S1 has none)."""
    lines = detection_block(inventory, origin or ORIGINAL_DETECTION) if inventory is not None else []
    return lines + ["🚀 Allocation Server started", f"   Listening on: {socket_path}", "   Press Ctrl+C to stop"]


def inventory_grown_line(device: int, configured: int, arch_name: str) -> str:
    """stderr, once: a device beyond the configured inventory was seen on the wire."""
    hint = 32 if device < 32 else device + 1
    return (f"⚠️  Device {device} is beyond the configured {configured} device(s); reporting it with {arch_name} "
            f"capacities (start with --devices {hint} to configure them)")


def stop_banner() -> list[str]:
    return ["", "🛑 Allocation Server stopped"]


# ---------------------------------------------------------------------------------------- validation (§5.8)
def invalid_device_line(device: int) -> str:
    return f"⚠️  Invalid device_id {device} - ignoring message"


def invalid_size_line(size: int) -> str:
    return f"⚠️  Invalid size {size} - ignoring message"


def invalid_buffer_type_line(buffer_type: int, buffer_id: int, device: int, pid: int | None = None) -> str:
    """S5 style by default; with ``pid`` the S1–S4 style."""
    if pid is not None:
        return f"⚠ [PID {pid}] Invalid buffer_type {buffer_type} for buffer {buffer_id} on device {device}"
    return f"⚠️  Invalid buffer_type {buffer_type} for buffer {buffer_id} on device {device}"


def unknown_type_line(msg_type: int) -> str:
    return f"Unknown message type: {msg_type}"


def too_many_errors_line(count: int) -> str:
    return f"⚠️  Too many consecutive errors ({count}) - closing connection (likely protocol mismatch)"
