"""The reference bank map for tests/test_bankmap.py: tt_memtop/core/bankmap.py as it was on dicts and
``sortedcontainers`` (before the columns), kept to check the compact one against, answer for answer.

The original docstring follows.

Per-bank address maps: which per-bank ranges are taken, and the free ranges left, kept incrementally.

Why: "Not enough space to allocate X B L1 buffer across N banks, where each bank needs to store
Y B" fails on the largest *contiguous free range per bank*. The buffer id on the wire is the
buffer's address, so with the bank geometry (:mod:`.geometry`) every interleaved buffer is an
interval ``[address, address + per_bank_size)`` present in every bank of its pool; all banks of a
pool look alike, and one interval set per (device, memory) describes them all.

Structure (one :class:`SpaceMap` per device and memory — DRAM holds the DRAM and TRACE pools,
L1 the L1 and L1_SMALL pools):

* the live intervals: a ``SortedList`` of start addresses and a dict start -> (size, type);
* per pool, its free segments: a ``SortedDict`` start -> end of the uncovered parts of the pool's
  range, plus a ``SortedList`` of their sizes (largest free = last, segment count = length);
* changes are queued (a dict start -> new entry or None) and applied by :meth:`SpaceMap.flush`
  when someone asks: an alloc and its free in between cancel out, so warm-up churn (thousands of
  short-lived buffers a second at recurring addresses) costs a dict store per event. Applying one
  change is O(log n): cut the free segments the interval covers, or give back the parts of it no
  other interval covers (the neighbours only, while no intervals overlap — the normal case; a
  bounded scan when stale state makes some overlap). A flush of more changes than about an
  eighth of the live intervals (attaching to a server, loading weights) rebuilds the map in one
  sorted sweep instead, O(n log n) with the sorting in C.

Pool boundaries that are inferred (TRACE region, L1_SMALL) can move; the free segments of the
space are then rebuilt from the intervals, O(n), once per move.
"""

from __future__ import annotations

from bisect import bisect_left

from sortedcontainers import SortedDict, SortedList

from tt_memtop.core.bankmap import Cell, PoolStats
from tt_memtop.core.geometry import PoolRange

__all__ = ["SpaceMap"]

BULK_MIN = 256  # a flush of more changes than this, and more than 1/BULK_RATIO of the live intervals,
BULK_RATIO = 8  # rebuilds the map in one sorted sweep instead of applying the changes one by one


_LEN = 43  # an interval's packed entry: per-bank length << _LEN | size << 3 | buffer type
_SIZE = (1 << 40) - 1
_TYPE_SIZE = (1 << _LEN) - 1


#: One int object per distinct packed entry: a model's buffers come in few sizes, and a packed entry is a
#: 32-byte int, so a million map entries share a few thousand values instead of holding a million.
_INTERNED: dict[int, int] = {}
_INTERN_MAX = 1 << 16


def _pack(length: int, size: int, buffer_type: int) -> int:
    v = length << _LEN | min(size, _SIZE) << 3 | buffer_type
    got = _INTERNED.get(v)
    if got is not None:
        return got
    if len(_INTERNED) >= _INTERN_MAX:
        _INTERNED.clear()
    _INTERNED[v] = v
    return v


def _end(start: int, packed: int) -> int:
    return start + (packed >> _LEN)


_SHIFT = 40  # addresses are below 2**40 (Blackhole banks are 4 GiB)
_LOW = (1 << _SHIFT) - 1


def _gkey(start: int, end: int) -> int:
    """Sort key of a free segment: by size, then the lowest address first among equals (for max)."""
    return (end - start) << _SHIFT | (_LOW - start)


