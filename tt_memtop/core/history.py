"""Usage history per device x pool, as long as the session, in bounded memory, peaks kept.

Why: a chart of the last minute misses the OOM of an hour ago; a chart that averages hides the
spike that caused it. Each series is a set of ring buffers at growing bucket widths (0.25 s for
the last 2 minutes, 2 s for 30 minutes, 15 s for 4 hours, 2 min for 48 hours); a bucket keeps
the **max** and the last value seen in it, so downsampling never loses a peak. Memory: about
3,800 buckets per series, whatever the session length.

Data API (for the TUI's chart; time is passed in, nanoseconds on the events' clock):

* :meth:`UsageHistory.record` — one value of a series at a time (the caller records each changed
  series once per batch, with the batch's max and last values);
* :meth:`UsageHistory.series` — ``[(bucket_start_ns, max_bytes, last_bytes), ...]`` oldest first
  for a time span, from the finest level that covers it, gaps filled with the previous last value
  (usage is flat while nothing happens); scale it to the pool's capacity, not to its own range;
* :meth:`UsageHistory.keys` — the series there are: ``(device, buffer_type)``.

Phase bands come from :meth:`~tt_memtop.core.phases.PhaseTracker.segments` on the same clock.
"""

from __future__ import annotations

from collections import deque

__all__ = ["LEVELS", "UsageHistory"]

#: (bucket width ns, buckets kept) per level, finest first.
LEVELS: tuple[tuple[int, int], ...] = (
    (250_000_000, 480),
    (2_000_000_000, 900),
    (15_000_000_000, 960),
    (120_000_000_000, 1440),
)


class _Level:
    __slots__ = ("width", "buckets")

    def __init__(self, width: int, keep: int) -> None:
        self.width = width
        self.buckets: deque[list[int]] = deque(maxlen=keep)  # [start_ns, max, last]

    def add(self, ts: int, vmax: int, last: int) -> None:
        start = ts - ts % self.width
        b = self.buckets
        if b and b[-1][0] == start:
            cur = b[-1]
            if vmax > cur[1]:
                cur[1] = vmax
            cur[2] = last
        elif b and start < b[-1][0]:  # out of order (clock jitter between sources): fold into the newest
            cur = b[-1]
            if vmax > cur[1]:
                cur[1] = vmax
        else:
            b.append([start, vmax, last])


class UsageHistory:
    """Multi-resolution, max-preserving series keyed by (device, buffer type)."""

    def __init__(self, levels: tuple[tuple[int, int], ...] = LEVELS) -> None:
        self.levels_spec = levels
        self._series: dict[tuple[int, int], list[_Level]] = {}

    def record(self, key: tuple[int, int], ts_ns: int, vmax: int, last: int | None = None) -> None:
        lv = self._series.get(key)
        if lv is None:
            lv = self._series[key] = [_Level(w, n) for w, n in self.levels_spec]
        last = vmax if last is None else last
        for level in lv:
            level.add(ts_ns, vmax, last)

    def keys(self) -> list[tuple[int, int]]:
        return sorted(self._series)

    def series(self, key: tuple[int, int], now_ns: int, span_ns: int | None = None,
               resolution_ns: int = 0) -> list[tuple[int, int, int]]:
        """Buckets covering ``[now - span, now]`` (the whole history when ``span_ns`` is None), gaps filled.

        ``resolution_ns``: the caller draws one cell per this much time (a sparkline of 2 minutes in 40
        cells: 3 s), so a coarser level that still covers the span will do: fewer buckets, same maxima."""
        lv = self._series.get(key)
        if not lv:
            return []
        level = lv[-1]
        for i, cand in enumerate(lv):  # the finest level that still holds the whole span (it has not wrapped)
            b = cand.buckets
            if not b:
                continue
            if len(b) < b.maxlen or (span_ns is not None and b[0][0] <= now_ns - span_ns):
                level = cand
                for coarser in lv[i + 1:]:  # as coarse as the caller's cells allow
                    if coarser.width > resolution_ns or not coarser.buckets:
                        break
                    level = coarser
                break
        if span_ns is None or not level.buckets:
            lo = level.buckets[0][0] if level.buckets else now_ns
        else:
            lo = max(level.buckets[0][0], now_ns - span_ns - (now_ns - span_ns) % level.width)
        out: list[tuple[int, int, int]] = []
        w = level.width
        prev_last = None
        expect = lo
        buckets = level.buckets
        if buckets and buckets[0][0] < lo:  # only the tail is wanted: walk back to it, not through it all
            tail = []
            for b in reversed(buckets):
                tail.append(b)
                if b[0] < lo:  # the last one before the span: its value carries into it
                    break
            tail.reverse()
            buckets = tail
        for start, vmax, last in buckets:
            if start < lo:
                prev_last = last
                continue
            if prev_last is not None:
                while expect < start:
                    out.append((expect, prev_last, prev_last))
                    expect += w
            out.append((start, vmax, last))
            prev_last = last
            expect = start + w
        if prev_last is not None:
            while expect <= now_ns:
                out.append((expect, prev_last, prev_last))
                expect += w
        return out

    def peak(self, key: tuple[int, int]) -> tuple[int, int]:
        """(max bytes, bucket start) over the whole kept history of a series; (0, 0) if none."""
        lv = self._series.get(key)
        if not lv:
            return 0, 0
        best = (0, 0)
        for level in lv:
            for start, vmax, _ in level.buckets:
                if vmax > best[0]:
                    best = (vmax, start)
        return best
