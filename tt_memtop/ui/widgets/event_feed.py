"""The event feed: every alloc / free / ref change / cleanup, newest at the bottom.

A Line-API ScrollView over a bounded list of (event, phase) rows: only visible lines are drawn,
whatever the feed length. New events are pulled from the model's feed once per tick
(:meth:`pull`), filtered once, appended; a filter change rebuilds from the model's feed.

The rows are two parallel lists (events, phases), not a list of pairs: at 200k events/s a pair
per event is 200k more objects a second for the garbage collector to scan. :attr:`rows` shows
them as pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...core.events import Event, EventKind
from ...core.model import MonitorState
from ..filters import ViewFilter
from ..format import KIND_LABELS, TYPE_SHORT, elapsed, human, type_name

_BUFFERLESS = frozenset({EventKind.PROCESS_EXIT, EventKind.BAD_FRAME, EventKind.DUMP, EventKind.TOTALS})
_KIND_CLASS = {
    EventKind.ALLOC: "alloc", EventKind.REF_INC: "ref", EventKind.REF_DEC: "ref", EventKind.FREE: "free",
    EventKind.FREE_UNKNOWN: "warn", EventKind.CLEANUP: "warn", EventKind.PROCESS_EXIT: "warn",
    EventKind.BAD_FRAME: "warn",
}
HEADER = f"{'time':<12} {'pid':>8} {'dev':>3} {'event':<7} {'type':<8} {'size':>10} {'buffer id':<12} {'phase':<9} detail"


def event_passes(f: ViewFilter, ev: Event) -> bool:
    """The feed's use of the shared filter: device/type filters hide process-level events too."""
    if ev.kind in _BUFFERLESS:
        if f.devices or f.types:
            return False
        if f.pids and ev.pid not in f.pids:
            return False
        return not f.text or f.text.lower() in f"{ev.pid} {ev.text}".lower()
    return f.matches(ev.device, ev.buffer_type, ev.pid, ev.buffer_id, ev.name)


def _type_label(t: int) -> str:
    """The type for the 8-wide column: the full name, or its short form (SYSTEM_MEMORY -> SYS), never cut."""
    name = type_name(t)
    return name if len(name) <= 8 else TYPE_SHORT.get(t, name[:8])


class _Rows(Sequence):
    """The feed's rows as (event, phase) pairs, made on demand from the two parallel lists."""

    __slots__ = ("events", "phases")

    def __init__(self, events: list[Event], phases: list[str]) -> None:
        self.events, self.phases = events, phases

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(zip(self.events[i], self.phases[i], strict=True))
        return self.events[i], self.phases[i]

    def __iter__(self) -> Iterator[tuple[Event, str]]:
        return zip(self.events, self.phases, strict=True)


