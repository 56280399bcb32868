"""Per-bank address maps: which per-bank ranges are taken, and the free ranges left, kept incrementally.

Why: "Not enough space to allocate X B L1 buffer across N banks, where each bank needs to store
Y B" fails on the largest *contiguous free range per bank*. The buffer id on the wire is the
buffer's address, so with the bank geometry (:mod:`.geometry`) every interleaved buffer is an
interval ``[address, address + per_bank_size)`` present in every bank of its pool; all banks of a
pool look alike, and one interval set per (device, memory) describes them all.

Structure (one :class:`SpaceMap` per device and memory — DRAM holds the DRAM and TRACE pools,
L1 the L1 and L1_SMALL pools):

* the live intervals: start -> size << 3 | type in two sorted array columns cut in blocks
  (:class:`~.runs.Runs`: 4-byte items while they fit — per-bank addresses are below 4 GiB — so 8 B an
  interval; a dict, its keys' int objects and a ``SortedList`` took ~78 B with a million live
  buffers); the per-bank length of an interval is looked up by that value, one entry per
  distinct size and type (:class:`_Lengths`);
* per pool, its free segments: start -> end, in the same blocked columns, each block keeping the
  size of its largest segment (recomputed lazily), so the largest free range is a max over the
  blocks and the segment count a length;
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

import sys
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import islice
from operator import lt

from .geometry import PoolRange
from .heap import give_back_free_heap
from .runs import Runs

__all__ = ["Cell", "PoolStats", "SpaceMap"]

BULK_MIN = 256  # a flush of more changes than this, and more than 1/BULK_RATIO of the live intervals,
BULK_RATIO = 8  # rebuilds the map in one sorted sweep instead of applying the changes one by one


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What a pool of one device looks like per bank; ``largest_allocatable`` is for all its banks."""

    pool: str
    banks: int
    lo: int
    hi: int
    bank_size: int
    used_per_bank: int
    free_per_bank: int
    largest_free: int
    largest_free_at: int  # start address of the largest free range (-1: none)
    free_segments: int
    range_known: bool

    @property
    def largest_allocatable(self) -> int:
        return self.largest_free * self.banks

    @property
    def fragmentation(self) -> float:
        """1 - largest free / total free (0: all free space in one piece; -> 1: shattered)."""
        return 1.0 - self.largest_free / self.free_per_bank if self.free_per_bank > 0 else 0.0

    def as_dict(self) -> dict:
        return {"pool": self.pool, "banks": self.banks, "range": [self.lo, self.hi], "range_known": self.range_known,
                "bank_size": self.bank_size, "used_per_bank": self.used_per_bank, "free_per_bank": self.free_per_bank,
                "largest_free_bytes": self.largest_free, "largest_free_at": self.largest_free_at,
                "free_segments": self.free_segments, "largest_allocatable_bytes": self.largest_allocatable,
                "fragmentation": round(self.fragmentation, 4)}


@dataclass(frozen=True, slots=True)
class Cell:
    """One slice ``[lo, hi)`` of a bank's address range: bytes used by each buffer type, and the region."""

    lo: int
    hi: int
    used: dict[int, int]  # buffer type -> bytes of the slice covered by that type
    pool: int  # the pool whose range holds most of the slice (-1: reserved / outside every pool)
    in_largest_free: bool  # the slice meets the largest free range of its pool

    @property
    def used_bytes(self) -> int:
        return min(self.hi - self.lo, sum(self.used.values()))


_SIZE = (1 << 40) - 1  # sizes are kept below 2**40 (an interval's value: size << 3 | buffer type)
_U64 = 1 << 64
_INTERN_MAX = 1 << 16
PENDING_MAX = 1 << 15  # queued changes of one map applied without waiting for a query (bounds their memory)
TRIM_MIN = 50_000  # a loaded map of this many intervals gives the free heap back once built (core/heap.py)


class _Lengths(dict):
    """Per-bank length of an interval by its value (size << 3 | type), computed once per distinct
    value: a model's buffers come in few sizes, so this is a few thousand entries, not one an interval."""

    __slots__ = ("pools",)

    def __init__(self, pools: dict) -> None:
        super().__init__()
        self.pools = pools

    def __missing__(self, v: int) -> int:
        if len(self) >= _INTERN_MAX:
            self.clear()
        p = self.pools.get(v & 7)
        n = self[v] = p.rng.per_bank(v >> 3) if p is not None else 0
        return n