class _Pool:
    __slots__ = ("rng", "gaps", "sizes", "used", "free")

    def __init__(self, rng: PoolRange) -> None:
        self.rng = rng
        self.gaps = SortedDict()  # start -> end of each free segment
        self.sizes = SortedList()  # _gkey of each free segment
        self.used = 0  # per-bank bytes of intervals of this pool's type
        self.free = 0  # per-bank free bytes (sum of the segments)
        if rng.hi > rng.lo:
            self._put(rng.lo, rng.hi)

    def _put(self, s: int, e: int) -> None:
        self.gaps[s] = e
        self.sizes.add(_gkey(s, e))
        self.free += e - s

    def _pop(self, s: int) -> int:
        e = self.gaps.pop(s)
        self.sizes.remove(_gkey(s, e))
        self.free -= e - s
        return e

    def cut(self, a: int, b: int) -> None:
        """Remove ``[a, b)`` from the free segments."""
        a = max(a, self.rng.lo)
        b = min(b, self.rng.hi)
        if a >= b:
            return
        gaps = self.gaps
        keys = gaps.keys()
        i = gaps.bisect_right(a) - 1
        if i < 0 or gaps[keys[i]] <= a:
            i += 1
        while i < len(keys):
            gs = keys[i]
            if gs >= b:
                break
            ge = gaps[gs]
            if gs < a:  # keep the left part under the same key: no re-sort of the keys
                self.sizes.remove(_gkey(gs, ge))
                gaps[gs] = a
                self.sizes.add(_gkey(gs, a))
                self.free -= ge - a
                i += 1
            else:
                self._pop(gs)
            if ge > b:
                self._put(b, ge)
                break

    def give(self, a: int, b: int) -> None:
        """Add ``[a, b)`` (known to be uncovered) to the free segments, merging with its neighbours."""
        a = max(a, self.rng.lo)
        b = min(b, self.rng.hi)
        if a >= b:
            return
        gaps = self.gaps
        i = gaps.bisect_right(a) - 1
        if i >= 0:
            ps = gaps.keys()[i]
            if gaps[ps] >= a:  # touching (or, defensively, overlapping) the previous segment
                b = max(b, self._pop(ps))
                a = ps
        keys = gaps.keys()
        j = gaps.bisect_left(a)
        while j < len(keys) and keys[j] <= b:
            b = max(b, self._pop(keys[j]))
        self._put(a, b)

    def largest(self) -> tuple[int, int]:
        """(size, start) of the largest free segment, (0, -1) if none. Ties: the lowest address."""
        if not self.sizes:
            return 0, -1
        k = self.sizes[-1]
        return k >> _SHIFT, _LOW - (k & _LOW)


