"""Per-process usage by type and device, with liveness, name and trace phase. Enter drills in."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult

from ...core.model import MonitorState
from ..filters import ViewFilter
from ..format import human, plural
from ..procinfo import ProcInfo
from .buffers_pane import DEV_WIDTH, devices_text
from .phase_timeline import PhaseTimeline
from .ranked_pane import RankedPane

#: what matters first: who, which phase, how much (a narrow terminal drops columns in DROP order)
COLUMNS = (("rank", "#", 2), ("pid", "pid", 7), ("name", "process", None), ("phase", "phase", 8),
           ("total", "total", 8), ("dram", "DRAM", 8), ("trace", "TRACE", 8), ("l1", "L1", 8), ("l1s", "L1_SMALL", 8),
           ("cbk", "CB+KERN", 8), ("devs", "devs", DEV_WIDTH), ("n", "buffers", 7), ("state", "state", 6))
SORT_ORDER = ("total", "dram", "l1", "trace", "pid", "buffers")
NAME_MAX = 48  # a process name is cut to this


@dataclass(slots=True)
class ProcRow:
    pid: int
    name: str
    state: str
    phase: str
    by_type: list[int]
    devices: tuple[int, ...]
    count: int

    @property
    def total(self) -> int:
        return sum(self.by_type)


def shm_process_rows(state: MonitorState, f: ViewFilter, procs: ProcInfo) -> list[ProcRow]:
    """Rows from per-process totals (TT-Metal's shared memory): names as TT-Metal recorded them,
    a dead PID's slot marked "dead". No buffer counts (-1): totals only."""
    rows: list[ProcRow] = []
    for pid, p in state.polled_procs.items():
        if f.pids and pid not in f.pids:
            continue
        by_type = [0] * 7
        devs = []
        for d, w in p.devices.items():
            if not f.device_ok(d):
                continue
            add = [0] * 7
            for t, v in zip((0, 1, 3, 4, 5, 6), w, strict=True):
                add[t] = v if f.type_ok(t) else 0
            if any(add) or not (f.devices or f.types):
                devs.append(d)
                by_type = [a + b for a, b in zip(by_type, add, strict=True)]
        if (f.devices or f.types) and not any(by_type):
            continue
        name = p.name or procs.name(pid)
        if f.text and f.text.lower() not in f"{pid} {name}".lower():
            continue
        st = {True: "alive", False: "dead", None: "—"}[p.alive]
        rows.append(ProcRow(pid, name, st, state.phase_of(pid) if p.alive is not False else "exited", by_type,
                            tuple(sorted(devs)), -1))
    return rows


def process_rows(state: MonitorState, f: ViewFilter, procs: ProcInfo) -> list[ProcRow]:
    """One row per PID owning live memory (memtop's own PID excluded), restricted by the filter."""
    if state.has_process_totals:
        return shm_process_rows(state, f, procs)
    reg = state.registry
    rows: list[ProcRow] = []
    for pid in reg.pids():
        if pid == procs.own_pid or (f.pids and pid not in f.pids):
            continue
        per_dev = reg.pid_device_totals(pid)
        by_type = [0] * 7
        devs = []
        for d, tot in per_dev.items():
            if not f.device_ok(d):
                continue
            add = [v if f.type_ok(t) else 0 for t, v in enumerate(tot)]
            if any(add):
                devs.append(d)
                by_type = [a + b for a, b in zip(by_type, add, strict=True)]
        if (f.devices or f.types) and not any(by_type):
            continue
        name = procs.name(pid)
        if f.text and f.text.lower() not in f"{pid} {name}".lower():
            continue
        alive = procs.alive(pid)
        if pid in state.exited:
            st = "exited"
        else:
            st = {True: "alive", False: "dead", None: "—"}[alive]
        rows.append(ProcRow(pid, name, st, state.phase_of(pid), by_type, tuple(sorted(devs)), reg.pid_count(pid)))
    return rows


def leaks_text(state: MonitorState, limit: int = 3) -> str:
    """One line on what processes left behind: died holding buffers, exited holding some, warm-up buffers in replay."""
    rows = state.insight.leaks.rows()
    words = {"died": "died holding", "exited": "exited holding", "reclaimed": "left",
             "outlived_warmup": "kept from warm-up"}
    parts = [f"PID {r['pid']} {words.get(r['kind'], r['kind'])} {r['buffers']:,} buffers ({human(r['bytes'])})"
             for r in rows[:limit]]
    if len(rows) > limit:
        parts.append(f"+{len(rows) - limit} more")
    return ("leaks: " + "; ".join(parts)) if parts else ""


def sort_rows(rows: list[ProcRow], sort: str, invert: bool) -> list[ProcRow]:
    key = {"total": lambda r: r.total, "dram": lambda r: r.by_type[0], "l1": lambda r: r.by_type[1],
           "trace": lambda r: r.by_type[4], "pid": lambda r: -r.pid, "buffers": lambda r: r.count}[sort]
    return sorted(rows, key=lambda r: (key(r), -r.pid), reverse=not invert)


class ProcessesPane(RankedPane):
    """Per-PID usage: a status line, one row per process, then their trace phases (bands and evidence)."""

    COLUMNS = COLUMNS
    GROW = ("name",)
    GROW_MAX = {"name": NAME_MAX}
    #: least important first: 80 columns keep #, pid, process, phase, total, DRAM, TRACE, L1
    DROP = ("devs", "n", "cbk", "l1s", "state", "l1", "trace", "dram")
    NAME = "processes"

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield PhaseTimeline(id="processes-phases")

    def show_phases(self, state: MonitorState, pids: list[int]) -> None:
        found = self.query(PhaseTimeline)
        if found:
            found.first().show(state, pids)

    def show(self, rows: list[ProcRow], sort: str, invert: bool, note: str = "", leaks: str = "") -> None:
        """``note``: why there is nothing to show (a source without per-process data), instead of the counts;
        ``leaks``: what processes left behind (core/leaks.py), appended to the status line."""
        status_line = self.status_line(note)
        if status_line is None:
            return
        status = Text()
        status.append(plural(len(rows), "process", "processes"), "bold")
        if rows and all(r.count < 0 for r in rows):  # per-process totals only (TT-Metal's shared memory)
            status.append(f" with a slot in TT-Metal's shared memory · sorted by {sort} {'↑' if invert else '↓'}"
                          " · totals only: no buffers")
        else:
            status.append(f" using device memory · sorted by {sort} {'↑' if invert else '↓'} · Enter: its buffers")
        if leaks:
            status.append(" · " + leaks, "bold red")
        self.set_status(status_line, status)
        out = []
        for r in sort_rows(rows, sort, invert):
            t = r.by_type
            out.append((str(r.pid), (str(r.pid), r.name[:NAME_MAX] or "—", r.phase or "—", human(r.total), human(t[0]),
                                     human(t[4]), human(t[1]), human(t[2] + t[3]), human(t[5] + t[6]),
                                     devices_text(r.devices, DEV_WIDTH), f"{r.count:,}" if r.count >= 0 else "—", r.state)))
        self.table.apply_rows(out)
        self.table.mark_sort({"buffers": "n"}.get(sort, sort), invert)
