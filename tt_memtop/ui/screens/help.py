"""Help, generated from the binding table so it cannot drift from the keys."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..bindings import help_rows


def help_table(replay: bool | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    group = None
    for g, keys, desc in help_rows(replay):
        if g != group:
            if group is not None:
                table.add_row("", "")
            table.add_row(f"[underline]{g}[/]", "")
            group = g
        table.add_row(keys, desc)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def __init__(self, replay: bool | None = None) -> None:
        super().__init__()
        self.replay = replay

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Static("[b]memtop — keys[/b]   (Esc closes; the mouse works too: click tabs, rows, scroll)")
            yield Static(help_table(self.replay))
