"""A chart of one device x pool over time: scaled to capacity, the peak marked, trace phases beneath.

Why: a sparkline scaled to its own min..max turns a 1 % wobble into a cliff and hides how close
the pool came to full; a chart from 0 to the pool's capacity shows the headroom. Each column is
the *max* of the history buckets it covers (core/history.py keeps maxima at every resolution), so
the spike that caused an OOM is never averaged away, and ``▼`` marks the high-water mark (when it
falls inside the span; otherwise the marker row says when it was). Under the time axis the trace
phases of the device's processes run as a band (one cell per column, the phase covering most of
it), so "the L1 peak came at capture" is read off the screen.

Pure parts (tested directly): :func:`bucket_columns` (history buckets -> one value per column) and
:func:`chart_lines` (a :class:`ChartData` -> lines of segments). :class:`HistoryChart` draws them
with its component classes, so themes restyle it. Layout (rows)::

    peak marker    ▼ peak 6.1 GiB 00:03:12
    body (>= 3)    bars in eighths of a cell (▲: above a zoomed scale), _ ╌ ▔ at the peak's height,
                   the y labels (capacity or its H fraction, half, 0)
    axis           └──┬──── ticks
    phases         ▒▒▒▓▓▓███ (the device's trace phases)
    times          -10m  -7m30s  -5m  ...  now
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from ...core.phases import Phase
from ..format import human
from .phase_timeline import band_cells

__all__ = ["GUTTER", "OVERHEAD", "ChartData", "HistoryChart", "ago", "bucket_columns", "chart_lines", "stack_columns"]

BLOCKS = " ▁▂▃▄▅▆▇█"  # 0..8 eighths of a cell, filled from the bottom
GUTTER = 8  # y labels (7 cells) and the axis line
OVERHEAD = 4  # rows besides the body: peak marker, axis, phases, times
TICKS = 4  # time-axis intervals
_EMPTY = frozenset(" ·_╌▔")  # cells drawn in the empty style: blank, not recorded, the peak line
#: phases shown in a band cell whenever they touch it: short, and what a peak is usually explained by
BRIEF_PHASES = frozenset({Phase.CAPTURE, Phase.RELEASED})


def bucket_columns(series: list[tuple[int, int, int]], t0: int, t1: int, n: int) -> list[int | None]:
    """One value per column over ``[t0, t1)``: the max of the buckets starting in it.

    A column no bucket starts in (buckets wider than columns) carries the last value of the bucket
    before it (usage is flat between changes); columns before the first bucket are None (nothing
    recorded yet: before memtop attached)."""
    out: list[int | None] = [None] * max(0, n)
    if n <= 0 or t1 <= t0:
        return out
    span = t1 - t0
    last = None
    filled = -1  # columns up to here are decided
    for start, vmax, vlast in series:
        c = (start - t0) * n // span
        if c < 0:
            last = vlast
            continue
        if c >= n:
            if start > t1:
                break
            c = n - 1  # the bucket that starts right now
        if last is not None:
            for k in range(filled + 1, c):
                out[k] = last
        cur = out[c]
        out[c] = vmax if cur is None or vmax > cur else cur
        filled = c
        last = vlast
    if last is not None:
        for k in range(filled + 1, n):
            out[k] = last
    return out


def axis_bytes(n: float) -> str:
    """A y-axis label in at most 7 cells: ``12.0G``, ``172M``, ``0``."""
    return human(n).replace(" GiB", "G").replace(" MiB", "M").replace(" KiB", "K").replace(" TiB", "T").replace(" B", "")


def ago(seconds: float, precise: bool = False) -> str:
    """``-10m``, ``-45s``, ``-1h30m`` (``precise``: ``-2.5s``): a time-axis label relative to now."""
    if precise and 0.05 <= seconds < 60:
        return "-" + f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    s = int(round(seconds))
    if s <= 0:
        return "now"
    if s < 60:
        return f"-{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"-{m}m{r:02d}s" if r else f"-{m}m"
    h, r = divmod(s, 3600)
    return f"-{h}h{r // 60:02d}m" if r // 60 else f"-{h}h"


@dataclass
class ChartData:
    """What one chart shows. Times are on the events' clock (ns); ``scale`` is the full height in bytes."""

    series: list[tuple[int, int, int]]
    t0: int
    t1: int
    scale: int
    capacity: int  # the pool's capacity (colours: warn / crit thresholds against it); 0 = unknown
    peak: int = 0
    peak_at: int = 0
    peak_text: str = ""  # how the peak's time reads ("00:03:12")
    bands: list = field(default_factory=list)  # phase segments (core.phases.Segment) of the device
    warn: float = 0.75
    crit: float = 0.90


