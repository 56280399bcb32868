"""The mesh grid: many devices as cells, two short meters each, outliers marked (Galaxy 4 x 8, T3K 2 x 4).

Why: 32 near-identical device rows hide the one chip that differs; a grid shows the whole mesh
on 8 lines, and marks (``!``) the chips whose use stands out from the rest. One implementation
for every place that shows a mesh: the device pane's grid layout (when rows do not fit) and the
device pickers of the address-map and history screens (:class:`MeshGrid`, the selected device
reversed).

A cell is ``12 D███ 71% L█    3%!``: the device, its DRAM meter (DRAM + TRACE) and L1 meter
(L1, L1_SMALL, SYS, CB, KERNEL) against capacity, each % coloured by level, ``!`` when an outlier.
Devices run down the columns (a Galaxy: 0-7 in the first column). Pure parts: :func:`mesh_cells`
(who is an outlier), :func:`mesh_shape` (columns x rows for the room) and :func:`mesh_lines`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from ..format import level
from .meter import DRAM_STACK, L1_STACK, DeviceRow, bar_segments, stack_used

__all__ = ["GRID_CELL_MIN", "GRID_ROWS", "MeshCell", "MeshGrid", "mesh_cells", "mesh_lines", "mesh_rows",
           "mesh_shape", "mesh_text"]

GRID_CELL_MIN = 19  # narrowest cell: "12 D██ 71% L█   3%!" (a Galaxy on 80 columns: 4 x 8)
GRID_ROWS = 8  # a grid aims at this many lines (a Galaxy: 4 columns x 8)
ALL_TYPES = frozenset(range(7))
COMPONENT_CLASSES = frozenset({"devicepane--dram", "devicepane--trace", "devicepane--l1", "devicepane--l1small",
                               "devicepane--sys", "devicepane--cb", "devicepane--kernel", "devicepane--empty",
                               "devicepane--ok", "devicepane--warn", "devicepane--crit", "devicepane--label",
                               "devicepane--dim", "devicepane--peak", "devicepane--outlier",
                               "devicepane--selected"})


@dataclass(frozen=True, slots=True)
class MeshCell:
    device: int
    fraction: float  # used / capacity, 0..1
    outlier: bool


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2) if n else 0.0


def mesh_cells(fractions: dict[int, float]) -> list[MeshCell]:
    """Cells by device; an outlier is more than max(5 points, 3 x the median absolute deviation) off the median."""
    if not fractions:
        return []
    med = _median(list(fractions.values()))
    mad = _median([abs(v - med) for v in fractions.values()])
    tol = max(0.05, 3 * mad)
    return [MeshCell(d, v, len(fractions) > 2 and abs(v - med) > tol) for d, v in sorted(fractions.items())]


def outliers(rows: Sequence[DeviceRow], shown: frozenset[int] = ALL_TYPES) -> set[int]:
    """Devices whose DRAM or L1 use stands out from the mesh's (see :func:`mesh_cells`)."""
    out: set[int] = set()
    for stack, cap in ((DRAM_STACK, "cap_dram"), (L1_STACK, "cap_l1")):
        fr = {r.device: stack_used(r.totals, stack, shown) / getattr(r, cap) for r in rows if getattr(r, cap)}
        out |= {c.device for c in mesh_cells(fr) if c.outlier}
    return out


