"""A DataTable that shows a ranked window and updates it in place by row key.

Rows that stay keep their identity (and the cursor stays on the same buffer or process);
only changed cells are rewritten; order comes from a rank column. Never clear-and-refill.

The columns named in ``grow`` share the width a wide terminal leaves over (names, process
names), and the column the rows are sorted by carries ▼ / ▲ in its header (htop marks it too).
A narrow terminal drops the columns named in ``drop``, least important first, until the rest fit
(no sideways scrolling: what is shown is whole); they come back when the terminal widens.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

GROW_MIN = 12  # a growing column without a width starts from this


class RankedTable(DataTable):
    """``columns``: (key, label, width or None) triples; the first column is the rank ("#")."""

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], grow: Sequence[str] = (),
                 drop: Sequence[str] = (), **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self._column_spec = list(columns)
        self._grow = tuple(grow)
        self._drop = tuple(drop)
        self._visible = [c[0] for c in self._column_spec]
        self._cells: dict[str, tuple] = {}
        self._sort_mark: tuple[str, bool] | None = None

    def on_mount(self) -> None:
        self._visible = self._fitting()
        self._add_columns()
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _base(self) -> dict[str, int]:
        return {key: (width if width is not None else GROW_MIN) for key, _l, width in self._column_spec}

    def _fitting(self) -> list[str]:
        """The columns that fit the width: all, less the ``drop`` ones (in that order) as needed."""
        keys = [c[0] for c in self._column_spec]
        width = self.size.width
        if not self._drop or width <= 0:
            return keys
        pad = 2 * self.cell_padding
        base = self._base()
        gone: set[str] = set()
        for key in self._drop:
            if sum(base[k] + pad for k in keys if k not in gone) <= width - 1:  # 1: the vertical scrollbar
                break
            gone.add(key)
        return [k for k in keys if k not in gone]

    def _add_columns(self) -> None:
        for key, label, width in self._column_spec:
            if key in self._visible:
                self.add_column(label, key=key, width=width if width is not None or key not in self._grow else GROW_MIN)

    def _rebuild(self) -> None:
        """The visible columns changed: the same rows (and cursor) under the new columns."""
        keep = self.cursor_key
        self.clear(columns=True)
        self._add_columns()
        idx = self._indices()
        for key, cells in sorted(self._cells.items(), key=lambda kv: kv[1][0]):
            self.add_row(*(cells[i] for i in idx), key=key)
        mark, self._sort_mark = self._sort_mark, None
        if mark is not None:
            self.mark_sort(*mark)
        if keep is not None and keep in self._cells:
            try:
                self.move_cursor(row=self.get_row_index(keep), animate=False)
            except RowDoesNotExist:
                pass

    def _indices(self) -> list[int]:
        return [i for i, c in enumerate(self._column_spec) if c[0] in self._visible]

    def _fit(self) -> None:
        """Drop what does not fit; give the width left over to the ``grow`` columns (evenly)."""
        if not self.columns:
            return
        visible = self._fitting()
        if visible != self._visible:
            self._visible = visible
            self._rebuild()
        if not self._grow:
            return
        pad = 2 * self.cell_padding
        base = {k: v for k, v in self._base().items() if k in self._visible}
        used = sum(base[k] + pad for k in base)
        extra = self.size.width - 1 - used  # 1: the vertical scrollbar
        grow = [k for k in self._grow if k in self._visible]
        if not grow:
            return
        share, rest = divmod(max(0, extra), len(grow))
        for i, key in enumerate(grow):
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
        visible = set(self._visible)
        idx = self._indices()
        moved = False
        for key, cells in new.items():
            old = self._cells.get(key)
            if old is None:
                self.add_row(*(cells[i] for i in idx), key=key)
                moved = True
            elif old != cells:
                for ck, a, b in zip(col_keys, old, cells, strict=True):
                    if a != b and ck in visible:
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
