"""The memtop Textual app: any Source in, htop-style panes out.

Data path: ``source.run(emit)`` runs as an asyncio worker; ``emit`` folds each update into the
:class:`MonitorState` at once (cheap, no widget work). A fixed timer (``fps``, 10–30 Hz) draws
frames from the state: the header every tick, the visible pane when its data changed. Pausing
stops the drawing, never the ingestion. Ranking a million buffers happens in a thread worker.

Replays: a source with ``Capability.SEEK`` in its ``capabilities`` is a *player* (pause, step,
seek, speed; see :class:`~tt_memtop.sources.replay.ReplaySource`). Then ``p`` / Space pause the
playback rather than the drawing, the replay keys of the binding table are enabled, and the
header shows the playback. A seek arrives as a ``Snapshot(reset=True)``: the state is rebuilt
from it (a fresh MonitorState: feed, histories and phases of the old position are dropped).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Callable

import anyio
from textual import on, work
from textual.app import App, ComposeResult
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Tab, Tabs

from ..config import HISTORY_SCALES
from ..core.model import MonitorState, new_state
from ..core.peaks import types_mask
from ..sources.base import Capability, EventBatch, Snapshot, Source, Status, Update
from ..sources.liveness import ProcLiveness
from .bindings import KEYS, app_bindings, key_active
from .buffer_query import SORT_ORDER as BUFFER_SORTS
from .buffer_query import Window, compute_window
from .filters import ViewFilter
from .format import duration, parse_id
from .procinfo import ProcInfo
from .screens.details import DetailsScreen, details_renderable, find_buffers
from .screens.filters import FilterScreen
from .screens.help import HelpScreen
from .screens.prompt import PromptScreen
from .screens.sort_menu import SortScreen
from .themes import DEFAULT_THEME, THEME_ALIASES, THEMES, stylesheet_paths
from .widgets.buffers_pane import BuffersPane
from .widgets.device_pane import DevicePane, DeviceRow
from .widgets.event_feed import EventFeed
from .widgets.header_bar import HeaderBar, HeaderInfo, Playback, clock
from .widgets.history_chart import stack_columns
from .widgets.processes_pane import SORT_ORDER as PROCESS_SORTS
from .widgets.processes_pane import ProcessesPane, leaks_text, process_rows

HEADROOM_TICKS = 4  # a sample's headroom warnings are worked out over this many ticks (see _headroom_step)
FOOTER_ROOMY = 100  # columns from which the Footer has room to spare between its keys
RATE_PERIOD = 0.5  # the header's event rate is worked out again at most this often (s)
LIST_PERIOD = 0.5  # the buffers and processes lists are re-ranked at most this often (and every sample period)
SLICE_S = 0.008  # longest stretch of folding between two chances to draw
CHUNK = 512  # events folded at a time from a big batch (fixed: the usage history has a point per fold)
RANK_SPACING = 4.0  # a buffers ranking that took t s is not repeated for RANK_SPACING * t s
#: Collector thresholds while the app runs. The state holds millions of long-lived, acyclic objects
#: (a Buffer per live buffer, the feed's Events): with the defaults (700, 10, 10) the collector
#: rescans all of them every few seconds, a 300+ ms freeze of ingestion and drawing each time. Young
#: generations are still collected often (cycles made by the UI go quickly); full collections are rare.
GC_THRESHOLDS = (10_000, 10, 1_000)
#: After folding a snapshot of at least this many buffers, or once the registry has grown by this
#: many since the last time, everything alive is moved out of the collector's generations
#: (``gc.freeze``): the rare full collections then skip the million long-lived Buffers (a 0.5-1 s
#: freeze each otherwise). Frozen objects are still freed by reference counting; only cycles among
#: them wait for the ``gc.unfreeze`` at unmount, so it is done rarely, never per frame.
GC_FREEZE_GROWTH = 200_000
PANES = ("devices", "feed", "buffers", "processes")
PANE_TITLES = {"devices": "1 Devices", "feed": "2 Events", "buffers": "3 Buffers", "processes": "4 Processes"}
REPLAY_ACTIONS = frozenset({"play_pause", "step", "seek", "seek_to", "speed"})
#: Refused in a read-only view (``memtop --web``): actions that reach past the view. memtop's own keys
#: only change the view; Textual's own actions touch the host (an SVG written to its disk, suspending
#: the process). A key that acts on the server or the host (e.g. a DUMP) belongs here.
WRITE_ACTIONS = frozenset({"screenshot", "suspend_process"})
SEEK_STEP = 0.05  # [ / ]: this fraction of the duration
#: the app's actions that stay on a screen with ``OWN_KEYS`` (help, quit, pausing and playback)
SCREEN_KEEPS = REPLAY_ACTIONS | {"help", "quit", "toggle_pause", "resume", "command_palette"}
TOTALS_ONLY_NOTE = ("this source reports totals only (the original allocation server, polled): no events, "
                    "buffers or processes. Run `memtop serve` as the server, or add --follow LOG.")
SHM_NOTE = ("this source reports totals only (TT-Metal's shared-memory statistics): per device and per process, "
            "no per-buffer events. For the event feed and buffers run `memtop serve` with a TT-Metal build that has "
            "the AllocationClient (TT_ALLOC_TRACKING_ENABLED=1).")
SPEEDS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)




class KeyCommands(Provider):
    """Every action of the binding table, searchable in the command palette."""

    def _commands(self):
        """One entry per action in effect now (Pause or Resume, not both); the help line only when it
        says more than the title (the palette would otherwise show every command twice)."""
        replay = getattr(self.app, "player", None) is not None
        check = getattr(self.app, "check_action", None)
        seen: set[str] = set()
        for k in KEYS:
            if not k.action or not key_active(k, replay) or k.action in seen:
                continue  # one entry per action (Quit has two keys: q / F10 and Ctrl+C)
            seen.add(k.action)
            if check is not None and check(k.action.partition("(")[0], ()) is False:
                continue
            title = f"{k.short or k.description} ({k.label or k.keys})"
            yield title, k.action, (k.description if k.short and k.short != k.description else None)

    async def discover(self) -> Hits:
        for title, action, help_text in self._commands():
            yield DiscoveryHit(title, self._runner(action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), self._runner(action), help=help_text)

    def _runner(self, action: str):
        async def run() -> None:
            await self.app.run_action(action)
        return run


def ignore_stale_wakeups(loop: asyncio.AbstractEventLoop) -> None:
    """Let ``loop`` drop the one harmless error it would print: a socket's reader firing for a wait that
    was just cancelled (anyio's ``add_reader(fd, future.set_result)``: the task waiting in ``receive`` is
    cancelled — the app quits, a seek restarts the source — in the same loop iteration as data arrives,
    so ``set_result`` meets a cancelled future: InvalidStateError, printed as "Exception in callback").
    Every other error goes to the handler that was there before. Idempotent."""
    previous = loop.get_exception_handler()
    if getattr(previous, "_memtop_stale_wakeups", False):
        return

    def handler(lp: asyncio.AbstractEventLoop, context: dict) -> None:
        handle = context.get("handle")
        callback = getattr(handle, "_callback", None)
        if isinstance(context.get("exception"), asyncio.InvalidStateError) and \
                getattr(callback, "__name__", "") == "set_result" and isinstance(getattr(callback, "__self__", None),
                                                                                   asyncio.Future):
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler._memtop_stale_wakeups = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


class MemtopApp(App[int]):
    """``clock`` (monotonic seconds) drives what is shown (uptime, rate); it is injectable so tests and
    snapshots have no wall-clock text. Refresh scheduling always uses the real monotonic clock."""

    TITLE = "memtop"
    CSS_PATH = stylesheet_paths()
    BINDINGS = app_bindings()
    COMMANDS = App.COMMANDS | {KeyCommands}
    #: a view that must not act on anything but itself (the web view): WRITE_ACTIONS are refused
    read_only = False

    def __init__(self, source: Source, *, view_filter: ViewFilter | None = None, theme: str | None = None,
                 clock: Callable[[], float] = time.monotonic, fps: float = 20.0, sample_period: float = 0.5,
                 local: bool | None = None, state: MonitorState | None = None, buffer_limit: int = 500,
                 pane: str | None = None, step_events: int = 1, history_scale: float = 1.0,
                 feed_grouped: bool = True, wall_clock: bool | None = None, wall_offset_ns: int | None = None,
                 group: bool = False, keymap: dict[str, str] | None = None) -> None:
        self._liveness = ProcLiveness()  # /proc checks: a killed process exits before the server notices
        super().__init__()
        self.source = source
        #: the source as a player (a replay), or None
        self.player = source if Capability.SEEK in getattr(source, "capabilities", frozenset()) else None
        self.step_events = max(1, step_events)
        self.state = state if state is not None else new_state()
        self.view_filter = view_filter or ViewFilter()
        self.clock = clock
        self.fps = max(10.0, min(30.0, fps))
        self.sample_period = sample_period
        self.buffer_limit = buffer_limit
        self.initial_theme = THEME_ALIASES.get(theme or "", theme) or DEFAULT_THEME
        if local is None:
            local = bool(getattr(source, "local", True))
        self.procs = ProcInfo(local, clock)
        #: opens on what holds memory (the processes); a totals-only source has none: then the meters
        self.pane = pane or "processes"
        self._auto_pane = pane is None
        self.paused = False
        self.paused_at_events = 0
        self.buffer_sort, self.buffer_invert, self.group = "size", False, group
        self.history_scale = history_scale
        self.feed_grouped = feed_grouped
        if wall_offset_ns is None:  # live sources stamp events with this host's monotonic clock
            wall_offset_ns = time.time_ns() - time.monotonic_ns() if self.player is None else 0
        #: feed times: wall clock by default (not for replays, whose position counts from the file start)
        self.wall_clock = (self.player is None) if wall_clock is None else wall_clock
        self.wall_offset_ns = wall_offset_ns
        self.keymap = dict(keymap or {})
        self._last_sample_t = 0.0
        self.process_sort, self.process_invert = "total", False
        self.drilled_from: tuple[str, ViewFilter] | None = None
        self.frames = 0  # frames drawn (benchmarks read it)
        self.last_frame_events = 0  # state.events_total when the last frame was drawn
        self.ingest_error: str | None = None
        self._pending: deque[Update] = deque()
        self._pending_events = 0  # events emitted but not folded yet (the backlog)
        self._wake = anyio.Event()
        self._started = clock()
        self._rate_samples: deque[tuple[float, int]] = deque(maxlen=64)
        self._rate_shown: tuple[float, float] | None = None  # (clock, rate) the header shows (_shown_rate)
        self._last_sample = -1e9
        self._dev_seen = (-1, -1, None)
        self._alerts_seen: tuple = ()  # (events_total, filter) when the headroom warnings were last computed
        self._headroom_due: list[int] = []  # devices whose warnings this round still has to work out
        self._headroom_found: list = []  # (device, warning) of the round so far
        self._buf_due = 0.0
        self._buf_busy = False
        self._buf_snapshot: list | None = None
        self._buf_dirty = True
        self._proc_due = 0.0
        self._proc_rows: list = []
        self._window: Window | None = None
        self._frozen_at = 0  # len(registry) at the last gc.freeze()
        self._froze = False
        self._stale_since: float | None = None  # clock() when the source was lost with data on screen

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield DevicePane(history_scale=self.history_scale, history=self._history_columns, id="devices")
        yield Tabs(*[Tab(PANE_TITLES[p], id=f"tab-{p}") for p in PANES], active=f"tab-{self.pane}", id="pane-tabs")
        with ContentSwitcher(initial=self.pane if self.pane != "devices" else "processes", id="panes"):
            yield EventFeed(limit=self.state.feed.maxlen or 100_000, grouped=self.feed_grouped,
                            wall_clock=self.wall_clock, wall_offset_ns=self.wall_offset_ns, id="feed")
            yield BuffersPane(id="buffers")
            yield ProcessesPane(id="processes")
        yield Input(placeholder="filter: id (hex/dec), type, PID, name — Enter keeps it, Esc clears", id="search")
        yield Footer()

    def get_system_commands(self, screen):
        """Textual's own commands, minus the ones the key table already offers (Quit)."""
        for cmd in super().get_system_commands(screen):
            if cmd.title != "Quit":
                yield cmd

    def on_mount(self) -> None:
        ignore_stale_wakeups(asyncio.get_running_loop())
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        # The main screen's widgets, kept: queries on the app would search a modal when one is open.
        self.w_header = self.query_one(HeaderBar)
        self.w_devices = self.query_one(DevicePane)
        self.w_feed = self.query_one(EventFeed)
        self.w_buffers = self.query_one(BuffersPane)
        self.w_processes = self.query_one(ProcessesPane)
        self.w_tabs = self.query_one(Tabs)
        self.w_switcher = self.query_one(ContentSwitcher)
        self.w_search = self.query_one("#search", Input)
        self.w_footer = self.query_one(Footer)
        self._fit_footer()
        for theme in THEMES:
            self.register_theme(theme)
        if self.keymap:
            self.set_keymap(self.keymap)
        try:
            self.theme = self.initial_theme
        except Exception:
            self.notify(f"unknown theme {self.initial_theme!r}; using {DEFAULT_THEME}", severity="warning")
            self.theme = DEFAULT_THEME
        self.show_pane(self.pane)
        self.run_worker(self._ingest(), name="ingest", group="ingest", exit_on_error=False)
        self.set_interval(1 / self.fps, self._tick)
        self._tick()

    def on_resize(self) -> None:
        self._fit_footer()

    def _fit_footer(self) -> None:
        """Below ``FOOTER_ROOMY`` columns the Footer goes compact (less space between keys) and leaves the
        palette's key to help (F1): at 80 columns the roomy one cut its last label ("/ Searc", "\\ Fil")."""
        footer = getattr(self, "w_footer", None)
        if footer is not None:
            narrow = self.size.width < FOOTER_ROOMY
            footer.compact = narrow
            footer.show_command_palette = not narrow

    def on_unmount(self) -> None:
        if hasattr(self, "_gc_thresholds"):  # not when the app ends before it was mounted
            gc.set_threshold(*self._gc_thresholds)
        if self._froze:
            gc.unfreeze()

    def _maybe_freeze(self) -> None:
        """``gc.freeze()`` when the registry has grown by ``GC_FREEZE_GROWTH`` live entries (see there)."""
        n = len(self.state.registry)
        if n - self._frozen_at >= GC_FREEZE_GROWTH:
            gc.freeze()
            self._frozen_at, self._froze = n, True
        elif n < self._frozen_at:
            self._frozen_at = n  # shrunk (freed, or a seek): measure the next growth from here

    # ------------------------------------------------------------------ ingestion (never draws)
    def emit(self, update: Update) -> None:
        """The source's callback: queue only. Folding happens in :meth:`_fold`, in time slices."""
        self._pending.append(update)
        self._pending_events += len(update.events) if isinstance(update, EventBatch) else 0
        self._wake.set()

    async def _ingest(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._fold)
                await self.source.run(self.emit)
                while self._pending:  # the data ended: fold what is left, then stop folding
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        except Exception as exc:  # a source failing must not take the UI down: say it in the header
            self.ingest_error = f"{type(exc).__name__}: {exc}"
            self.state.apply(Status("error", self.ingest_error))

    def _reset_state(self) -> None:
        """A replay moved in time: start over from an empty state of the same kind (the reset Snapshot
        that follows fills it). Counters restart, so the widgets that track them restart too."""
        old = self.state
        phases = None
        if old.phases is not None:
            try:
                phases = type(old.phases)()
            except TypeError:  # a tracker that needs arguments: keep the new state without phases
                phases = None
        self.state = type(old)(feed_limit=old.feed.maxlen or 100_000, phases=phases, geometry=old.insight.config)
        self.state.inventory = old.inventory
        self.state.status = old.status
        self.state.capabilities = old.capabilities
        self.paused_at_events = 0
        self.last_frame_events = 0
        self._rate_samples.clear()
        self._rate_shown = None
        self._headroom_due = []
        self._dev_seen = (-1, -1, None)
        self._buf_snapshot = None
        self._buf_due = 0.0
        self._proc_due = 0.0
        note = ""
        if self.player is not None:
            p = self.player
            note = (f"moved to {clock(p.position_s, p.duration_s < 10)} ({p.position:,}/{p.length:,} {p.unit}): "
                    "the state is rebuilt there; events from here on")
        self.w_feed.reset(note)
        self.w_devices.reset()

    async def _fold(self) -> None:
        """Fold queued updates into the state, yielding every ``SLICE_S`` so frames keep their rate
        even when a source delivers more than this process can fold (then the header shows the backlog)."""
        pending = self._pending
        apply = self.state.apply
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            deadline = time.perf_counter() + SLICE_S
            while pending:
                update = pending[0]
                if isinstance(update, EventBatch) and len(update.events) > CHUNK:
                    chunk = update.events[:CHUNK]
                    del update.events[:CHUNK]
                    apply(EventBatch(chunk), time.monotonic_ns())
                    self._pending_events -= CHUNK
                else:
                    pending.popleft()
                    if isinstance(update, Snapshot) and update.reset:
                        self._reset_state()
                        apply = self.state.apply
                    apply(update, time.monotonic_ns())
                    if isinstance(update, EventBatch):
                        self._pending_events -= len(update.events)
                    elif isinstance(update, Snapshot):
                        self._maybe_freeze()
                if time.perf_counter() >= deadline:
                    await anyio.sleep(0)
                    deadline = time.perf_counter() + SLICE_S

    # ------------------------------------------------------------------ drawing (fixed rate)
    def _tick(self) -> None:
        st = self.state
        self._maybe_freeze()
        self._rate_samples.append((self.clock(), st.events_total))
        if st.last_ts_ns:
            now = st.server_now(time.monotonic_ns())
            st.check_liveness(self._liveness.alive, now)
            st.tick(now)
        self._draw_header()
        if self.paused:
            return
        now = time.monotonic()
        sample = now - self._last_sample >= self.sample_period
        dt = 0.0
        if sample:
            dt = now - self._last_sample if self._last_sample > 0 else 0.0
            self._last_sample = now
        self._draw_devices(sample, dt)
        if self._auto_pane and st.capabilities:
            self._auto_pane = False
            if self._totals_only_note() and self.pane == "processes":
                self.show_pane("devices")
        if self.pane == "feed":
            note = self._totals_only_note()
            if note and self.w_feed.empty_text != note:
                self.w_feed.empty_text = note
                self.w_feed.refresh()
            self.w_feed.pull(st, self.view_filter, self._origin_ns())
        elif self.pane == "buffers":
            self._maybe_query_buffers(now)
        elif self.pane == "processes" and now >= self._proc_due:
            self._proc_due = now + min(self.sample_period, LIST_PERIOD)
            self._proc_rows = process_rows(st, self.view_filter, self.procs)
            self.w_processes.show(self._proc_rows, self.process_sort, self.process_invert, self._processes_note(),
                                  leaks_text(self.state))
            self.w_processes.show_phases(self.state, [r.pid for r in self._proc_rows])
        self.frames += 1
        self.last_frame_events = st.events_total

    def _rate(self) -> float:
        """Events per second over the last ~2 s of ticks."""
        s = self._rate_samples
        if len(s) < 2:
            return 0.0
        t1, n1 = s[-1]
        t0, n0 = next(((t, n) for t, n in s if t1 - t <= 2.0), s[0])
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _shown_rate(self) -> float:
        """The header's rate, worked out again at most every ``RATE_PERIOD`` (of real time): a rate
        that changes every frame makes the header, and with it every widget between the header and the
        pane that changed, be drawn again each frame (and a number that changes 20 times a second is not
        read anyway; btop and htop refresh theirs once or twice a second)."""
        now = time.monotonic()
        if self._rate_shown is None or not (0 <= now - self._rate_shown[0] < RATE_PERIOD):
            self._rate_shown = (now, self._rate())
        return self._rate_shown[1]

    def _totals_only_note(self) -> str:
        """Why the feed, buffers and processes are empty when the source reports totals only ("" otherwise)."""
        st = self.state
        if st.has_process_totals:
            return SHM_NOTE
        if not st.capabilities or Capability.EVENTS in st.capabilities or st.has_events:
            return ""
        return TOTALS_ONLY_NOTE

    def _processes_note(self) -> str:
        """The processes pane has rows from per-process totals too: no note then."""
        return "" if self.state.has_process_totals else self._totals_only_note()

    def _origin_ns(self) -> int | None:
        """Feed times count from here: a replay's file start (so they match the header's position),
        else the first timestamp seen."""
        return self.player.origin_ns if self.player is not None else None

    def playback(self) -> Playback | None:
        """The player's position for the header (None unless replaying, or when the source failed)."""
        p = self.player
        if p is None or self.ingest_error:
            return None
        state = "ended" if p.at_end else "paused" if p.paused else "playing"
        return Playback(state, round(p.position_s, 3), p.duration_s, p.position, p.length, p.unit, p.speed,
                        getattr(p, "seek_progress", None), getattr(p, "seek_target_s", 0.0))

    def _draw_header(self) -> None:
        st = self.state
        now = self.clock()
        desc = getattr(self.source, "description", type(self.source).__name__)
        msg = st.status.message
        playback = self.playback()
        if playback is not None:
            desc = getattr(self.source, "short_description", desc)
            if st.status.state in ("playing", "paused", "ended", "connecting"):
                msg = ""  # the player's own status line: the header's playback segment says it all
        if st.capabilities and Capability.EVENTS not in st.capabilities and not st.has_process_totals:
            msg = (msg + "; " if msg else "") + "totals only: no event feed from this source"
        drift = st.drift()
        if drift:
            devs = ",".join(map(str, sorted(drift)))
            msg = f"DRIFT: events and TT-Metal shared memory disagree on device {devs}" + ("; " + msg if msg else "")
        elif st.crosscheck:
            msg = (msg + "; " if msg else "") + "shared-memory cross-check: totals agree"
        stale = self._stale(now)
        if stale:
            msg = f"{stale}; {msg}" if msg else stale
        self.w_header.show(HeaderInfo(
            source=desc, state=st.status.state, message=msg, rate=self._shown_rate(),
            uptime=float(int(now - self._started)),  # whole seconds: an idle header is redrawn once a second
            filters=self.view_filter.describe(), paused=self.paused,
            new_while_paused=st.events_total - self.paused_at_events if self.paused else 0, gaps=st.gaps,
            backlog=self._pending_events, playback=playback, demo=bool(getattr(self.source, "demo", False)),
            stale=stale))

    def _stale(self, now: float) -> str:
        """"" while the data is live; else why what is on screen is old. Dims the panes (the ``-stale`` class)."""
        st = self.state
        lost = st.status.state in ("disconnected", "error") and (len(st.registry) > 0 or bool(st.polled)
                                                                   or st.events_total > 0)
        if not lost:
            self._stale_since = None
            self.set_class(False, "-stale")
            return ""
        if self._stale_since is None:
            self._stale_since = now
        self.set_class(True, "-stale")
        return f"showing the last state received, {duration(now - self._stale_since)} ago"

    def _draw_devices(self, sample: bool, dt: float = 0.0) -> None:
        st = self.state
        key = (st.events_total, st.polled_ts_ns, self.view_filter)
        alerts = self._headroom_step(sample)
        if key == self._dev_seen and not sample and alerts is None:
            return
        self._dev_seen = key
        f = self.view_filter
        reg = st.registry
        rows = []
        drift = st.drift() if st.crosscheck else {}
        stale = {r.device for r in st.regions if r.state == "stale" and r.device is not None}
        types = f.types or frozenset(range(7))
        peaks = st.insight.peaks  # the meters' peak marks: each bar's event-exact high water (core/peaks.py)
        peaks.set_bar_mask(types_mask(types), st.last_ts_ns)
        for d in st.devices():
            if not f.device_ok(d):
                continue
            if f.pids and st.has_process_totals:
                tot = [0] * 7
                for pid in f.pids:
                    w = st.polled_procs[pid].devices.get(d) if pid in st.polled_procs else None
                    if w:
                        for t, v in zip((0, 1, 3, 4, 5, 6), w, strict=True):
                            tot[t] += v
            elif f.pids:
                tot = [0] * 7
                for pid in f.pids:
                    for t, v in enumerate(reg.pid_device_totals(pid).get(d, ())):
                        tot[t] += v
            elif st.has_events or d not in st.polled:
                tot = reg.device_totals(d)
            else:
                w = st.polled[d]
                tot = [w[0], w[1], 0, w[2], w[3], w[4], w[5]]
            info = st.inventory.get(d)
            phase = st.device_phase(d)
            if d in drift:
                phase = "DRIFT"
            elif d in stale:
                phase = "stale"
            # a PID filter shows that process's share, whose per-device high water nothing keeps: no mark
            peak_dram, peak_l1 = (0, 0) if f.pids else peaks.bar_peak(d)
            rows.append(DeviceRow(d, info.arch_name if info else "?", tot, info.total_dram if info else 0,
                                  info.total_l1 if info else 0, phase=phase,
                                  buffers=reg.device_count(d) if st.has_events else -1,
                                  peak_dram=peak_dram, peak_l1=peak_l1))
        status = st.status
        self.w_devices.empty_note = status.message if status.state == "error" else ""
        self.w_devices.unread = [f"{r.path.rsplit('/', 1)[-1]}: {r.message}" for r in st.regions if not r.readable]
        self.w_devices.update_frame(rows, types, sample, dt, alerts)

    def _headroom_step(self, sample: bool) -> list | None:
        """The headroom warnings (per-buffer sources only: bank maps need addresses), worked out once per
        sample for the devices shown, spread over ``HEADROOM_TICKS`` ticks: a device's warnings bring its
        bank maps up to date with every change since the last sample (tens of ms for 8 devices at 200k
        events/s), which in one tick was a frame that late. Returns the new warnings, as (device, warning),
        when a round is complete (None otherwise: the meters keep the last ones)."""
        st, f = self.state, self.view_filter
        if st.has_events and sample and not self._headroom_due and (st.events_total, f) != self._alerts_seen:
            self._alerts_seen = (st.events_total, f)  # the devices shown are the filter's
            self._headroom_due = [d for d in st.devices() if f.device_ok(d)]
            self._headroom_found = []
        due = self._headroom_due
        if not due:
            return None
        n = -(-len(due) // HEADROOM_TICKS)
        for d in due[:n]:
            self._headroom_found += [(d, w) for w in st.insight.headroom(d).warnings]
        del due[:n]
        return None if due else self._headroom_found

    # ------------------------------------------------------------------ buffers: ranked off the render path
    def _maybe_query_buffers(self, now: float, force: bool = False) -> None:
        """Rank the live buffers in a worker thread, at most every ``sample_period``.

        The worker gets a list of references (:meth:`Registry.buffer_list`, no Buffer is copied),
        kept only while paused (the frozen view is re-ranked on sort / filter changes). Ranking a
        million buffers holds the GIL for a few hundred ms, time the fold then lacks: the next
        ranking waits ``RANK_SPACING`` times as long as the last one took, so ranking never takes
        more than about 1 / (1 + RANK_SPACING) of the process, whatever the registry's size.
        """
        if self._buf_busy or (not force and now < self._buf_due):
            return
        if not self.paused:
            self._buf_snapshot = None  # don't keep a million references (and freed buffers) alive
            snapshot = self.state.registry.buffer_list()
        else:
            if self._buf_snapshot is None:
                self._buf_snapshot = self.state.registry.buffer_list()
            snapshot = self._buf_snapshot
        self._buf_due = now + min(self.sample_period, LIST_PERIOD)
        self._buf_busy = True
        self._rank_buffers(snapshot, self.view_filter, self.buffer_sort, self.buffer_invert, self.group)

    @work(thread=True, exclusive=True, group="rank", exit_on_error=False)
    def _rank_buffers(self, snapshot, view_filter, sort, invert, group) -> None:
        try:
            t0 = time.monotonic()
            window = compute_window(snapshot, view_filter, sort, invert, group, self.buffer_limit,
                                    self.procs.name if view_filter.text else None)
            del snapshot  # the worker's reference: the list can go as soon as it is ranked
            t1 = time.monotonic()
            self._buf_due = max(self._buf_due, t1 + RANK_SPACING * (t1 - t0))
            self.call_from_thread(self._show_buffers, window, sort, invert, group)
        finally:
            self._buf_busy = False

    def _show_buffers(self, window: Window, sort: str, invert: bool, group: bool) -> None:
        self._window = window
        self.w_buffers.show(window, sort, invert, group, self.state.last_ts_ns, self.procs.name,
                            self._totals_only_note())

    def refresh_now(self) -> None:
        """Redraw the current pane from the current (or, paused, the frozen) data right away."""
        now = time.monotonic()
        if self.pane == "buffers":
            self._buf_busy = False
            self._maybe_query_buffers(now, force=True)
        elif self.pane == "processes":
            if not self.paused:
                self._proc_rows = process_rows(self.state, self.view_filter, self.procs)
            self.w_processes.show(self._proc_rows, self.process_sort, self.process_invert, self._processes_note(),
                                  leaks_text(self.state))
            self.w_processes.show_phases(self.state, [r.pid for r in self._proc_rows])
        elif self.pane == "feed" and not self.paused:
            self.w_feed.pull(self.state, self.view_filter, self._origin_ns())
        if not self.paused:
            self._dev_seen = (-1, -1, None)
            self._draw_devices(False)
        self._draw_header()

    # ------------------------------------------------------------------ panes
    def show_pane(self, pane: str) -> None:
        self.pane = pane
        self.set_class(pane == "devices", "-devices-only")
        self.w_devices.expanded = pane == "devices"
        tabs = self.w_tabs
        if tabs.active != f"tab-{pane}":
            tabs.active = f"tab-{pane}"
        if pane != "devices":
            self.w_switcher.current = pane
            w = {"feed": self.w_feed, "buffers": self.w_buffers, "processes": self.w_processes}[pane]
            (w.table if hasattr(w, "table") else w).focus()
        else:
            self.w_devices.focus()
        self.refresh_now()

    @on(Tabs.TabActivated, "#pane-tabs")
    def _tab_clicked(self, event: Tabs.TabActivated) -> None:
        pane = event.tab.id.removeprefix("tab-") if event.tab and event.tab.id else "feed"
        if pane != self.pane and self.is_running:
            self.show_pane(pane)

    def action_show_pane(self, pane: str) -> None:
        self.show_pane(pane)

    # ------------------------------------------------------------------ replay (player sources only)
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Replay keys exist only with a player; the view pause only without one (see bindings.py);
        a read-only view refuses WRITE_ACTIONS."""
        if self.read_only and action in WRITE_ACTIONS:
            return False
        if getattr(self.screen, "OWN_KEYS", False) and action not in SCREEN_KEEPS:
            return False  # a full screen with keys of its own (history): the main screen's keys would act unseen
        if action in REPLAY_ACTIONS:
            return self.player is not None
        if action == "toggle_pause":
            return self.player is None and not self.paused
        if action == "resume":
            return self.player is None and self.paused
        return True

    def action_play_pause(self) -> None:
        if self.player is not None:
            self.player.toggle()

    def action_step(self) -> None:
        if self.player is not None:
            self.player.step_events(self.step_events)

    def action_seek(self, direction: int) -> None:
        if self.player is not None:
            self.player.skip(direction * SEEK_STEP * self.player.duration_s)

    def action_seek_to(self, fraction: float) -> None:
        if self.player is not None:
            self.player.seek(float(fraction))

    def action_speed(self, direction: int) -> None:
        p = self.player
        if p is None:
            return
        if direction > 0:
            speed = next((s for s in SPEEDS if s > p.speed * 1.001), SPEEDS[-1])
        else:
            speed = next((s for s in reversed(SPEEDS) if s < p.speed / 1.001), SPEEDS[0])
        p.set_speed(speed)
        self._draw_header()

    # ------------------------------------------------------------------ pause / follow / group
    def action_toggle_pause(self) -> None:
        if not self.paused:
            self._freeze_view()
        self.paused = not self.paused
        self.refresh_bindings()  # the Footer: "p Pause" <-> "p Resume"
        self.refresh_now()

    def action_resume(self) -> None:
        if self.paused:
            self.action_toggle_pause()

    def action_toggle_raw(self) -> None:
        self.feed_grouped = not self.feed_grouped
        self.w_feed.set_mode(grouped=self.feed_grouped)
        if self.pane != "feed":
            self.show_pane("feed")
        self.notify("event feed: " + ("grouped (repeats coalesced, one row per op across devices)"
                                      if self.feed_grouped else "raw (one row per event)"), timeout=2)

    def action_toggle_times(self) -> None:
        self.wall_clock = not self.wall_clock
        self.w_feed.set_mode(wall_clock=self.wall_clock)
        self.notify("feed times: " + ("wall clock" if self.wall_clock else "since the first event"), timeout=2)

    def action_history_scale(self) -> None:
        scales = HISTORY_SCALES
        nxt = next((s for s in scales if s < self.history_scale - 1e-9), scales[0])
        self.history_scale = nxt
        self.w_devices.set_history_scale(nxt)
        self.notify(f"history scale: full height = {nxt * 100:g} % of capacity", timeout=2)

    def _freeze_view(self) -> None:
        """Pausing: bring every pane up to the same instant first, so the frozen panes agree with each other
        and with "PAUSED — N new events" (a pane not on screen would otherwise show data from whenever it was
        last drawn, or nothing at all)."""
        st = self.state
        self.paused_at_events = st.events_total
        self._dev_seen = (-1, -1, None)
        self._draw_devices(False)
        self.w_feed.pull(st, self.view_filter, self._origin_ns())
        self._proc_rows = process_rows(st, self.view_filter, self.procs)
        self._buf_snapshot = st.registry.buffer_list()

    def action_toggle_follow(self) -> None:
        feed = self.w_feed
        feed.follow = not feed.follow
        self.notify(f"follow {'on' if feed.follow else 'off'}", timeout=1.5)

    def action_toggle_group(self) -> None:
        self.group = not self.group
        if self.pane != "buffers":
            self.show_pane("buffers")
        else:
            self.refresh_now()

    # ------------------------------------------------------------------ sorting
    def _sort_choices(self) -> tuple[tuple[str, ...], str] | None:
        if self.pane == "processes":
            return PROCESS_SORTS, self.process_sort
        if self.pane == "buffers":
            return BUFFER_SORTS, self.buffer_sort
        return None

    def _set_sort(self, sort: str) -> None:
        if self.pane == "processes":
            self.process_sort = sort
        else:
            self.buffer_sort = sort
        self.refresh_now()

    def action_sort_step(self, step: int) -> None:
        choice = self._sort_choices()
        if choice is None:
            self.notify("sorting applies to the Buffers (3) and Processes (4) panes", timeout=2)
            return
        order, cur = choice
        self._set_sort(order[(order.index(cur) + step) % len(order)])

    def action_sort_menu(self) -> None:
        choice = self._sort_choices()
        if choice is None:
            self.notify("sorting applies to the Buffers (3) and Processes (4) panes", timeout=2)
            return

        def chosen(sort: str | None) -> None:
            if sort:
                self._set_sort(sort)
        self.push_screen(SortScreen(*choice), chosen)

    def action_invert_sort(self) -> None:
        if self.pane == "processes":
            self.process_invert = not self.process_invert
        else:
            self.buffer_invert = not self.buffer_invert
        self.refresh_now()

    # ------------------------------------------------------------------ filters
    def set_filter(self, view_filter: ViewFilter) -> None:
        if view_filter != self.view_filter:
            self.view_filter = view_filter
            self.refresh_now()

    def action_filter_menu(self, focus: str = "devices") -> None:
        def chosen(result: ViewFilter | None) -> None:
            if result is not None:
                self.set_filter(result)
        self.push_screen(FilterScreen(self.view_filter, focus), chosen)

    def action_clear_filters(self) -> None:
        self.drilled_from = None
        search = self.w_search
        search.value = ""
        search.remove_class("-visible")
        self.set_filter(ViewFilter())

    def action_search(self) -> None:
        search = self.w_search
        search.add_class("-visible")
        search.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.set_filter(self.view_filter.with_(text=event.value.strip()))

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.w_search.remove_class("-visible")
        self.show_pane(self.pane)

    def action_back(self) -> None:
        if getattr(self.player, "seeking", False):  # Esc during a seek: stay where the replay was
            self.player.cancel_seek()
            return
        search = self.w_search
        if search.has_focus or self.view_filter.text:
            search.value = ""
            search.remove_class("-visible")
            self.set_filter(self.view_filter.with_(text=""))
            self.show_pane(self.pane)
            return
        if self.drilled_from is not None:
            pane, previous = self.drilled_from
            self.drilled_from = None
            self.set_filter(previous)
            self.show_pane(pane)

    # ------------------------------------------------------------------ drill-down and details
    @on(DataTable.RowSelected, "#buffers-table")
    def _buffer_selected(self, event: DataTable.RowSelected) -> None:
        key = self.w_buffers.table.key_of(event.row_key)
        if key:
            self.open_details_for_key(key)

    @on(DataTable.RowSelected, "#processes-table")
    def _process_selected(self, event: DataTable.RowSelected) -> None:
        key = self.w_processes.table.key_of(event.row_key)
        if key:
            self.drill_into_pid(int(key))

    def action_drill(self) -> None:
        if self.pane == "buffers":
            key = self.w_buffers.table.cursor_key
            if key:
                self.open_details_for_key(key)
        elif self.pane == "processes":
            key = self.w_processes.table.cursor_key
            if key:
                self.drill_into_pid(int(key))

    def drill_into_pid(self, pid: int) -> None:
        self.drilled_from = ("processes", self.view_filter)
        self.view_filter = self.view_filter.with_(pids=frozenset({pid}))
        self.show_pane("buffers")

    def open_details_for_key(self, key: str) -> None:
        parts = key.split(":")
        if parts[0] == "g":  # g:type:id:pid:size
            btype, bid = int(parts[1]), int(parts[2])
        else:  # device:type:id
            btype, bid = int(parts[1]), int(parts[2])
        self.open_details(bid, btype)

    def now_ns(self) -> int:
        """The present on the events' clock: live sources stamp events with this host's monotonic
        clock (``self.clock``, injectable); a replay's present is its latest event."""
        last = self.state.last_ts_ns
        if self.player is not None:
            return last
        return max(last, int(self.clock() * 1e9))

    def open_details(self, buffer_id: int, buffer_type: int | None = None) -> None:
        info = getattr(self.source, "server_info", None) or {}
        reported = {d["pid"]: d for d in info.get("reported_pids") or () if isinstance(d, dict) and "pid" in d}

        def build():
            found = find_buffers(self.state, buffer_id, buffer_type)
            if buffer_type is None and found:
                found = [b for b in found if b.buffer_type == found[0].buffer_type]
            return details_renderable(self.state, buffer_id, found, self.procs, self.now_ns(), reported)
        self.push_screen(DetailsScreen(build, f"buffer {buffer_id:#x}"))

    def action_jump(self) -> None:
        def problem(text: str) -> str | None:
            try:
                parse_id(text)
            except ValueError as exc:
                return f"{exc} — type hex (0x3e363c80 or 3e363c80) or decimal"
            return None

        def chosen(text: str | None) -> None:
            if text and text.strip():
                self.open_details(parse_id(text))
        self.push_screen(PromptScreen("Jump to buffer id (hex like 0x3e363c80, or decimal)",
                                      placeholder="0x3e363c80", check=problem), chosen)

    def action_address_map(self) -> None:
        from .screens.address_map import AddressMapScreen

        devs = sorted(self.view_filter.devices) if self.view_filter.devices else None
        self.push_screen(AddressMapScreen(lambda: self.state, device=devs[0] if devs else None))

    def _history_columns(self, device: int, types: tuple[int, ...], span_ns: int, n: int) -> list[int]:
        """The device pane's sparklines: the state's one usage history (the state is replaced by a seek)."""
        return stack_columns(self.state, device, types, span_ns, n)

    def action_history(self) -> None:
        from .screens.history import HistoryScreen

        devs = sorted(self.view_filter.devices) if self.view_filter.devices else None
        self.push_screen(HistoryScreen(lambda: self.state, device=devs[0] if devs else None, now=self.now_ns,
                                       scale=self.history_scale,
                                       wall_offset_ns=self.wall_offset_ns if self.wall_clock else None,
                                       origin_ns=self._origin_ns(),
                                       start_word="replayed from" if self.player is not None else "attach"))

    def action_reset_peaks(self) -> None:
        self.state.insight.reset_peaks(self.state.last_ts_ns)
        self._dev_seen = (-1, -1, None)  # the meters' marks are the core's: redraw them now
        self.notify("Peaks reset to the current values")

    def action_help(self) -> None:
        self.push_screen(HelpScreen(replay=self.player is not None, keymap=self.keymap))
