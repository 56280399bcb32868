"""The grouped event feed: what happened, said once.

A traced model's replay is mostly read-back trickle: a small buffer allocated and freed again on
every device of the mesh, hundreds of times. Raw, that is 16 rows per op on a T3K (64 on a
Galaxy). Grouped, consecutive events fold into rows:

* an *op* row: one kind of event on one buffer (same PID, type, id, size) on several devices
  at once (``alloc TRACE 11.9 MiB 0x3e363c80 on 0-7``), with one phase label for the mesh;
* a *pair* row: allocations freed again, of one size, type and PID, repeated
  (``alloc/free 2.0 KiB × 120 in 3.0 s on 0-7``).

Pure and incremental (:meth:`FeedGroups.add` per event, O(1); :meth:`FeedGroups.extend` the same
rules over a frame's events in one loop, the one the feed uses); the widget keeps the raw events
too, so a toggle shows them again.
"""

from __future__ import annotations

from ..core.events import Event, EventKind

_ALLOC, _FREE = EventKind.ALLOC, EventKind.FREE
#: Events of one op on several devices arrive within this of each other (TT-Metal issues a mesh
#: allocation device by device, microseconds apart).
OP_WINDOW_NS = 500_000_000
_GROUPABLE = frozenset({EventKind.ALLOC, EventKind.FREE, EventKind.REF_INC, EventKind.REF_DEC,
                        EventKind.CLEANUP, EventKind.FREE_UNKNOWN})
OP, PAIR, SINGLE = "op", "pair", "single"


class FeedRow:
    """One row of the grouped feed. ``ev`` is its first event; ``devices`` in arrival order."""

    __slots__ = ("kind", "ev", "phase", "devices", "t_last", "pairs", "open", "last")

    def __init__(self, kind: str, ev: Event, phase: str) -> None:
        self.kind = kind
        self.ev = ev
        self.phase = phase
        self.devices: list[int] = [ev.device]
        self.t_last = ev.ts_ns
        self.pairs = 0  # PAIR: allocations freed again
        self.open: dict[int, int] | None = None  # PAIR: device -> allocations not freed yet (made lazily:
        # most rows are not pairs, and a dict per row is one more object per event for the collector)
        self.last = ev  # the newest event folded in

    @property
    def open_count(self) -> int:
        return sum(self.open.values()) if self.open else 0

    @property
    def repeats(self) -> int:
        """How many times the op ran: pairs per device of the mesh (a T3K read-back is 8 pairs)."""
        n = len(self.devices)
        return max(1, round(self.pairs / n)) if self.pairs else 0

    @property
    def span_s(self) -> float:
        return max(0.0, (self.t_last - self.ev.ts_ns) / 1e9)

    def __repr__(self) -> str:  # for test failures
        return f"FeedRow({self.kind}, {self.ev!r}, devices={self.devices}, pairs={self.pairs})"


def _same_op(a: Event, b: Event) -> bool:
    return (a.kind == b.kind and a.pid == b.pid and a.buffer_type == b.buffer_type and a.buffer_id == b.buffer_id
            and a.size == b.size)


class FeedGroups:
    """Rows folded from events in order; bounded to ``limit`` rows (oldest dropped)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.rows: list[FeedRow] = []

    def clear(self) -> None:
        self.rows = []

    def add(self, ev: Event, phase: str) -> None:
        rows = self.rows
        kind = ev.kind
        if kind not in _GROUPABLE:
            rows.append(FeedRow(SINGLE, ev, phase))
            return
        last = rows[-1] if rows else None
        if last is not None:
            le = last.ev
            if last.kind == OP:
                if (_same_op(le, ev) and ev.device not in last.devices and ev.ts_ns - last.t_last <= OP_WINDOW_NS):
                    last.devices.append(ev.device)
                    last.t_last, last.last = ev.ts_ns, ev
                    return
                if (kind == _FREE and le.kind == _ALLOC and le.pid == ev.pid and le.buffer_type == ev.buffer_type
                        and le.buffer_id == ev.buffer_id and le.size == ev.size and ev.device in last.devices):
                    last.kind = PAIR
                    last.open = {d: 1 for d in last.devices}
                    self._pair_free(last, ev)
                    return
            elif last.kind == PAIR and le.pid == ev.pid and le.buffer_type == ev.buffer_type and le.size == ev.size:
                assert last.open is not None
                if kind == _ALLOC:
                    last.open[ev.device] = last.open.get(ev.device, 0) + 1
                    if ev.device not in last.devices:
                        last.devices.append(ev.device)
                    last.t_last, last.last = ev.ts_ns, ev
                    return
                if kind == _FREE and last.open.get(ev.device, 0) > 0:
                    self._pair_free(last, ev)
                    return
        rows.append(FeedRow(OP, ev, phase))
        if len(rows) > self.limit * 1.25:
            del rows[: len(rows) - self.limit]

    def extend(self, events: list[Event], phases: list[str]) -> None:
        """:meth:`add` of each (event, phase) in order, in one loop: a frame brings up to ~1,000 events
        (:data:`~tt_memtop.ui.widgets.event_feed.FOLLOW_ROWS`), and the call and lookups per event were
        most of what grouping them cost. The rules are :meth:`add`'s (tests compare both)."""
        rows = self.rows
        limit = self.limit
        cap = limit * 1.25
        append = rows.append
        groupable = _GROUPABLE
        last = rows[-1] if rows else None
        for ev, phase in zip(events, phases):  # noqa: B905 (the widget keeps them the same length)
            kind = ev.kind
            if kind not in groupable:
                last = FeedRow(SINGLE, ev, phase)
                append(last)
                continue
            if last is not None:
                lk = last.kind
                if lk == OP:
                    le = last.ev
                    if le.buffer_id == ev.buffer_id and le.pid == ev.pid and le.buffer_type == ev.buffer_type \
                            and le.size == ev.size:
                        if le.kind == kind and ev.device not in last.devices \
                                and ev.ts_ns - last.t_last <= OP_WINDOW_NS:
                            last.devices.append(ev.device)
                            last.t_last, last.last = ev.ts_ns, ev
                            continue
                        if kind == _FREE and le.kind == _ALLOC and ev.device in last.devices:
                            last.kind = PAIR
                            last.open = {d: 1 for d in last.devices}
                            self._pair_free(last, ev)
                            continue
                elif lk == PAIR:
                    le = last.ev
                    if le.pid == ev.pid and le.buffer_type == ev.buffer_type and le.size == ev.size:
                        opened = last.open
                        assert opened is not None
                        if kind == _ALLOC:
                            opened[ev.device] = opened.get(ev.device, 0) + 1
                            if ev.device not in last.devices:
                                last.devices.append(ev.device)
                            last.t_last, last.last = ev.ts_ns, ev
                            continue
                        if kind == _FREE and opened.get(ev.device, 0) > 0:
                            self._pair_free(last, ev)
                            continue
            last = FeedRow(OP, ev, phase)
            append(last)
            if len(rows) > cap:  # as add() does (after an OP row only)
                del rows[: len(rows) - limit]

    @staticmethod
    def _pair_free(row: FeedRow, ev: Event) -> None:
        assert row.open is not None
        row.open[ev.device] -= 1
        row.pairs += 1
        row.t_last, row.last = ev.ts_ns, ev
