"""Per-device memory meters: bars against capacity with a peak marker, Δ per second, history.

A Line-API ScrollView: a Galaxy's 32 devices are 32 cheap lines, scrolled, never 32 widgets.
Each tick the app hands it a frame of totals (:meth:`update_frame`); lines are drawn from that
frame only, so a paused view stays frozen while scrolling.

The sparklines read the monitor's one usage history (``MonitorState.usage_history``, the same the
history screen ``h`` charts), the last :data:`SPARK_SPAN_NS`, recomputed at most every
:data:`SPARK_PERIOD` (and once more after the last change, so a still view shows the last state).

Two stacked bars per device, by the memory they share: the DRAM bar stacks DRAM and TRACE
(the trace region sits at the top of the DRAM banks) against total DRAM; the L1 bar stacks L1,
L1_SMALL, SYSTEM_MEMORY, CB and KERNEL against total L1. Bars are exactly proportional (eighths
of a cell with partial blocks; nothing gets a cell it has not earned). History is drawn on an
absolute scale (capacity × ``history_scale``), each cell the max of the samples it covers.

The layout is chosen by the room there is (as btop does): two lines per device with history
when they fit, one line per device, or the mesh grid of :mod:`.mesh_grid` (a 32-device Galaxy on
8 lines, outliers marked; the same grid the address-map and history screens pick devices with).
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...core.insight import warning_text
from ..format import human, level, rate, sparkline
from .mesh_grid import COMPONENT_CLASSES as MESH_CLASSES
from .mesh_grid import GRID_CELL_MIN, GRID_ROWS, mesh_lines
from .meter import DRAM_STACK, L1_STACK, TYPE_CLASS, DeviceRow, bar_cells, bar_segments

__all__ = ["ARCH_SHORT", "DRAM_STACK", "GRID_CELL_MIN", "GRID_ROWS", "L1_STACK", "SPARK_SPAN_NS", "DevicePane",
           "DeviceRow", "bar_cells"]

_TYPE_CLASS = TYPE_CLASS
SPARK_SPAN_NS = 120_000_000_000  # the sparklines show the last 2 minutes of the one usage history
SPARK_PERIOD = 0.25  # s: a sparkline is recomputed at most this often (a Galaxy's 64 cost ~7 ms)
_LEGEND = {0: "DRAM", 1: "L1", 2: "SYS", 3: "L1_SMALL", 4: "TRACE", 5: "CB", 6: "KERNEL"}
ARCH_SHORT = {"Wormhole_B0": "WH", "Blackhole": "BH", "Grayskull": "GS", "Quasar": "QS"}
PHASE_LEGEND = ("loading (weights placed) → warm-up (compile: short-lived buffers) → capture (TRACE allocated) → "
                "replay (trace runs, near silence) → released → teardown · ? explains · Enter on a buffer: evidence")
#: history(device, types, span_ns, columns) -> bytes per column (max-preserving), oldest first
HistoryFn = Callable[[int, tuple[int, ...], int, int], list[int]]


class DevicePane(ScrollView, can_focus=True):
    """Meters against capacity; colours from component classes so themes restyle them."""

    COMPONENT_CLASSES = set(MESH_CLASSES) | {"devicepane--spark", "devicepane--phase"}

    def __init__(self, history_scale: float = 1.0, history: HistoryFn | None = None, **kw) -> None:
        super().__init__(**kw)
        self.rows: list[DeviceRow] = []
        self.expanded = False  # the Devices pane has the whole screen
        self.history_scale = history_scale  # sparklines: full height = capacity × this
        self.types_shown: frozenset[int] = frozenset(range(7))
        self.layout_mode = "one"  # "two", "one" or "grid": what the last build chose
        self._mesh_phase = ""  # the one phase of every device shown ("" when they differ)
        self.history = history  # the one usage history (None: no sparklines)
        # (device, bar, width, types) -> (monotonic time computed, columns); see _spark_columns
        self._spark: dict[tuple, tuple[float, list[int]]] = {}
        self._spark_due = False  # a sparkline was left stale by the throttle: a redraw is scheduled
        self._prev: dict[int, tuple[int, int]] = {}
        self._rates: dict[int, tuple[float, float]] = {}
        #: (device, headroom warning) the next typical allocation will not fit / fits once more (core/insight.py)
        self.alerts: list[tuple[int, dict]] = []
        self.empty_note = ""  # shown under "no device has reported yet": why (the source's error)
        self.unread: list[str] = []  # regions the source could not read, and why (shown under the summary)
        self._lines: list[list[Segment]] | None = None
        self._lines_key: tuple = ()
        self._unstyled = False
        self._styles: dict[str, Style] = {}
        self._bars: dict = {}  # drawn bars by what their cells depend on (meter.bar_segments); styles change: emptied
        self._frame: tuple[int, Style] | None = None  # (width, base style) while render_lines draws

    def reset(self) -> None:
        """Forget rates (a replay moved in time; the history and the peaks are the state's)."""
        self._spark.clear()
        self._prev.clear()
        self._rates.clear()

    # ------------------------------------------------------------------ data in
    def update_frame(self, rows: list[DeviceRow], types_shown: frozenset[int], sample: bool,
                     dt: float = 0.0, alerts: list[tuple[int, dict]] | None = None) -> None:
        """New totals (each row with its bars' peaks from the core). ``sample``: this frame ends a refresh
        period of ``dt`` seconds (Δ/s and the history advance). ``alerts``: new headroom warnings
        (None: keep the last ones)."""
        if alerts is not None:
            self.alerts = alerts
        for r in rows:  # Δ and history of what is shown: with a type filter, of those types only
            dram = sum(r.totals[t] for t in DRAM_STACK if t in types_shown)
            l1 = sum(r.totals[t] for t in L1_STACK if t in types_shown)
            prev = self._prev.get(r.device)
            if sample:
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
        new = self._lines
        if old is None or new is None or len(new) != len(old):
            self.refresh()
        elif new != old:  # only the lines that changed (an idle monitor redraws nothing)
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                if a != b:
                    self.refresh_line(i)

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
        self._bars.clear()
        self._lines = None

    def render_lines(self, crop):
        """The base style (a walk over every ancestor's styles) and width, once for the lines drawn."""
        self._frame = (self.scrollable_content_region.width, self.rich_style)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        width, base = self._frame or (self.scrollable_content_region.width, self.rich_style)
        lines = self._build_lines(width)
        idx = y + int(self.scroll_offset.y)
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
        if not rows:  # and why, when the source said (an error: its whole message, wrapped)
            out.append([Segment("no device has reported yet", self._style("dim"))])
            for ln in textwrap.wrap(self.empty_note, max(20, width)):
                out.append([Segment(ln, self._style("crit"))])
        else:
            summary = self._summary_lines(rows, width) + self._alert_lines(width) + self._unread_lines(width)
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
        else:
            self._bars.clear()  # bars drawn before the stylesheet applied: plain, not to be kept
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
        if any(r.peak_dram or r.peak_l1 for r in rows):  # no marks (a PID filter): no legend for them
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

    def _alert_lines(self, width: int, most: int = 2) -> list[list[Segment]]:
        """Why the next allocation will fail, before it does: one line per warning (the worst first, at most
        ``most``), in full where it fits, else short; the address map (``m``) shows the banks."""
        order = sorted(self.alerts, key=lambda a: (a[1]["level"] != "would_fail", a[0]))
        out = []
        for d, w in order[:most]:
            fail = w["level"] == "would_fail"
            full = "⚠ " + warning_text(d, w) + " · m: the banks"
            # the verdict first: a cut line still says it
            short = (f"⚠ dev {d} {w['pool']}: next {human(w['typical_bytes'])} {'won’t fit' if fail else 'fits once'}"
                     f" ({human(w['typical_per_bank'])}/bank needed, largest free {human(w['largest_free_bytes'])})")
            text = full if len(full) <= width else short
            out.append([Segment(text[:width], self._style("crit" if fail else "warn"))])
        if len(order) > most:
            out.append([Segment(f"  +{len(order) - most} more warnings · m: the address map", self._style("dim"))])
        return out

    def _unread_lines(self, width: int, most: int = 2) -> list[list[Segment]]:
        """A region that was not read has no row (its device is not known): say so, or its memory would
        silently be missing from the totals."""
        out = [[Segment(("not read: " + u)[:width], self._style("warn"))] for u in self.unread[:most]]
        if len(self.unread) > most:
            out.append([Segment(f"  +{len(self.unread) - most} more regions not read (memtop --once lists them)",
                                self._style("dim"))])
        return out

    def _used_segments(self, name: str, used: int, cap: int) -> list[Segment]:
        if cap:
            frac = used / cap
            return [Segment(f"{name} ", self._style("label")),
                    Segment(f"{human(used):>8}/{human(cap)} {frac * 100:5.1f}%", self._style(level(frac)))]
        return [Segment(f"{name} ", self._style("label")), Segment(f"{human(used):>8} (capacity unknown)",
                                                                     self._style("dim"))]

    def _bar(self, totals: list[int], stack: tuple[int, ...], cap: int, width: int, peak: int = 0) -> list[Segment]:
        return bar_segments(totals, stack, cap, width, self._style, self.types_shown, peak,
                            None if self._unstyled else self._bars)

    def _numbers(self, used: int, cap: int, short: bool) -> Segment:
        frac = used / cap if cap else 0.0
        if short:
            return Segment(f" {frac * 100:5.1f}%" if cap else f" {human(used):>8}",
                           self._style(level(frac)) if cap else self._style("dim"))
        if cap:
            return Segment(f" {human(used):>9}/{human(cap):<9}{frac * 100:5.1f}%", self._style(level(frac)))
        return Segment(f" {human(used):>9}/{'?':<9}{'':>6}", self._style("dim"))

    def _parts(self, r: DeviceRow):
        return {"dram": ("DRAM", DRAM_STACK, r.cap_dram, r.rate_dram, r.peak_dram),
                "l1": ("L1", L1_STACK, r.cap_l1, r.rate_l1, r.peak_l1)}

    def _spark_columns(self, device: int, which: str, stack: tuple[int, ...], width: int) -> list[int]:
        """A meter's sparkline from the one history, recomputed at most every SPARK_PERIOD s (a frame that
        comes sooner reuses it and schedules one redraw, so the last state is always drawn in the end)."""
        if self.history is None:
            return []
        types = tuple(t for t in stack if t in self.types_shown)
        key = (device, which, width, types)
        now = time.monotonic()
        hit = self._spark.get(key)
        if hit is not None and now - hit[0] < SPARK_PERIOD:
            if not self._spark_due and self.is_attached:
                self._spark_due = True
                self.set_timer(SPARK_PERIOD, self._spark_redraw)
            return hit[1]
        cols = self.history(device, types, SPARK_SPAN_NS, width)
        self._spark[key] = (now, cols)
        return cols

    def _spark_redraw(self) -> None:
        self._spark_due = False
        self._spark.clear()
        old, self._lines = self._lines, None
        if self._build_lines(max(self.scrollable_content_region.width, 40)) != old:  # idle: nothing redrawn
            self.refresh()

    def _meter(self, r: DeviceRow, which: str, width: int) -> list[Segment]:
        """One meter in ``width`` cells: name, bar, then as much as fits of used/capacity, Δ/s, history."""
        name, stack, cap, rate_v, peak = self._parts(r)[which]
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
            hist = self._spark_columns(r.device, which, stack, spark_w)
            segs.append(Segment(" " + sparkline(hist, spark_w, scale).rjust(spark_w), self._style("spark")))
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
        """The mesh grid (a Galaxy 4 x 8): see :mod:`.mesh_grid`."""
        return mesh_lines(rows, width, self._style, max(1, self._budget() - 2), self.types_shown,
                          bars=None if self._unstyled else self._bars)
