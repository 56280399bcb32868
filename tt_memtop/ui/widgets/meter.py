"""Stacked meters against capacity, shared by the device pane's rows and the mesh grid's cells.

:class:`DeviceRow` is what one device shows in a frame; :func:`bar_cells` lays a stacked bar out
in eighths of a cell (pure); :func:`bar_segments` styles it with a widget's ``style(name)``
(component classes ``devicepane--<name>``, so one stylesheet colours every meter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style

from ...core.peaks import DRAM_BAR as DRAM_STACK  # DRAM, TRACE
from ...core.peaks import L1_BAR as L1_STACK  # L1, L1_SMALL, SYSTEM_MEMORY, CB, KERNEL

__all__ = ["DRAM_STACK", "L1_STACK", "TYPE_CLASS", "DeviceRow", "bar_cells", "bar_segments", "stack_used"]

TYPE_CLASS = {0: "dram", 1: "l1", 2: "sys", 3: "l1small", 4: "trace", 5: "cb", 6: "kernel"}
_PARTIAL = " ▏▎▍▌▋▊▉"  # 0..7 eighths of a cell, filled from the left
BAR_CACHE = 256  # bars kept per widget (a Galaxy's 64 meters, a few layouts): dropped all at once when full


@dataclass(slots=True)
class DeviceRow:
    """What one device shows in a frame. ``totals`` has 7 entries by BufferType; caps 0 = unknown.
    ``rate_*``: bytes per second over the last sample period; ``peak_*``: each bar's high water since
    attach / reset (core/peaks.py, event-exact: :meth:`~tt_memtop.core.peaks.PeakTracker.bar_peak`),
    0 = no mark."""

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


def stack_used(totals: list[int], stack: tuple[int, ...], shown: frozenset[int]) -> int:
    return sum(totals[t] for t in stack if t in shown)


def bar_cells(parts: list[tuple[int, str]], cap: int, width: int, peak: int = 0) -> list[tuple[str, str, str]]:
    """A stacked bar as (char, fg class, bg class) per cell: ``parts`` are (bytes, class) in stack order.

    Exactly proportional, in eighths of a cell: a cell where one part ends and the next begins is a
    partial block in the first part's colour over the next part's (or the empty background). A
    ``peak`` beyond the current use is a thin mark in the empty part (btop's high-water mark)."""
    if width <= 0 or cap <= 0:
        return []
    return _cells(*_layout(parts, cap, width, peak), width)


def _layout(parts: list[tuple[int, str]], cap: int, width: int, peak: int) -> tuple[tuple[tuple[int, str], ...], int]:
    """What a bar's cells depend on: each part's end in eighths of a cell (cumulative), and the cell of
    the peak mark (-1: none). Bars whose totals moved by less than an eighth of a cell share it."""
    total8 = width * 8
    bounds: list[tuple[int, str]] = []  # (end in eighths, class), cumulative
    acc = 0
    for size, cls in parts:
        if size <= 0:
            continue
        acc += size
        bounds.append((min(total8, int(acc * total8 / cap)), cls))
    mark = -1
    if peak > acc:
        pc = min(width - 1, int(peak * width / cap))
        # a peak in the cell where the use ends is the use, to the cell: no mark (unless nothing is used)
        if not acc or pc > int(acc * width / cap):
            mark = pc
    return tuple(bounds), mark


def _cells(bounds: tuple[tuple[int, str], ...], mark: int, width: int) -> list[tuple[str, str, str]]:
    cells: list[tuple[str, str, str]] = []

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
    if mark >= 0 and cells[mark][1] == "empty":
        cells[mark] = ("▏" if mark else "│", "peak", "empty")
    return cells


def bar_segments(totals: list[int], stack: tuple[int, ...], cap: int, width: int, style: Callable[[str], Style],
                 shown: frozenset[int], peak: int = 0, cache: dict | None = None) -> list[Segment]:
    """:func:`bar_cells` of the ``stack`` types in ``shown``, as runs of styled segments.

    ``cache``: a dict the caller keeps (and empties when ``style`` changes): bars are looked up by what
    their cells depend on (:func:`_layout`), so a frame whose totals moved less than an eighth of a cell
    rebuilds no bar. The segments returned are shared: do not change them."""
    if width <= 0:
        return []
    if not cap:  # said whole, in as few words as fit ("capacity unkn" read like a typo)
        words = next((w for w in ("capacity unknown", "cap. unknown", "unknown", "?") if len(w) <= width), "")
        return [Segment(words.center(width), style("dim"))]
    bounds, mark = _layout([(totals[t], TYPE_CLASS[t]) for t in stack if t in shown], cap, width, peak)
    key = (bounds, mark, width)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    segs: list[Segment] = []
    empty = style("empty")
    empty_bg = empty.bgcolor
    run_text, run_style = "", None
    for ch, fg, bg in _cells(bounds, mark, width):
        if fg == "empty":
            st = empty
        else:
            bg_color = empty_bg if bg == "empty" else style(bg).color
            st = Style(color=style(fg).color, bgcolor=bg_color)
        if st == run_style:
            run_text += ch
        else:
            if run_text:
                segs.append(Segment(run_text, run_style))
            run_text, run_style = ch, st
    if run_text:
        segs.append(Segment(run_text, run_style))
    if cache is not None:
        if len(cache) >= BAR_CACHE:
            cache.clear()
        cache[key] = segs
    return segs
