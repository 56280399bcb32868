"""The registry's storage: live entries as rows in typed columns, not as Python objects.

A million live buffers as objects cost ~280 B each and make every garbage collection walk them; as
columns they cost ~60 B (compiled) and nothing for the collector. A row holds (device, buffer_id,
type, size, owner pid, ref_count, alloc ts, alloc seq, has-strings); its key is (id space, device,
buffer_id), the id space being 0 for buffers, 1 for CBs, 2 for kernels. An owner index lists each
PID's rows in insertion order (what dead-process cleanup removes).

Rows are appended at the end; a removed row leaves a hole, squeezed out (order kept) once holes
outnumber live rows. A slot number is valid only until the next :meth:`PyTable.add` or
:meth:`PyTable.remove`.

No call does work proportional to the table (the server's event loop, and so every producer, waits
on it): the squeeze is incremental. A cursor walks the rows from the lowest hole on and moves each
live row down, ``COMPACT_STEP`` slots per add/remove, fixing the row's index entry and owner-list
neighbours as it goes; it pauses while a frozen view is open. (table.c also grows its hash index
incrementally; the pure table splits its dict index into ``_SHARDS`` dicts, so that a dict's resize,
which rehashes it at once, is 1/61 of the table: ~1 ms at a million rows instead of ~90 ms.)
:meth:`PyTable.stats` reports the most work one call did.

Two implementations with one behaviour (one test suite runs both): ``tt_memtop/_native/table.c``
(an open-addressing hash index over an array of rows) and :class:`PyTable` here (a dict index over
``array`` columns), used when the extension is not built or ``MEMTOP_PURE_PYTHON=1``.
:func:`table_class` picks one.
"""

from __future__ import annotations

import struct
from array import array

NIL = 0xFFFFFFFF
_ALIVE, _STRINGS = 1, 2
_MIN_COMPACT = 1024
#: slots the compaction cursor visits per add/remove (table.c's COMPACT_STEP)
COMPACT_STEP = 32
#: dicts the pure index is split into (a prime: keys are often aligned addresses)
_SHARDS = 61
#: eventcodec.BUFFER (kept here so the table does not import the codec)
_BUFFER = struct.Struct("<iQBQiIqQHH")
_I32 = (-(1 << 31), (1 << 31) - 1)


def _space(btype: int) -> int:
    return 1 if btype == 5 else 2 if btype == 6 else 0


def _need(v: int, lo: int, hi: int) -> None:
    if not isinstance(v, int):
        raise TypeError("an int is required")
    if not lo <= v <= hi:
        raise OverflowError(f"value {v} out of range [{lo}, {hi}]")


