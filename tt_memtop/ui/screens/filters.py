"""Devices, buffer types and PIDs in one dialog (the text filter lives on `/`)."""

from __future__ import annotations

from rich.segment import Segment
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import Button, Input, Label, SelectionList

from ..filters import ViewFilter, parse_int_set
from ..format import TYPE_NAMES


class Checklist(SelectionList[int]):
    """A SelectionList whose box says the state: ``✓`` on, blank off (the stock one draws X for both,
    told apart by colour only)."""

    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        segs = list(line)
        if len(segs) < 2 or segs[1].text != "X":
            return line
        try:
            option = self.get_option_at_index(int(self.scroll_offset.y) + y)
        except Exception:
            return line
        on = option.value in self._selected
        segs[1] = Segment("✓" if on else " ", segs[1].style, segs[1].control)
        return Strip(segs, line.cell_length)


class FilterScreen(ModalScreen[ViewFilter | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: ViewFilter, focus: str = "devices") -> None:
        super().__init__()
        self.current = current
        self.focus_on = focus

    def compose(self) -> ComposeResult:
        f = self.current
        # Scrolls: on a 24-line terminal the dialog is taller than the screen; focus moves scroll it.
        with VerticalScroll(classes="modal-box filter-box"):
            yield Label("", id="filter-error", classes="error")  # on top: seen whatever the scroll
            yield Label("Devices (e.g. 0,3 or 0-3; empty = all)")
            yield Input(",".join(str(d) for d in sorted(f.devices)), id="devices")
            yield Label("Buffer types (Space toggles)")
            yield Checklist(*[(name, t, (not f.types) or t in f.types) for t, name in TYPE_NAMES.items()],
                                     id="types")
            yield Label("PIDs (empty = all)")
            yield Input(",".join(str(p) for p in sorted(f.pids)), id="pids")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#{self.focus_on}").focus()

    def _result(self) -> ViewFilter | None:
        try:
            devices = parse_int_set(self.query_one("#devices", Input).value)
            pids = parse_int_set(self.query_one("#pids", Input).value)
        except ValueError as exc:
            err = self.query_one("#filter-error", Label)
            err.update(f"not a list of numbers: {exc}")
            err.add_class("-shown")
            err.scroll_visible(animate=False)
            return None
        chosen = frozenset(self.query_one("#types", Checklist).selected)
        types = frozenset() if chosen == frozenset(TYPE_NAMES) else chosen
        return self.current.with_(devices=devices, types=types, pids=pids)

    def on_input_submitted(self) -> None:
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def _apply(self) -> None:
        result = self._result()
        if result is not None:
            self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
