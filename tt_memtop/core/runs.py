"""Sorted unique keys with one value each, in blocks of two array columns: the bank maps' storage.

Why: with a million live buffers a dict plus a ``SortedList`` cost ~80 B an interval; two array
columns cost 8-16 B (4-byte items while the values fit). :mod:`.bankmap` keeps its live intervals
(start -> size and type) and each pool's free segments (start -> end) in these.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from operator import sub

__all__ = ["LOAD", "Runs", "narrow"]

_U32_MAX = (1 << 32) - 1
_NARROW = "I" if array("I").itemsize == 4 else ""  # the 4-byte column type ("": none, keep 8 bytes)
LOAD = 1024  # items per block of a Runs: a block splits at 2 * LOAD


class Runs:
    """Sorted unique keys with one value each, in blocks of two parallel arrays: 4-byte items
    (``'I'``) while a block's values fit, 8-byte (``'Q'``) once one does not.

    Why not a dict and a ``SortedList``: with a million live buffers those cost ~80 B an interval
    (a dict entry, the key's int object, a list slot); two columns cost 8-16 B. A lookup is
    two bisects (the blocks' first keys, then the block), an insert or delete moves at most
    ``2 * LOAD`` items of one block. With ``track`` (free segments: key = start, value = end) each
    block also keeps the size of its largest segment, recomputed lazily (-1: unknown), so the
    largest free range of a pool is a max over the blocks, not a second sorted structure.
    """

    __slots__ = ("ks", "vs", "firsts", "n", "bmax")

    def __init__(self, keys=None, vals=None, track: bool = False) -> None:
        self.ks: list[array] = []
        self.vs: list[array] = []
        self.firsts: list[int] = []  # first key of each block (blocks are never empty)
        self.n = 0
        self.bmax: list[int] | None = [] if track else None
        if keys:
            for i in range(0, len(keys), LOAD):
                self.ks.append(narrow(keys[i:i + LOAD]))
                self.vs.append(narrow(vals[i:i + LOAD]))
                self.firsts.append(keys[i])
            self.n = len(keys)
            if track:
                self.bmax = [-1] * len(self.ks)

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------------ lookups
    def get(self, k: int):
        firsts = self.firsts
        if not firsts:
            return None
        i = bisect_right(firsts, k) - 1
        if i < 0:
            return None
        ks = self.ks[i]
        j = bisect_left(ks, k)
        if j < len(ks) and ks[j] == k:
            return self.vs[i][j]
        return None

    def floor(self, k: int):
        """(key, value) of the largest key <= ``k``, or None."""
        i = bisect_right(self.firsts, k) - 1
        if i < 0:
            return None
        ks = self.ks[i]
        j = bisect_right(ks, k) - 1
        return ks[j], self.vs[i][j]

    def lower(self, k: int):
        """(key, value) of the largest key < ``k``, or None."""
        i = bisect_left(self.firsts, k) - 1
        if i < 0:
            return None
        ks = self.ks[i]
        j = bisect_left(ks, k) - 1
        return ks[j], self.vs[i][j]

    def ceil(self, k: int):
        """(key, value) of the smallest key >= ``k``, or None."""
        firsts = self.firsts
        if not firsts:
            return None
        i = bisect_right(firsts, k) - 1
        if i < 0:
            return firsts[0], self.vs[0][0]
        ks = self.ks[i]
        j = bisect_left(ks, k)
        if j == len(ks):
            i += 1
            if i == len(firsts):
                return None
            return firsts[i], self.vs[i][0]
        return ks[j], self.vs[i][j]

    def iter_from(self, k: int):
        """(key, value) pairs from the smallest key >= ``k`` on, ascending (no changes while iterating)."""
        firsts = self.firsts
        if not firsts:
            return
        i = max(0, bisect_right(firsts, k) - 1)
        j = bisect_left(self.ks[i], k)
        ks, vs = self.ks, self.vs
        for b in range(i, len(ks)):
            if j:
                yield from zip(ks[b][j:], vs[b][j:], strict=True)
                j = 0
            else:
                yield from zip(ks[b], vs[b], strict=True)

    def __iter__(self):
        for kb, vb in zip(self.ks, self.vs, strict=True):
            yield from zip(kb, vb, strict=True)

    def reversed_items(self):
        for kb, vb in zip(reversed(self.ks), reversed(self.vs), strict=True):
            yield from zip(reversed(kb), reversed(vb), strict=True)

    def columns(self) -> tuple[array, array]:
        """All keys and all values, each as one array."""
        ks, vs = array("Q"), array("Q")
        for kb, vb in zip(self.ks, self.vs, strict=True):
            ks.extend(kb if kb.typecode == "Q" else iter(kb))
            vs.extend(vb if vb.typecode == "Q" else iter(vb))
        return ks, vs

    # ------------------------------------------------------------------ changes
    def put(self, k: int, v: int) -> None:
        """Set the value of ``k`` (inserted if absent)."""
        firsts = self.firsts
        if not firsts:
            self.ks.append(narrow(array("Q", (k,))))
            self.vs.append(narrow(array("Q", (v,))))
            firsts.append(k)
            self.n = 1
            if self.bmax is not None:
                self.bmax.append(v - k)
            return
        i = bisect_right(firsts, k) - 1
        if i < 0:
            i = 0
        ks = self.ks[i]
        j = bisect_left(ks, k)
        bmax = self.bmax
        if j < len(ks) and ks[j] == k:
            vs = self.vs[i]
            if bmax is not None:
                m = bmax[i]
                if v - k > m >= 0:
                    bmax[i] = v - k
                elif vs[j] - k == m and v - k < m:
                    bmax[i] = -1
            try:
                vs[j] = v
            except OverflowError:  # a 4-byte block meets a value past 2**32: widen it
                vs = self.vs[i] = array("Q", vs)
                vs[j] = v
            return
        try:
            ks.insert(j, k)
        except OverflowError:
            ks = self.ks[i] = array("Q", ks)
            ks.insert(j, k)
        try:
            self.vs[i].insert(j, v)
        except OverflowError:
            vs = self.vs[i] = array("Q", self.vs[i])
            vs.insert(j, v)
        self.n += 1
        if j == 0:
            firsts[i] = k
        if bmax is not None and v - k > bmax[i] >= 0:
            bmax[i] = v - k
        if len(ks) > 2 * LOAD:
            self._split(i)

    def _split(self, i: int) -> None:
        ks, vs = self.ks[i], self.vs[i]
        half = len(ks) // 2
        self.ks.insert(i + 1, ks[half:])
        self.vs.insert(i + 1, vs[half:])
        del ks[half:]
        del vs[half:]
        self.firsts.insert(i + 1, self.ks[i + 1][0])
        if self.bmax is not None:
            self.bmax[i] = -1
            self.bmax.insert(i + 1, -1)

    def pop(self, k: int) -> int:
        """Remove ``k``; its value (KeyError if absent)."""
        firsts = self.firsts
        i = bisect_right(firsts, k) - 1
        if i >= 0:
            ks = self.ks[i]
            j = bisect_left(ks, k)
            if j < len(ks) and ks[j] == k:
                vs = self.vs[i]
                v = vs[j]
                del ks[j]
                del vs[j]
                self.n -= 1
                if not ks:
                    del self.ks[i], self.vs[i], firsts[i]
                    if self.bmax is not None:
                        del self.bmax[i]
                    return v
                if j == 0:
                    firsts[i] = ks[0]
                if self.bmax is not None and v - k == self.bmax[i]:
                    self.bmax[i] = -1
                return v
        raise KeyError(k)

    # ------------------------------------------------------------------ free segments (track=True)
    def largest(self) -> tuple[int, int]:
        """(value - key, key) of the item with the largest value - key, the lowest key among equals;
        (0, -1) if empty."""
        bmax = self.bmax
        if not bmax:
            return 0, -1
        for i, m in enumerate(bmax):
            if m < 0:
                bmax[i] = max(map(sub, self.vs[i], self.ks[i]))
        m = max(bmax)
        i = bmax.index(m)  # blocks are in key order: the first block holding m has the lowest key
        j = list(map(sub, self.vs[i], self.ks[i])).index(m)
        return m, self.ks[i][j]

    def check(self) -> None:
        """Assert the blocks' invariants (for tests)."""
        assert len(self.ks) == len(self.vs) == len(self.firsts)
        assert self.n == sum(map(len, self.ks))
        prev = -1
        for i, (kb, vb) in enumerate(zip(self.ks, self.vs, strict=True)):
            assert 0 < len(kb) <= 2 * LOAD and len(kb) == len(vb) and self.firsts[i] == kb[0]
            assert kb.typecode in ("I", "Q") and vb.typecode in ("I", "Q")
            for k in kb:
                assert k > prev
                prev = k
            if self.bmax is not None:
                assert self.bmax[i] in (-1, max(map(sub, vb, kb))), (i, self.bmax[i])


def narrow(a: array) -> array:
    """``a`` in 4-byte items if they all fit (per-bank addresses and most sizes do: 4 B saved an item)."""
    if _NARROW and a.typecode == "Q" and (not a or max(a) <= _U32_MAX):
        return array(_NARROW, a)
    return a