class PyTable:
    """Rows in ``array`` columns, a dict (key -> slot) index, owner lists threaded through the rows."""

    __slots__ = ("_dev", "_bid", "_typ", "_size", "_pid", "_refs", "_ts", "_seq", "_flags", "_next", "_prev",
                 "_index", "_owners", "_live", "_indexed", "_frozen", "_compacting", "_cwr", "_crd", "_hole_lo",
                 "_work", "_min_compact", "_step")

    def __init__(self, _indexed: bool = True) -> None:
        self._indexed = _indexed
        self._frozen = 0
        self._work = [0, 0, 0]  # most slots visited / rows moved by one call, compactions started
        self._min_compact, self._step = _MIN_COMPACT, COMPACT_STEP
        self._reset()

    # -------------------------------------------------------------- helpers
    @staticmethod
    def _key(space: int, device: int, bid: int):
        # one int for the usual case (not tracked by the GC, half a tuple's size); a tuple otherwise
        return bid << 10 | space << 8 | device if 0 <= device < 256 else (space, device, bid)

    @staticmethod
    def _shard(key) -> int:
        return key % _SHARDS if type(key) is int else hash(key) % _SHARDS

    def _alive(self, slot: int) -> bool:
        return isinstance(slot, int) and 0 <= slot < len(self._flags) and bool(self._flags[slot] & _ALIVE)

    def _check_slot(self, slot: int) -> None:
        if not self._alive(slot):
            raise IndexError(f"no live row at slot {slot}")

    def _need_index(self) -> None:
        if not self._indexed:
            raise TypeError("a copy of a table has no index")

    # -------------------------------------------------------------- API (same as table.c)
    def __len__(self) -> int:
        return self._live

    @property
    def nslots(self) -> int:
        return len(self._flags)

    def clear(self) -> None:
        self._need_index()
        if self._frozen:
            raise RuntimeError("a frozen view of the table is open")
        self._reset()

    def _reset(self) -> None:
        self._dev, self._bid, self._typ = array("i"), array("Q"), array("B")
        self._size, self._pid, self._refs = array("Q"), array("i"), array("I")
        self._ts, self._seq, self._flags = array("q"), array("Q"), array("B")
        self._next, self._prev = array("I"), array("I")
        self._index: list[dict] = [{} for _ in range(_SHARDS)]  # key -> slot, split by _shard(key)
        self._owners: dict[int, list[int]] = {}  # pid -> [head, tail, count]
        self._live = 0
        # compaction cursor: [0, cwr) done, [cwr, crd) holes, [crd, nslots) not visited yet
        self._compacting, self._cwr, self._crd = False, 0, 0
        self._hole_lo = NIL  # lowest hole outside a running compaction's reach

    def find(self, space: int, device: int, bid: int) -> int:
        self._need_index()
        if not (isinstance(space, int) and isinstance(device, int) and isinstance(bid, int)):
            raise TypeError("an int is required")
        if not 0 <= space <= 2:
            return -1
        key = self._key(space, device, bid)
        return self._index[self._shard(key)].get(key, -1)

    def lookup(self, space: int, device: int, bid: int) -> tuple | None:
        s = self.find(space, device, bid)
        return self.row(s) if s >= 0 else None

    def add(self, device: int, bid: int, btype: int, size: int, pid: int, refs: int, ts: int, seq: int,
            strings: bool) -> int:
        self._need_index()
        _need(device, *_I32)
        _need(bid, 0, (1 << 64) - 1)
        _need(btype, 0, 255)
        _need(size, 0, (1 << 64) - 1)
        _need(pid, *_I32)
        _need(refs, 0, NIL)
        _need(ts, -(1 << 63), (1 << 63) - 1)
        _need(seq, 0, (1 << 64) - 1)
        if self._compacting and not self._frozen:
            self._compact_step()  # before the new row: it must not move once its slot is returned
        key = self._key(_space(btype), device, bid)
        index = self._index[self._shard(key)]
        if key in index:
            raise KeyError("key is already in the table")
        slot = len(self._flags)
        if slot >= NIL - 1:
            raise OverflowError("table full")
        ow = self._owners.get(pid)
        if ow is None:
            ow = self._owners[pid] = [slot, NIL, 0]
        else:
            self._next[ow[1]] = slot
        self._dev.append(device)
        self._bid.append(bid)
        self._typ.append(btype)
        self._size.append(size)
        self._pid.append(pid)
        self._refs.append(refs)
        self._ts.append(ts)
        self._seq.append(seq)
        self._flags.append(_ALIVE | _STRINGS if strings else _ALIVE)
        self._next.append(NIL)
        self._prev.append(ow[1])
        ow[1] = slot
        ow[2] += 1
        index[key] = slot
        self._live += 1
        return slot

    def remove(self, slot: int) -> None:
        self._need_index()
        self._check_slot(slot)
        key = self._key(_space(self._typ[slot]), self._dev[slot], self._bid[slot])
        del self._index[self._shard(key)][key]
        pid = self._pid[slot]
        ow = self._owners[pid]
        nxt, prv = self._next[slot], self._prev[slot]
        if prv != NIL:
            self._next[prv] = nxt
        else:
            ow[0] = nxt
        if nxt != NIL:
            self._prev[nxt] = prv
        else:
            ow[1] = prv
        ow[2] -= 1
        if not ow[2]:
            del self._owners[pid]
        self._flags[slot] = 0
        self._live -= 1
        if (not self._compacting or slot < self._cwr) and slot < self._hole_lo:
            self._hole_lo = slot  # a hole at or past the cursor is the cursor's business
        if self._frozen:
            return  # rows stay where they are while a frozen view is open
        if not self._live:
            self._reset()
            return
        holes = len(self._flags) - self._live
        if not self._compacting and holes > self._live and holes >= self._min_compact:
            self._compacting = True
            self._cwr = self._crd = self._hole_lo
            self._hole_lo = NIL
            self._work[2] += 1
        if self._compacting:
            self._compact_step()

    def _compact_step(self) -> None:
        """Advance the compaction cursor by up to COMPACT_STEP slots (table.c's compact_step)."""
        flags = self._flags
        end = len(flags)
        rd, wr = self._crd, self._cwr
        stop = min(end, rd + self._step)
        moved = 0
        work = self._work
        if stop - rd > work[0]:
            work[0] = stop - rd
        while rd < stop:
            if flags[rd] & _ALIVE:
                if rd != wr:
                    self._move(rd, wr)
                    moved += 1
                wr += 1
            rd += 1
        if moved > work[1]:
            work[1] = moved
        self._crd, self._cwr = rd, wr
        if rd == end:
            for name in ("_dev", "_bid", "_typ", "_size", "_pid", "_refs", "_ts", "_seq", "_flags", "_next",
                         "_prev"):
                del getattr(self, name)[wr:]
            self._compacting = False

    def _move(self, frm: int, to: int) -> None:
        """Move the live row at ``frm`` to the hole at ``to`` (< frm): its index entry and owner links follow."""
        for col in (self._dev, self._bid, self._typ, self._size, self._pid, self._refs, self._ts, self._seq,
                    self._flags, self._next, self._prev):
            col[to] = col[frm]
        self._flags[frm] = 0
        key = self._key(_space(self._typ[to]), self._dev[to], self._bid[to])
        self._index[self._shard(key)][key] = to
        prv, nxt = self._prev[to], self._next[to]
        ow = self._owners[self._pid[to]] if prv == NIL or nxt == NIL else None
        if prv != NIL:
            self._next[prv] = to
        else:
            ow[0] = to
        if nxt != NIL:
            self._prev[nxt] = to
        else:
            ow[1] = to

    def tune(self, min_compact: int, compact_step: int, hash_step: int) -> None:
        """Small thresholds, so that a test reaches the incremental paths with a few rows (as table.c's tune())."""
        for v in (min_compact, compact_step, hash_step):
            _need(v, 0, NIL)
            if v < 1:
                raise ValueError("tune() values must be >= 1")
        self._min_compact, self._step = min_compact, compact_step

    def stats(self) -> dict:
        """What the incremental compaction is doing, and the most work one call did (table.c's stats())."""
        return {"compacting": self._compacting, "cursor": self._crd if self._compacting else 0,
                "compactions": self._work[2], "max_scanned": self._work[0], "max_moved": self._work[1],
                "migrating": False, "growths": 0, "max_migrated": 0}

    def set_refs(self, slot: int, refs: int) -> None:
        self._check_slot(slot)
        _need(refs, 0, NIL)
        self._refs[slot] = refs

    def row(self, slot: int) -> tuple:
        self._check_slot(slot)
        return (self._dev[slot], self._bid[slot], self._typ[slot], self._size[slot], self._pid[slot],
                self._refs[slot], self._ts[slot], self._seq[slot], bool(self._flags[slot] & _STRINGS))

    def rows(self, start: int, n: int, space: int) -> tuple[list[tuple], list[int], int]:
        out: list[tuple] = []
        slots: list[int] = []
        flags, typ = self._flags, self._typ
        end = len(flags)
        s = min(max(0, start), end)
        while s < end and len(out) < n:
            if flags[s] & _ALIVE and (space < 0 or _space(typ[s]) == space):
                out.append((self._dev[s], self._bid[s], typ[s], self._size[s], self._pid[s], self._refs[s],
                            self._ts[s], self._seq[s], bool(flags[s] & _STRINGS)))
                slots.append(s)
            s += 1
        return out, slots, s

    def encode(self, start: int, n: int) -> tuple[bytes, int, int]:
        flags = self._flags
        end = len(flags)
        s = min(max(0, start), end)
        parts = []
        pack = _BUFFER.pack
        dev, bid, typ, size, pid, refs, ts, seq = (self._dev, self._bid, self._typ, self._size, self._pid,
                                                   self._refs, self._ts, self._seq)
        while s < end and len(parts) < n:
            f = flags[s]
            if f & _ALIVE:
                if f & _STRINGS:
                    return b"".join(parts), s + 1, s
                parts.append(pack(dev[s], bid[s], typ[s], size[s], pid[s], refs[s], ts[s], seq[s], 0, 0))
            s += 1
        return b"".join(parts), s, -1

    def pools(self, keys, top_n: int) -> list[tuple[int, list[tuple], dict[int, int]]]:
        """For each (device, type) of ``keys``, what its live rows hold, in one pass over the rows (no object
        per row): (bytes, the ``top_n`` largest rows as row tuples, largest first, ties in row order,
        {pid: bytes} in the order of each pid's first row). What a peak capture needs (core/insight.py)."""
        if not isinstance(top_n, int):
            raise TypeError("an int is required")
        if not 0 <= top_n <= 64:
            raise ValueError("top_n must be 0..64")
        keys = list(keys)
        if len(keys) > 256:
            raise ValueError("at most 256 pools")
        index: dict[tuple[int, int], list[int]] = {}  # (device, type) -> the positions of that pool in keys
        for i, k in enumerate(keys):
            if not isinstance(k, tuple) or len(k) != 2:
                raise TypeError("keys must be a sequence of (device, type)")
            d, t = k
            if not (isinstance(d, int) and isinstance(t, int)):
                raise TypeError("an int is required")
            index.setdefault((d, t), []).append(i)
        sums = [0] * len(keys)
        tops: list[list[tuple[int, int]]] = [[] for _ in keys]  # (-size, slot): sorts largest first, then row order
        by_pid: list[dict[int, int]] = [{} for _ in keys]
        flags, typ, dev, size, pid = self._flags, self._typ, self._dev, self._size, self._pid
        for s in range(len(flags)):
            if not flags[s] & _ALIVE:
                continue
            where = index.get((dev[s], typ[s]))
            if where is None:
                continue
            n, p = size[s], pid[s]
            for i in where:
                sums[i] += n
                bp = by_pid[i]
                bp[p] = bp.get(p, 0) + n
                top = tops[i]
                if len(top) < top_n or (top_n and n > -top[-1][0]):
                    top.append((-n, s))
                    top.sort()
                    del top[top_n:]
        return [(sums[i], [self.row(s) for _n, s in tops[i]], by_pid[i]) for i in range(len(keys))]

    def owned(self, pid: int, limit: int | None = None) -> list[int]:
        self._need_index()
        if not isinstance(pid, int) or limit is not None and not isinstance(limit, int):
            raise TypeError("an int is required")
        ow = self._owners.get(pid)
        if ow is None:
            return []
        out: list[int] = []
        n = ow[2] if limit is None else max(0, min(limit, ow[2]))
        s, nxt = ow[0], self._next
        while len(out) < n:
            out.append(s)
            s = nxt[s]
        return out

    def owned_count(self, pid: int) -> int:
        self._need_index()
        ow = self._owners.get(pid)
        return ow[2] if ow is not None else 0

    def owners(self) -> list[int]:
        self._need_index()
        return list(self._owners)

    def copy(self) -> PyTable:
        """The rows as they are (C-level copies of the columns), without index or owners."""
        c = PyTable.__new__(PyTable)
        c._indexed = False
        for name in ("_dev", "_bid", "_typ", "_size", "_pid", "_refs", "_ts", "_seq", "_flags"):
            setattr(c, name, getattr(self, name)[:])
        c._next, c._prev = array("I"), array("I")
        c._index, c._owners, c._live = [], {}, self._live
        c._frozen, c._work, c._min_compact, c._step = 0, [0, 0, 0], _MIN_COMPACT, COMPACT_STEP
        c._compacting, c._cwr, c._crd, c._hole_lo = False, 0, 0, NIL
        return c

    def freeze(self) -> PyFrozen:
        """A view of the rows as of now (see table.c's freeze): flags and ref counts copied, the rest shared."""
        self._need_index()
        return PyFrozen(self)

    def nbytes(self) -> int:
        """Memory held (columns, index, owner lists); the index's key and slot ints included."""
        import sys

        cols = sum(getattr(self, n).buffer_info()[1] * getattr(self, n).itemsize
                   for n in ("_dev", "_bid", "_typ", "_size", "_pid", "_refs", "_ts", "_seq", "_flags", "_next",
                             "_prev"))
        ints = sum(sys.getsizeof(k) + (sys.getsizeof(s) if s > 256 else 0) for ix in self._index for k, s in ix.items())
        return cols + sum(map(sys.getsizeof, self._index)) + ints + sys.getsizeof(self._owners)

    def check(self) -> None:
        self._need_index()
        live = [s for s in range(len(self._flags)) if self._flags[s] & _ALIVE]
        assert len(live) == self._live, ("live count", len(live), self._live)
        assert sum(map(len, self._index)) == self._live, ("index count", sum(map(len, self._index)))
        for s in live:
            k = self._key(_space(self._typ[s]), self._dev[s], self._bid[s])
            assert self._index[self._shard(k)].get(k) == s, ("row not indexed", s)
        owned = 0
        for pid, (head, tail, count) in self._owners.items():
            s, prev, n = head, NIL, 0
            while s != NIL:
                assert self._alive(s) and self._pid[s] == pid and self._prev[s] == prev, ("owner list", s)
                assert prev == NIL or prev < s, ("owner order", s)
                prev, s, n = s, self._next[s], n + 1
                assert n <= len(self._flags), "owner cycle"
            assert prev == tail and n == count and n > 0, ("owner count", pid, n, count)
            owned += n
        assert owned == self._live, ("owned total", owned)
        if self._compacting:
            assert self._cwr <= self._crd <= len(self._flags), ("compaction cursor", self._cwr, self._crd)
            assert not any(self._flags[s] & _ALIVE for s in range(self._cwr, self._crd)), "live row behind the cursor"
        if self._hole_lo != NIL:
            assert self._hole_lo < len(self._flags) and not self._flags[self._hole_lo] & _ALIVE, "lowest hole"
        for s in range(min(len(self._flags), self._hole_lo)):
            assert self._flags[s] & _ALIVE or self._compacting and s >= self._cwr, ("hole below the lowest", s)


