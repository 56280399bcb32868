"""Live buffers: a sortable, filterable, optionally grouped top-N window over every live buffer.

The ranking itself (:func:`~tt_memtop.ui.buffer_query.compute_window`) runs in a worker thread
on a copy of the registry's list, at most a few times a second; this pane only shows the result.
"""

from __future__ import annotations

from rich.text import Text

from ..buffer_query import Window
from ..format import duration, human, plural, type_name
from .ranked_pane import RankedPane

DEV_WIDTH = 5  # "0-3,5"; longer lists become a count
COLUMNS = (("rank", "#", 4), ("id", "buffer id", 12), ("dev", "dev", DEV_WIDTH), ("type", "type", 8), ("size", "size", 9),
           ("total", "total", 9), ("pid", "pid", 8), ("proc", "process", 12), ("refs", "refs", 4), ("age", "age", 7),
           ("name", "name", None))


#: sort order name -> the column it sorts by
SORT_COLUMN = {"size": "size", "total": "total", "id": "id", "age": "age", "device": "dev", "dev": "dev",
               "type": "type", "pid": "pid", "refs": "refs", "name": "name"}


def devices_text(devs: tuple[int, ...], width: int = 0) -> str:
    """(0,1,2,3,5) -> "0-3,5": a T3K-wide TRACE buffer reads "0-7". ``width``: a list that would not fit
    becomes a count ("6 dev"), never a cut list ("0-3," would say devices 0 to 3)."""
    text = _spans(devs)
    if width and len(text) > width:
        short = f"{len(devs)} dev"
        text = short if len(short) <= width else f"{len(devs)}dev"
    return text


def _spans(devs: tuple[int, ...]) -> str:
    out: list[str] = []
    start = prev = None
    for d in devs:
        if start is None:
            start = prev = d
        elif d == prev + 1:
            prev = d
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = d
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


class BuffersPane(RankedPane):
    """A status line saying what is shown (of how many, sorted how), then the table."""

    COLUMNS = COLUMNS
    GROW = ("proc", "name")
    GROW_MAX = {"proc": 48}  # process names are cut to 48
    DROP = ("refs", "total", "age", "name")  # least important first (a narrow terminal leaves them out)
    NAME = "buffers"

    def show(self, window: Window, sort: str, invert: bool, group: bool, now_ns: int, pname, note: str = "") -> None:
        """``note``: why there is nothing to show (a source without per-buffer data), instead of the counts."""
        what = "group" if group else "buffer"
        arrow = "↑" if invert else "↓"
        status_line = self.status_line(note)
        if status_line is None:
            return
        status = Text()
        status.append(f"{plural(window.live, 'live buffer')}", "bold")
        # short enough for 80 columns whole (a cut "grouped by" said nothing): "showing top N" only when it
        # is not all of them
        shown = f" · top {len(window.rows):,} by {sort} {arrow}" if len(window.rows) < window.matched \
            else f", by {sort} {arrow}"
        status.append(f" · {plural(window.matched, what)} match{'es' if window.matched == 1 else ''}{shown}")
        if group:
            status.append(" · grouped across devices")
        self.set_status(status_line, status)
        rows = []
        for r in window.rows:
            age = duration((now_ns - r.alloc_ts_ns) / 1e9) if r.alloc_ts_ns and now_ns >= r.alloc_ts_ns else "—"
            rows.append((r.key, (f"{r.buffer_id:#x}", devices_text(r.devices, DEV_WIDTH), type_name(r.buffer_type),
                                 human(r.size), human(r.total), str(r.owner_pid), pname(r.owner_pid)[:48],
                                 str(r.ref_count), age, r.name[:160])))
        self.table.apply_rows(rows)
        self.table.mark_sort(SORT_COLUMN.get(sort, ""), invert)