class EventFeed(ScrollView, can_focus=True):
    """Newest at the bottom; ``follow`` keeps the newest in view (off when the user scrolls up)."""

    COMPONENT_CLASSES = {"eventfeed--header", "eventfeed--time", "eventfeed--alloc", "eventfeed--free",
                         "eventfeed--ref", "eventfeed--warn", "eventfeed--phase", "eventfeed--dim"}
    follow: reactive[bool] = reactive(True)

    def __init__(self, limit: int = 100_000, **kw) -> None:
        super().__init__(**kw)
        self.limit = limit
        self._events: list[Event] = []
        self._phases: list[str] = []  # the phase of each event of _events
        self.origin_ns = 0
        self._seen = 0  # model.events_total at the last pull
        self._filter = ViewFilter()
        self.empty_text = "no events yet"

    @property
    def rows(self) -> Sequence[tuple[Event, str]]:
        """The rows as (event, phase) pairs, oldest first (a view: pairs are made when read)."""
        return _Rows(self._events, self._phases)

    # ------------------------------------------------------------------ data in
    def _clear(self) -> None:
        self._events = []
        self._phases = []

    def reset(self, note: str = "") -> None:
        """Forget every row: the model started over (a replay seeked). ``note`` replaces "no events yet"."""
        self._clear()
        self._seen = 0
        self.empty_text = note or "no events yet"
        self._resize()

    def pull(self, state: MonitorState, view_filter: ViewFilter, origin_ns: int | None = None) -> None:
        """Append the events folded since the last pull (or rebuild when the filter changed).
        Times are shown relative to ``origin_ns`` (default: the first timestamp the model saw)."""
        self.origin_ns = state.first_ts_ns if origin_ns is None else origin_ns
        fresh = state.events_total - self._seen
        if view_filter != self._filter:
            self._filter = view_filter
            self._clear()
            fresh = len(state.feed)
        self._seen = state.events_total
        if fresh <= 0:
            return
        fresh = min(fresh, len(state.feed))
        evs = list(islice(reversed(state.feed), fresh))[::-1]
        phs = list(islice(reversed(state.feed_phases), fresh))[::-1]
        if len(phs) < len(evs):
            phs = [""] * (len(evs) - len(phs)) + phs
        f = self._filter
        if f.active:
            keep = [i for i, e in enumerate(evs) if event_passes(f, e)]
            evs = [evs[i] for i in keep]
            phs = [phs[i] for i in keep]
        self._events += evs
        self._phases += phs
        if len(self._events) > self.limit * 1.25:
            del self._events[: len(self._events) - self.limit]
            del self._phases[: len(self._phases) - self.limit]
        self._resize()

    def _resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._events) + 1)
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            # the new virtual size takes effect at the next layout: follow again once it has
            self.call_after_refresh(self._follow_end)
        self.refresh()

    def _follow_end(self) -> None:
        if self.follow and self.scroll_offset.y != self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.scroll_end(animate=False, x_axis=False)

    def _on_mouse_scroll_up(self, event) -> None:
        self.follow = False

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    # ------------------------------------------------------------------ drawing
    def _style(self, name: str) -> Style:
        try:
            return self.get_component_rich_style(f"eventfeed--{name}", partial=True)
        except KeyError:  # drawn before the stylesheet reached us
            return Style()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:  # sticky column header
            return Strip([Segment(HEADER, self._style("header"))]).adjust_cell_length(width, base).apply_style(base)
        idx = y - 1 + int(self.scroll_offset.y)
        if idx >= len(self._events) or idx < 0:
            if not self._events and y == 1:
                return Strip([Segment(self.empty_text, self._style("dim"))]).adjust_cell_length(width, base)
            return Strip.blank(width, base)
        strip = Strip(self._row_segments(self._events[idx], self._phases[idx]))
        return strip.adjust_cell_length(width, base).apply_style(base)

    def _row_segments(self, ev: Event, phase: str) -> list[Segment]:
        kind_style = self._style(_KIND_CLASS.get(ev.kind, "dim"))
        t = elapsed(ev.ts_ns - self.origin_ns) if ev.ts_ns else "—"
        label = KIND_LABELS.get(ev.kind, ev.kind.name.lower())
        if ev.kind in _BUFFERLESS:
            if ev.kind == EventKind.PROCESS_EXIT:
                text = f"process exited: {ev.ref_count} buffers, {human(ev.size)} cleaned up"
            else:
                text = ev.text
            return [Segment(f"{t:<12} ", self._style("time")), Segment(f"{ev.pid:>8}     ", None),
                    Segment(f"{label:<7} ", kind_style), Segment(text, self._style("dim"))]
        extra = ""
        if ev.kind in (EventKind.REF_INC, EventKind.REF_DEC):
            extra = f" refs={ev.ref_count}"
        if ev.name:
            extra += f" {ev.name}"
        return [
            Segment(f"{t:<12} ", self._style("time")),
            Segment(f"{ev.pid:>8} {ev.device:>3} ", None),
            Segment(f"{label:<7} ", kind_style),
            Segment(f"{_type_label(ev.buffer_type):<8} {human(ev.size):>10} {ev.buffer_id:<#12x} ", None),
            Segment(f"{phase or '—':<9}", self._style("phase")),
            Segment(extra, self._style("dim")),
        ]
