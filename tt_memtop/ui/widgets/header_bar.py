"""The top line: which source, its connection state (or, replaying, the playback: state, position /
duration, speed), event rate, uptime, filters, PAUSED.

Textual's own Header shows a wall clock; this one shows only what the data says, so snapshots
stay reproducible (uptime comes from the app's injected clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from ..format import duration

_STATE_STYLE = {"connected": "green", "playing": "green", "connecting": "yellow", "busy": "yellow",
                "disconnected": "red", "error": "red", "ended": "blue", "paused": "yellow"}


@dataclass(frozen=True, slots=True)
class Playback:
    """Where a replay is: ``state`` is "playing", "paused" or "ended"; positions in log time."""

    state: str
    position_s: float
    duration_s: float
    position: int  # lines (logs) or events (recordings) played
    length: int
    unit: str
    speed: float
    seeking: float | None = None  # a seek in progress: how far it has got (0..1); the position is still the old one
    target_s: float = 0.0  # where it goes


_PLAYBACK_LOOK = {"playing": ("▶ playing", "bold green"), "paused": ("⏸ paused", "bold yellow"),
                  "ended": ("■ ended", "bold blue")}


def clock(seconds: float, precise: bool) -> str:
    """Log time as M:SS.s (H:MM:SS past an hour); ``precise`` adds milliseconds (short replays)."""
    if seconds >= 3600:
        h, rest = divmod(int(seconds), 3600)
        return f"{h}:{rest // 60:02d}:{rest % 60:02d}"
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:06.3f}" if precise else f"{int(m)}:{s:04.1f}"


def playback_text(p: Playback) -> Text:
    label, style = _PLAYBACK_LOOK.get(p.state, (p.state, ""))
    precise = p.duration_s < 10
    pct = 100 * p.position / p.length if p.length else 100.0
    t = Text()
    if p.seeking is not None:
        label, style = f"⏩ seeking… {int(100 * p.seeking)} %", "bold magenta"
    t.append(f" {label} ", f"reverse {style}")
    t.append(f" {clock(p.position_s, precise)} / {clock(p.duration_s, precise)} ({pct:.0f} %)", "bold")
    if p.seeking is not None:
        t.append(f" → {clock(p.target_s, precise)} (Esc: stay)")
    t.append(f" · {p.position:,}/{p.length:,} {p.unit} · ")
    t.append(f"{p.speed:g}x", "bold")
    return t


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
    playback: Playback | None = None  # a replay: shown instead of the connection state
    demo: bool = False  # simulated data: a DEMO badge that no width drops
    stale: str = ""  # the data on screen is no longer live (disconnected): why, shown as a STALE badge


class HeaderBar(Static):
    """Rebuilt at most once per tick, only when its text changes.

    Everything goes on one line, most important first. When the line is too narrow, what can go goes
    first (uptime, then the rate, then the source's free-text message is cut): the DEMO and STALE
    badges, the filter and the backlog / gap warnings always stay on screen, since numbers without
    them would mislead."""

    def __init__(self, **kw) -> None:
        super().__init__("", **kw)
        self._last: HeaderInfo | None = None

    def show(self, info: HeaderInfo) -> None:
        if info == self._last:
            return
        self._last = info
        self.refresh()

    def render(self) -> Text:
        info = self._last
        if info is None:
            return Text("")
        width = self.size.width or 10_000
        for drop in ((), ("uptime",), ("uptime", "rate"), ("uptime", "rate", "source")):
            t = header_text(info, drop)
            if t.cell_len <= width:
                return t
            if not info.message:
                continue
            # the message may be cut; what comes before it must fit
            if header_text(info, drop, message=False).cell_len <= width:
                return t
        return t


def header_text(info: HeaderInfo, drop: tuple[str, ...] = (), message: bool = True) -> Text:
    """The header line, without the parts named in ``drop`` ("uptime", "rate", "source")."""
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    t.append(" memtop ", "bold reverse")
    if info.demo:
        t.append(" ")
        t.append(" DEMO ", "bold reverse magenta")
    if info.stale:
        t.append(" ")
        t.append(" STALE ", "bold reverse red")
    if info.paused:
        t.append(" ")
        t.append(f" PAUSED — {info.new_while_paused:,} new events ", "bold reverse yellow")
    if info.playback is not None:
        t.append(" ")
        t.append_text(playback_text(info.playback))
        if "source" not in drop:
            t.append(f" │ {info.source}")
    else:
        if "source" not in drop:
            t.append(f" {info.source}")
        t.append(" ")
        state = "simulated" if info.demo and info.state == "connected" else info.state
        t.append(f"● {state}", _STATE_STYLE.get(info.state, ""))
    if "rate" not in drop:
        rate = f"{info.rate / 1000:.1f}k" if info.rate >= 1000 else f"{info.rate:.0f}"
        t.append(f" │ {rate} ev/s")
    if "uptime" not in drop:
        t.append(f" │ up {duration(info.uptime)}")
    if info.backlog > 10_000:
        t.append(f" │ behind by {info.backlog:,} events", "bold red")
    if info.gaps:
        t.append(f" │ {info.gaps} gaps", "red")
    if info.filters:
        t.append(" │ filter: ", "bold")
        t.append(info.filters, "bold yellow")
    if info.message and message:
        t.append(f" │ {info.message}", "dim")
    return t
