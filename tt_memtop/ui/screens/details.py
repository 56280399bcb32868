"""Everything about one buffer id: where it lives, who owns it, its phase and its history.

Lists truncate; this screen shows everything (full name, full stack trace, every kept event),
and it stays live: the age, the phase now and its evidence are rebuilt every second.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ...core.model import MonitorState
from ...core.registry import Buffer
from ..format import KIND_LABELS, duration, elapsed, human, type_name
from ..procinfo import ProcInfo
from ..widgets.buffers_pane import devices_text


def find_buffers(state: MonitorState, buffer_id: int, buffer_type: int | None = None) -> list[Buffer]:
    """Live entries with this id on any device (of one type when given), by device."""
    reg = state.registry
    found = []
    spaces = (0, 5, 6) if buffer_type is None else (buffer_type,)
    for d in reg.devices():
        for t in spaces:
            b = reg.get(d, buffer_id, t)
            if b is not None and (buffer_type is None or b.buffer_type == buffer_type):
                found.append(b)
    return found


def details_renderable(state: MonitorState, buffer_id: int, buffers: list[Buffer], procs: ProcInfo,
                       now_ns: int, reported_pids: dict[int, dict] | None = None) -> Group:
    """``reported_pids``: memtop serve's word on PIDs that are not their sender's (INFO record)."""
    origin = state.first_ts_ns
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("buffer id", f"{buffer_id:#x}  ({buffer_id})")
    if buffers:
        b = buffers[0]
        devs = tuple(x.device for x in buffers)
        grid.add_row("devices", f"{devices_text(devs)}  ({len(devs)} device{'s' if len(devs) != 1 else ''})")
        grid.add_row("type", type_name(b.buffer_type))
        sizes = {x.size for x in buffers}
        total = sum(x.size for x in buffers)
        size_txt = " / ".join(f"{human(s)} ({s:,} B)" for s in sorted(sizes))
        grid.add_row("size", size_txt + (f" per device, {human(total)} in all" if len(buffers) > 1 else ""))
        owners = sorted({x.owner_pid for x in buffers})
        for pid in owners:
            real = (reported_pids or {}).get(pid)
            host = real.get("host_pid") if real else None
            if real and real.get("kind") == "namespace" and isinstance(host, int):
                look = host  # the container's PID is this host process: name it, not whatever has that number here
            else:
                look = pid
            name = procs.name(look)
            cmd = procs.cmdline(look)
            alive = "exited" if pid in state.exited else {True: "alive", False: "dead", None: ""}[procs.alive(look)]
            desc = " ".join(x for x in (name and f"{name}", alive and f"[{alive}]") if x)
            grid.add_row("owner", f"PID {pid} {desc}".rstrip())
            if real:
                how = ("host PID {h} (uid {u}), in another PID namespace" if real.get("kind") == "namespace" else
                       "reported by PID {h} (uid {u}), which is not that PID")
                grid.add_row("", Text(how.format(h=host, u=real.get("uid")),
                                      style="dim" if real.get("kind") == "namespace" else "yellow"))
            if cmd:
                grid.add_row("", Text(cmd, style="dim"))
        refs = sorted({x.ref_count for x in buffers})
        grid.add_row("ref count", ", ".join(str(r) for r in refs))
        ts = min(x.alloc_ts_ns for x in buffers)
        if ts:
            age = duration((now_ns - ts) / 1e9) if now_ns >= ts else "—"
            grid.add_row("allocated", f"at {elapsed(ts - origin)}  (age {age})")
        phase = state.alloc_phase(b.device, buffer_id)
        grid.add_row("phase at alloc", phase or "unknown")
        if state.phases is not None:
            ps = state.phases.current(b.owner_pid)
            since = duration(max(0, now_ns - ps.since_ns) / 1e9) if ps.since_ns and now_ns >= ps.since_ns else "—"
            grid.add_row("phase now", f"{ps.phase.value}  (for {since})")
            grid.add_row("evidence", Text(ps.evidence or "—", style="italic"))
        if b.name:
            grid.add_row("name", b.name)
        if b.stack_trace:
            grid.add_row("stack trace", Text(b.stack_trace))
    else:
        grid.add_row("state", Text("not live (freed, or never seen)", style="yellow"))
    hist = state.buffer_history(buffer_id)
    parts: list = [grid, Text("")]
    if hist:
        t = Table(title=f"history of {buffer_id:#x} (last {len(hist)} events, all devices)", title_justify="left",
                  expand=False, box=None, header_style="bold")
        for col in ("time", "event", "dev", "type", "size", "pid", "refs", "phase"):
            t.add_column(col, justify="right" if col in ("size", "dev", "pid", "refs") else "left")
        prev, prev_ph = None, ""
        for ev, ph in hist:
            if prev is not None and ev.kind == prev.kind and ev.device != prev.device and ev.size == prev.size \
                    and ev.pid == prev.pid:
                ph = prev_ph  # one op on the mesh: one phase (the tracker may move on at its last device)
            prev, prev_ph = ev, ph
            t.add_row(elapsed(ev.ts_ns - origin) if ev.ts_ns else "—", KIND_LABELS.get(ev.kind, ev.kind.name),
                      str(ev.device), type_name(ev.buffer_type), human(ev.size), str(ev.pid), str(ev.ref_count),
                      ph or "—")
        parts.append(t)
    else:
        parts.append(Text("no history kept for this id", style="dim"))
    return Group(*parts)


class DetailsScreen(ModalScreen[None]):
    """``build`` makes the body from the current state; called again every ``refresh_s``."""

    BINDINGS = [Binding("escape,q", "dismiss", "Back")]

    def __init__(self, build: Callable[[], Group] | Group, title: str, refresh_s: float = 1.0) -> None:
        super().__init__()
        self.build = build if callable(build) else (lambda: build)
        self.renderable = self.build()
        self.title_text = title
        self.refresh_s = refresh_s

    def on_mount(self) -> None:
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.rebuild)

    def rebuild(self) -> None:
        self.renderable = self.build()
        self.query_one("#details-body", Static).update(self.renderable)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-box", classes="modal-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "Esc: back"
            yield Static(self.renderable, id="details-body")
