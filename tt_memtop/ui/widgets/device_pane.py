"""Per-device memory meters: bars against capacity with a peak marker, Δ per second, history.

A Line-API ScrollView: a Galaxy's 32 devices are 32 cheap lines, scrolled, never 32 widgets.
Each tick the app hands it a frame of totals (:meth:`update_frame`); lines are drawn from that
frame only, so a paused view stays frozen while scrolling.

Two stacked bars per device, by the memory they share: the DRAM bar stacks DRAM and TRACE
(the trace region sits at the top of the DRAM banks) against total DRAM; the L1 bar stacks L1,
L1_SMALL, SYSTEM_MEMORY, CB and KERNEL against total L1. Bars are exactly proportional (eighths
of a cell with partial blocks; nothing gets a cell it has not earned). History is drawn on an
absolute scale (capacity × ``history_scale``), each cell the max of the samples it covers.

The layout is chosen by the room there is (as btop does): two lines per device with history
when they fit, one line per device, or a compact mesh grid (a 32-device Galaxy on 8 lines).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..format import human, level, rate, sparkline

DRAM_STACK = (0, 4)  # DRAM, TRACE
L1_STACK = (1, 3, 2, 5, 6)  # L1, L1_SMALL, SYSTEM_MEMORY, CB, KERNEL
_TYPE_CLASS = {0: "dram", 1: "l1", 2: "sys", 3: "l1small", 4: "trace", 5: "cb", 6: "kernel"}
HISTORY = 240  # samples kept per device and bar (downsampled with max to the sparkline's width)
_LEGEND = {0: "DRAM", 1: "L1", 2: "SYS", 3: "L1_SMALL", 4: "TRACE", 5: "CB", 6: "KERNEL"}
ARCH_SHORT = {"Wormhole_B0": "WH", "Blackhole": "BH", "Grayskull": "GS", "Quasar": "QS"}
_PARTIAL = " ▏▎▍▌▋▊▉"  # 0..7 eighths of a cell, filled from the left
GRID_CELL_MIN = 19  # narrowest mesh-grid cell: "12 D██ 71% L█   3%" (a Galaxy on 80 columns: 4 × 8)
GRID_ROWS = 8  # a mesh grid aims at this many lines (a Galaxy: 4 columns × 8)
PHASE_LEGEND = ("loading (weights placed) → warm-up (compile: short-lived buffers) → capture (TRACE allocated) → "
                "replay (trace runs, near silence) → released → teardown · ? explains · Enter on a buffer: evidence")


@dataclass(slots=True)
class DeviceRow:
    """What one device shows in a frame. ``totals`` has 7 entries by BufferType; caps 0 = unknown.
    ``rate_*``: bytes per second over the last sample period; ``peak_*``: the highest use seen."""

    device: int
    arch: str
    totals: list[int]
    cap_dram: int
    cap_l1: int
    rate_dram: float = 0.0
    rate_l1: float = 0.0
    phase: str = ""
    buffers: int = 0  # live entries; -1 = unknown (a totals-only source)
    peak_dram: int = 0
    peak_l1: int = 0


def bar_cells(parts: list[tuple[int, str]], cap: int, width: int, peak: int = 0) -> list[tuple[str, str, str]]:
    """A stacked bar as (char, fg class, bg class) per cell: ``parts`` are (bytes, class) in stack order.

    Exactly proportional, in eighths of a cell: a cell where one part ends and the next begins is a
    partial block in the first part's colour over the next part's (or the empty background). A
    ``peak`` beyond the current use is a thin mark in the empty part (btop's high-water mark)."""
    cells: list[tuple[str, str, str]] = []
    if width <= 0 or cap <= 0:
        return cells
    total8 = width * 8
    bounds: list[tuple[int, str]] = []  # (end in eighths, class), cumulative
    acc = 0
    for size, cls in parts:
        if size <= 0:
            continue
        acc += size
        bounds.append((min(total8, int(acc * total8 / cap)), cls))

    def owner(e: int) -> str:  # the class covering eighth ``e``
        for end, cls in bounds:
            if e < end:
                return cls
        return "empty"

    for c in range(width):
        lo = c * 8
        first = owner(lo)
        if first == owner(lo + 7):
            cells.append(("█" if first != "empty" else " ", first, "empty"))
            continue
        # a boundary inside the cell: the first owner's eighths, over the colour of what follows it
        k = next((end for end, _ in bounds if lo < end <= lo + 7), lo + 8) - lo
        last = owner(lo + k)
        if first == "empty":  # (cannot happen: parts are contiguous from 0) keep it safe
            cells.append((" ", "empty", "empty"))
        else:
            cells.append((_PARTIAL[k] if 0 < k < 8 else "█", first, last))
    if peak > acc and cap:
        pc = min(width - 1, int(peak * width / cap))
        ch, fg, _bg = cells[pc]
        if fg == "empty":
            cells[pc] = ("▏" if pc else "│", "peak", "empty")
    return cells


class DevicePane(ScrollView, can_focus=True):
    """Meters against capacity; colours from component classes so themes restyle them."""

    COMPONENT_CLASSES = {
        "devicepane--dram", "devicepane--trace", "devicepane--l1", "devicepane--l1small", "devicepane--sys",
        "devicepane--cb", "devicepane--kernel", "devicepane--empty", "devicepane--ok", "devicepane--warn",
        "devicepane--crit", "devicepane--label", "devicepane--dim", "devicepane--spark", "devicepane--phase",
        "devicepane--peak",
    }

    def __init__(self, history_scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.rows: list[DeviceRow] = []
        self.expanded = False  # the Devices pane has the whole screen
        self.history_scale = history_scale  # sparklines: full height = capacity × this
        self.types_shown: frozenset[int] = frozenset(range(7))
        self.layout_mode = "one"  # "two", "one" or "grid": what the last build chose
        self._mesh_phase = ""  # the one phase of every device shown ("" when they differ)
        self._hist_dram: dict[int, deque[int]] = {}
        self._hist_l1: dict[int, deque[int]] = {}
        self._prev: dict[int, tuple[int, int]] = {}
        self._rates: dict[int, tuple[float, float]] = {}
        self._peaks: dict[int, list[int]] = {}
        self._lines: list[list[Segment]] | None = None
        self._lines_key: tuple = ()
        self._unstyled = False
        self._styles: dict[str, Style] = {}

    def reset(self) -> None:
        """Forget history, rates and peaks (a replay moved in time)."""
        self._hist_dram.clear()
        self._hist_l1.clear()
        self._prev.clear()
        self._rates.clear()
        self._peaks.clear()

    def reset_peaks(self) -> None:
        """``r``: the meters' peak marks start over from the next frame, with the core's peaks.

        The marks are the high-water of each bar as shown (the stacked sum of the types shown), which
        every source has, totals-only ones too; core/peaks.py keeps the per-type peaks of event sources."""
        self._peaks.clear()

    # ------------------------------------------------------------------ data in
    def update_frame(self, rows: list[DeviceRow], types_shown: frozenset[int], sample: bool,
                     dt: float = 0.0) -> None:
        """New totals. ``sample``: this frame ends a refresh period of ``dt`` seconds (Δ/s and the
        history advance). Peaks are of what is shown: a type filter change starts them over."""
        if types_shown != self.types_shown:
            self._peaks.clear()
        for r in rows:  # Δ and history of what is shown: with a type filter, of those types only
            dram = sum(r.totals[t] for t in DRAM_STACK if t in types_shown)
            l1 = sum(r.totals[t] for t in L1_STACK if t in types_shown)
            pk = self._peaks.get(r.device)
            if pk is None:
                pk = self._peaks[r.device] = [dram, l1]
            else:
                pk[0], pk[1] = max(pk[0], dram), max(pk[1], l1)
            r.peak_dram, r.peak_l1 = pk
            prev = self._prev.get(r.device)
            if sample:
                self._hist_dram.setdefault(r.device, deque(maxlen=HISTORY)).append(dram)
                self._hist_l1.setdefault(r.device, deque(maxlen=HISTORY)).append(l1)
                if prev is not None and dt > 0:
                    self._rates[r.device] = ((dram - prev[0]) / dt, (l1 - prev[1]) / dt)
                self._prev[r.device] = (dram, l1)
            elif prev is None:
                self._prev[r.device] = (dram, l1)
            r.rate_dram, r.rate_l1 = self._rates.get(r.device, (0.0, 0.0))
        self.rows = rows
        self.types_shown = types_shown
        old = self._lines
        self._lines = None
        self._relayout()
        if old is None or self._lines != old:  # an idle monitor redraws nothing
            self.refresh()

    def set_history_scale(self, scale: float) -> None:
        self.history_scale = scale
        self._lines = None
        self.refresh()

    def _budget(self) -> int:
        """Lines the pane may take: all of the screen below the header and tabs when it is the only
        pane, else half of it (the CSS max-height), so the process or buffer list keeps the rest."""
        h = self.app.size.height if self.is_attached else 24
        return max(2, h - 5) if self.expanded else max(2, h // 2 - 1)

    def _relayout(self) -> None:
        n = len(self._build_lines(max(self.scrollable_content_region.width, 40)))
        if self.virtual_size.height != n:
            self.virtual_size = Size(self.size.width, n)

    def on_resize(self) -> None:
        self._lines = None
        self._relayout()

    # ------------------------------------------------------------------ drawing
    def _style(self, name: str) -> Style:
        st = self._styles.get(name)
        if st is not None:
            return st
        try:
            st = self.get_component_rich_style(f"devicepane--{name}", partial=True)
        except KeyError:  # drawn before the stylesheet reached us: draw plain, do not cache
            self._unstyled = True
            return Style()
        self._styles[name] = st
        return st

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._lines = None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        lines = self._build_lines(width)
        idx = y + int(self.scroll_offset.y)
        base = self.rich_style
        if 0 <= idx < len(lines):
            return Strip(lines[idx]).adjust_cell_length(width, base).apply_style(base)
        return Strip.blank(width, base)

    def _choose_layout(self, n: int, width: int, summary: int) -> str:
        budget = self._budget() - summary
        if n <= 8 and 2 * n <= budget and width >= 60:
            return "two"
        if n + 0 <= budget and (n <= 8 or width >= 100):
            return "one"
        return "grid"

    def _build_lines(self, width: int) -> list[list[Segment]]:
        key = (width, self._budget(), self.history_scale)
        if self._lines is not None and self._lines_key == key:
            return self._lines
        out: list[list[Segment]] = []
        rows = self.rows
        if not rows:
            out.append([Segment("no device has reported yet", self._style("dim"))])
        else:
            summary = self._summary_lines(rows, width)
            out.extend(summary)
            mode = self.layout_mode = self._choose_layout(len(rows), width, len(summary))
            if mode == "grid":
                out.extend(self._grid_lines(rows, width))
            for r in rows if mode != "grid" else ():
                if mode == "one":
                    out.append(self._device_line(r, width))
                else:
                    out.append(self._half_line(r, width, "dram"))
                    out.append(self._half_line(r, width, "l1"))
            if self.expanded and len(out) + 2 <= self._budget():  # pane 1 has room: what the phases mean
                out.append([])
                out.append([Segment("phases ", self._style("label")),
                            Segment(PHASE_LEGEND, self._style("dim"))])
        if not self._unstyled:
            self._lines = out
            self._lines_key = key
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
        phases = {r.phase for r in rows}
        self._mesh_phase = next(iter(phases)) if len(phases) == 1 and len(rows) > 1 else ""
        if self._mesh_phase:  # the mesh's one phase (one-line rows show theirs only when they differ)
            segs.append(Segment(f"{self._mesh_phase}  ", self._style("phase")))
        count = None
        if all(r.buffers >= 0 for r in rows):
            count = Segment(f"│ {sum(r.buffers for r in rows):,} buffers", self._style("dim"))
        legend: list[Segment] = []
        for t in (0, 4, 1, 3, 2, 5, 6):
            if t in self.types_shown:
                legend.append(Segment("█", self._style(_TYPE_CLASS[t])))
                legend.append(Segment(f"{_LEGEND[t]} ", self._style("dim")))
        legend.append(Segment("▏", self._style("peak")))
        legend.append(Segment("peak", self._style("dim")))
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

    def _bar(self, totals: list[int], stack: tuple[int, ...], cap: int, width: int, peak: int = 0) -> list[Segment]:
        if width <= 0:
            return []
        if not cap:
            txt = "capacity unknown"[:width]
            return [Segment(txt.center(width), self._style("dim"))]
        parts = [(totals[t], _TYPE_CLASS[t]) for t in stack if t in self.types_shown]
        segs: list[Segment] = []
        empty_bg = self._style("empty").bgcolor
        run_text, run_style = "", None
        for ch, fg, bg in bar_cells(parts, cap, width, peak):
            if fg == "empty":
                style = self._style("empty")
            else:
                fg_style = self._style(fg)
                bg_color = empty_bg if bg == "empty" else self._style(bg).color
                style = Style(color=fg_style.color, bgcolor=bg_color)
            if style == run_style:
                run_text += ch
            else:
                if run_text:
                    segs.append(Segment(run_text, run_style))
                run_text, run_style = ch, style
        if run_text:
            segs.append(Segment(run_text, run_style))
        return segs

    def _numbers(self, used: int, cap: int, short: bool) -> Segment:
        frac = used / cap if cap else 0.0
        if short:
            return Segment(f" {frac * 100:5.1f}%" if cap else f" {human(used):>8}",
                           self._style(level(frac)) if cap else self._style("dim"))
        if cap:
            return Segment(f" {human(used):>9}/{human(cap):<9}{frac * 100:5.1f}%", self._style(level(frac)))
        return Segment(f" {human(used):>9}/{'?':<9}{'':>6}", self._style("dim"))

    def _parts(self, r: DeviceRow):
        return {"dram": ("DRAM", DRAM_STACK, r.cap_dram, r.rate_dram, self._hist_dram.get(r.device), r.peak_dram),
                "l1": ("L1", L1_STACK, r.cap_l1, r.rate_l1, self._hist_l1.get(r.device), r.peak_l1)}

    def _meter(self, r: DeviceRow, which: str, width: int) -> list[Segment]:
        """One meter in ``width`` cells: name, bar, then as much as fits of used/capacity, Δ/s, history."""
        name, stack, cap, rate_v, hist, peak = self._parts(r)[which]
        used = sum(r.totals[t] for t in stack if t in self.types_shown)
        segs = [Segment(f"{name:<5}", self._style("label"))]
        avail = width - 5
        full = avail >= 26 + 12 + 12
        medium = not full and avail >= 26 + 10
        tail = (26 + 12) if full else 26 if medium else (7 if cap else 9)
        spark_w = 0
        if full:
            spark_w = max(0, min(120, (avail - tail) // 2))
            if spark_w < 8:
                spark_w = 0
        bar_w = max(4, avail - tail - (spark_w + 1 if spark_w else 0))
        segs += self._bar(r.totals, stack, cap, bar_w, peak)
        segs.append(self._numbers(used, cap, not (full or medium)))
        if full:
            segs.append(Segment(f" {rate(rate_v):>11}", self._style("dim")))
        if spark_w:
            scale = cap * self.history_scale if cap else 0
            segs.append(Segment(" " + sparkline(hist or (), spark_w, scale).rjust(spark_w), self._style("spark")))
        return segs

    def _half_line(self, r: DeviceRow, width: int, which: str) -> list[Segment]:
        """Two lines per device: the DRAM meter beside the device's name, the L1 meter beside its phase."""
        if which == "dram":
            arch = ARCH_SHORT.get(r.arch, r.arch[:4])
            segs = [Segment(f"{r.device:>3} {arch:<4} ", self._style("label"))]
        else:
            segs = [Segment(f" {r.phase[:8]:<8}", self._style("phase"))]
        return segs + self._meter(r, which, width - 9)

    def _device_line(self, r: DeviceRow, width: int) -> list[Segment]:
        """One device on one line: both meters side by side, its phase at the end unless the whole
        mesh is in one phase (the summary line says it once)."""
        arch = ARCH_SHORT.get(r.arch, r.arch[:4])
        segs = [Segment(f"{r.device:>3} {arch:<4} ", self._style("label"))]
        tail = 0 if self._mesh_phase else 10
        per = (width - 9 - tail) // 2 - 2
        for which in ("dram", "l1"):
            segs += self._meter(r, which, per)
            segs.append(Segment("  "))
        if r.phase and not self._mesh_phase:
            segs.append(Segment(r.phase[:9], self._style("phase")))
        return segs

    def _grid_lines(self, rows: list[DeviceRow], width: int) -> list[list[Segment]]:
        """A compact mesh grid: devices in columns (a Galaxy 4 × 8), each cell two short bars and %."""
        n = len(rows)
        cols_max = max(1, width // GRID_CELL_MIN)
        lines_left = max(1, self._budget() - 2)
        cols = max(1, min(cols_max, max(math.ceil(n / GRID_ROWS), math.ceil(n / lines_left))))
        while cols < cols_max and n % cols:
            cols += 1
        cell_w = width // cols
        bar_w = max(2, (cell_w - 3 - 1 - 4 - 2 - 4 - 1) // 2)
        nrows = math.ceil(n / cols)
        out: list[list[Segment]] = []
        for i in range(nrows):
            line: list[Segment] = []
            for j in range(cols):
                k = j * nrows + i  # down the columns: device numbers run like a mesh's rows
                if k >= n:
                    break
                r = rows[k]
                cell = [Segment(f"{r.device:>2} ", self._style("label"))]
                for which in ("dram", "l1"):
                    _name, stack, cap, _rate, _hist, peak = self._parts(r)[which]
                    used = sum(r.totals[t] for t in stack if t in self.types_shown)
                    cell.append(Segment("D" if which == "dram" else " L", self._style("dim")))
                    cell += self._bar(r.totals, stack, cap, bar_w, peak)
                    frac = used / cap if cap else 0.0
                    cell.append(Segment(f"{frac * 100:3.0f}%" if cap else f"{'?':>4}",
                                        self._style(level(frac)) if cap else self._style("dim")))
                used_w = sum(len(s.text) for s in cell)
                if j < cols - 1:
                    cell.append(Segment(" " * max(1, cell_w - used_w)))
                line += cell
            out.append(line)
        return out