def _sorted_unique(starts: array, vals: array) -> tuple[array, array]:
    """``starts`` sorted, each with its value; of equal starts the one added last (as a dict would keep)."""
    if all(map(lt, starts, islice(starts, 1, None))):
        return starts, vals
    order = sorted(range(len(starts)), key=starts.__getitem__)  # stable: equal starts in the order added
    ks = array("Q", map(starts.__getitem__, order))
    vs = array("Q", map(vals.__getitem__, order))
    del order
    if all(map(lt, ks, islice(ks, 1, None))):
        return ks, vs
    keep_k, keep_v = array("Q"), array("Q")
    n = len(ks)
    for i in range(n):
        if i + 1 == n or ks[i + 1] != ks[i]:
            keep_k.append(ks[i])
            keep_v.append(vs[i])
    return keep_k, keep_v


class _Pool:
    __slots__ = ("rng", "gaps", "used", "free")

    def __init__(self, rng: PoolRange) -> None:
        self.rng = rng
        self.gaps = Runs(track=True)  # start -> end of each free segment
        self.used = 0  # per-bank bytes of intervals of this pool's type
        self.free = 0  # per-bank free bytes (sum of the segments)
        if rng.hi > rng.lo:
            self._put(rng.lo, rng.hi)

    def _put(self, s: int, e: int) -> None:
        self.gaps.put(s, e)
        self.free += e - s

    def _pop(self, s: int) -> int:
        e = self.gaps.pop(s)
        self.free -= e - s
        return e

    def cut(self, a: int, b: int) -> None:
        """Remove ``[a, b)`` from the free segments."""
        a = max(a, self.rng.lo)
        b = min(b, self.rng.hi)
        if a >= b:
            return
        gaps = self.gaps
        item = gaps.floor(a)
        if item is None or item[1] <= a:
            item = gaps.ceil(a)
        while item is not None:
            gs, ge = item
            if gs >= b:
                break
            if gs < a:  # keep the left part under the same key
                gaps.put(gs, a)
                self.free -= ge - a
            else:
                self._pop(gs)
            if ge > b:
                self._put(b, ge)
                break
            item = gaps.ceil(ge)

    def give(self, a: int, b: int) -> None:
        """Add ``[a, b)`` (known to be uncovered) to the free segments, merging with its neighbours."""
        a = max(a, self.rng.lo)
        b = min(b, self.rng.hi)
        if a >= b:
            return
        gaps = self.gaps
        item = gaps.floor(a)
        if item is not None and item[1] >= a:  # touching (or, defensively, overlapping) the previous segment
            b = max(b, self._pop(item[0]))
            a = item[0]
        item = gaps.ceil(a)
        while item is not None and item[0] <= b:
            b = max(b, self._pop(item[0]))
            item = gaps.ceil(a)
        self._put(a, b)

    def largest(self) -> tuple[int, int]:
        """(size, start) of the largest free segment, (0, -1) if none. Ties: the lowest address."""
        return self.gaps.largest()


