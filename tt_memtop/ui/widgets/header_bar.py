"""The top line: which source, its connection state, event rate, uptime, filters, PAUSED.

Textual's own Header shows a wall clock; this one shows only what the data says, so snapshots
stay reproducible (uptime comes from the app's injected clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from ..format import duration

_STATE_STYLE = {"connected": "green", "playing": "green", "connecting": "yellow", "disconnected": "red",
                "error": "red", "ended": "blue", "paused": "yellow"}


@dataclass(slots=True)
class HeaderInfo:
    source: str
    state: str
    message: str
    rate: float
    uptime: float
    filters: str
    paused: bool
    new_while_paused: int
    gaps: int = 0
    backlog: int = 0  # events received but not folded yet


class HeaderBar(Static):
    """Rebuilt at most once per tick, only when its text changes."""

    def __init__(self, **kw) -> None:
        super().__init__("", **kw)
        self._last: HeaderInfo | None = None

    def show(self, info: HeaderInfo) -> None:
        if info == self._last:
            return
        self._last = info
        # One line: what matters most first; the source's free-text message last, cut if it won't fit.
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" memtop ", "bold reverse")
        if info.paused:
            t.append(" ")
            t.append(f" PAUSED — {info.new_while_paused:,} new events ", "bold reverse yellow")
        t.append(f" {info.source} ")
        t.append(f"● {info.state}", _STATE_STYLE.get(info.state, ""))
        rate = f"{info.rate / 1000:.1f}k" if info.rate >= 1000 else f"{info.rate:.0f}"
        t.append(f" │ {rate} ev/s │ up {duration(info.uptime)}")
        if info.backlog > 10_000:
            t.append(f" │ behind by {info.backlog:,} events", "bold red")
        if info.gaps:
            t.append(f" │ {info.gaps} gaps", "red")
        if info.filters:
            t.append(" │ filter: ", "bold")
            t.append(info.filters, "bold yellow")
        if info.message:
            t.append(f" │ {info.message}", "dim")
        self.update(t)