class PyFrozen:
    """PyTable.freeze(): the table's columns (rows are only appended, and neither squeezed nor reused
    while this is open) with flags and ref counts as of the freeze."""

    __slots__ = ("_t", "_view", "_live")

    def __init__(self, t: PyTable) -> None:
        view = PyTable.__new__(PyTable)
        view._indexed, view._frozen = False, 0
        for name in ("_dev", "_bid", "_typ", "_size", "_pid", "_ts", "_seq"):
            setattr(view, name, getattr(t, name))  # shared: appended to, never changed in place
        view._flags, view._refs = t._flags[:], t._refs[:]
        view._next, view._prev, view._index, view._owners, view._live = array("I"), array("I"), [], {}, t._live
        self._t, self._view, self._live = t, view, t._live
        t._frozen += 1

    def __len__(self) -> int:
        return self._live

    @property
    def nslots(self) -> int:
        return len(self._view._flags) if self._view is not None else 0

    def rows(self, start: int, n: int, space: int):
        return self._view.rows(start, n, space) if self._view is not None else ([], [], 0)

    def encode(self, start: int, n: int):
        return self._view.encode(start, n) if self._view is not None else (b"", 0, -1)

    def row(self, slot: int) -> tuple:
        if self._view is None:
            raise IndexError(f"no live row at slot {slot}")
        return self._view.row(slot)

    def close(self) -> None:
        if self._t is not None:
            self._t._frozen -= 1
            self._t = self._view = None
            self._live = 0

    def __del__(self) -> None:
        self.close()


