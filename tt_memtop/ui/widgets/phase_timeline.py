"""Trace phases per process: a band of the recent past (one cell per time slot) and the evidence now.

Under the processes table: for each process, its current phase with why we think so (the
tracker's evidence text: "trace 11.9 MiB TRACE on 8 devices held, 3 allocs in last 2.0 s"),
and a band of its phases over the last ``span_s`` seconds, drawn from the tracker's segments
(backdated to where the evidence began, captures widened to their run).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ...core.model import MonitorState
from ...core.phases import Phase, Segment
from .relayout import update

__all__ = ["PHASE_CELLS", "PhaseTimeline", "band", "band_cells", "legend", "timeline_renderable"]

#: phase -> (cell character, style)
PHASE_CELLS: dict[Phase, tuple[str, str]] = {
    Phase.IDLE: ("·", "dim"),
    Phase.LOADING: ("▒", "blue"),
    Phase.WARMUP: ("▓", "yellow"),
    Phase.CAPTURE: ("█", "magenta"),
    Phase.REPLAY: ("█", "green"),
    Phase.RELEASED: ("▒", "cyan"),
    Phase.TEARDOWN: ("░", "red"),
    Phase.EXITED: (" ", ""),
}
NS = 1_000_000_000


def band(segments: list[Segment], t0_ns: int, t1_ns: int, width: int) -> Text:
    """One cell per ``(t1 - t0) / width``: the phase that covers most of it (blank: not seen)."""
    out = Text()
    for ch, style in band_cells(segments, t0_ns, t1_ns, width):
        out.append(ch, style)
    return out


def band_cells(segments: list[Segment], t0_ns: int, t1_ns: int, width: int,
               keep: frozenset = frozenset()) -> list[tuple[str, str]]:
    """:func:`band` as (character, Rich style) per cell (the history chart draws it with Segments).
    ``keep``: phases that take a cell they touch at all (a capture of 0.1 s in a cell of 10 s still shows)."""
    out: list[tuple[str, str]] = []
    if width <= 0 or t1_ns <= t0_ns:
        return out
    step = (t1_ns - t0_ns) / width
    segs = sorted(segments, key=lambda s: s.start_ns)
    i = 0
    for c in range(width):
        lo, hi = t0_ns + c * step, t0_ns + (c + 1) * step
        while i < len(segs) and segs[i].end_ns <= lo:
            i += 1
        best, cover = None, 0.0
        j = i
        while j < len(segs) and segs[j].start_ns < hi:
            got = min(hi, segs[j].end_ns) - max(lo, segs[j].start_ns)
            if got > 0 and segs[j].phase in keep:
                got += hi - lo  # more than any phase without the privilege can cover
            if got > cover:
                best, cover = segs[j].phase, got
            j += 1
        out.append(PHASE_CELLS.get(best, (" ", "")) if best is not None else (" ", ""))
    return out


def legend() -> Text:
    out = Text()
    for ph, (ch, style) in PHASE_CELLS.items():
        if ph is Phase.EXITED:
            continue
        out.append(ch, style)
        out.append(f" {ph.value}  ", "dim")
    return out


def timeline_renderable(state: MonitorState, pids: list[int], width: int, span_s: float = 60.0,
                        rows: int = 4) -> Table | Text:
    tracker = state.phases
    if tracker is None or not pids:
        return Text("")
    now = tracker.now_ns
    all_segs = [s for s in tracker.segments(relabel_capture=True) if s.pid in pids]
    t0 = max(min((s.start_ns for s in all_segs), default=now), now - int(span_s * NS))
    segs = [s for s in all_segs if s.end_ns > t0]
    by_pid: dict[int, list[Segment]] = {}
    for s in segs:
        by_pid.setdefault(s.pid, []).append(s)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, width=8, justify="right")
    grid.add_column(no_wrap=True)
    band_w = max(10, width - 10)
    shown = [p for p in pids if p in by_pid][:rows]
    for pid in shown:
        st = tracker.current(pid)
        ch, style = PHASE_CELLS.get(st.phase, (" ", ""))
        line = Text()
        line.append(f"{st.phase.value:<8} ", style or "bold")
        line.append(st.evidence, "dim")
        line.truncate(band_w, overflow="ellipsis")
        grid.add_row(Text(str(pid), "bold"), line)
        grid.add_row("", band(by_pid[pid], t0, now, band_w))
    if shown:
        span = (now - t0) / NS
        grid.add_row(Text(f"-{span:.0f}s", "dim"), legend())
    return grid


def _content(r: Table | Text) -> tuple:
    """What a timeline shows, comparable: each cell's text, spans and style, row by row."""
    if isinstance(r, Text):
        return ((r.plain, tuple(r.spans), str(r.style)),)
    cols = [list(c.cells) for c in r.columns]
    return tuple((c.plain, tuple(c.spans), str(c.style)) if isinstance(c, Text) else (str(c),)
                 for row in zip(*cols, strict=True) for c in row)


class PhaseTimeline(Static):
    """The phase bands of the processes in view (see the module docstring). Drawn again only when
    what it shows changed; the screen is laid out again only when its number of lines did."""

    DEFAULT_CSS = "PhaseTimeline { height: auto; max-height: 10; }"

    last: Table | Text = Text("")

    def show(self, state: MonitorState, pids: list[int]) -> None:
        grid = timeline_renderable(state, pids, max(20, self.size.width or 80))
        content = _content(grid)
        if content == getattr(self, "_shown", None):
            return
        lines = grid.row_count if isinstance(grid, Table) else len(grid.plain.splitlines())
        same_height = lines == getattr(self, "_lines", None)
        self.last, self._shown, self._lines = grid, content, lines
        update(self, grid, layout=not same_height)
