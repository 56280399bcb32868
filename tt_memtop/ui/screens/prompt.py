"""A one-line question (jump to id, device list): Enter answers, Esc cancels."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "",
                 check: Callable[[str], str | None] | None = None) -> None:
        """``check``: returns what is wrong with an answer (the dialog stays open and says it), or None."""
        super().__init__()
        self.check = check
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box prompt-box"):
            yield Label(self.question)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("", id="prompt-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        problem = self.check(event.value) if self.check is not None and event.value.strip() else None
        if problem:
            err = self.query_one("#prompt-error", Label)
            err.update(problem)
            err.add_class("-shown")
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
