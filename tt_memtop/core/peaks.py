"""High-water marks: per device x buffer type and per process x buffer type, with when they happened.

Why: "how much is used now" does not explain an OOM an hour ago; the peak, its time and what was
live then do (like ``torch.cuda.max_memory_allocated`` / memray's peak). Pure; time comes from the
events. The counters are updated by :meth:`~tt_memtop.core.insight.Insight.observe` in its single
pass over each batch (a list store or two per ALLOC / FREE / CLEANUP); :meth:`reset` starts the
peaks afresh from the current values (``torch.cuda.reset_peak_memory_stats``).

What was live at a peak (:class:`PeakCapture`) needs a scan of the live buffers, so it is taken
lazily by the caller (:class:`~tt_memtop.core.insight.Insight`) at the end of a batch that set a
new peak at least 1 % above the last capture, and only when as many events went by since the
last scan as there are live buffers (amortised O(1) per event even with a million live buffers).
A capture therefore describes the state at the end of that batch, near the peak, at ``bytes`` <=
the peak it stands for.

Bars (:data:`BARS`): the meters stack DRAM with TRACE (the trace region sits at the top of the DRAM
banks) and L1 with L1_SMALL, SYSTEM_MEMORY, CB and KERNEL; the high-water of each stacked sum is kept
per device (:meth:`PeakTracker.bar_peak`) by the same pass, event by event, so a meter's peak mark is
the true high water since attach / reset whatever the frames, and a spike allocated and freed
between two frames still shows. ``bar_mask`` (the types a type filter shows) says which types the
sums count; changing it starts the bar peaks over from the current sums. Totals-only sources (no
events) raise them from each sample (:meth:`PeakTracker.observe_totals`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .protocol import BufferType

__all__ = ["ALL_TYPES_MASK", "BARS", "DRAM_BAR", "L1_BAR", "PeakCapture", "PeakTracker", "bar_sums", "types_mask"]

NTYPES = len(BufferType)
DRAM_BAR = (int(BufferType.DRAM), int(BufferType.TRACE))
L1_BAR = (int(BufferType.L1), int(BufferType.L1_SMALL), int(BufferType.SYSTEM_MEMORY), int(BufferType.CB),
          int(BufferType.KERNEL))
BARS = (DRAM_BAR, L1_BAR)  # the meters' stacks, in the meters' order
BAR_OF = tuple(0 if t in DRAM_BAR else 1 for t in range(NTYPES))  # type -> its bar
ALL_TYPES_MASK = (1 << NTYPES) - 1


def types_mask(types) -> int:
    """Bit t set for each buffer type t in ``types``."""
    m = 0
    for t in types:
        if 0 <= t < NTYPES:
            m |= 1 << t
    return m


def bar_sums(totals, mask: int = ALL_TYPES_MASK) -> list[int]:
    """Each bar's stacked sum of ``totals`` (by buffer type), counting the types in ``mask``."""
    return [sum(totals[t] for t in bar if mask >> t & 1) for bar in BARS]


@dataclass(slots=True)
class PeakCapture:
    """What was live on one device in one pool when (near when) its peak was set."""

    device: int
    buffer_type: int
    bytes: int  # the pool's bytes when captured
    ts_ns: int
    top_buffers: list[dict] = field(default_factory=list)  # largest first: buffer_id, size, pid, name
    by_pid: dict[int, int] = field(default_factory=dict)
    by_phase: dict[str, int] = field(default_factory=dict)  # owner's phase at the time -> bytes

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "at_ns": self.ts_ns, "top_buffers": self.top_buffers,
                "by_pid": {str(k): v for k, v in self.by_pid.items()}, "by_phase": self.by_phase}


