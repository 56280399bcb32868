"""TT-Metal's per-chip shared-memory statistics: every layout it has written, and a parser. Pure.

Why: mainline TT-Metal (since February 2026) keeps live memory totals of every chip it opens in
``/dev/shm/tt_device_<chip_unique_id>_memory`` (``SharedMemoryStatsProvider``,
``tt_metal/impl/memory_tracking/memory_stats_shm.hpp``), on by default. Reading them needs no
server and no environment variable. This module knows the byte layouts and turns the bytes of one
region into a :class:`Region` (or says why it cannot: :class:`RegionProblem`); opening, mapping and
sampling the files is :mod:`tt_memtop.sources.shm`'s job, writing them the simulator's.

Layouts (``DeviceMemoryRegion``, natural alignment, struct ``aligned(64)``; PROTOCOL.md §6.4, §6.6):

=========  =========  ===================================================================
version    file size  layout
=========  =========  ===================================================================
4          8576       five totals (DRAM, L1, L1_SMALL, TRACE, CB), 48-byte ChipStats,
                      120-byte ProcessStats, then ``init_state`` at 8536 (must read 'REDY')
3, 2       8640       same offsets, no ``init_state`` (64 bytes of trailing padding, where v4
                      put ``init_state``); v2 on: ``asic_id`` = chip_unique_id, unused chip
                      slot = 0xFFFFFFFF
1          8640       same offsets (+64 bytes of padding); ``board_serial`` = board id and
                      ``asic_id`` = ASIC location (the file's id is ``board << 8 | location``);
                      unused chip slot = 0
1          9280       the older branch layout: six totals with KERNEL, 56-byte ChipStats,
                      128-byte ProcessStats (``tt_metal/impl/profiler/memory_stats_shm.hpp``)
=========  =========  ===================================================================

Both version-1 layouts exist, so a version-1 region is told apart by its file size (the branch
layout needs at least 9248 bytes, the mainline one fits in 8640). Any other version, a region
whose ``version`` is still 0 (zero-filled: being created) and a v4 region whose ``init_state`` is
not 'REDY' (being initialised) are reported, never parsed.

Torn reads: the writers update these counters with lock-free atomics while we read, so a copy of
the bytes can mix two moments. :func:`read_consistent` copies until two copies agree; if they
never do it keeps the last one, and :func:`parse_region` clamps what cannot be true (a byte count
beyond :data:`IMPOSSIBLE_BYTES`, which a wrapped or half-written counter produces) so no
negative or absurd number ever reaches the screen.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BRANCH_KERNEL", "CHIP_UNUSED", "IMPOSSIBLE_BYTES", "INIT_IN_PROGRESS", "INIT_READY", "LAYOUTS",
           "MAX_CHIPS", "MAX_PROCESSES", "POOLS", "SHM_PREFIX", "SHM_SUFFIX", "SLOT_RELEASING", "V1", "V3", "V4",
           "ChipUsage", "Region", "RegionLayout", "RegionProblem", "SlotUsage", "chip_unique_id_from_name",
           "detect_layout", "parse_region", "read_consistent", "region_file_name"]

SHM_PREFIX = "tt_device_"
SHM_SUFFIX = "_memory"
MAX_CHIPS = 16  # MAX_CHIPS_PER_DEVICE
MAX_PROCESSES = 64
NAME_LEN = 64
CHIP_UNUSED = 0xFFFFFFFF  # CHIP_STATS_UNUSED (v2 on); v1 used 0
INIT_UNINITIALIZED = 0
INIT_IN_PROGRESS = 1
INIT_READY = 0x52454459  # 'REDY'
SLOT_RELEASING = -1  # SHM_SLOT_RELEASING: a ProcessStats slot mid-release (v4)
#: Pools every layout has, in this order (ShmBufferType DRAM 0, L1 1, L1_SMALL 3, TRACE 4, CB 5).
POOLS = ("dram", "l1", "l1_small", "trace", "cb")
#: No chip has this much memory of any kind (1 PiB): a larger counter is a torn or wrapped read.
IMPOSSIBLE_BYTES = 1 << 50

_SIZES = {"u32": 4, "i32": 4, "u64": 8}


def _natural(fields: list[tuple[str, str, int]], align_to: int = 1) -> tuple[dict[str, int], int]:
    """Offsets of ``(name, ctype, count)`` fields laid out with natural alignment (as a C++ compiler
    does for these structs), and the struct's size rounded to its alignment (and to ``align_to``)."""
    off, offsets, align = 0, {}, 1
    for name, ctype, count in fields:
        if ctype.startswith("char"):
            size, a = 1, 1
        elif ctype.startswith("struct:"):
            size, a = int(ctype.split(":")[1]), 8
        else:
            size = a = _SIZES[ctype]
        off = -(-off // a) * a
        offsets[name] = off
        off += size * count
        align = max(align, a)
    align = max(align, align_to)
    return offsets, -(-off // align) * align


@dataclass(frozen=True, slots=True)
class RegionLayout:
    """Where everything is in one layout. Offsets are computed from the field lists, not typed in."""

    name: str
    versions: tuple[int, ...]
    pools: tuple[str, ...]  # counters per chip / process, in memory order
    totals: int  # offset of total_<pool>_allocated[0]
    chips: int
    chip_size: int
    chip_counters: int  # offset of the first counter inside ChipStats
    processes: int
    proc_size: int
    proc_counters: int
    proc_timestamp: int
    proc_name: int
    init_state: int | None  # v4 only
    data_end: int  # bytes a parse reads (the file must be at least this long)
    size: int  # sizeof(DeviceMemoryRegion), what TT-Metal ftruncates the file to
    asic_id_is_unique: bool  # v2 on: ``asic_id`` holds the chip_unique_id
    chip_unused: int

    @property
    def has_kernel(self) -> bool:
        return "kernel" in self.pools


def _layout(name: str, versions: tuple[int, ...], pools: tuple[str, ...], *, init_state: bool, padding: int,
            unique: bool, unused: int) -> RegionLayout:
    chip, chip_size = _natural([("chip_id", "u32", 1), ("is_remote", "u32", 1), ("counters", "u64", len(pools))])
    proc, proc_size = _natural([("pid", "i32", 1), ("counters", "u64", len(pools)), ("last_update", "u64", 1),
                                ("name", "char", NAME_LEN)])
    fields = [("version", "u32", 1), ("num_active_processes", "u32", 1), ("last_update_timestamp", "u64", 1),
              ("reference_count", "u32", 1), ("board_serial", "u64", 1), ("asic_id", "u64", 1),
              ("device_id", "u32", 1), ("totals", "u64", len(pools)), ("chips", f"struct:{chip_size}", MAX_CHIPS),
              ("processes", f"struct:{proc_size}", MAX_PROCESSES)]
    if init_state:
        fields.append(("init_state", "u32", 1))
    if padding:
        fields.append(("padding", "char", padding))
    off, size = _natural(fields, align_to=64)
    end = off["processes"] + proc_size * MAX_PROCESSES + (4 if init_state else 0)
    return RegionLayout(name, versions, pools, off["totals"], off["chips"], chip_size, chip["counters"],
                        off["processes"], proc_size, proc["counters"], proc["last_update"], proc["name"],
                        off.get("init_state"), end, size, unique, unused)


V4 = _layout("v4", (4,), POOLS, init_state=True, padding=0, unique=True, unused=CHIP_UNUSED)
V3 = _layout("v2-v3", (2, 3), POOLS, init_state=False, padding=64, unique=True, unused=CHIP_UNUSED)
V1 = _layout("v1", (1,), POOLS, init_state=False, padding=64, unique=False, unused=0)
BRANCH_KERNEL = _layout("v1-branch-kernel", (1,), (*POOLS, "kernel"), init_state=False, padding=64, unique=False,
                        unused=0)
LAYOUTS = (V4, V3, V1, BRANCH_KERNEL)
#: Header fields at the same offsets in every layout.
_HEAD = struct.Struct("<IIQI4xQQI")  # version, num_active, last_update, refcount, board_serial, asic_id, device_id


@dataclass(frozen=True, slots=True)
class RegionProblem:
    """A region that is not read, and why (one line for the header, the log and ``--json``)."""

    kind: str  # "unknown-version" | "uninitialised" | "initialising" | "truncated" | "unreadable"
    message: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class ChipUsage:
    """One used ChipStats entry: bytes by pool (:data:`POOLS`, plus KERNEL in the branch layout)."""

    chip_id: int
    is_remote: bool
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SlotUsage:
    """One claimed ProcessStats slot. ``pid`` -1 is a slot being released (v4)."""

    index: int
    pid: int
    name: str
    bytes: tuple[int, ...]
    last_update_ns: int


@dataclass(frozen=True, slots=True)
class Region:
    """One region's content, as of one consistent read (or a clamped one: ``clamped`` > 0)."""

    layout: str
    version: int
    chip_unique_id: int
    board_serial: int
    device_id: int
    num_active_processes: int
    reference_count: int
    last_update_ns: int
    totals: tuple[int, ...]  # by pool
    chips: tuple[ChipUsage, ...]
    slots: tuple[SlotUsage, ...]
    has_kernel: bool = False
    clamped: int = 0  # counters that read impossible and were replaced by 0
    torn: bool = False  # no two reads agreed: this is the last one, clamped

    def wire_totals(self) -> tuple[int, int, int, int, int, int]:
        """(dram, l1, l1_small, trace, cb, kernel), as the allocation server's QUERY has them."""
        t = self.totals
        return (t[0], t[1], t[2], t[3], t[4], t[5] if len(t) > 5 else 0)


def region_file_name(chip_unique_id: int) -> str:
    """The name TT-Metal gives a chip's region (``shm_open("/tt_device_<id>_memory")``)."""
    return f"{SHM_PREFIX}{chip_unique_id}{SHM_SUFFIX}"


def chip_unique_id_from_name(name: str) -> int | None:
    """The decimal chip id in ``tt_device_<id>_memory``; None for any other name."""
    if not (name.startswith(SHM_PREFIX) and name.endswith(SHM_SUFFIX)):
        return None
    digits = name[len(SHM_PREFIX):-len(SHM_SUFFIX)]
    return int(digits) if digits.isdigit() else None


def detect_layout(data: bytes | memoryview, file_size: int | None = None) -> RegionLayout | RegionProblem:
    """The layout of a region from its ``version`` (and, for version 1, the file's size)."""
    size = len(data) if file_size is None else file_size
    if size < 4:
        return RegionProblem("truncated", f"{size} bytes: too short for a DeviceMemoryRegion")
    (version,) = struct.unpack_from("<I", data, 0)
    if version == 0:
        return RegionProblem("uninitialised", "version 0: the region is being created (zero-filled), not read", 0)
    if version == 1:
        layout = BRANCH_KERNEL if size >= BRANCH_KERNEL.data_end else V1
    elif version in (2, 3):
        layout = V3
    elif version == 4:
        layout = V4
    else:
        return RegionProblem("unknown-version", f"version {version} is not a layout this memtop knows "
                                                f"(1-4): not read", version)
    if size < layout.data_end or len(data) < layout.data_end:
        return RegionProblem("truncated", f"version {version}: {size} bytes, a {layout.name} region needs "
                                          f"{layout.data_end}", version)
    if layout.init_state is not None:
        (state,) = struct.unpack_from("<I", data, layout.init_state)
        if state != INIT_READY:
            what = "being initialised" if state == INIT_IN_PROGRESS else "not initialised"
            return RegionProblem("initialising" if state == INIT_IN_PROGRESS else "uninitialised",
                                 f"version {version}, init_state 0x{state:08x} (not 'REDY'): {what}, not read",
                                 version)
    return layout


def read_consistent(read: Callable[[], bytes], attempts: int = 4) -> tuple[bytes, bool]:
    """Copy the region with ``read()`` until two consecutive copies are equal.

    Returns ``(bytes, consistent)``; after ``attempts`` copies without agreement the last copy is
    returned with ``consistent`` False (the parser then clamps what cannot be true).
    """
    prev = read()
    for _ in range(max(1, attempts) - 1):
        cur = read()
        if cur == prev:
            return cur, True
        prev = cur
    return prev, False


_STRUCTS: dict[int, struct.Struct] = {}


def _counter_struct(n: int) -> struct.Struct:
    st = _STRUCTS.get(n)
    if st is None:
        st = _STRUCTS[n] = struct.Struct(f"<{n}Q")
    return st


def _clamp(vals: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    for v in vals:
        if v >= IMPOSSIBLE_BYTES:
            bad = sum(1 for x in vals if x >= IMPOSSIBLE_BYTES)
            return tuple(0 if x >= IMPOSSIBLE_BYTES else x for x in vals), bad
    return vals, 0


_TS = struct.Struct("<Q")


def parse_region(data: bytes, file_size: int | None = None, *, file_chip_id: int | None = None,
                 consistent: bool = True) -> Region | RegionProblem:
    """Parse one region's bytes. ``file_chip_id``: the id in the file name (the authority for v1,
    whose header holds only the board id and the ASIC location)."""
    layout = detect_layout(data, file_size)
    if isinstance(layout, RegionProblem):
        return layout
    version, num_active, last_update, refcount, board_serial, asic_id, device_id = _HEAD.unpack_from(data, 0)
    counters = _counter_struct(len(layout.pools))
    totals, clamped = _clamp(counters.unpack_from(data, layout.totals))
    if layout.asic_id_is_unique:
        unique = asic_id
    else:
        unique = (board_serial << 8) | (asic_id & 0xFF)
    if file_chip_id is not None and not layout.asic_id_is_unique:
        unique = file_chip_id
    # chip ids and pids as strided views of 32-bit words: one slice each, not 80 unpacks
    view = memoryview(data)
    chip_words = view[layout.chips: layout.chips + MAX_CHIPS * layout.chip_size].cast("I")
    chip_ids = chip_words[::layout.chip_size // 4].tolist()
    chips = []
    unused = layout.chip_unused
    for i, chip_id in enumerate(chip_ids):
        if chip_id == unused and not (unused == 0 and i == 0):
            continue
        base = layout.chips + i * layout.chip_size
        vals, bad = _clamp(counters.unpack_from(data, base + layout.chip_counters))
        clamped += bad
        chips.append(ChipUsage(chip_id, bool(chip_words[i * layout.chip_size // 4 + 1]), vals))
    pid_words = view[layout.processes: layout.processes + MAX_PROCESSES * layout.proc_size].cast("i")
    pids = pid_words[::layout.proc_size // 4].tolist()
    slots = []
    for i, pid in enumerate(pids):
        if pid == 0:
            continue
        base = layout.processes + i * layout.proc_size
        vals, bad = _clamp(counters.unpack_from(data, base + layout.proc_counters))
        clamped += bad
        (ts,) = _TS.unpack_from(data, base + layout.proc_timestamp)
        raw = bytes(view[base + layout.proc_name: base + layout.proc_name + NAME_LEN])
        name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        slots.append(SlotUsage(i, pid, name, vals, ts))
    return Region(layout.name, version, unique, board_serial, device_id, num_active, refcount, last_update,
                  totals, tuple(chips), tuple(slots), layout.has_kernel, clamped, not consistent)