def _col_of(ts: int, t0: int, t1: int, n: int) -> int:
    return (ts - t0) * n // (t1 - t0)


def peak_column(data: ChartData, n: int) -> int | None:
    """The column of the peak's history bucket (where the bars reach it), None when outside the span."""
    if not data.peak or not data.peak_at or data.t1 <= data.t0 or not (data.t0 <= data.peak_at <= data.t1):
        return None
    s = data.series
    width = s[1][0] - s[0][0] if len(s) > 1 else 1
    start = data.peak_at - data.peak_at % width if width > 0 else data.peak_at
    return max(0, min(n - 1, _col_of(max(start, data.t0), data.t0, data.t1, n)))


def chart_lines(data: ChartData, width: int, height: int, style: Callable[[str], Style]) -> list[list[Segment]]:
    """The chart in ``width`` x ``height`` cells. ``style(name)``: the style of a part: ``bar``, ``warn``,
    ``crit``, ``axis``, ``label``, ``peak``, ``empty`` and the phase colours (as Rich style strings)."""
    n = max(1, width - GUTTER)
    body = max(3, height - OVERHEAD)
    cols = bucket_columns(data.series, data.t0, data.t1, n)
    scale = max(1, data.scale)
    lines: list[list[Segment]] = []

    # peak marker row
    pc = peak_column(data, n)
    label = f"peak {human(data.peak)}" + (f" {data.peak_text}" if data.peak_text else "") if data.peak else ""
    row = [Segment(" " * GUTTER)]
    if pc is not None:
        text = f"▼ {label}"
        if pc + len(text) <= n:
            row += [Segment(" " * pc), Segment(text, style("peak"))]
        else:  # no room on the right: the label ends at the marker
            text = f"{label} ▼"
            pad = max(0, pc - len(text) + 1)
            row += [Segment(" " * pad), Segment(text[max(0, len(text) - pc - 1):], style("peak"))]
    elif label:
        row.append(Segment(f"◀ {label} (before this span)", style("peak")))
    lines.append(row)

    # body: eighths per column, coloured by the height of the row against the capacity
    eighths = []
    for v in cols:
        if v is None or v <= 0:
            eighths.append(0)
        else:
            eighths.append(max(1, min(body * 8, round(v * body * 8 / scale))))
    cap = data.capacity
    # the high-water mark as a faint line across the empty cells of its row (also when it is before the span)
    peak_e = max(1, round(data.peak * body * 8 / scale)) if 0 < data.peak <= scale else 0
    peak_row = body - 1 - (peak_e - 1) // 8 if peak_e else -1
    if peak_row == body - 1:
        peak_row = -1  # on the floor it says nothing the bars do not
    k_peak = peak_e - (body - 1 - peak_row) * 8  # 1..8 eighths up its row: a line low, mid or high in the cell
    line_ch = "_" if k_peak <= 2 else "╌" if k_peak <= 6 else "▔"
    for r in range(body):
        from_bottom = body - 1 - r
        if r == 0:
            ylabel = axis_bytes(scale)
        elif r == body // 2 and body >= 5:
            ylabel = axis_bytes(scale * (from_bottom + 1) / body)
        elif r == body - 1:
            ylabel = "0"
        else:
            ylabel = ""
        segs = [Segment(f"{ylabel:>7}"[:7], style("label")), Segment("┤" if ylabel else "│", style("axis"))]
        frac = (from_bottom + 1) / body * scale / cap if cap else 0.0
        bar = style("crit") if cap and frac > data.crit else style("warn") if cap and frac > data.warn else style("bar")
        run = []
        for c in range(n):
            k = eighths[c] - from_bottom * 8
            if k <= 0:
                run.append("·" if cols[c] is None and r == body - 1 else line_ch if r == peak_row else " ")
            elif r == 0 and cols[c] is not None and cols[c] > scale:
                run.append("▲")  # above the scale (H zoomed in): clipped, not at capacity
            else:
                run.append(BLOCKS[min(8, k)])
        text = "".join(run)
        # blanks, "not recorded" dots and the peak line in the empty style, blocks in the bar's
        i = 0
        while i < n:
            j = i
            solid = text[i] not in _EMPTY
            while j < n and (text[j] not in _EMPTY) == solid:
                j += 1
            segs.append(Segment(text[i:j], bar if solid else style("empty")))
            i = j
        lines.append(segs)

    # time axis with ticks
    ticks = {min(n - 1, round(i * (n - 1) / TICKS)) for i in range(TICKS + 1)}
    lines.append([Segment(" " * (GUTTER - 1) + "└", style("axis")),
                  Segment("".join("┴" if c in ticks else "─" for c in range(n)), style("axis"))])

    # phase band
    seg_band = [Segment(f"{'phases':>7} ", style("label"))]
    for ch, st in band_cells(data.bands, data.t0, data.t1, n, BRIEF_PHASES):
        seg_band.append(Segment(ch, style(st) if st else Style()))
    lines.append(seg_band)

    # time labels under the ticks (relative to now = t1)
    span_s = (data.t1 - data.t0) / 1e9
    labels = [" "] * n
    for i in (0, TICKS, *range(1, TICKS)):  # the ends first: "now" always shows
        c = min(n - 1, round(i * (n - 1) / TICKS))
        txt = ago(span_s * (1 - c / max(1, n - 1)), span_s < 20)
        start = max(0, min(n - len(txt), c - len(txt) // 2)) if i not in (0, TICKS) else \
            (0 if i == 0 else n - len(txt))
        if all(labels[k] == " " for k in range(max(0, start - 1), min(n, start + len(txt) + 1))):
            labels[start:start + len(txt)] = list(txt)
    lines.append([Segment(" " * GUTTER), Segment("".join(labels)[:n], style("label"))])
    return lines


class HistoryChart(Widget):
    """Draws :func:`chart_lines` for the :class:`ChartData` given to :meth:`show`; fills its region."""

    COMPONENT_CLASSES = {"historychart--bar", "historychart--warn", "historychart--crit", "historychart--axis",
                         "historychart--label", "historychart--peak", "historychart--empty"}
    DEFAULT_CSS = """
    HistoryChart { height: 1fr; min-height: 7; }
    HistoryChart > .historychart--bar { color: $primary; }
    HistoryChart > .historychart--warn { color: $warning; }
    HistoryChart > .historychart--crit { color: $error; }
    HistoryChart > .historychart--axis { color: $foreground-muted; }
    HistoryChart > .historychart--label { color: $foreground-muted; }
    HistoryChart > .historychart--peak { color: $foreground; text-style: bold; }
    HistoryChart > .historychart--empty { color: $foreground 30%; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.data: ChartData | None = None
        self._lines: list[list[Segment]] | None = None
        self._key: tuple = ()
        self._styles: dict[str, Style] = {}

    def show(self, data: ChartData) -> None:
        self.data = data
        self._lines = None
        self.refresh()

    def _style(self, name: str) -> Style:
        st = self._styles.get(name)
        if st is None:
            if name in ("bar", "warn", "crit", "axis", "label", "peak", "empty"):
                try:
                    st = self.get_component_rich_style(f"historychart--{name}", partial=True)
                except KeyError:
                    return Style()
            else:  # a phase colour (a Rich style string)
                st = Style.parse(name)
            self._styles[name] = st
        return st

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._lines = None

    def lines(self) -> list[list[Segment]]:
        w, h = self.size.width or 80, self.size.height or 12
        if self._lines is None or self._key != (w, h):
            self._lines = chart_lines(self.data, w, h, self._style) if self.data is not None else []
            self._key = (w, h)
        return self._lines

    def render_line(self, y: int) -> Strip:
        lines = self.lines()
        w = self.size.width
        if 0 <= y < len(lines):
            return Strip(lines[y]).adjust_cell_length(w, self.rich_style).apply_style(self.rich_style)
        return Strip.blank(w, self.rich_style)


def stack_columns(state, device: int, types, span_ns: int, n: int) -> list[int]:
    """The summed history of several pools of one device in ``n`` columns over the last ``span_ns``
    (the device pane's sparklines: DRAM + TRACE, or the L1 pools). Each pool's column is its max, so
    the sum is at least the stacked use at any instant in the column (0 where nothing was recorded).
    Read from history buckets up to two columns wide (a few dozen buckets, not hundreds: cheap enough
    for every frame; a peak is never lost, it may widen by a cell)."""
    out = [0] * max(0, n)
    now = state.last_ts_ns
    if n <= 0:
        return out
    for t in types:
        series = state.usage_history(device, t, span_ns, 2 * span_ns // n)  # buckets up to 2 cells wide: cheap
        if not series:
            continue
        for i, v in enumerate(bucket_columns(series, now - span_ns, now, n)):
            if v:
                out[i] += v
    return out
