"""The address-map screen (``m``): one device's DRAM or L1 bank as a grid of address slices.

Why: an OOM names the largest free range per bank; this shows it — where the buffers sit, the
TRACE region at the top of DRAM, the L1_SMALL region at the top of L1, the largest free range
(``~``, highlighted) — and, with Enter, which buffers are in a slice. The cells and symbols are
those of ``memtop report --map`` (:mod:`tt_memtop.output.address_map`), coloured; the figures
under the map are the pool's (largest free per bank, free segments, largest allocatable,
fragmentation), its peak and the device's headroom.

Keys: arrows move the cursor, Enter lists the slice's buffers, Tab switches DRAM / L1, ``[`` /
``]`` the device, ``r`` resets peaks, Esc / ``m`` / ``q`` closes. With more than 8 devices (a
Galaxy) the mesh grid of the devices (the device pane's, outliers marked) shows which one is picked. Redrawn twice a second from the
live state (the app's state may be replaced by a replay seek, so it is fetched each time).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ...core.geometry import DRAM, L1, L1_SMALL, POOLS, TRACE
from ...core.insight import warning_text
from ...output.address_map import LEGEND, cell_symbol, map_cells, pool_line
from ..widgets.mesh_grid import MeshGrid, mesh_rows
from . import cycled

__all__ = ["AddressMapScreen", "cell_style"]

_STYLE = {"D": "bold blue", "d": "blue", "L": "bold green", "l": "green", "S": "bold yellow", "s": "yellow",
          "T": "bold magenta", "t": "magenta", "*": "bold red", ".": "grey50", "~": "bold cyan", ":": "magenta dim",
          "x": "grey30"}


def cell_style(symbol: str) -> str:
    return _STYLE.get(symbol, "")


class AddressMapScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,m,q", "close", "Close"),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("enter", "list_cell", "Buffers here"),
        Binding("tab", "memory", "DRAM / L1"),
        Binding("left_square_bracket", "device(-1)", "Prev device"),
        Binding("right_square_bracket", "device(1)", "Next device"),
        Binding("r", "reset_peaks", "Reset peaks"),
    ]
    DEFAULT_CSS = """
    AddressMapScreen { layout: vertical; }
    AddressMapScreen #map-title { height: 1; background: $boost; }
    AddressMapScreen #map-grid { height: auto; }
    AddressMapScreen #map-mesh { height: auto; display: none; }
    AddressMapScreen #map-mesh.-mesh { display: block; margin-bottom: 1; }
    AddressMapScreen #map-info { height: auto; }
    AddressMapScreen #map-cell { height: 1fr; }
    """

    def __init__(self, get_state: Callable[[], object], device: int | None = None, memory: int = DRAM,
                 columns: int | None = None, rows: int | None = None) -> None:
        super().__init__()
        self.get_state = get_state
        self.device = device
        self.memory = memory
        self.fixed = (columns, rows)
        self.cursor = (0, 0)
        self.cells: list = []

    def compose(self) -> ComposeResult:
        yield Static(id="map-title")
        yield MeshGrid(id="map-mesh")
        yield Static(id="map-grid")
        yield Static(id="map-info")
        table = DataTable(id="map-cell", cursor_type="none", zebra_stripes=True)
        table.can_focus = False  # the arrows and Enter belong to the map
        table.add_columns("Address", "Per bank", "Size", "Type", "PID", "Name")
        yield table

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(0.5, self.redraw)

    # ------------------------------------------------------------------ geometry of the grid
    def _dims(self) -> tuple[int, int]:
        cols, rows = self.fixed
        w, h = self.size.width or 80, self.size.height or 24
        return (cols or max(16, min(128, w - 14)), rows or max(4, min(24, h - 14)))

    def _devices(self) -> list[int]:
        st = self.get_state()
        return sorted(set(st.devices()) | set(st.insight.devices()))

    # ------------------------------------------------------------------ drawing
    def redraw(self) -> None:
        st = self.get_state()
        ins = st.insight
        devs = self._devices()
        if self.device is None or (devs and self.device not in devs):
            self.device = devs[0] if devs else 0
        cols, rows = self._dims()
        self.cursor = (min(self.cursor[0], cols - 1), min(self.cursor[1], rows - 1))
        cells, lo, hi = map_cells(ins, self.device, self.memory, cols * rows)
        self.cells = cells
        name = "DRAM" if self.memory == DRAM else "L1"
        width = cells[0].hi - cells[0].lo if cells else 0
        note = "" if st.has_events else " · this source gives totals only: no addresses to map"
        self.query_one("#map-title", Static).update(Text.assemble(
            (f" Address map · device {self.device} {name}", "bold"),
            f" · one cell = {width:,} B of each bank · Tab DRAM/L1 · [ ] device · Enter buffers · r reset peaks · Esc",
            (note, "bold yellow")))
        grid = Text()
        digits = max(8, len(f"{hi:x}"))
        cx, cy = self.cursor
        for r in range(rows):
            row = cells[r * cols:(r + 1) * cols]
            if not row:
                break
            grid.append(f"{row[0].lo:#0{digits + 2}x} ", "grey50")
            run, run_style = [], None  # runs of one style: a few segments a row, not one per cell
            for c, cell in enumerate(row):
                sym = cell_symbol(cell)
                style = cell_style(sym)
                if (c, r) == (cx, cy):
                    style = (style + " reverse").strip()
                if style != run_style and run:
                    grid.append("".join(run), run_style)
                    run = []
                run_style = style
                run.append(sym)
            if run:
                grid.append("".join(run), run_style)
            grid.append("\n")
        self.query_one("#map-grid", Static).update(grid)
        self._mesh(st, devs)
        self.query_one("#map-info", Static).update(self._info(ins))

    def _mesh(self, st, devs: list[int]) -> None:
        """More than 8 devices (a Galaxy): the mesh grid of the device pane, outliers marked, this device reversed."""
        mesh = self.query_one("#map-mesh", MeshGrid)
        mesh.set_class(len(devs) > 8, "-mesh")
        if len(devs) > 8:
            mesh.show(mesh_rows(st, devs), selected=self.device)

    def _info(self, ins) -> Text:
        out = Text()
        pools = (DRAM, TRACE) if self.memory == DRAM else (L1, L1_SMALL)
        for pool in pools:
            s = ins.pool_stats(self.device, pool)
            if s.bank_size <= 0:
                out.append(f"{POOLS[pool]:<8} no region (none configured or seen)\n", "grey50")
                continue
            peak, at = ins.peaks.device_peak(self.device, pool)
            out.append(pool_line(s))
            if peak:
                out.append(f" · peak {peak:,} B at {(at - self.get_state().first_ts_ns) / 1e9:.1f} s")
            out.append("\n")
        h = ins.headroom(self.device)
        if self.memory == DRAM and h.trace_peak_bytes:
            region = "unknown" if h.trace_region_size is None else f"{h.trace_region_size:,} B per bank" + \
                ("" if h.trace_region_known else " (inferred)")
            out.append(f"trace: {h.trace_bytes:,} B live, peak {h.trace_peak_bytes:,} B; region {region}; "
                       f"suggested trace_region_size >= {h.suggested_trace_region_size:,}\n")
        if self.memory == L1 and h.l1_headroom is not None:
            out.append(f"L1 headroom above the CBs: {h.l1_headroom:,} B per bank\n")
        for w in h.warnings:
            if w["pool"] in [POOLS[p] for p in pools]:
                out.append(f"WARNING {warning_text(self.device, w)}\n",
                           "bold red" if w["level"] == "would_fail" else "bold yellow")
        cell = self._cell()
        if cell is not None:
            used = ", ".join(f"{POOLS.get(t, t)} {n:,} B" for t, n in cell.used.items() if n) or "free"
            out.append(f"cursor: {cell.lo:#x}-{cell.hi:#x}: {used}\n", "bold")
        out.append(LEGEND, "grey50")
        return out

    def _cell(self):
        cols, _ = self._dims()
        i = self.cursor[1] * cols + self.cursor[0]
        return self.cells[i] if 0 <= i < len(self.cells) else None

    # ------------------------------------------------------------------ actions
    def action_close(self) -> None:
        self.dismiss(None)

    def action_move(self, dx: int, dy: int) -> None:
        cols, rows = self._dims()
        self.cursor = ((self.cursor[0] + dx) % cols, (self.cursor[1] + dy) % rows)
        self.redraw()

    def action_memory(self) -> None:
        self.memory = L1 if self.memory == DRAM else DRAM
        self.redraw()

    def action_device(self, step: int) -> None:
        devs = self._devices()
        if devs:
            self.device = cycled(devs, self.device, step)
        self.redraw()

    def action_reset_peaks(self) -> None:
        self.app.action_reset_peaks()  # the core's peaks and the meters' marks, as `r` on the main screen
        self.redraw()

    def action_list_cell(self) -> None:
        cell = self._cell()
        table = self.query_one("#map-cell", DataTable)
        table.clear()
        if cell is None:
            return
        st = self.get_state()
        reg = st.registry
        for s, e, t, size in st.insight.space(self.device, self.memory).intervals(cell.lo, cell.hi):
            b = reg.get(self.device, s, t)
            pid = str(b.owner_pid) if b is not None else "?"
            name = b.name if b is not None else ""
            table.add_row(f"{s:#x}", f"{e - s:,}", f"{size:,}", POOLS.get(t, str(t)), pid, name)
        if not table.row_count:
            table.add_row(f"{cell.lo:#x}", "-", "-", "free", "", "")