def table_class(pure: bool | None = None) -> type:
    """The compiled Table when it is built (and pure Python is not asked for), else :class:`PyTable`."""
    if pure:
        return PyTable
    from .. import _native

    mod = _native.load("table")
    return mod.Table if mod is not None else PyTable


_MISSING = object()


class LiveMap:
    """A dict ``(device, buffer_id, id space) -> (ts, size, buffer_type)`` kept in table columns.

    What phase inference remembers of every live buffer of a process (core/phases/machine.py): as a
    dict of tuples that was ~200 B a buffer, as rows ~60 B. Keys whose space is not their type's, or
    values no column holds, go to a plain dict beside it, so any key and value behave as in a dict.
    """

    __slots__ = ("_t", "_extra")

    def __init__(self, pure: bool | None = None) -> None:
        self._t = table_class(pure)()
        self._extra: dict = {}

    def _slot(self, key) -> int:
        try:
            dev, bid, sp = key
            return self._t.find(sp, dev, bid)
        except (TypeError, ValueError):
            return -1

    def get(self, key, default=None):
        try:
            dev, bid, sp = key
            r = self._t.lookup(sp, dev, bid)
        except (TypeError, ValueError):
            r = None
        if r is not None:
            return (r[6], r[3], r[2])
        return self._extra.get(key, default) if self._extra else default

    def __getitem__(self, key):
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __setitem__(self, key, value) -> None:
        t = self._t
        try:
            dev, bid, sp = key
            ts, size, bt = value
            if isinstance(bt, int) and _space(bt) == sp:
                try:
                    t.add(dev, bid, bt, size, 0, 0, ts, 0, False)
                except KeyError:  # a live key: replace its row
                    t.remove(t.find(sp, dev, bid))
                    t.add(dev, bid, bt, size, 0, 0, ts, 0, False)
                if self._extra:
                    self._extra.pop(key, None)
                return
        except (TypeError, ValueError, OverflowError):
            pass
        s = self._slot(key)
        if s >= 0:
            t.remove(s)
        self._extra[key] = value

    def pop(self, key, default=None):
        s = self._slot(key)
        if s >= 0:
            r = self._t.row(s)
            self._t.remove(s)
            return (r[6], r[3], r[2])
        return self._extra.pop(key, default) if self._extra else default

    def __len__(self) -> int:
        return len(self._t) + len(self._extra)

    def __bool__(self) -> bool:
        return len(self._t) > 0 or bool(self._extra)
