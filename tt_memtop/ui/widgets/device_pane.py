"""Per-device memory bars: one row (or two) per device, an aggregate line, history sparklines.

A Line-API ScrollView: a Galaxy's 32 devices are 32 cheap lines, scrolled, never 32 widgets.
Each tick the app hands it a frame of totals (:meth:`update_frame`); lines are drawn from that
frame only, so a paused view stays frozen while scrolling.

Two stacked bars per device, by the memory they share: the DRAM bar stacks DRAM and TRACE
(the trace region sits at the top of the DRAM banks) against total DRAM; the L1 bar stacks L1,
L1_SMALL, SYSTEM_MEMORY, CB and KERNEL against total L1.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..format import human, level, sparkline

DRAM_STACK = (0, 4)  # DRAM, TRACE
L1_STACK = (1, 3, 2, 5, 6)  # L1, L1_SMALL, SYSTEM_MEMORY, CB, KERNEL
_TYPE_CLASS = {0: "dram", 1: "l1", 2: "sys", 3: "l1small", 4: "trace", 5: "cb", 6: "kernel"}
HISTORY = 120
_LEGEND = {0: "DRAM", 1: "L1", 2: "SYS", 3: "L1_SMALL", 4: "TRACE", 5: "CB", 6: "KERNEL"}
ARCH_SHORT = {"Wormhole_B0": "WH", "Blackhole": "BH", "Grayskull": "GS", "Quasar": "QS"}


@dataclass(slots=True)
class DeviceRow:
    """What one device shows in a frame. ``totals`` has 7 entries by BufferType; caps 0 = unknown."""

    device: int
    arch: str
    totals: list[int]
    cap_dram: int
    cap_l1: int
    delta_dram: int = 0
    delta_l1: int = 0
    phase: str = ""
    buffers: int = 0  # live entries; -1 = unknown (a totals-only source)


class DevicePane(ScrollView, can_focus=True):
    """Bars against capacity; colours from component classes so themes restyle them."""

    COMPONENT_CLASSES = {
        "devicepane--dram", "devicepane--trace", "devicepane--l1", "devicepane--l1small", "devicepane--sys",
        "devicepane--cb", "devicepane--kernel", "devicepane--empty", "devicepane--ok", "devicepane--warn",
        "devicepane--crit", "devicepane--label", "devicepane--dim", "devicepane--spark", "devicepane--phase",
    }

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.rows: list[DeviceRow] = []
        self.expanded = False  # the Devices pane has the whole screen: two lines per device when narrow
        self.types_shown: frozenset[int] = frozenset(range(7))
        self._hist_dram: dict[int, deque[int]] = {}
        self._hist_l1: dict[int, deque[int]] = {}
        self._prev: dict[int, tuple[int, int]] = {}
        self._lines: list[list[Segment]] | None = None
        self._lines_width = -1
        self._unstyled = False

    # ------------------------------------------------------------------ data in
    def update_frame(self, rows: list[DeviceRow], types_shown: frozenset[int], sample: bool) -> None:
        """New totals. ``sample``: this frame ends a refresh period (Δ and sparklines advance)."""
        old_rows = {o.device: o for o in self.rows}
        for r in rows:  # Δ and history of what is shown: with a type filter, of those types only
            dram = sum(r.totals[t] for t in DRAM_STACK if t in types_shown)
            l1 = sum(r.totals[t] for t in L1_STACK if t in types_shown)
            prev = self._prev.get(r.device)
            if sample:
                hd = self._hist_dram.setdefault(r.device, deque(maxlen=HISTORY))
                hl = self._hist_l1.setdefault(r.device, deque(maxlen=HISTORY))
                hd.append(dram)
                hl.append(l1)
                if prev is not None:
                    r.delta_dram, r.delta_l1 = dram - prev[0], l1 - prev[1]
                self._prev[r.device] = (dram, l1)
            else:
                old = old_rows.get(r.device)
                if old is not None:
                    r.delta_dram, r.delta_l1 = old.delta_dram, old.delta_l1
                if prev is None:
                    self._prev[r.device] = (dram, l1)
        self.rows = rows
        self.types_shown = types_shown
        self._lines = None
        self._relayout()
        self.refresh()

    def _relayout(self) -> None:
        n = len(self._build_lines(max(self.scrollable_content_region.width, 40)))
        if self.virtual_size.height != n:
            self.virtual_size = Size(self.size.width, n)

    def on_resize(self) -> None:
        self._lines = None
        self._relayout()

    # ------------------------------------------------------------------ drawing
    def _style(self, name: str) -> Style:
        try:
            return self.get_component_rich_style(f"devicepane--{name}", partial=True)
        except KeyError:  # drawn before the stylesheet reached us: draw plain, do not cache
            self._unstyled = True
            return Style()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        lines = self._build_lines(width)
        idx = y + int(self.scroll_offset.y)
        base = self.rich_style
        if 0 <= idx < len(lines):
            return Strip(lines[idx]).adjust_cell_length(width, base).apply_style(base)
        return Strip.blank(width, base)

    def _build_lines(self, width: int) -> list[list[Segment]]:
        if self._lines is not None and self._lines_width == width:
            return self._lines
        out: list[list[Segment]] = []
        rows = self.rows
        if not rows:
            out.append([Segment("no device has reported yet", self._style("dim"))])
        else:
            out.extend(self._summary_lines(rows, width))
            wide = width >= 120
            one_line = wide or len(rows) > 8 or (not self.expanded and len(rows) > 2)
            for r in rows:
                if one_line:
                    out.append(self._device_line(r, width, both=True))
                else:
                    out.append(self._device_line(r, width, both=False, which="dram"))
                    out.append(self._device_line(r, width, both=False, which="l1"))
        if not self._unstyled:
            self._lines = out
            self._lines_width = width
        self._unstyled = False
        return out

    def _summary_lines(self, rows: list[DeviceRow], width: int) -> list[list[Segment]]:
        """Aggregate over the shown devices, and the colour legend (on its own line if needed).

        The numbers are padded to their widest form and the line break is decided on that, so the legend
        and the device rows below do not jump around as totals grow by a digit. The buffer count (left out
        when the source has no per-buffer data) goes last, only where it fits."""
        segs: list[Segment] = []
        shown = self.types_shown
        dram = sum(sum(r.totals[t] for t in DRAM_STACK if t in shown) for r in rows)
        l1 = sum(sum(r.totals[t] for t in L1_STACK if t in shown) for r in rows)
        cap_dram = sum(r.cap_dram for r in rows) if all(r.cap_dram for r in rows) else 0
        cap_l1 = sum(r.cap_l1 for r in rows) if all(r.cap_l1 for r in rows) else 0
        segs.append(Segment(f"{'all ' if len(rows) > 1 else ''}{len(rows)} device{'s' if len(rows) != 1 else ''}  ",
                            self._style("label")))
        segs += self._used_segments("DRAM", dram, cap_dram)
        segs.append(Segment("  "))
        segs += self._used_segments("L1", l1, cap_l1)
        segs.append(Segment("  "))
        count = None
        if all(r.buffers >= 0 for r in rows):
            count = Segment(f"│ {sum(r.buffers for r in rows):,} buffers", self._style("dim"))
        legend: list[Segment] = []
        for t in (0, 4, 1, 3, 2, 5, 6):
            if t in self.types_shown:
                legend.append(Segment("█", self._style(_TYPE_CLASS[t])))
                legend.append(Segment(f"{_LEGEND[t]} ", self._style("dim")))
        if len(rows) == 1:  # the device's own row says it all
            return [legend]

        def cells(line: list[Segment]) -> int:
            return sum(len(x.text) for x in line)

        lines = [segs + legend] if cells(segs) + cells(legend) <= width else [segs, legend]
        if count is not None and cells(lines[0]) + len(count.text) <= width:
            lines[0] = [*lines[0], count]
        return lines

    def _used_segments(self, name: str, used: int, cap: int) -> list[Segment]:
        if cap:
            frac = used / cap
            return [Segment(f"{name} ", self._style("label")),
                    Segment(f"{human(used):>8}/{human(cap)} {frac * 100:5.1f}%", self._style(level(frac)))]
        return [Segment(f"{name} ", self._style("label")), Segment(f"{human(used):>8} (capacity unknown)",
                                                                     self._style("dim"))]

    def _bar(self, totals: list[int], stack: tuple[int, ...], cap: int, width: int) -> list[Segment]:
        if width <= 0:
            return []
        if not cap:
            txt = "capacity unknown"[:width]
            return [Segment(txt.center(width), self._style("dim"))]
        segs: list[Segment] = []
        used_cells = 0
        acc = 0
        for t in stack:
            if t not in self.types_shown or not totals[t]:
                continue
            acc += totals[t]
            end = min(width, round(acc * width / cap))
            if end <= used_cells and totals[t] > 0 and used_cells < width:
                end = used_cells + 1  # anything allocated shows at least one cell
            n = end - used_cells
            if n > 0:
                segs.append(Segment("█" * n, self._style(_TYPE_CLASS[t])))
                used_cells = end
        if used_cells < width:
            segs.append(Segment("░" * (width - used_cells), self._style("empty")))
        return segs

    def _device_line(self, r: DeviceRow, width: int, both: bool, which: str = "dram") -> list[Segment]:
        """One device (``both``) or half of one (DRAM or L1 line); narrower widths drop columns."""
        label = self._style("label")
        dim = self._style("dim")
        arch = ARCH_SHORT.get(r.arch, r.arch[:4])
        if both or which == "dram":
            segs = [Segment(f"{r.device:>3} {arch:<4} ", label)]
        else:  # the second line of a two-line device carries its phase
            segs = [Segment(f" {r.phase[:8]:<8}", self._style("phase"))]
        parts = [("DRAM", DRAM_STACK, r.cap_dram, r.delta_dram, self._hist_dram.get(r.device)),
                 ("L1", L1_STACK, r.cap_l1, r.delta_l1, self._hist_l1.get(r.device))]
        if not both:
            parts = [parts[0] if which == "dram" else parts[1]]
        tail = 10 if both else 0  # room for the phase at the end of a one-line device
        per_part = (width - 9 - tail) // len(parts)
        full = per_part >= 60  # bar, used/capacity, Δ, sparkline
        medium = not full and per_part >= 44  # bar and used/capacity: absolute numbers from 120 columns on
        spark_w = max(0, min(24, per_part - 60)) if full else 0
        compact_w = 7 if all(p[2] for p in parts) else 9  # " 100.0%", or " 1023 MiB" when capacity is unknown
        fixed = 5 + (26 + 11 + (spark_w + 1 if spark_w else 0) if full else 26 if medium else compact_w) + 2
        bar_w = max(4, per_part - fixed)
        for name, stack, cap, delta, hist in parts:
            used = sum(r.totals[t] for t in stack if t in self.types_shown)
            segs.append(Segment(f"{name:<5}", label))
            segs += self._bar(r.totals, stack, cap, bar_w)
            frac = used / cap if cap else 0.0
            if not (full or medium):
                segs.append(Segment(f" {frac * 100:5.1f}%" if cap else f" {human(used):>8}",
                                    self._style(level(frac)) if cap else dim))
            else:
                if cap:
                    segs.append(Segment(f" {human(used):>9}/{human(cap):<9}{frac * 100:5.1f}%",
                                        self._style(level(frac))))
                else:
                    segs.append(Segment(f" {human(used):>9}/{'?':<9}{'':>6}", dim))
                if full:
                    segs.append(Segment(f" {human(delta, signed=True) if delta else '·':>10}", dim))
                if spark_w:
                    segs.append(Segment(" " + sparkline(hist or (), spark_w).ljust(spark_w), self._style("spark")))
            segs.append(Segment("  "))
        if both and r.phase:
            segs.append(Segment(r.phase[:9], self._style("phase")))
        return segs
