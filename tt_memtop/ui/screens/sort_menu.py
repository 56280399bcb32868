"""F6: choose the sort column of the current table (htop's "Sort by" menu)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList


class SortScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, choices: tuple[str, ...], current: str) -> None:
        super().__init__()
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box sort-box"):
            yield Label("Sort by")
            yield OptionList(*self.choices, id="sort-options")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        if self.current in self.choices:
            ol.highlighted = self.choices.index(self.current)
        ol.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