class PeakTracker:
    """Current and peak bytes by (device, type) and (pid, type), peaks stamped with the event time."""

    def __init__(self) -> None:
        self.current: dict[int, list[int]] = {}
        self.peak: dict[int, list[int]] = {}
        self.peak_at: dict[int, list[int]] = {}
        self.pid_current: dict[int, list[int]] = {}
        self.pid_peak: dict[int, list[int]] = {}
        self.pid_peak_at: dict[int, list[int]] = {}
        self.rose: set[tuple[int, int]] = set()  # (device, type) whose peak rose since take_rose()
        self.reset_at = 0
        self.bar_mask = ALL_TYPES_MASK  # the types the bars' sums count (set_bar_mask)
        self.bars: dict[int, list[int]] = {}  # device -> [DRAM bar, L1 bar] high water
        self.bars_at: dict[int, list[int]] = {}

    def _dev(self, device: int) -> tuple[list[int], list[int], list[int]]:
        cur = self.current.get(device)
        if cur is None:
            cur = self.current[device] = [0] * NTYPES
            self.peak[device] = [0] * NTYPES
            self.peak_at[device] = [0] * NTYPES
        return cur, self.peak[device], self.peak_at[device]

    def _bars(self, device: int) -> tuple[list[int], list[int]]:
        """(bar peaks, their times) of one device, created at the current sums."""
        pk = self.bars.get(device)
        if pk is None:
            cur = self.current.get(device)
            pk = self.bars[device] = bar_sums(cur, self.bar_mask) if cur is not None else [0, 0]
            self.bars_at[device] = [self.reset_at, self.reset_at]
        return pk, self.bars_at[device]

    def raise_bars(self, device: int, totals, ts_ns: int) -> None:
        """Raise a device's bar peaks to the sums of ``totals`` if they are above (stamped ``ts_ns``)."""
        pk, at = self._bars(device)
        for i, v in enumerate(bar_sums(totals, self.bar_mask)):
            if v > pk[i]:
                pk[i] = v
                at[i] = ts_ns

    def observe_totals(self, device: int, totals, ts_ns: int) -> None:
        """A totals-only source's sample (7 totals by buffer type): the bars' high water of the samples."""
        self.raise_bars(device, totals, ts_ns)

    def set_bar_mask(self, mask: int, ts_ns: int) -> None:
        """Count the types in ``mask`` in the bars (a type filter): a change starts the bar peaks over."""
        if mask == self.bar_mask:
            return
        self.bar_mask = mask
        self._restart_bars(ts_ns)

    def _restart_bars(self, ts_ns: int) -> None:
        for d in list(self.bars):
            cur = self.current.get(d)
            self.bars[d] = bar_sums(cur, self.bar_mask) if cur is not None else [0, 0]
            self.bars_at[d] = [ts_ns, ts_ns]

    def _pid(self, pid: int) -> tuple[list[int], list[int], list[int]]:
        cur = self.pid_current.get(pid)
        if cur is None:
            cur = self.pid_current[pid] = [0] * NTYPES
            self.pid_peak[pid] = [0] * NTYPES
            self.pid_peak_at[pid] = [0] * NTYPES
        return cur, self.pid_peak[pid], self.pid_peak_at[pid]

    def take_rose(self) -> set[tuple[int, int]]:
        out, self.rose = self.rose, set()
        return out

    def load(self, registry, ts_ns: int) -> None:
        """Start from a snapshot: current = the registry's totals; peaks at least that."""
        self.current = {}
        self.pid_current = {}
        for d in registry.devices():
            self.rose.update((d, t) for t in _start_from(self._dev(d), registry.device_totals(d), ts_ns))
            self.raise_bars(d, self.current[d], ts_ns)
        for pid in registry.pids():
            _start_from(self._pid(pid), registry.pid_totals(pid), ts_ns)

    def reset(self, ts_ns: int) -> None:
        """Peaks := current values, stamped ``ts_ns``; processes holding nothing are forgotten."""
        self.reset_at = ts_ns
        for table, peaks, ats in ((self.current, self.peak, self.peak_at),
                                  (self.pid_current, self.pid_peak, self.pid_peak_at)):
            for key in list(table):
                if table is self.pid_current and not any(table[key]):
                    del table[key], peaks[key], ats[key]
                    continue
                peaks[key] = list(table[key])
                ats[key] = [ts_ns] * NTYPES
        self.bars.clear()  # the bar peaks of a totals-only source start again from its next sample
        self.bars_at.clear()
        for d in self.current:
            self._bars(d)
        self.rose = set()

    # ------------------------------------------------------------------ queries
    def device_peak(self, device: int, buffer_type: int) -> tuple[int, int]:
        """(peak bytes, ts_ns when it was set) of one pool; (0, 0) if never used."""
        p = self.peak.get(device)
        return (p[buffer_type], self.peak_at[device][buffer_type]) if p is not None else (0, 0)

    def bar_peak(self, device: int) -> tuple[int, int]:
        """(DRAM bar, L1 bar) high water of one device since attach / reset / the last bar mask change."""
        pk = self.bars.get(device)
        if pk is None:
            cur = self.current.get(device)
            return tuple(bar_sums(cur, self.bar_mask)) if cur is not None else (0, 0)
        return pk[0], pk[1]

    def pid_peaks(self) -> dict[int, tuple[list[int], list[int], list[int]]]:
        """pid -> (current by type, peak by type, peak ts by type)."""
        return {p: (self.pid_current[p], self.pid_peak[p], self.pid_peak_at[p]) for p in self.pid_peak}


def _start_from(entry: tuple[list[int], list[int], list[int]], totals: list[int], ts_ns: int) -> list[int]:
    """Set one (current, peak, peak_at) entry's current to ``totals``, raise its peaks to at least that;
    the types whose peak rose."""
    cur, peak, at = entry
    rose = []
    for t in range(NTYPES):
        cur[t] = totals[t]
        if totals[t] > peak[t]:
            peak[t] = totals[t]
            at[t] = ts_ns
            rose.append(t)
    return rose
