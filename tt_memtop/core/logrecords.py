"""What the original allocation server's log says besides events: the parser's *records*.

Why a module of their own: :class:`~.logparse.LogParser` turns alloc / free lines into events, but
DUMP_REMAINING reports, statistics blocks, dead-PID cleanup summaries, device detection, S5's
CB / KERNEL lines, DUMP_KERNELS and the 648-byte DUMP entries are blocks of lines that state
what the server held; the report, the oracle checks and the inventory read them as these
dataclasses (each stamped with its line and the sequence number of the last event before it),
and :class:`ParseStats` accounts for every line. Pure data, no parsing here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .devices import DeviceInfo, arch_spec
from .protocol import Arch

__all__ = [
    "MAX_DUMP_ENTRIES",
    "CbKernelChange",
    "DeviceDetected",
    "DumpBuffer",
    "DumpGroup",
    "DumpReport",
    "KernelDump",
    "ParseStats",
    "ProcessCleanup",
    "Record",
    "ServerBanner",
    "SizeChange",
    "StatsReport",
]

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
