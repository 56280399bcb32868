"""A DataTable that shows a ranked window and updates it in place.

The table's rows are places in the ranking (row 0 is rank 1), each showing whichever buffer or
process holds that rank now: a re-ranking rewrites the cells that changed, adds or drops rows
only at the end, and never sorts or removes rows in the middle (DataTable re-indexes every row per
removal: a re-ranking of 500 rows at 200k events/s took ~80 ms that way). The cursor still follows
the buffer or process it is on (:attr:`RankedTable.cursor_key`, :meth:`RankedTable.key_of` give
the key a place shows).

The columns named in ``grow`` share the width a wide terminal leaves over (names, process
names), and the column the rows are sorted by carries ▼ / ▲ in its header (htop marks it too).
A narrow terminal drops the columns named in ``drop``, least important first, until the rest fit
(no sideways scrolling: what is shown is whole); they come back when the terminal widens.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

GROW_MIN = 12  # a growing column without a width starts from this
REFILL = 32  # more places than this dropped at once: the table is cleared and filled again
CELL_CACHE = 4_096  # drawn cells kept (a screen of rows a few times over): dropped all at once when full


class RankedTable(DataTable):
    """``columns``: (key, label, width or None) triples; the first column is the rank ("#"). ``grow``: the
    columns that share the width left over, each up to its ``grow_max`` (if given)."""

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], grow: Sequence[str] = (),
                 drop: Sequence[str] = (), grow_max: dict[str, int] | None = None, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self._column_spec = list(columns)
        self._grow = tuple(grow)
        self._grow_max = dict(grow_max or {})  # a growing column's widest (its cells are cut to that)
        self._drop = tuple(drop)
        self._visible = [c[0] for c in self._column_spec]
        self._cells: dict[str, tuple] = {}  # key -> (rank, *cells) of what is shown
        self._order: list[str] = []  # the key shown at each place (row)
        self._sort_mark: tuple[str, bool] | None = None
        self._drawn: dict[tuple, object] = {}  # a cell's lines by what they show (see _render_cell)

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
        self._refill(keep)
        mark, self._sort_mark = self._sort_mark, None
        if mark is not None:
            self.mark_sort(*mark)

    def _refill(self, keep: str | None) -> None:
        """Every place again from ``_order`` (after a ``clear``), the cursor on ``keep`` if it is shown."""
        idx = self._indices()
        for i, key in enumerate(self._order):
            cells = self._cells[key]
            self.add_row(*(cells[j] for j in idx), key=str(i))
        if keep is not None and keep in self._cells:
            self.move_cursor(row=self._order.index(keep), animate=False)

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
        widths = {k: base[k] for k in grow}
        extra = max(0, extra)
        while extra > 0:  # evenly, but none past its widest content: a name column of 90 cells for names of
            # at most 48 put the numbers half a screen away from whose they are (the rest stays blank)
            open_ = [k for k in grow if widths[k] < self._grow_max.get(k, 1 << 30)]
            if not open_:
                break
            share, rest = divmod(extra, len(open_))
            for i, key in enumerate(open_):
                add = min(share + (1 if i < rest else 0), self._grow_max.get(key, 1 << 30) - widths[key])
                widths[key] += add
                extra -= add
        for key in grow:
            col = self.columns.get(key)  # type: ignore[call-overload]
            if col is None:
                continue
            col.auto_width = False
            col.width = widths[key]
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

    def _render_cell(self, row_index: int, column_index: int, base_style, width: int, cursor: bool = False,
                     hover: bool = False):
        """DataTable's cell, kept while its text and place stay: DataTable keys its own cache by a count
        of every update, so one changed cell (a process's total, twice a second) drew every cell on
        screen again. A plain-text or int cell (or a column's label) is drawn the same whenever what it is drawn
        from is the same. (DataTable's own path for anything else: row labels, rich cells.)"""
        try:
            if column_index < 0 or row_index < -1:
                raise LookupError
            if row_index == -1:  # the header: the column's label
                label = self.ordered_columns[column_index].label
                value = (label.plain, tuple(label.spans), str(label.style))
                height = self.header_height
            else:
                row_key = self._row_locations.get_key(row_index)
                value = self._data[row_key][self._column_locations.get_key(column_index)]
                if type(value) not in (str, int):  # (the rank is an int; a bool would draw as one)
                    raise LookupError
                height = self.rows[row_key].height
            key = (row_index, column_index, value, base_style, width, cursor, hover, self._show_hover_cursor,
                   self._pseudo_class_state, height, self.show_cursor, self.fixed_rows,
                   self.fixed_columns, self.cursor_foreground_priority, self.cursor_background_priority,
                   self.cell_padding)
        except (LookupError, AttributeError, TypeError):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        lines = self._drawn.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            if len(self._drawn) >= CELL_CACHE:
                self._drawn.clear()
            self._drawn[key] = lines
        return lines

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn.clear()

    @property
    def cursor_key(self) -> str | None:
        """The key (buffer or PID) of the row under the cursor."""
        if not self.row_count:
            return None
        row = self.cursor_row
        return self._order[row] if 0 <= row < len(self._order) else None

    def key_of(self, row_key) -> str | None:
        """The key (buffer or PID) a row shows, from the table's own row key (``RowSelected.row_key``)."""
        try:
            return self._order[int(getattr(row_key, "value", row_key))]
        except (ValueError, TypeError, IndexError):
            return None

    def get_row_index(self, row_key) -> int:
        """The row that shows ``row_key`` (a buffer or PID key; DataTable's own row keys too)."""
        key = getattr(row_key, "value", row_key)
        if key in self._cells:
            return self._order.index(key)
        return super().get_row_index(row_key)

    def apply_rows(self, rows: Sequence[tuple[str, tuple]]) -> None:
        """``rows``: (key, cells without the rank) in display order."""
        # The cursor follows the row it is on (a buffer that moved keeps the selection), unless it is on the
        # first row: there it stays, so the top of the ranking stays in view as htop does. Following from
        # row 0 would scroll the biggest buffers out of sight whenever bigger ones arrive above.
        keep = self.cursor_key if self.cursor_row > 0 else None
        order = [key for key, _cells in rows]
        new = {key: (i + 1, *cells) for i, (key, cells) in enumerate(rows)}
        old_order, old_cells = self._order, self._cells
        self._order, self._cells = order, new
        if len(old_order) - len(order) > REFILL:  # many places go: one clear instead of a re-index per row
            self.clear()
            self._refill(keep)
            return
        for i in range(len(old_order) - 1, len(order) - 1, -1):  # the places past the end, last first
            self.remove_row(str(i))
        idx = self._indices()
        col_keys = [self._column_spec[j][0] for j in idx]
        writes: list[tuple[int, str, object]] = []
        for i, key in enumerate(order):
            cells = new[key]
            if i >= len(old_order):
                self.add_row(*(cells[j] for j in idx), key=str(i))
                continue
            old = old_cells[old_order[i]]
            if old != cells:
                writes += [(i, ck, cells[j]) for ck, j in zip(col_keys, idx, strict=True) if old[j] != cells[j]]
        self._write(writes)
        if keep is None:
            if self.cursor_row != 0 and self.row_count:
                self.move_cursor(row=0, animate=False)
            return
        if keep in new:
            row = order.index(keep)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False, scroll=False)

    def _write(self, writes: list[tuple[int, str, object]]) -> None:
        """Set cells (place, column key, value): straight into DataTable's data, then one refresh (what
        ``update_cell`` does per cell, less a refresh and a key check each: a re-ranking that moves every
        place by one rewrites thousands of cells). ``update_cell`` where DataTable differs."""
        if not writes:
            return
        data = getattr(self, "_data", None)
        if not isinstance(data, dict) or not hasattr(self, "_update_count"):
            for i, ck, v in writes:
                self.update_cell(str(i), ck, v)
            return
        for i, ck, v in writes:
            data[RowKey(str(i))][ColumnKey(ck)] = v
        self._update_count += 1
        self.refresh()
