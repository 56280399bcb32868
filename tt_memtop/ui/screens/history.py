"""The history screen (``h``): one device x pool over time, scaled to capacity, peak and phases marked.

Why: "it OOMed during capture" is a question about time: how close did L1 come to full, when,
and in which phase. The chart (:mod:`..widgets.history_chart`) reads the one usage history the
monitor keeps (``MonitorState.usage_history``: max-preserving, as long as the session) and the
phase segments (``MonitorState.phase_bands``); the device pane's sparklines read the same history.

Keys: ``s`` / ``S`` the span (1 min, 10 min, 1 h, the session), Tab / Shift+Tab the pool (DRAM,
TRACE, L1, L1_SMALL, CB, KERNEL), ``[`` / ``]`` the device (with several devices a mesh grid shows
which one, coloured by use), ``H`` the scale (100 / 50 / 25 / 10 % of capacity), ``r`` resets the
peaks, Esc / ``h`` / ``q`` closes. Redrawn twice a second from the live state (fetched each time:
a replay seek replaces it).

The peak is the high-water mark since memtop attached (or since ``r``): nothing the sources send
says what was used before that, so the title says "since HH:MM:SS (attach)" ("(replayed from)" in
a replay, whose state starts at the file's start or where it was seeked to).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...config import HISTORY_SCALES
from ...core.geometry import DRAM, L1_SMALL, TRACE
from ...core.protocol import BufferType
from ..format import human
from ..widgets.header_bar import clock
from ..widgets.history_chart import ChartData, HistoryChart
from ..widgets.mesh_grid import MeshGrid, mesh_rows
from ..widgets.phase_timeline import legend
from . import cycled

__all__ = ["POOLS", "SPANS", "HistoryScreen", "chart_data", "pool_capacity"]

NS = 1_000_000_000
#: (seconds or None for the whole session, label)
SPANS: tuple[tuple[int | None, str], ...] = ((60, "1 min"), (600, "10 min"), (3600, "1 h"), (None, "session"))
#: pools in the order Tab visits them
POOLS: tuple[int, ...] = (DRAM, TRACE, int(BufferType.L1), L1_SMALL, int(BufferType.CB), int(BufferType.KERNEL))
_NAMES = {int(t): t.name for t in BufferType}


def pool_capacity(state, device: int, pool: int) -> tuple[int, str]:
    """(bytes, what they are) the chart's full height stands for: the region of a pool that has one
    (TRACE, L1_SMALL: configured or inferred from addresses), else the memory it lives in."""
    info = state.inventory.get(device)
    dram = info.total_dram if info is not None else 0
    l1 = info.total_l1 if info is not None else 0
    if pool in (TRACE, L1_SMALL) and state.has_events:
        s = state.insight.pool_stats(device, pool)
        if s.bank_size > 0 and s.banks > 0:
            return s.bank_size * s.banks, ("trace region" if pool == TRACE else "L1_SMALL region") + \
                ("" if s.range_known else ", inferred")
    if pool in (DRAM, TRACE):
        return dram, "DRAM capacity"
    return l1, "L1 capacity"


def _time_text(ns: int, wall_offset_ns: int | None, origin_ns: int) -> str:
    if wall_offset_ns is not None:
        return time.strftime("%H:%M:%S", time.localtime((ns + wall_offset_ns) / NS))
    return clock(max(0, ns - origin_ns) / NS, False)


def chart_data(state, device: int, pool: int, span_s: int | None, now_ns: int, scale_frac: float = 1.0,
               wall_offset_ns: int | None = None, origin_ns: int | None = None,
               start_word: str = "attach") -> tuple[ChartData, Text]:
    """The chart's data and the title line that goes with it, from a MonitorState (pure: now is passed in)."""
    span_ns = None if span_s is None else span_s * NS
    series = state.usage_history(device, pool, span_ns)
    now = max(now_ns, state.last_ts_ns)
    if span_ns is None:
        t0 = series[0][0] if series else now - 60 * NS
        if now - t0 < 2 * NS:  # a session of a moment: still a readable time axis
            t0 = now - 2 * NS
    else:
        t0 = now - span_ns
    origin = state.first_ts_ns if origin_ns is None else origin_ns
    cap, cap_what = pool_capacity(state, device, pool)
    ins = state.insight
    peak, at = ins.peaks.device_peak(device, pool)
    if not peak:  # a totals-only source: the history's own high-water mark
        peak, at = ins.history.peak((device, pool))
    since_ns = ins.peaks.reset_at or state.first_ts_ns
    since_word = "reset" if ins.peaks.reset_at else start_word
    scale = int(cap * scale_frac) if cap else max((v for _s, v, _l in series), default=0) * 5 // 4
    bands = [s for s in state.phase_bands() if not s.devices or device in s.devices]
    data = ChartData(series, t0, now, scale, cap, peak, at, _time_text(at, wall_offset_ns, origin) if at else "",
                     bands)
    cur = series[-1][2] if series else 0
    label = next((lbl for s, lbl in SPANS if s == span_s), "")
    title = Text()
    title.append(f" History · device {device} {_NAMES.get(pool, pool)}", "bold")
    title.append(f" · {'the session' if span_s is None else 'last ' + label}")
    if cap:
        title.append(f" · 0–{human(scale)} = {scale_frac * 100:g} % of {cap_what}")
        title.append(f" · now {human(cur)} ({100 * cur / cap:.1f} %)")
    else:
        title.append(" · capacity unknown: scaled to its own max", "bold yellow")
        title.append(f" · now {human(cur)}")
    if peak:
        title.append(f" · peak {human(peak)} at {data.peak_text}", "bold")
        title.append(f", since {_time_text(since_ns, wall_offset_ns, origin)} ({since_word})", "dim")
    return data, title