class SpaceMap:
    """The live intervals of one memory of one device (DRAM or L1) and the free segments of its pools."""

    def __init__(self, pools: dict[int, PoolRange]) -> None:
        # start -> size << 3 | buffer type, in sorted columns (16 B an interval); the per-bank length
        # comes from ``lengths``, one entry per distinct size and type
        self.iv = Runs()
        self.pending: dict[int, int] = {}  # start -> size << 3 | type, or -1: freed (or a type with no pool)
        self.pools = {t: _Pool(r) for t, r in pools.items()}
        self.lengths = _Lengths(self.pools)
        self.maxlen = 0
        self.overlapping: set[int] = set()  # starts of live intervals that overlapped another when added
        self.outside = 0  # live intervals outside every pool's range (reserved space: a bad or stale address)
        self._loading: tuple[array, array] | None = None  # what a loader() fills
        self._loaded: tuple[array, array] | None = None  # loaded in bulk, unsorted: built at the first query

    # ------------------------------------------------------------------ changes (cheap; applied by flush)
    def alloc(self, start: int, size: int, buffer_type: int) -> None:
        if 0 <= start < _U64:
            pending = self.pending
            pending[start] = min(max(size, 0), _SIZE) << 3 | buffer_type if buffer_type in self.pools else -1
            if len(pending) > PENDING_MAX:
                self.flush()

    def free(self, start: int) -> None:
        if 0 <= start < _U64:
            pending = self.pending
            pending[start] = -1
            if len(pending) > PENDING_MAX:
                self.flush()

    def load(self, items) -> None:
        """Replace the whole map with ``items`` ((start, size, buffer type)); built at the first query."""
        add = self.loader()
        for start, size, t in items:
            add(start, size, t)
        self.set_loaded()

    def loader(self):
        """``add(start, size, buffer type)`` that fills the map :meth:`set_loaded` installs: :meth:`load`
        one item at a time, for a caller that loads many maps in one pass (no list of items per map).
        Of two items at one start the last is kept."""
        pools = self.pools
        starts, vals = self._loading = array("Q"), array("Q")
        put_start, put_val = starts.append, vals.append
        size_max = _SIZE

        def add(start: int, size: int, t: int) -> None:
            if t in pools and 0 <= start < _U64:
                put_start(start)
                put_val(min(max(size, 0), size_max) << 3 | t)
        return add

    def set_loaded(self) -> None:
        """Replace the whole map with what the last :meth:`loader` filled; built at the first query."""
        self._loaded, self._loading = self._loading, None
        self.iv = Runs()
        self.pending = {}

    def flush(self) -> None:
        if self._loaded is not None:
            starts, vals = self._loaded
            self._loaded = None
            self._rebuild(*_sorted_unique(starts, vals))
            if len(starts) >= TRIM_MIN:  # the flat load columns and the sort's temporaries are gone now
                del starts, vals
                give_back_free_heap()
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        iv = self.iv
        if len(pending) > BULK_MIN and len(pending) * BULK_RATIO > len(iv):
            self._bulk(pending)
            return
        get = iv.get
        for start, new in pending.items():
            old = get(start)
            if old is not None:
                if old == new:
                    continue
                self._remove(start, old)
            if new >= 0:
                self._add(start, new)

    def _bulk(self, pending: dict) -> None:
        """Apply many changes at once (attaching, loading weights): rebuild in O(n log n), sorting in C."""
        pools = self.pools
        starts, vals = array("Q"), array("Q")
        for s, v in self.iv:
            if s not in pending:
                starts.append(s)
                vals.append(v)
        for s, new in pending.items():
            if new >= 0 and new & 7 in pools:
                starts.append(s)
                vals.append(new)
        self._rebuild(*_sorted_unique(starts, vals))

    def _rebuild(self, ks: array, vs: array) -> None:
        """Intervals, overlap marks, per-pool used bytes and free segments, from sorted columns."""
        lengths = self.lengths
        overlapping = set()
        used = dict.fromkeys(self.pools, 0)
        maxlen = 0
        max_end = -1
        for s, v in zip(ks, vs, strict=True):
            n = lengths[v]
            e = s + n
            if s < max_end:
                overlapping.add(s)
            if e > max_end:
                max_end = e
            if n > maxlen:
                maxlen = n
            used[v & 7] += n
        self.overlapping = overlapping
        self.maxlen = maxlen
        inside = 0
        for t, p in self.pools.items():
            p.used = used[t]
            lo, hi = p.rng.lo, p.rng.hi
            inside += bisect_left(ks, hi) - bisect_left(ks, lo) if hi > lo else 0
            gs, ge = array("Q"), array("Q")
            pos = lo
            i0 = bisect_left(ks, lo - maxlen)
            for s, v in zip(islice(ks, i0, None), islice(vs, i0, None), strict=True):
                if s >= hi:
                    break
                e = s + lengths[v]
                if e <= pos or e == s:  # an empty interval (size 0) covers nothing
                    continue
                if s > pos:
                    gs.append(pos)
                    ge.append(s)
                pos = e
            if pos < hi:
                gs.append(pos)
                ge.append(hi)
            p.gaps = Runs(gs, ge, track=True)
            p.free = sum(ge) - sum(gs)
        self.outside = len(ks) - inside
        self.iv = Runs(ks, vs)

    # ------------------------------------------------------------------ the interval set
    def _add(self, start: int, v: int) -> None:
        p = self.pools.get(v & 7)
        if p is None:
            return
        length = self.lengths[v]
        end = start + length
        if self.overlapping or length > 0:
            if self._overlaps(start, end):
                self.overlapping.add(start)
        self.iv.put(start, v)
        if length > self.maxlen:
            self.maxlen = length
        p.used += length
        pools = self.pools.values()
        if not any(q.rng.lo <= start < q.rng.hi for q in pools):
            self.outside += 1
        for q in pools:
            q.cut(start, end)

    def _overlaps(self, start: int, end: int) -> bool:
        iv, lengths = self.iv, self.lengths
        nxt = iv.ceil(start)
        if nxt is not None and nxt[0] < end:
            return True
        if not self.overlapping:
            prev = iv.lower(start)
            return prev is not None and prev[0] + lengths[prev[1]] > start
        for s, v in iv.iter_from(start - self.maxlen):
            if s >= start:
                break
            if s + lengths[v] > start:
                return True
        return False

    def _remove(self, start: int, old: int) -> None:
        end, btype = start + self.lengths[old], old & 7
        self.iv.pop(start)
        pools = self.pools.values()
        self.pools[btype].used -= end - start
        if not any(q.rng.lo <= start < q.rng.hi for q in pools):
            self.outside -= 1
        for a, b in self._uncovered(start, end):
            for q in pools:
                q.give(a, b)
        self.overlapping.discard(start)

    def _uncovered(self, a: int, b: int) -> list[tuple[int, int]]:
        """The parts of ``[a, b)`` no live interval covers."""
        if a >= b:
            return []
        iv, lengths = self.iv, self.lengths
        if not self.overlapping:
            prev = iv.lower(a)
            nxt = iv.ceil(a)
            if prev is not None:
                a = max(a, prev[0] + lengths[prev[1]])
            if nxt is not None:
                b = min(b, nxt[0])
            return [(a, b)] if a < b else []
        out = []
        pos = a
        for s, v in iv.iter_from(a - self.maxlen):
            if s >= b:
                break
            e = s + lengths[v]
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
        self.flush()
        self.pools = {t: _Pool(r) for t, r in pools.items()}
        self.lengths = _Lengths(self.pools)
        ks, vs = self.iv.columns()
        self.iv = Runs()
        if any(v & 7 not in self.pools for v in vs):
            keep = [i for i, v in enumerate(vs) if v & 7 in self.pools]
            ks = array("Q", map(ks.__getitem__, keep))
            vs = array("Q", map(vs.__getitem__, keep))
        self._rebuild(ks, vs)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        self.flush()
        return len(self.iv)

    def nbytes(self) -> int:
        """Memory the map holds (columns, block lists, the length cache, pending changes; not shared ints)."""
        size = sys.getsizeof
        runs = [self.iv] + [p.gaps for p in self.pools.values()]
        n = sum(size(r.ks) + size(r.vs) + size(r.firsts) + sum(map(size, r.ks)) + sum(map(size, r.vs)) +
                (size(r.bmax) if r.bmax is not None else 0) for r in runs)
        n += size(self.lengths) + size(self.pending) + size(self.overlapping)
        if self._loaded is not None:
            n += sum(map(size, self._loaded))
        return n

    def stats(self, pool: int) -> PoolStats:
        self.flush()
        p = self.pools[pool]
        r = p.rng
        largest, at = p.largest()
        return PoolStats(r.name, r.banks, r.lo, r.hi, r.bank_size, p.used, p.free, largest, at, len(p.gaps), r.known)

    def lowest(self, buffer_type: int) -> int | None:
        """The lowest start address of a live interval of ``buffer_type`` (None: none)."""
        self.flush()
        for s, v in self.iv:
            if v & 7 == buffer_type:
                return s
        return None

    def highest_end(self, buffer_type: int) -> int | None:
        """The end of the live interval of ``buffer_type`` with the highest start (None: none)."""
        self.flush()
        for s, v in self.iv.reversed_items():
            if v & 7 == buffer_type:
                return s + self.lengths[v]
        return None

    def intervals(self, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """Live intervals overlapping ``[lo, hi)``: (start, end, buffer type, size), by start."""
        self.flush()
        out = []
        lengths = self.lengths
        for s, v in self.iv.iter_from(lo - self.maxlen):
            if s >= hi:
                break
            e = s + lengths[v]
            if e > lo:
                out.append((s, e, v & 7, v >> 3))
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
        """Assert the free segments equal the complement of the intervals in each pool, and the
        structures' own invariants (for tests)."""
        self.flush()
        self.iv.check()
        lengths = self.lengths
        for p in self.pools.values():
            expect = []
            pos = p.rng.lo
            for s, v in self.iv:
                e = s + lengths[v]
                s2, e2 = max(s, p.rng.lo), min(e, p.rng.hi)
                if s2 >= e2:
                    continue
                if s2 > pos:
                    expect.append((pos, s2))
                pos = max(pos, e2)
            if pos < p.rng.hi:
                expect.append((pos, p.rng.hi))
            got = list(p.gaps)
            assert got == expect, (p.rng, got[:10], expect[:10])
            p.gaps.check()
            assert p.free == sum(e - s for s, e in expect)
            best = max(expect, key=lambda g: (g[1] - g[0], -g[0]), default=None)
            assert p.largest() == ((best[1] - best[0], best[0]) if best else (0, -1))