def mesh_shape(n: int, width: int, max_lines: int = GRID_ROWS) -> tuple[int, int]:
    """(columns, rows) for ``n`` devices: about GRID_ROWS lines (fewer if ``max_lines`` says so), as
    few columns as that allows, but evenly filled (8 devices: 2 x 4, 32: 4 x 8) and at least
    GRID_CELL_MIN cells wide."""
    if n <= 0:
        return 1, 0
    cols_max = max(1, width // GRID_CELL_MIN)
    lines = max(1, min(GRID_ROWS, max_lines))
    cols = max(1, min(cols_max, math.ceil(n / lines)))
    if n <= GRID_ROWS and n > 4 and cols < 2 <= cols_max:  # a T3K: 4 x 2 reads like its board
        cols = 2
    while cols < cols_max and n % cols:
        cols += 1
    return cols, math.ceil(n / cols)


def mesh_lines(rows: Sequence[DeviceRow], width: int, style: Callable[[str], Style], max_lines: int = GRID_ROWS,
               shown: frozenset[int] = ALL_TYPES, selected: int | None = None,
               bars: dict | None = None) -> list[list[Segment]]:
    """The grid as lines of segments (``style(name)``: the ``devicepane--<name>`` component styles;
    ``bars``: the caller's cache of drawn bars, see :func:`~.meter.bar_segments`)."""
    n = len(rows)
    if not n:
        return []
    cols, nrows = mesh_shape(n, width, max_lines)
    cell_w = max(GRID_CELL_MIN, width // cols)
    bar_w = max(2, (cell_w - 3 - 1 - 4 - 2 - 4 - 1) // 2)
    odd = outliers(rows, shown)
    out: list[list[Segment]] = []
    for i in range(nrows):
        line: list[Segment] = []
        for j in range(cols):
            k = j * nrows + i  # down the columns: device numbers run like a mesh's rows
            if k >= n:
                break
            r = rows[k]
            num = style("selected") if r.device == selected else style("label")
            cell = [Segment(f"{r.device:>2}", num), Segment(" ")]
            for which, stack, cap, peak in (("D", DRAM_STACK, r.cap_dram, r.peak_dram),
                                            (" L", L1_STACK, r.cap_l1, r.peak_l1)):
                used = stack_used(r.totals, stack, shown)
                cell.append(Segment(which, style("dim")))
                cell += bar_segments(r.totals, stack, cap, bar_w, style, shown, peak, bars)
                frac = used / cap if cap else 0.0
                cell.append(Segment(f"{frac * 100:3.0f}%" if cap else f"{'?':>4}",
                                    style(level(frac)) if cap else style("dim")))
            cell.append(Segment("!" if r.device in odd else " ", style("outlier")))
            used_w = sum(len(s.text) for s in cell)
            if j < cols - 1:
                cell.append(Segment(" " * max(0, cell_w - used_w)))
            line += cell
        out.append(line)
    return out


def mesh_text(rows: Sequence[DeviceRow], width: int = 80, selected: int | None = None,
              style: Callable[[str], Style] | None = None) -> Text:
    """:func:`mesh_lines` as one Text (for a Static, and for tests reading the plain cells)."""
    st = style or (lambda _name: Style())
    out = Text()
    for i, line in enumerate(mesh_lines(rows, width, st, selected=selected)):
        if i:
            out.append("\n")
        for seg in line:
            out.append(seg.text, seg.style)
    return out


def mesh_rows(state, devices: Sequence[int]) -> list[DeviceRow]:
    """Rows for a device picker from a MonitorState: what each device holds against its capacity."""
    rows = []
    for d in devices:
        info = state.inventory.get(d)
        w = state.device_wire_totals(d)  # (dram, l1, l1_small, trace, cb, kernel)
        totals = [w[0], w[1], 0, w[2], w[3], w[4], w[5]]
        if state.has_events:
            totals = list(state.registry.device_totals(d))
        rows.append(DeviceRow(d, info.arch_name if info else "?", totals, info.total_dram if info else 0,
                              info.total_l1 if info else 0))
    return rows


class MeshGrid(Static):
    """A device picker: :func:`mesh_lines` styled like the device pane (same component classes)."""

    COMPONENT_CLASSES = set(COMPONENT_CLASSES)

    def _style(self, name: str) -> Style:
        try:
            return self.get_component_rich_style(f"devicepane--{name}", partial=True)
        except KeyError:
            return Style()

    def show(self, rows: Sequence[DeviceRow], selected: int | None = None) -> None:
        self.update(mesh_text(rows, self.size.width or (self.app.size.width if self.is_attached else 80),
                              selected, self._style))
