"""A mesh of devices as a grid of cells coloured by use, outliers marked (Galaxy: 4 x 8).

Why: 32 near-identical device rows hide the one chip that differs; a grid coloured by the fraction
used shows the mesh at a glance and marks the chips whose use stands out from the rest (``!``).
:func:`mesh_cells` is pure (values in, cells out); :class:`MeshGrid` renders them. The address
map screen uses it as its device picker when there are more than 8 devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

__all__ = ["MeshCell", "MeshGrid", "mesh_cells", "mesh_text"]

_LEVELS = ("grey50", "green", "yellow", "dark_orange", "red")  # <25 %, <50 %, <75 %, <90 %, >=90 %


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


def _style(fraction: float) -> str:
    return _LEVELS[0 if fraction < 0.25 else 1 if fraction < 0.5 else 2 if fraction < 0.75 else 3 if fraction < 0.9
                   else 4]


def mesh_text(cells: list[MeshCell], columns: int = 8, selected: int | None = None) -> Text:
    """Rows of ``columns`` cells: ``[dd nn%]``, ``!`` after an outlier, the selected device reversed."""
    out = Text()
    for i, c in enumerate(cells):
        if i and i % columns == 0:
            out.append("\n")
        style = _style(c.fraction) + (" reverse" if c.device == selected else "")
        out.append(f"[{c.device:>2} {100 * c.fraction:3.0f}%]", style)
        out.append("!" if c.outlier else " ", "bold red")
    return out


class MeshGrid(Static):
    """Static showing :func:`mesh_text`; call :meth:`show` with the fractions to redraw."""

    def show(self, fractions: dict[int, float], columns: int = 8, selected: int | None = None) -> None:
        self.update(mesh_text(mesh_cells(fractions), columns, selected))
