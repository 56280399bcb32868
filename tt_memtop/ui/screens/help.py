"""Help: the keys (generated from the binding table, so it cannot drift from them) and what the
screen shows — meters, colours, Δ, history, peaks, the grouped feed and the trace phases."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..bindings import help_rows

#: (phase, what memtop saw) — the evidence rules of core/phases.py in a user's words
PHASES = (
    ("loading", "large DRAM allocations in a burst: weights and caches being placed"),
    ("warm-up", "many short-lived buffers allocated and freed (compile, eager runs before a trace)"),
    ("capture", "TRACE buffers being allocated across the mesh: a trace is being recorded"),
    ("replay", "a TRACE buffer is resident and almost nothing else is allocated: the trace runs"),
    ("released", "the TRACE buffer was freed again"),
    ("teardown", "long-lived buffers being freed in a burst: the model is shutting down"),
    ("idle", "nothing allocated or freed for a while"),
    ("exited", "the process is gone (its buffers were cleaned up)"),
)

#: (what, meaning) — how to read the screen
SCREEN = (
    ("bars", "two meters per device against its capacity: DRAM (DRAM + TRACE stacked) and L1 (L1, L1_SMALL, "
             "SYS, CB, KERNEL). Exactly proportional: partial blocks are eighths of a cell."),
    ("▏ peak", "the highest use seen since memtop started (or since the type filter changed)."),
    ("numbers", "used / capacity and the share; yellow from 75 %, red from 90 % (config: [thresholds])."),
    ("Δ", "change per second over the last refresh period (+ grows, - shrinks; · no change)."),
    ("history", "the last 2 minutes on an absolute scale: full height = capacity (H: 50 / 25 / 10 %); each "
                "cell is the maximum of what it covers, so a spike is never averaged away (h: the full chart)."),
    ("grid", "many devices (a Galaxy) on a small screen: one cell per device (Galaxy 4 × 8), D = DRAM, "
             "L = L1 meters and %, ! = an outlier (its use stands out from the mesh's median)."),
    ("h history", "one device × pool over time, from 0 to its capacity (not to its own min..max), each column "
                  "the maximum of what it covers; ▼ marks the peak and when (a faint line its height), ▲ a "
                  "column above a zoomed scale (H); the trace phases run beneath "
                  "the time axis. s: 1 min / 10 min / 1 h / the session, Tab: the pool, [ ]: the device. Peaks "
                  "count from when memtop attached (or from r): the title says since when."),
    ("feed", "grouped by default: one row per op across the mesh (dev 0-7), repeated alloc/free pairs "
             "coalesced (a/f ×120 … alloc/free × 120 in 3.0 s); e shows every event. Times are wall clock "
             "(as TT-Metal's logs print them); w counts from the first event."),
    ("phase", "the trace life-cycle memtop infers per process from what it allocates (below). One label "
              "per mesh; the details screen (Enter on a buffer) says why."),
)


def help_table(replay: bool | None = None, keymap: dict[str, str] | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    group = None
    for g, keys, desc in help_rows(replay, keymap):
        if g != group:
            if group is not None:
                table.add_row("", "")
            table.add_row(f"[underline]{g}[/]", "")
            group = g
        table.add_row(keys, desc)
    return table


def legend_table(rows: tuple[tuple[str, str], ...], title: str) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row(f"[underline]{title}[/]", "")
    for what, meaning in rows:
        table.add_row(what, meaning)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def __init__(self, replay: bool | None = None, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Static("[b]memtop — keys[/b]   (Esc closes; scroll down for what the screen shows, its colours "
                         "and the trace phases; the mouse works too)")
            yield Static(help_table(self.replay, self.keymap))
            yield Static("")
            yield Static(legend_table(SCREEN, "What you see"))
            yield Static((
                "[b]Colours[/b]  DRAM bar: [b $primary]█[/] DRAM  [b $secondary]█[/] TRACE   L1 bar: "
                "[b $success-darken-2]█[/] L1  [b $warning]█[/] L1_SMALL  [b $foreground-darken-3]█[/] SYS  "
                "[b $accent-darken-3]█[/] CB  [b $primary-lighten-2]█[/] KERNEL   (the legend above the bars shows them "
                "in the current theme)"), classes="help-colours")
            yield Static("")
            yield Static(legend_table(PHASES, "Trace phases"))
