"""The event feed: every alloc / free / ref change / cleanup, newest at the bottom.

Two views of the same events (``e`` toggles): *grouped* (the default; see :mod:`..feed_groups`:
one row per op across the mesh, repeated alloc/free pairs coalesced) and *raw* (one row per event).
Times are wall clock by default (``w``: since the first event), so rows can be matched with
TT-Metal's own logs; the model's timestamps are monotonic, ``wall_offset_ns`` maps them.
One phase label per mesh: the events of one op on several devices all carry the first one's
(the phase tracker may move on at the op's last device).

A Line-API ScrollView over a bounded list of (event, phase) rows: only visible lines are drawn,
whatever the feed length. New events are pulled from the model's feed once per tick
(:meth:`pull`), filtered once, appended; a filter change rebuilds from the model's feed.

The rows are two parallel lists (events, phases), not a list of pairs: at 200k events/s a pair
per event is 200k more objects a second for the garbage collector to scan. :attr:`rows` shows
them as pairs.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from itertools import islice

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...core.events import Event, EventKind
from ...core.model import MonitorState
from ...core.protocol import BufferType
from ...sources.base import Capability
from ..feed_groups import OP, PAIR, FeedGroups, FeedRow
from ..filters import ViewFilter
from ..format import KIND_LABELS, TYPE_SHORT, elapsed, human, type_name, wall_time
from .buffers_pane import devices_text

_BUFFERLESS = frozenset({EventKind.PROCESS_EXIT, EventKind.BAD_FRAME, EventKind.DUMP, EventKind.TOTALS})
_KIND_CLASS = {
    EventKind.ALLOC: "alloc", EventKind.REF_INC: "ref", EventKind.REF_DEC: "ref", EventKind.FREE: "free",
    EventKind.FREE_UNKNOWN: "warn", EventKind.CLEANUP: "warn", EventKind.PROCESS_EXIT: "warn",
    EventKind.BAD_FRAME: "warn",
}
#: While following a live source whose events have outgrown the model's ring (``MonitorState.feed``),
#: a frame that brings more events than this shows only the newest this many (the rows are rebuilt
#: from them): at 200k events/s a frame costs what it costs at 40k. The model's ring keeps the rest
#: (a filter rebuilds from it).
FOLLOW_ROWS = 1_000
STRIP_CACHE = 1_024  # rows' lines kept (a few screens): dropped all at once when full
HEADER = f"{'time':<12} {'pid':>7} {'dev':<5} {'event':<10} {'type':<8} {'size':>9} {'buffer id':<12} {'phase':<9} detail"


def _same_op(a: Event, b: Event) -> bool:
    return (a.kind == b.kind and a.buffer_id == b.buffer_id and a.device != b.device and a.pid == b.pid
            and a.buffer_type == b.buffer_type and a.size == b.size)


def event_passes(f: ViewFilter, ev: Event) -> bool:
    """The feed's use of the shared filter: device/type filters hide process-level events too."""
    if ev.kind in _BUFFERLESS:
        if f.devices or f.types:
            return False
        if f.pids and ev.pid not in f.pids:
            return False
        return not f.text or f.text.lower() in f"{ev.pid} {ev.text}".lower()
    return f.matches(ev.device, ev.buffer_type, ev.pid, ev.buffer_id, ev.name)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` cells, broken at spaces."""
    return textwrap.wrap(text, max(10, width)) or [""]


#: CB and KERNEL ids have spaces of their own: an unknown free of one still says which kind it was
_OWN_ID_SPACES = (int(BufferType.CB), int(BufferType.KERNEL))


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
                         "eventfeed--ref", "eventfeed--warn", "eventfeed--phase", "eventfeed--dim", "eventfeed--pair"}
    follow: reactive[bool] = reactive(True)

    def __init__(self, limit: int = 100_000, grouped: bool = True, wall_clock: bool = True,
                 wall_offset_ns: int = 0, **kw) -> None:
        super().__init__(**kw)
        self.limit = limit
        self.grouped = grouped
        self.wall_clock = wall_clock
        self.wall_offset_ns = wall_offset_ns  # wall-clock ns minus the events' monotonic ns
        self._groups = FeedGroups(limit)
        self._grouped_upto = 0  # raw rows folded into _groups
        self._events: list[Event] = []
        self._phases: list[str] = []  # the phase of each event of _events
        self.origin_ns = 0
        self._seen = 0  # model.events_total at the last pull
        self._filter = ViewFilter()
        self.empty_text = "no events yet"
        self.skipped = 0  # events never made rows: more arrived in one frame than FOLLOW_ROWS (see pull)
        self._styles: dict[str, Style] = {}
        self._frame: tuple[int, Style] | None = None  # (width, base style) while render_lines draws
        self._unstyled = False  # a style was asked for before the stylesheet applied: do not keep the line
        self._strips: dict[tuple, tuple] = {}  # a row's drawn line, by the row and what it shows (render_line)
        self._strips_look: tuple = ()  # what every kept line assumes: width, base style, time display
        self._over_base: dict = {}  # a segment's style -> it over the base style (for _strips_look's base)

    @property
    def rows(self) -> Sequence[tuple[Event, str]]:
        """The rows as (event, phase) pairs, oldest first (a view: pairs are made when read)."""
        return _Rows(self._events, self._phases)

    # ------------------------------------------------------------------ data in
    @property
    def grouped_rows(self) -> list[FeedRow]:
        """The grouped view's rows (brought up to date with the raw rows)."""
        self._sync_groups()
        return self._groups.rows

    def _sync_groups(self) -> None:
        n, upto = len(self._events), self._grouped_upto
        if upto < n:
            self._groups.extend(self._events[upto:], self._phases[upto:])
            self._grouped_upto = n

    def set_mode(self, grouped: bool | None = None, wall_clock: bool | None = None) -> None:
        if grouped is not None and grouped != self.grouped:
            self.grouped = grouped
            if grouped:  # built again from the raw rows kept (one pass over at most ``limit`` events)
                self._groups.clear()
                self._grouped_upto = 0
                self._sync_groups()
        if wall_clock is not None:
            self.wall_clock = wall_clock
        self._resize()

    def _row_count(self) -> int:
        return len(self.grouped_rows) if self.grouped else len(self._events)

    def _clear(self) -> None:
        self._events = []
        self._phases = []
        self._groups.clear()
        self._grouped_upto = 0

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
        if fresh > FOLLOW_ROWS and self.follow and not view_filter.active and state.events_total > len(state.feed) \
                and Capability.SEEK not in state.capabilities:
            # live, faster than anyone reads (tens of thousands of events a frame) and past what the model's
            # ring holds (the scrollback is partial anyway): the newest FOLLOW_ROWS replace the rows, so a
            # frame costs the same at any rate. A replay keeps every row (its speed is the user's choice,
            # and it can be paused to scroll back).
            self.skipped += fresh - FOLLOW_ROWS
            self._clear()
            fresh = FOLLOW_ROWS
        evs = list(islice(reversed(state.feed), fresh))[::-1]
        phs = list(islice(reversed(state.feed_phases), fresh))[::-1]
        if len(phs) < len(evs):
            phs = [""] * (len(evs) - len(phs)) + phs
        f = self._filter
        if f.active:
            keep = [i for i, e in enumerate(evs) if event_passes(f, e)]
            evs = [evs[i] for i in keep]
            phs = [phs[i] for i in keep]
        # one label per mesh: an op's events on the other devices take the phase of its first one
        prev = self._events[-1] if self._events else None
        prev_ph = self._phases[-1] if self._phases else ""
        for i, ev in enumerate(evs):
            if prev is not None and phs[i] != prev_ph and _same_op(prev, ev):
                phs[i] = prev_ph
            prev, prev_ph = ev, phs[i]
        self._events += evs
        self._phases += phs
        if len(self._events) > self.limit * 1.25:
            cut = len(self._events) - self.limit
            del self._events[:cut]
            del self._phases[:cut]
            self._grouped_upto = max(0, self._grouped_upto - cut)
        if self.grouped:
            self._sync_groups()
        self._resize()

    def _resize(self) -> None:
        size = Size(self.scrollable_content_region.width, self._row_count() + 1)
        if size != self.virtual_size:
            if self._laid_out and size.width == self.virtual_size.width:
                # Only the length changed: what the screen's layout would do for this widget (its scrollbar,
                # the scroll position's bounds) done here. Assigning ``virtual_size`` lays the whole screen
                # out again (a reflow, then every widget repainted): at 20 frames/s that was most of a frame.
                # A scrollbar that appears or goes still lays out (its reactive asks for it).
                self.set_reactive(ScrollView.virtual_size, size)
                self._scroll_update(size)
            else:
                self.virtual_size = size
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
            if not self._laid_out or self.max_scroll_y != self.scroll_offset.y:
                # the new virtual size takes effect at the next layout: follow again once it has
                self.call_after_refresh(self._follow_end)
        self.refresh()

    @property
    def _laid_out(self) -> bool:
        """The screen's layout has given this widget its size (so its scroll bounds can be updated here)."""
        return bool(self.is_mounted and self.size and self.virtual_size.width)

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
        st = self._styles.get(name)
        if st is not None:
            return st
        try:
            st = self.get_component_rich_style(f"eventfeed--{name}", partial=True)
        except KeyError:  # drawn before the stylesheet reached us: plain, and not kept
            self._unstyled = True
            return Style()
        self._styles[name] = st
        return st

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def render_lines(self, crop):
        """Textual draws the lines of ``crop`` through :meth:`render_line`: the base style and width are
        worked out once for them (the base style walks every ancestor's styles: ~50 µs a line)."""
        self._frame = (self.scrollable_content_region.width, self.rich_style)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        width, base = self._frame or (self.scrollable_content_region.width, self.rich_style)
        if y == 0:  # sticky column header
            return Strip([Segment(HEADER, self._style("header"))]).adjust_cell_length(width, base).apply_style(base)
        idx = y - 1 + int(self.scroll_offset.y)
        n = self._row_count()
        if idx >= n or idx < 0:
            if not n and y >= 1:  # why there is nothing, wrapped: what to do is at its end
                lines = _wrap(self.empty_text, width)
                if y - 1 < len(lines):
                    return Strip([Segment(lines[y - 1], self._style("dim"))]).adjust_cell_length(width, base)
            return Strip.blank(width, base)
        # A row's line is made once and kept while the row, the width and the way times are shown stay the
        # same: following a live source, the rows on screen move up a few lines a frame, and at
        # 20 frames/s making every visible line again each frame was most of the feed's drawing.
        if self.grouped:
            row = self._groups.rows[idx]
            key = (id(row), row.kind, len(row.devices), row.pairs, row.t_last, row.open_count)
        else:
            row = self._events[idx]
            key = (id(row), self._phases[idx])
        look = (width, base, self.wall_clock, self.wall_offset_ns if self.wall_clock else self.origin_ns)
        if look != self._strips_look:
            self._strips.clear()
            self._over_base.clear()
            self._strips_look = look
        kept = self._strips.get(key)
        if kept is not None and kept[0] is row:  # (the row is kept with its line: its id stays its own)
            return kept[1]
        segs = self._group_segments(row) if self.grouped else self._row_segments(row, key[1])
        strip = self._line(segs, width, base)
        if self._unstyled:
            self._unstyled = False
        else:
            if len(self._strips) >= STRIP_CACHE:
                self._strips.clear()
            self._strips[key] = (row, strip)
        return strip

    def _line(self, segs: list[Segment], width: int, base: Style) -> Strip:
        """``Strip(segs).adjust_cell_length(width, base).apply_style(base)`` made in one pass when the row fits
        the width (the usual case): each segment's style over the base looked up, not combined again, and
        one Strip made instead of three."""
        over = self._over_base
        out = []
        used = 0
        for seg in segs:
            text, style = seg.text, seg.style
            if not text:
                continue
            used += cell_len(text)
            st = over.get(style)
            if st is None:
                st = over[style] = base + style if style is not None else base
            out.append(Segment(text, st))
        if used > width:
            return Strip(segs).adjust_cell_length(width, base).apply_style(base)
        if used < width:
            out.append(Segment(" " * (width - used), base))
        return Strip(out, width)

    def time_text(self, ts_ns: int) -> str:
        if not ts_ns:
            return "—"
        if self.wall_clock:
            return wall_time(ts_ns + self.wall_offset_ns)
        return elapsed(ts_ns - self.origin_ns)

    def _row_segments(self, ev: Event, phase: str, dev: str | None = None, label: str | None = None,
                      extra: str = "") -> list[Segment]:
        kind_style = self._style(_KIND_CLASS.get(ev.kind, "dim"))
        t = self.time_text(ev.ts_ns)
        if label is None:
            label = KIND_LABELS.get(ev.kind, ev.kind.name.lower())
        if ev.kind in _BUFFERLESS:
            if ev.kind == EventKind.PROCESS_EXIT:
                text = f"process exited: {ev.ref_count} buffers, {human(ev.size)} cleaned up"
            else:
                text = ev.text
            return [Segment(f"{t:<12} ", self._style("time")), Segment(f"{ev.pid:>7} {'':<5} ", None),
                    Segment(f"{label:<10} ", kind_style), Segment(text, self._style("dim"))]
        if ev.kind in (EventKind.REF_INC, EventKind.REF_DEC):
            extra += f" refs={ev.ref_count}"
        if ev.name:
            extra += f" {ev.name}"
        type_text, size_text = _type_label(ev.buffer_type), human(ev.size)
        if ev.kind == EventKind.FREE_UNKNOWN:
            # a FREE names neither type nor (meaningful) size, and nothing of this buffer was seen: no guess
            if ev.buffer_type not in _OWN_ID_SPACES:
                type_text = "?"
            if not ev.size:
                size_text = "?"
            extra += f" unknown buffer: {ev.text or 'never seen allocated'}"
        return [
            Segment(f"{t:<12} ", self._style("time")),
            Segment(f"{ev.pid:>7} {dev if dev is not None else ev.device:<5} ", None),
            Segment(f"{label:<10} ", kind_style),
            Segment(f"{type_text:<8} {size_text:>9} {ev.buffer_id:<#12x} ", None),
            Segment(f"{phase or '—':<9}", self._style("phase")),
            Segment(extra, self._style("dim")),
        ]

    def _group_segments(self, row: FeedRow) -> list[Segment]:
        devs = devices_text(tuple(sorted(row.devices)))
        if len(devs) > 5:
            devs = f"{len(row.devices)}dev"
        if row.kind == OP:
            return self._row_segments(row.ev, row.phase, devs)
        if row.kind == PAIR:
            n = row.repeats
            extra = f" alloc/free × {n:,} in {row.span_s:.1f} s" if n > 1 else ""
            if row.open_count:
                extra += f" (+{row.open_count} live)"
            # the count goes in the event column too: on 80 columns the detail column is off screen
            label = f"a/f ×{n:,}" if n > 1 and n < 100_000 else "alloc/free"
            segs = self._row_segments(row.ev, row.phase, devs, label, extra)
            segs[2] = Segment(segs[2].text, self._style("pair"))
            return segs
        return self._row_segments(row.ev, row.phase)