class HistoryScreen(Screen[None]):
    OWN_KEYS = True  # the app hides its main-screen keys (sort, search, panes...) while this is on top
    BINDINGS = [
        Binding("escape,h,q", "close", "Close"),
        Binding("s", "span(1)", "Span"),
        Binding("S", "span(-1)", "Span back", show=False),
        Binding("tab", "pool(1)", "Pool"),
        Binding("shift+tab", "pool(-1)", "Pool back", show=False),
        Binding("left_square_bracket", "device(-1)", "Prev device"),
        Binding("right_square_bracket", "device(1)", "Next device"),
        Binding("H", "scale", "Scale"),
        Binding("r", "reset_peaks", "Reset peaks"),
    ]
    DEFAULT_CSS = """
    HistoryScreen { layout: vertical; }
    HistoryScreen #hist-title { height: auto; background: $boost; }
    HistoryScreen #hist-mesh { height: auto; display: none; }
    HistoryScreen #hist-mesh.-mesh { display: block; }
    HistoryScreen #hist-legend { height: 1; color: $foreground-muted; }
    """

    def __init__(self, get_state: Callable[[], object], device: int | None = None, pool: int = DRAM,
                 span: int | None = None, now: Callable[[], int] | None = None, scale: float = 1.0,
                 wall_offset_ns: int | None = None, origin_ns: int | None = None, start_word: str = "attach") -> None:
        super().__init__()
        self.start_word = start_word  # what the state's first moment was: memtop attached, or a replay's start
        self.get_state = get_state
        self.device = device
        self.pool = pool
        self.span = span
        self.now = now
        self.scale = scale
        self.wall_offset_ns = wall_offset_ns
        self.origin_ns = origin_ns

    def compose(self) -> ComposeResult:
        yield Static(id="hist-title")
        yield MeshGrid(id="hist-mesh")
        yield HistoryChart(id="hist-chart")
        legend_line = Text(" ▼ peak  · not recorded yet   phases: ", "dim")
        legend_line.append_text(legend())
        yield Static(legend_line, id="hist-legend")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(0.5, self.redraw)

    def _devices(self) -> list[int]:
        return self.get_state().devices()

    def redraw(self) -> None:
        st = self.get_state()
        devs = self._devices()
        if self.device is None or (devs and self.device not in devs):
            self.device = devs[0] if devs else 0
        now = self.now() if self.now is not None else st.last_ts_ns
        data, title = chart_data(st, self.device, self.pool, self.span, now, self.scale,
                                 self.wall_offset_ns, self.origin_ns, self.start_word)
        self.query_one("#hist-title", Static).update(title)
        self.query_one("#hist-chart", HistoryChart).show(data)
        mesh = self.query_one("#hist-mesh", MeshGrid)
        mesh.set_class(len(devs) > 1, "-mesh")
        if len(devs) > 1:
            mesh.show(mesh_rows(st, devs), selected=self.device)

    # ------------------------------------------------------------------ actions
    def action_close(self) -> None:
        self.dismiss(None)

    def action_span(self, step: int) -> None:
        self.span = cycled([s for s, _ in SPANS], self.span, step)
        self.redraw()

    def action_pool(self, step: int) -> None:
        self.pool = cycled(POOLS, self.pool, step)
        self.redraw()

    def action_device(self, step: int) -> None:
        devs = self._devices()
        if devs:
            self.device = cycled(devs, self.device, step)
        self.redraw()

    def action_scale(self) -> None:
        self.scale = next((s for s in HISTORY_SCALES if s < self.scale - 1e-9), HISTORY_SCALES[0])
        self.redraw()

    def action_reset_peaks(self) -> None:
        self.app.action_reset_peaks()
        self.redraw()