class SpaceMap:
    """The live intervals of one memory of one device (DRAM or L1) and the free segments of its pools."""

    def __init__(self, pools: dict[int, PoolRange]) -> None:
        self.starts = SortedList()
        # start -> per-bank length << 43 | size << 3 | buffer type: one int per interval, not a tuple
        # of three (a third of the memory with a million live buffers); see _pack / _end
        self.entries: dict[int, int] = {}
        self.pending: dict[int, tuple[int, int] | None] = {}  # start -> (size, type) or None (freed)
        self.pools = {t: _Pool(r) for t, r in pools.items()}
        self.maxlen = 0
        self.overlapping: set[int] = set()  # starts of live intervals that overlapped another when added
        self.outside = 0  # live intervals outside every pool's range (reserved space: a bad or stale address)
        self._stale = False  # entries loaded in bulk; the rest is rebuilt at the first query

    # ------------------------------------------------------------------ changes (cheap; applied by flush)
    def alloc(self, start: int, size: int, buffer_type: int) -> None:
        self.pending[start] = (size, buffer_type)

    def free(self, start: int) -> None:
        self.pending[start] = None

    def load(self, items) -> None:
        """Replace the whole map with ``items`` ((start, size, buffer type), unique starts); built at the first query."""
        entries: dict[int, int] = {}
        add = self.loader(entries)
        for start, size, t in items:
            add(start, size, t)
        self.set_loaded(entries)

    def loader(self, entries: dict[int, int]):
        """``add(start, size, buffer type)`` that fills ``entries`` for :meth:`set_loaded`: :meth:`load` one
        item at a time, for a caller that loads many maps in one pass (no list of items per map)."""
        pools = self.pools

        def add(start: int, size: int, t: int) -> None:
            p = pools.get(t)
            if p is not None:
                entries[start] = _pack(p.rng.per_bank(size), size, t)
        return add

    def set_loaded(self, entries: dict[int, int]) -> None:
        """Replace the whole map with what a :meth:`loader` filled; built at the first query."""
        self.entries = entries
        self.pending = {}
        self._stale = True

    def flush(self) -> None:
        if self._stale:
            self._stale = False
            self._rebuild()
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        entries = self.entries
        if len(pending) > BULK_MIN and len(pending) * BULK_RATIO > len(entries):
            self._bulk(pending)
            return
        for start, new in pending.items():
            old = entries.get(start)
            if old is not None:
                if new is not None and old & _TYPE_SIZE == new[0] << 3 | new[1]:
                    continue
                self._remove(start, old)
            if new is not None:
                self._add(start, new[0], new[1])

    def _bulk(self, pending: dict) -> None:
        """Apply many changes at once (attaching, loading weights): rebuild in O(n log n), sorting in C."""
        entries = self.entries
        pools = self.pools
        for start, new in pending.items():
            if new is None:
                entries.pop(start, None)
            else:
                p = pools.get(new[1])
                if p is None:
                    entries.pop(start, None)
                else:
                    entries[start] = _pack(p.rng.per_bank(new[0]), new[0], new[1])
        self._rebuild()

    def _rebuild(self) -> None:
        """Intervals, overlap marks, per-pool used bytes and free segments, all from ``entries``."""
        entries = self.entries
        order = sorted(entries)
        self.starts = SortedList(order)
        overlapping = set()
        used = dict.fromkeys(self.pools, 0)
        maxlen = 0
        max_end = -1
        for s in order:
            v = entries[s]
            e, t = s + (v >> _LEN), v & 7
            if s < max_end:
                overlapping.add(s)
            if e > max_end:
                max_end = e
            n = e - s
            if n > maxlen:
                maxlen = n
            used[t] += n
        self.overlapping = overlapping
        self.maxlen = maxlen
        inside = 0
        for t, p in self.pools.items():
            p.used = used[t]
            lo, hi = p.rng.lo, p.rng.hi
            inside += bisect_left(order, hi) - bisect_left(order, lo) if hi > lo else 0
            gaps = []
            pos = lo
            for i in range(bisect_left(order, lo - maxlen), len(order)):
                s = order[i]
                if s >= hi:
                    break
                e = s + (entries[s] >> _LEN)
                if e <= pos or e == s:  # fixed here too: an empty interval split a free segment
                    continue
                if s > pos:
                    gaps.append((pos, s))
                pos = e
            if pos < hi:
                gaps.append((pos, hi))
            p.gaps = SortedDict(gaps)
            p.sizes = SortedList([_gkey(a, b) for a, b in gaps])
            p.free = sum(b - a for a, b in gaps)
        self.outside = len(order) - inside

    # ------------------------------------------------------------------ the interval set
    def _rng(self, buffer_type: int) -> PoolRange | None:
        p = self.pools.get(buffer_type)
        return p.rng if p is not None else None

    def _add(self, start: int, size: int, btype: int) -> None:
        p = self.pools.get(btype)
        if p is None:
            return
        length = p.rng.per_bank(size)
        end = start + length
        starts = self.starts
        i = starts.bisect_left(start)
        if self.overlapping or length > 0:
            if self._overlaps(start, end, i):
                self.overlapping.add(start)
        starts.add(start)
        self.entries[start] = _pack(length, size, btype)
        if length > self.maxlen:
            self.maxlen = length
        p.used += length
        if not any(q.rng.lo <= start < q.rng.hi for q in self.pools.values()):
            self.outside += 1
        for q in self.pools.values():
            q.cut(start, end)

    def _overlaps(self, start: int, end: int, i: int) -> bool:
        starts, entries = self.starts, self.entries
        if i < len(starts) and starts[i] < end:
            return True
        if not self.overlapping:
            return i > 0 and _end(starts[i - 1], entries[starts[i - 1]]) > start
        for s in starts.irange(start - self.maxlen, start, inclusive=(True, False)):
            if _end(s, entries[s]) > start:
                return True
        return False

    def _remove(self, start: int, old: int) -> None:
        end, btype = start + (old >> _LEN), old & 7
        self.starts.remove(start)
        del self.entries[start]
        self.pools[btype].used -= end - start
        if not any(q.rng.lo <= start < q.rng.hi for q in self.pools.values()):
            self.outside -= 1
        for a, b in self._uncovered(start, end):
            for q in self.pools.values():
                q.give(a, b)
        self.overlapping.discard(start)

    def _uncovered(self, a: int, b: int) -> list[tuple[int, int]]:
        """The parts of ``[a, b)`` no live interval covers."""
        if a >= b:
            return []
        starts, entries = self.starts, self.entries
        if not self.overlapping:
            i = starts.bisect_left(a)
            if i > 0:
                a = max(a, _end(starts[i - 1], entries[starts[i - 1]]))
            if i < len(starts):
                b = min(b, starts[i])
            return [(a, b)] if a < b else []
        out = []
        pos = a
        for s in starts.irange(a - self.maxlen, b, inclusive=(True, False)):
            e = _end(s, entries[s])
            if e <= pos:
                continue
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
            if pos >= b:
                break
        if pos < b:
            out.append((pos, b))
        return out

    def set_pools(self, pools: dict[int, PoolRange]) -> None:
        """Change the pools' ranges (or layout): rebuild the free segments and per-bank sizes from the intervals."""
        if self.pending:
            self.flush()
        self.pools = {t: _Pool(r) for t, r in pools.items()}
        entries = self.entries
        for s in list(entries):
            v = entries[s]
            t, size = v & 7, (v >> 3) & _SIZE
            p = self.pools.get(t)
            if p is None:
                del entries[s]
            else:
                entries[s] = _pack(p.rng.per_bank(size), size, t)
        self._rebuild()

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        self.flush()
        return len(self.starts)

    def stats(self, pool: int) -> PoolStats:
        self.flush()
        p = self.pools[pool]
        r = p.rng
        largest, at = p.largest()
        free = p.free
        return PoolStats(r.name, r.banks, r.lo, r.hi, r.bank_size, p.used, free, largest, at, len(p.sizes), r.known)

    def lowest(self, buffer_type: int) -> int | None:
        """The lowest start address of a live interval of ``buffer_type`` (None: none)."""
        self.flush()
        for s in self.starts:
            if self.entries[s] & 7 == buffer_type:
                return s
        return None

    def highest_end(self, buffer_type: int) -> int | None:
        self.flush()
        for s in reversed(self.starts):
            v = self.entries[s]
            if v & 7 == buffer_type:
                return _end(s, v)
        return None

    def intervals(self, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """Live intervals overlapping ``[lo, hi)``: (start, end, buffer type, size), by start."""
        self.flush()
        out = []
        i = self.starts.bisect_left(lo - self.maxlen)
        for s in self.starts.islice(i):
            if s >= hi:
                break
            v = self.entries[s]
            e = s + (v >> _LEN)
            if e > lo:
                out.append((s, e, v & 7, (v >> 3) & _SIZE))
        return out

    def cells(self, lo: int, hi: int, n: int) -> list[Cell]:
        """``[lo, hi)`` cut into ``n`` equal slices, each with the bytes used by type and its pool."""
        self.flush()
        n = max(1, n)
        width = max(1, -(-(hi - lo) // n))
        bounds = [(lo + k * width, min(hi, lo + (k + 1) * width)) for k in range(n)]
        used: list[dict[int, int]] = [{} for _ in range(n)]
        for s, e, t, _size in self.intervals(lo, hi):
            k0 = max(0, (s - lo) // width)
            k1 = min(n - 1, (e - 1 - lo) // width)
            for k in range(k0, k1 + 1):
                c0, c1 = bounds[k]
                ov = min(e, c1) - max(s, c0)
                if ov > 0:
                    used[k][t] = used[k].get(t, 0) + ov
        largest = {}
        for t, p in self.pools.items():
            size, at = p.largest()
            if at >= 0:
                largest[t] = (at, at + size)
        out = []
        for k, (c0, c1) in enumerate(bounds):
            pool, best = -1, 0
            for t, p in self.pools.items():  # the pool holding most of the slice
                ov = min(c1, p.rng.hi) - max(c0, p.rng.lo)
                if ov > best:
                    pool, best = t, ov
            span = largest.get(pool)
            in_largest = span is not None and c0 < span[1] and c1 > span[0]
            out.append(Cell(c0, c1, used[k], pool, in_largest))
        return out

    def check(self) -> None:
        """Assert the free segments equal the complement of the intervals in each pool (for tests)."""
        self.flush()
        for p in self.pools.values():
            expect = []
            pos = p.rng.lo
            for s in self.starts:
                e = _end(s, self.entries[s])
                s2, e2 = max(s, p.rng.lo), min(e, p.rng.hi)
                if s2 >= e2:
                    continue
                if s2 > pos:
                    expect.append((pos, s2))
                pos = max(pos, e2)
            if pos < p.rng.hi:
                expect.append((pos, p.rng.hi))
            assert list(p.gaps.items()) == expect, (p.rng, list(p.gaps.items())[:10], expect[:10])
            assert sorted(_gkey(s, e) for s, e in expect) == list(p.sizes)
