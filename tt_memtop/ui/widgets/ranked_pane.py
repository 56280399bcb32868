"""A status line over a :class:`RankedTable`: the shape shared by the buffers and processes views."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from .ranked_table import RankedTable
from .relayout import update


class RankedPane(Vertical):
    """Subclasses give their columns and a name (used for the widget ids) and fill the status line."""

    COLUMNS: Sequence[tuple[str, str, int | None]] = ()
    GROW: Sequence[str] = ()  # columns that take the width a wide terminal leaves over
    GROW_MAX: dict[str, int] = {}  # a growing column's widest: its cells are cut to it
    DROP: Sequence[str] = ()  # columns a narrow terminal leaves out, least important first
    NAME = "ranked"

    def compose(self) -> ComposeResult:
        yield Static("", id=f"{self.NAME}-status", classes="pane-status")
        yield RankedTable(self.COLUMNS, grow=self.GROW, drop=self.DROP, grow_max=self.GROW_MAX, id=f"{self.NAME}-table")

    @property
    def table(self) -> RankedTable:
        return self.query_one(RankedTable)

    def status_line(self, note: str) -> Static | None:
        """The status line to fill, or None when there is nothing more to draw: not composed yet (or
        being torn down; the next frame draws it), or ``note`` (why the source has no rows) shown instead."""
        found = self.query(f"#{self.NAME}-status")
        if not found:
            return None
        line = found.first(Static)
        line.set_class(bool(note), "-note")  # a note wraps (what to do is at its end); a status is one line
        if note:
            self.set_status(line, Text(note, "bold yellow"), layout=True)
            self.table.apply_rows([])
            return None
        return line

    def set_status(self, line: Static, text: Text, layout: bool = False) -> None:
        """Update the status line only when its text changed (an idle monitor redraws nothing). A status is
        one line (``.pane-status``): its new text does not lay the screen out again, a note (which wraps) does."""
        if getattr(self, "_status_text", None) != text:
            self._status_text = text
            update(line, text, layout=layout or line.has_class("-note"))

