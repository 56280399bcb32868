"""A DataTable that shows a ranked window and updates it in place by row key.

Rows that stay keep their identity (and the cursor stays on the same buffer or process);
only changed cells are rewritten; order comes from a rank column. Never clear-and-refill.

The columns named in ``grow`` share the width a wide terminal leaves over (names, process
names), and the column the rows are sorted by carries ▼ / ▲ in its header (htop marks it too).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

GROW_MIN = 12  # a growing column without a width starts from this


class RankedTable(DataTable):
    """``columns``: (key, label, width or None) triples; the first column is the rank ("#")."""

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], grow: Sequence[str] = (), **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self._column_spec = list(columns)
        self._grow = tuple(grow)
        self._cells: dict[str, tuple] = {}
        self._sort_mark: tuple[str, bool] | None = None

    def on_mount(self) -> None:
        for key, label, width in self._column_spec:
            self.add_column(label, key=key, width=width if width is not None or key not in self._grow else GROW_MIN)
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Give the width left over to the ``grow`` columns (evenly)."""
        if not self._grow or not self.columns:
            return
        pad = 2 * self.cell_padding
        base = {key: (width if width is not None else GROW_MIN) for key, _l, width in self._column_spec}
        used = sum(base[k] + pad for k in base)
        extra = self.size.width - 1 - used  # 1: the vertical scrollbar
        share, rest = divmod(max(0, extra), len(self._grow))
        for i, key in enumerate(self._grow):
            col = self.columns.get(key)  # type: ignore[call-overload]
            if col is None:
                continue
            col.auto_width = False
            col.width = base[key] + share + (1 if i < rest else 0)
        self._require_update_dimensions = True
        self._clear_caches()
        self.refresh()

    def mark_sort(self, key: str, invert: bool) -> None:
        """▼ (largest first) or ▲ after the label of the column sorted by."""
        if self._sort_mark == (key, invert):
            return
        self._sort_mark = (key, invert)
        for ck, label, _w in self._column_spec:
            col = self.columns.get(ck)  # type: ignore[call-overload]
            if col is not None:
                col.label = Text(label + (" ▲" if invert else " ▼") if ck == key else label,
                                 style="bold" if ck == key else "")
        self._require_update_dimensions = True
        self._clear_caches()
        self.refresh()

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def apply_rows(self, rows: Sequence[tuple[str, tuple]]) -> None:
        """``rows``: (key, cells without the rank) in display order."""
        # The cursor follows the row it is on (a buffer that moved keeps the selection), unless it is on the
        # first row: there it stays, so the top of the ranking stays in view as htop does. Following from
        # row 0 would scroll the biggest buffers out of sight whenever bigger ones arrive above.
        keep = self.cursor_key if self.cursor_row > 0 else None
        new = {key: (i + 1, *cells) for i, (key, cells) in enumerate(rows)}
        for key in [k for k in self._cells if k not in new]:
            self.remove_row(key)
            del self._cells[key]
        col_keys = [c[0] for c in self._column_spec]
        moved = False
        for key, cells in new.items():
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                moved = True
            elif old != cells:
                for ck, a, b in zip(col_keys, old, cells, strict=True):
                    if a != b:
                        self.update_cell(key, ck, b)
                moved = moved or old[0] != cells[0]
            self._cells[key] = cells
        if moved:
            self.sort(col_keys[0])
        if keep is None:
            if self.cursor_row != 0 and self.row_count:
                self.move_cursor(row=0, animate=False)
            return
        if keep in new:
            try:
                row = self.get_row_index(keep)
            except RowDoesNotExist:
                return
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False, scroll=False)
