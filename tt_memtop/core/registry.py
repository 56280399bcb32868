"""The buffer registry: live buffers and the totals derived from them.

Pure and synchronous. Semantics follow the original ``allocation_server_poc`` (PROTOCOL.md §4):

* a buffer is keyed by (device, buffer_id); each device has its own address space;
* ALLOC of a new key stores it with ref_count 1 and owner = sender PID; ALLOC of a live key only
  raises ref_count (size, owner and totals unchanged);
* FREE lowers ref_count; at 0 the stored size leaves the totals. FREE of an unknown key changes
  nothing and is reported;
* SYSTEM_MEMORY is summed with L1_SMALL in the *wire* totals (:meth:`wire_totals`) but kept apart
  in :meth:`device_totals` so our own views can tell them apart;
* dead-process cleanup removes every entry a dead PID owns, whatever its ref_count.

Where we differ from the original, on purpose (documented in docs/PROTOCOL-NOTES.md):

* no 8-device limit (``MAX_DEVICES`` is 256);
* CB/KERNEL frees subtract the *stored* size and ignore unknown ids (the original subtracts the
  message's size unconditionally, so its totals can drift and underflow); a CB/KERNEL re-ALLOC
  of a live id replaces the old entry instead of adding its size again.

Hence the invariant, tested with hypothesis: every total equals the sum over live entries and is
never negative.

Every change is returned as an :class:`~tt_memtop.core.events.Event`; :meth:`apply_event`
replays such events, so a mirror built from a server's events has the server's state.

Storage is columns, not objects (:mod:`tt_memtop.core.table`, compiled when built): ~60 B per live
entry instead of ~280, and nothing for the garbage collector to walk. Names and stack traces, which
few entries have, live in a side dict.
"""

from __future__ import annotations

import heapq
import struct
import sys
from collections.abc import Iterable, Iterator

from .events import Event, EventKind
from .protocol import MAX_DEVICES, MAX_SIZE, WIRE_CLASSES, AllocMessage, BufferType, KernelType, MsgType
from .table import table_class

NTYPES = len(BufferType)
_CB = int(BufferType.CB)
_KERNEL = int(BufferType.KERNEL)
_KERNEL_NAMES = {int(k): k.name.title() for k in KernelType}
_ALLOC, _REF_INC, _REF_DEC, _FREE = EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE
_FREE_UNKNOWN, _CLEANUP = EventKind.FREE_UNKNOWN, EventKind.CLEANUP
_U32 = 0xFFFFFFFF
_U64_MAX = (1 << 64) - 1
#: rows fetched from the table per call when iterating
_CHUNK = 4096


class Buffer:
    """One live entry: a buffer, a circular buffer (CB) or a kernel binary.

    The registry keeps its entries as rows in columns (:mod:`tt_memtop.core.table`); a Buffer is a copy
    of one row, made when asked for (:meth:`Registry.get`, :meth:`Registry.buffers`). Changing it
    changes nothing in the registry.
    """

    __slots__ = ("device", "buffer_id", "buffer_type", "size", "owner_pid", "ref_count", "alloc_ts_ns",
                 "alloc_seq", "name", "stack_trace")

    def __init__(self, device: int, buffer_id: int, buffer_type: int, size: int, owner_pid: int,
                 ref_count: int = 1, alloc_ts_ns: int = 0, alloc_seq: int = 0, name: str = "",
                 stack_trace: str = "") -> None:
        self.device = device
        self.buffer_id = buffer_id
        self.buffer_type = buffer_type
        self.size = size
        self.owner_pid = owner_pid
        self.ref_count = ref_count
        self.alloc_ts_ns = alloc_ts_ns
        self.alloc_seq = alloc_seq
        self.name = name
        self.stack_trace = stack_trace

    def copy(self) -> Buffer:
        return Buffer(self.device, self.buffer_id, self.buffer_type, self.size, self.owner_pid, self.ref_count,
                      self.alloc_ts_ns, self.alloc_seq, self.name, self.stack_trace)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Buffer):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    #: Hashed by identity (a Buffer is a value made on demand from the registry's rows; two made from
    #: the same row are equal but distinct objects).
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return (f"Buffer(dev={self.device}, id={self.buffer_id:#x}, type={BufferType(self.buffer_type).name}, "
                f"size={self.size}, pid={self.owner_pid}, refs={self.ref_count})")


#: Index of the live-entry count after the NTYPES byte totals in a (pid, device) usage list.
_N = NTYPES


class _DeviceUsage:
    """What one device holds: bytes by type, live buffers (CB/KERNEL excluded), and the same by owner PID."""

    __slots__ = ("totals", "count", "by_pid")

    def __init__(self) -> None:
        self.totals = [0] * NTYPES
        self.count = 0
        # pid -> bytes by BufferType, then live entries at [_N]. A PID is listed while it owns an entry here.
        self.by_pid: dict[int, list[int]] = {}




def _space(buffer_type: int) -> int:
    """The id space of a type: 0 buffers, 1 CBs, 2 kernels (each has its own ids)."""
    return 1 if buffer_type == _CB else 2 if buffer_type == _KERNEL else 0


def _rows_as_buffers(table, strings: dict, space: int = -1) -> Iterator[Buffer]:
    """Buffers made from the live rows of ``table`` (of one id space, or all), in row order."""
    rows_of = table.rows
    pos = 0
    while True:
        rows, _slots, pos = rows_of(pos, _CHUNK, space)
        if not rows:
            return
        for dev, bid, bt, size, pid, refs, ts, seq, has in rows:
            if has:
                name, trace = strings.get((_space(bt), dev, bid), ("", ""))
                yield Buffer(dev, bid, bt, size, pid, refs, ts, seq, name, trace)
            else:
                yield Buffer(dev, bid, bt, size, pid, refs, ts, seq)


#: Columns of a table row (``Table.rows``), for :meth:`Registry.top` / :meth:`BufferList.top` orders.
COL_DEVICE, COL_ID, COL_TYPE, COL_SIZE, COL_PID, COL_REFS, COL_TS, COL_SEQ = range(8)
#: rows fetched per call while ranking (a list of this many row tuples at a time)
_RANK_CHUNK = 16384


#: (byte offset, width, memoryview format) of each column in a BUFFER record (``Table.encode``,
#: :data:`tt_memtop.core.eventcodec.BUFFER`: ``<iQBQiIqQHH``, 49 B)
_RECORD_COLS = {COL_DEVICE: (0, 4, "i"), COL_ID: (4, 8, "Q"), COL_TYPE: (12, 1, "B"), COL_SIZE: (13, 8, "Q"),
                COL_PID: (21, 4, "i"), COL_REFS: (25, 4, "I"), COL_TS: (29, 8, "q"), COL_SEQ: (37, 8, "Q")}
_RECORD = struct.Struct("<iQBQiIqQHH")
#: records encoded per call while ranking (about 3 MB of them at a time)
_RANK_BLOCK = 65536


def _record_column(data: bytes, n: int, col: int):
    """Column ``col`` of ``n`` encoded records as a sequence of ints: strided byte copies, no object per row."""
    off, width, fmt = _RECORD_COLS[col]
    if width == 1:
        return data[off::_BUFFER_RECORD]
    out = bytearray(width * n)
    for k in range(width):
        out[k::width] = data[off + k::_BUFFER_RECORD]
    return memoryview(out).cast(fmt)


def _rank(table, strings: dict, counts: list[int], limit: int, order, smallest: bool,
          devices, types, pids, where) -> tuple[int, list[Buffer]]:
    """:meth:`Registry.top`: from the table's encoded records (its columns, a few C-level copies per
    block) when no row predicate needs names, else from its row tuples."""
    if where is None and sys.byteorder == "little":
        return _rank_records(table, strings, limit, order, smallest, devices, types, pids)
    return _rank_rows(table, strings, counts, limit, order, smallest, devices, types, pids, where)


def _rank_records(table, strings: dict, limit: int, order, smallest: bool, devices, types,
                  pids) -> tuple[int, list[Buffer]]:
    """The selection of :func:`_rank_rows` over blocks of encoded records: the first order column and the
    filter columns are cut out of each block as arrays, the block's best ``limit`` values (and the
    heap's worst) bound what can win, and only those records are unpacked and decorated."""
    limit = max(0, limit)
    spec = [(c, -s if smallest else s) for c, s in order] or [(COL_SIZE, 1)]
    col, sign = spec[0]
    heap: list[tuple] = []
    push, replace = heapq.heappush, heapq.heapreplace
    unpack = _RECORD.unpack_from
    matched = 0
    idx = 0  # records met so far: with the id space, the order of buffers() (ties go to the first)

    def consider(row: tuple, i: int) -> None:
        bt = row[2]
        item = (*[s * row[c] for c, s in spec], -((_space(bt) << 40) | i), row)
        if len(heap) < limit:
            push(heap, item)
        elif item > heap[0]:
            replace(heap, item)

    pos = 0
    while True:
        data, nxt, special = table.encode(pos, _RANK_BLOCK)
        n = len(data) // _BUFFER_RECORD
        if n:
            sel = range(n)
            if devices:
                dv = _record_column(data, n, COL_DEVICE)
                sel = [i for i in sel if dv[i] in devices]
            if types:
                tv = _record_column(data, n, COL_TYPE)
                sel = [i for i in sel if tv[i] in types]
            if pids:
                pv = _record_column(data, n, COL_PID)
                sel = [i for i in sel if pv[i] in pids]
            matched += len(sel)
            if limit and sel:
                v = _record_column(data, n, col)
                vals = v if isinstance(sel, range) else [v[i] for i in sel]
                big = len(vals) >= 4 * limit  # worth a first cut by the block's own limit-th best
                if sign > 0:  # a winner's value is at least the block's limit-th best, and the heap's worst
                    bound = heapq.nlargest(limit, vals)[-1] if big else None
                    if len(heap) >= limit and (bound is None or heap[0][0] > bound):
                        bound = heap[0][0]
                    cand = sel if bound is None else [i for i in sel if v[i] >= bound]
                else:
                    bound = heapq.nsmallest(limit, vals)[-1] if big else None
                    if len(heap) >= limit and (bound is None or -heap[0][0] < bound):
                        bound = -heap[0][0]
                    cand = sel if bound is None else [i for i in sel if v[i] <= bound]
                for i in cand:
                    consider((*unpack(data, i * _BUFFER_RECORD)[:8], False), idx + i)
            idx += n
        if special >= 0:  # a row with a name or a stack trace: encoded apart, taken as a row
            row = table.row(special)
            if ((not devices or row[0] in devices) and (not types or row[2] in types)
                    and (not pids or row[4] in pids)):
                matched += 1
                if limit:
                    consider(row, idx)
            idx += 1
        elif not n:
            break
        pos = nxt
    return matched, _winners(heap, strings)


def _winners(heap: list[tuple], strings: dict) -> list[Buffer]:
    heap.sort(reverse=True)
    out = []
    for item in heap:
        dev, bid, bt, size, pid, refs, ts, seq, has = item[-1]
        name, trace = strings.get((_space(bt), dev, bid), ("", "")) if has else ("", "")
        out.append(Buffer(dev, bid, bt, size, pid, refs, ts, seq, name, trace))
    return out


def _rank_rows(table, strings: dict, counts: list[int], limit: int, order, smallest: bool,
               devices, types, pids, where) -> tuple[int, list[Buffer]]:
    """The selection behind :meth:`Registry.top`: one pass over the row tuples, no Buffer per row.

    A heap keeps the best ``limit`` rows so far; once it is full, each chunk of rows is first cut
    (a list comprehension over the tuples) to those whose first order column is at least as good as
    the heap's worst, so almost no row is ever decorated. Ties on the whole order go to the row met
    first (buffers, then CBs, then kernels, each in row order), as ``heapq.nlargest`` /
    ``nsmallest`` over :meth:`Registry.buffers` would do.
    """
    if limit <= 0:
        limit = 0
    spec = [(c, -s if smallest else s) for c, s in order] or [(COL_SIZE, 1)]
    col, sign = spec[0]
    heap: list[tuple] = []
    push, replace = heapq.heappush, heapq.heapreplace
    matched = 0
    for space in range(3):
        if not counts[space]:
            continue
        pos = 0
        tie_base = space << 40
        while True:
            rows, slots, pos = table.rows(pos, _RANK_CHUNK, space)
            if not rows:
                break
            pairs = zip(slots, rows, strict=True)
            if devices:
                pairs = [p for p in pairs if p[1][0] in devices]
            if types:
                pairs = [p for p in pairs if p[1][2] in types]
            if pids:
                pairs = [p for p in pairs if p[1][4] in pids]
            if where is not None:
                pairs = [p for p in pairs
                         if where(p[1], strings.get((_space(p[1][2]), p[1][0], p[1][1]), ("", ""))[0]
                                  if p[1][8] else "")]
            if devices or types or pids or where is not None:
                matched += len(pairs)
            else:
                matched += len(rows)
            if not limit:
                continue
            if len(heap) >= limit:  # only rows that can enter the heap: as good as its worst on the first column
                worst = heap[0][0]
                if sign > 0:
                    pairs = [p for p in pairs if p[1][col] >= worst]
                else:
                    pairs = [p for p in pairs if p[1][col] <= -worst]
            for slot, r in pairs:
                item = (*[s * r[c] for c, s in spec], -(tie_base + slot), r)
                if len(heap) < limit:
                    push(heap, item)
                elif item > heap[0]:
                    replace(heap, item)
    return matched, _winners(heap, strings)


class BufferList:
    """The live entries at one instant, as Buffers made while iterating (a copy of the rows, not of objects).

    What :meth:`Registry.buffer_list` gives a worker thread to scan while the registry changes: taking
    it copies the columns (C-level, a few ms for a million rows), not a million objects.
    """

    __slots__ = ("_rows", "_strings", "_counts")

    def __init__(self, rows, strings: dict, counts: list[int]) -> None:
        self._rows = rows
        self._strings = strings
        self._counts = counts

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Buffer]:
        for space in range(3):
            if self._counts[space]:
                yield from _rows_as_buffers(self._rows, self._strings, space)

    def __getitem__(self, i):
        return list(self)[i]

    def top(self, limit: int, order=((COL_SIZE, 1),), *, smallest: bool = False, devices=(), types=(), pids=(),
            where=None) -> tuple[int, list[Buffer]]:
        """:meth:`Registry.top` over these entries (a worker thread ranks them while the registry changes)."""
        return _rank(self._rows, self._strings, self._counts, limit, order, smallest, devices, types, pids, where)


class FrozenState:
    """The registry as of ``seq``, held while a subscriber's snapshot is encoded piecemeal.

    A frozen view of the rows (:meth:`Table.freeze`: no copy of them, only of their flags and ref
    counts, ~5 B an entry; the table neither moves nor reuses rows while it is open), a copy of the
    rare names and of the per-device totals. Release it with :meth:`Registry.thaw`.
    """

    __slots__ = ("seq", "totals", "_rows", "_strings", "_counts")

    def __init__(self, seq: int, rows, strings: dict, totals: dict[int, tuple[int, list[int]]],
                 counts: list[int]) -> None:
        self.seq = seq
        self._rows = rows
        self._strings = strings
        self.totals = totals  # device -> (live buffers, bytes by type)
        self._counts = counts

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else 0

    def buffers(self) -> BufferList:
        """The frozen entries (buffers, then CBs, then kernels), made while iterating."""
        return BufferList(self._rows, self._strings, self._counts)

    def encode(self, pos: int, n: int) -> tuple[bytes, int]:
        """BUFFER records (:func:`eventcodec.encode_buffer`) of up to about ``n`` entries from row ``pos``
        on (row order: a subscriber's mirror gets the same set, in its own order); returns (bytes,
        next pos), pos past the end when done."""
        from .eventcodec import encode_buffer

        out = []
        encode = self._rows.encode
        while n > 0:
            data, nxt, special = encode(pos, n)
            out.append(data)
            n -= len(data) // _BUFFER_RECORD + 1
            pos = nxt
            if special < 0:
                break
            dev, bid, bt, size, pid, refs, ts, seq, _has = self._rows.row(special)
            name, trace = self._strings.get((_space(bt), dev, bid), ("", ""))
            out.append(encode_buffer(Buffer(dev, bid, bt, size, pid, refs, ts, seq, name, trace)))
        return b"".join(out), pos

    def encoded_size(self) -> int:
        """Bytes :meth:`encode` produces for all the entries (the SNAPSHOT's length is sent before them)."""
        from .eventcodec import _b

        n = len(self) * _BUFFER_RECORD
        for name, trace in self._strings.values():
            n += len(_b(name)) + len(_b(trace))
        return n

    @property
    def done_at(self) -> int:
        """The row position past the last row (what :meth:`encode` returns once everything is encoded)."""
        return self._rows.nslots if self._rows is not None else 0

    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()
        self._rows = None
        self._strings = {}


_BUFFER_RECORD = 49  # eventcodec.BUFFER.size


class Registry:
    """Live buffers and per-device / per-process totals, driven by messages or by events.

    Bookkeeping per change is two dict look-ups (device, then owner PID within it); per-process
    figures (:meth:`pids`, :meth:`pid_totals`, :meth:`pid_count`) are summed over devices on demand.
    ``pure``: True forces the pure-Python table, None (default) takes the compiled one when built.
    """

    def __init__(self, pure: bool | None = None) -> None:
        self._pure = pure
        self._table_class = table_class(pure)
        self._reset()

    def _reset(self) -> None:
        # rows keyed by (id space, device, buffer_id): buffers, CBs and kernels may share ids
        self._t = self._table_class()
        self._strings: dict[tuple[int, int, int], tuple[str, str]] = {}  # key -> (name, stack trace)
        self._counts = [0, 0, 0]  # live entries per id space
        self._usage: dict[int, _DeviceUsage] = {}  # every device that has ever held something
        self._exiting: dict[int, tuple[int, int]] = {}  # pid -> (bytes, entries) removed so far by a sliced cleanup
        self.seq = 0  # sequence number of the last event produced or applied
        self.unknown_frees = 0
        self.unstorable = 0  # entries whose fields no table column can hold (never from a valid message)
        self.messages = 0

    @property
    def native(self) -> bool:
        """True when the compiled table holds the rows."""
        return self._table_class.__module__ != __name__.rsplit(".", 1)[0] + ".table"

    # ------------------------------------------------------------------ queries
    def _buffer(self, slot: int) -> Buffer:
        dev, bid, bt, size, pid, refs, ts, seq, has = self._t.row(slot)
        if has:
            name, trace = self._strings.get((_space(bt), dev, bid), ("", ""))
            return Buffer(dev, bid, bt, size, pid, refs, ts, seq, name, trace)
        return Buffer(dev, bid, bt, size, pid, refs, ts, seq)

    def get(self, device: int, buffer_id: int, buffer_type: int = 0) -> Buffer | None:
        """A copy of the live entry at (device, buffer_id) in ``buffer_type``'s id space, or None."""
        s = self._t.find(_space(buffer_type), device, buffer_id)
        return self._buffer(s) if s >= 0 else None

    def buffers(self) -> Iterator[Buffer]:
        """Every live entry (as Buffers made on demand): buffers, then CBs, then kernels, each in allocation order."""
        for space in range(3):
            if self._counts[space]:
                yield from _rows_as_buffers(self._t, self._strings, space)

    def buffer_list(self) -> BufferList:
        """The live entries of :meth:`buffers` at this instant: a consistent view that a worker thread
        can scan while the registry keeps changing (a copy of the rows; Buffers are made while iterating)."""
        return BufferList(self._t.copy(), dict(self._strings), list(self._counts))

    def top(self, limit: int, order=((COL_SIZE, 1),), *, smallest: bool = False, devices=(), types=(), pids=(),
            where=None) -> tuple[int, list[Buffer]]:
        """The best ``limit`` live entries, ranked from the table's rows (a Buffer only for each winner).

        ``order``: (column, sign) pairs, the ``COL_*`` columns of a row; the key is the tuple of
        ``sign * row[column]``, best = largest (``smallest``: best = smallest). Ties on the whole key
        go to the entry :meth:`buffers` yields first. ``devices`` / ``types`` / ``pids``: only
        entries in these sets (empty: all); ``where(row, name)``: a further predicate. Returns
        (entries that pass the filters, the winners best first).
        """
        return _rank(self._t, self._strings, self._counts, limit, order, smallest, devices, types, pids, where)

    def pools(self, keys, top_n: int) -> list[tuple[int, list[Buffer], dict[int, int]]]:
        """For each (device, buffer_type) of ``keys``: (live bytes, its ``top_n`` largest entries, largest first
        and ties in :meth:`buffers` order, {owner pid: bytes} in the order of each pid's first entry): one
        pass over the table's rows, a Buffer only for the top entries (what a peak capture needs)."""
        strings = self._strings
        out = []
        for nbytes, rows, by_pid in self._t.pools(keys, top_n):
            top = []
            for dev, bid, bt, size, pid, refs, ts, seq, has in rows:
                name, trace = strings.get((_space(bt), dev, bid), ("", "")) if has else ("", "")
                top.append(Buffer(dev, bid, bt, size, pid, refs, ts, seq, name, trace))
            out.append((nbytes, top, by_pid))
        return out

    def __len__(self) -> int:
        return len(self._t)

    @property
    def num_buffers(self) -> int:
        """Live buffers as the original counts them (CBs and kernels excluded)."""
        return self._counts[0]

    def nbytes(self) -> int:
        """Memory the entries take (rows, index, owner lists, names; not the small per-device totals)."""
        import sys

        return self._t.nbytes() + sys.getsizeof(self._strings) + sum(
            sys.getsizeof(k) + sys.getsizeof(n) + sys.getsizeof(t) for k, (n, t) in self._strings.items())

    def devices(self) -> list[int]:
        """Devices that have ever held something, ascending."""
        return sorted(self._usage)

    def device_totals(self, device: int) -> list[int]:
        """Bytes by :class:`BufferType` (7 entries; SYSTEM_MEMORY apart from L1_SMALL). A copy."""
        u = self._usage.get(device)
        return list(u.totals) if u is not None else [0] * NTYPES

    def device_count(self, device: int) -> int:
        u = self._usage.get(device)
        return u.count if u is not None else 0

    def wire_totals(self, device: int) -> tuple[int, int, int, int, int, int]:
        """(dram, l1, l1_small, trace, cb, kernel) as a RESPONSE carries them: SYSTEM_MEMORY in l1_small."""
        u = self._usage.get(device)
        if u is None:
            return (0, 0, 0, 0, 0, 0)
        t = u.totals
        return (t[0], t[1], t[2] + t[3], t[4], t[5], t[6])

    def pids(self) -> list[int]:
        """PIDs that own at least one live entry."""
        return sorted({p for u in self._usage.values() for p in u.by_pid})

    def pid_totals(self, pid: int) -> list[int]:
        out = [0] * NTYPES
        for u in self._usage.values():
            t = u.by_pid.get(pid)
            if t is not None:
                for i in range(NTYPES):
                    out[i] += t[i]
        return out

    def pid_device_totals(self, pid: int) -> dict[int, list[int]]:
        out = {}
        for d, u in self._usage.items():
            t = u.by_pid.get(pid)
            if t is not None and any(t[:_N]):
                out[d] = t[:_N]
        return out

    def pid_count(self, pid: int) -> int:
        return sum(u.by_pid[pid][_N] for u in self._usage.values() if pid in u.by_pid)

    def owned_count(self, pid: int) -> int:
        """Live entries (buffers, CBs, kernels) owned by ``pid``."""
        return self._t.owned_count(pid) if isinstance(pid, int) else 0

    # ------------------------------------------------------------------ bookkeeping
    def _account(self, device: int, t: int, size: int, pid: int, sign: int) -> None:
        """Add (sign +1) or take away (-1) an entry in the device and (pid, device) totals."""
        if sign < 0:
            size = -size
        u = self._usage.get(device)
        if u is None:
            u = self._usage[device] = _DeviceUsage()
        u.totals[t] += size
        if t != _CB and t != _KERNEL:
            u.count += sign
        pt = u.by_pid.get(pid)
        if pt is None:
            pt = u.by_pid[pid] = [0] * (NTYPES + 1)
        pt[t] += size
        pt[_N] += sign
        if not pt[_N]:
            del u.by_pid[pid]

    def _put(self, device: int, bid: int, btype: int, size: int, pid: int, refs: int, ts: int, seq: int,
             name: str, trace: str) -> None:
        """Store an entry, replacing any entry under its key (in its id space)."""
        t = self._t
        space = _space(btype)
        old = t.find(space, device, bid)
        if old >= 0:
            self._drop(old, t.row(old))
        try:
            t.add(device, bid, btype, size, pid, min(refs, _U32), ts, seq, bool(name or trace))
        except (OverflowError, TypeError):
            self.unstorable += 1  # a field no column holds (a crafted recording): not tracked, nothing broken
            return
        if name or trace:
            self._strings[space, device, bid] = (name, trace)
        self._counts[space] += 1
        self._account(device, btype, size, pid, +1)

    def _drop(self, slot: int, row: tuple) -> None:
        """Remove the entry at ``slot`` (whose row is ``row``). Other slots may move."""
        dev, bid, bt, size, pid, _refs, _ts, _seq, has = row
        space = _space(bt)
        if has:
            self._strings.pop((space, dev, bid), None)
        self._t.remove(slot)
        self._counts[space] -= 1
        self._account(dev, bt, size, pid, -1)

    def _name(self, row: tuple) -> str:
        if not row[8]:
            return ""
        return self._strings.get((_space(row[2]), row[0], row[1]), ("", ""))[0]

    def _stamp(self, ev: Event) -> Event:
        self.seq += 1
        ev.seq = self.seq
        return ev

    # ------------------------------------------------------------------ driven by messages (server side)
    def apply(self, msg: AllocMessage, ts_ns: int) -> Event | None:
        """Apply a decoded, validated request. Returns the event, or None for non-state messages."""
        t = msg.type
        self.messages += 1
        if t == MsgType.ALLOC:
            return self._alloc(msg, ts_ns, msg.buffer_type, msg.buffer_name, msg.stack_trace)
        if t == MsgType.FREE:
            return self._free(msg, ts_ns, msg.buffer_type if msg.buffer_type in (_CB, _KERNEL) else 0)
        if t == MsgType.CB_ALLOC:
            return self._alloc(msg, ts_ns, _CB, "", "")
        if t == MsgType.CB_FREE:
            return self._free(msg, ts_ns, _CB)
        if t == MsgType.KERNEL_LOAD:
            return self._alloc(msg, ts_ns, _KERNEL, _KERNEL_NAMES.get(msg.buffer_type, "Unknown"), "")
        if t == MsgType.KERNEL_UNLOAD:
            return self._free(msg, ts_ns, _KERNEL)
        self.messages -= 1
        return None

    def _alloc(self, msg: AllocMessage, ts_ns: int, btype: int, name: str, trace: str) -> Event:
        tb = self._t
        if btype != _CB and btype != _KERNEL:
            s = tb.find(0, msg.device_id, msg.buffer_id)
            if s >= 0:
                row = tb.row(s)
                refs = min(row[5] + 1, _U32)
                tb.set_refs(s, refs)
                return self._stamp(Event(_REF_INC, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                                         buffer_type=row[2], buffer_id=msg.buffer_id, size=msg.size,
                                         ref_count=refs))
        ev = self._stamp(Event(_ALLOC, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                               buffer_type=btype, buffer_id=msg.buffer_id, size=msg.size, ref_count=1,
                               name=name, stack_trace=trace))
        self._put(msg.device_id, msg.buffer_id, btype, msg.size, msg.process_id, 1, ts_ns, ev.seq, name, trace)
        return ev

    def _free(self, msg: AllocMessage, ts_ns: int, space_type: int) -> Event:
        tb = self._t
        s = tb.find(_space(space_type), msg.device_id, msg.buffer_id)
        if s < 0:
            self.unknown_frees += 1
            return self._stamp(Event(_FREE_UNKNOWN, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                                     buffer_type=space_type, buffer_id=msg.buffer_id, size=msg.size))
        row = tb.row(s)
        dev, bid, bt, size, pid, refs = row[:6]
        if space_type == 0:
            refs -= 1
            if refs > 0:
                tb.set_refs(s, refs)
                return self._stamp(Event(_REF_DEC, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=bt,
                                         buffer_id=bid, size=size, ref_count=refs))
        name = self._name(row)
        self._drop(s, row)
        return self._stamp(Event(_FREE, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=bt, buffer_id=bid,
                                 size=size, ref_count=0, name=name))

    def cleanup(self, dead_pids: Iterable[int], ts_ns: int, limit: int | None = None) -> list[Event]:
        """Remove every entry owned by each dead PID. Returns CLEANUP events, then one PROCESS_EXIT per PID.

        Whether a PID is dead is the caller's business (``kill(pid, 0)`` at the edge). ``limit``: remove
        at most that many entries in this call (a PID with a million entries would otherwise hold the
        caller for seconds); call again with the same PIDs until it returns no events. A PID's
        PROCESS_EXIT comes once its last entry is gone and sums every call's share.
        """
        out: list[Event] = []
        tb = self._t
        budget = limit if limit is not None else -1
        for pid in sorted(set(dead_pids)):
            if not isinstance(pid, int):
                continue
            done = self._exiting.pop(pid, None)
            slots = tb.owned(pid, budget + 1) if budget >= 0 else tb.owned(pid)
            if not slots and done is None:
                continue
            total, count = done if done is not None else (0, 0)
            partial = budget >= 0 and len(slots) > budget
            if partial:
                slots = slots[:budget]
            rows = [tb.row(s) for s in slots]
            # buffers, then CBs, then kernels, each in allocation order (as a scan of buffers() gives them)
            rows.sort(key=lambda r: _space(r[2]))
            for row in rows:
                dev, bid, bt, size, _pid, refs = row[:6]
                name = self._name(row)
                self._drop(tb.find(_space(bt), dev, bid), row)
                total += size
                out.append(self._stamp(Event(EventKind.CLEANUP, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=bt,
                                             buffer_id=bid, size=size, ref_count=refs, name=name)))
            count += len(rows)
            if budget >= 0:
                budget -= len(rows)
            if partial:
                self._exiting[pid] = (total, count)
                break
            # the sum of sizes a 72/112-byte client may send can pass 2**64: the event's u64 field saturates
            out.append(self._stamp(Event(EventKind.PROCESS_EXIT, ts_ns=ts_ns, pid=pid, size=min(total, _U64_MAX),
                                         ref_count=min(count, _U32))))
        return out

    def evict(self, device: int, buffer_id: int, buffer_type: int, ts_ns: int, text: str = "") -> Event | None:
        """Remove one entry whatever its ref_count (a stale or foreign claim on a key). Returns its CLEANUP event."""
        s = self._t.find(_space(buffer_type), device, buffer_id)
        if s < 0:
            return None
        row = self._t.row(s)
        dev, bid, bt, size, pid, refs = row[:6]
        name = self._name(row)
        self._drop(s, row)
        return self._stamp(Event(EventKind.CLEANUP, ts_ns=ts_ns, pid=pid, device=dev, buffer_type=bt,
                                 buffer_id=bid, size=size, ref_count=refs, name=name, text=text))

    def note(self, ev: Event) -> Event:
        """Stamp a non-state event (BAD_FRAME, DUMP, ...) with the next sequence number."""
        return self._stamp(ev)

    # ------------------------------------------------------------------ driven by events (mirrors)
    def apply_batch(self, events: list[Event]) -> int:
        """:meth:`apply_event` each event in turn (a monitor's batch); returns the sequence gaps seen (an
        event whose seq is beyond the last one + 1). Compiled when built (``tt_memtop/_native/mirror.c``:
        the same calls on the same objects); :meth:`_apply_one` is the reference."""
        if _native_mirror is not None:
            return _native_mirror.apply_batch(self, events)
        return sum(map(self._apply_one, events))

    def _apply_one(self, ev: Event) -> int:
        """One step of :meth:`apply_batch`: 1 if ``ev`` comes after a gap in the sequence, then applied."""
        seq = ev.seq
        gap = 1 if seq and self.seq and seq > self.seq + 1 else 0
        self.apply_event(ev)
        return gap

    def apply_event(self, ev: Event) -> None:
        """Replay an event produced by another registry. Non-state events only advance ``seq``."""
        if ev.seq:
            self.seq = ev.seq
        k = ev.kind
        if k == _ALLOC:
            self._put(ev.device, ev.buffer_id, ev.buffer_type, ev.size, ev.pid, 1, ev.ts_ns, ev.seq, ev.name,
                      ev.stack_trace)
        elif k == _FREE or k == _CLEANUP or k == _REF_INC or k == _REF_DEC:
            tb = self._t
            s = tb.find(_space(ev.buffer_type), ev.device, ev.buffer_id)
            if s >= 0:
                if k == _FREE or k == _CLEANUP:
                    self._drop(s, tb.row(s))
                elif isinstance(ev.ref_count, int):
                    tb.set_refs(s, min(max(ev.ref_count, 0), _U32))
        elif k == _FREE_UNKNOWN:
            self.unknown_frees += 1

    def load_snapshot(self, buffers: Iterable[Buffer], seq: int) -> None:
        """Replace the whole state with a snapshot taken at ``seq`` (Buffers are read, not kept)."""
        self._reset()
        put = self._put
        for b in buffers:
            put(b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, b.ref_count, b.alloc_ts_ns, b.alloc_seq,
                b.name, b.stack_trace)
        self.seq = seq

    def freeze(self) -> FrozenState:
        """The state as of now (:class:`FrozenState`, a few ms for a million entries); :meth:`thaw` it after use."""
        return FrozenState(self.seq, self._t.freeze(), dict(self._strings),
                           {d: (u.count, list(u.totals)) for d, u in sorted(self._usage.items())}, list(self._counts))

    def thaw(self, fz: FrozenState) -> None:
        """Let ``fz``'s copy go (idempotent)."""
        fz.close()

    def snapshot(self) -> list[Buffer]:
        """Every live entry as new Buffers (for subscribers, checkpoints)."""
        return list(self.buffers())

    def check_invariants(self) -> None:
        """Assert that every total equals the sum over live entries and none is negative (for tests)."""
        self._t.check()
        dev: dict[int, list[int]] = {}
        cnt: dict[int, int] = {}
        pid: dict[int, list[int]] = {}
        pd: dict[tuple[int, int], list[int]] = {}
        spaces = [0, 0, 0]
        owners: dict[int, int] = {}
        named = 0
        for b in self.buffers():
            dev.setdefault(b.device, [0] * NTYPES)[b.buffer_type] += b.size
            if b.buffer_type not in (_CB, _KERNEL):
                cnt[b.device] = cnt.get(b.device, 0) + 1
            pid.setdefault(b.owner_pid, [0] * NTYPES)[b.buffer_type] += b.size
            pd.setdefault((b.owner_pid, b.device), [0] * NTYPES + [0])[b.buffer_type] += b.size
            pd[b.owner_pid, b.device][_N] += 1
            spaces[_space(b.buffer_type)] += 1
            owners[b.owner_pid] = owners.get(b.owner_pid, 0) + 1
            named += bool(b.name or b.stack_trace)
            assert b.ref_count >= 1, b
        for d, u in self._usage.items():
            assert u.totals == dev.get(d, [0] * NTYPES), (d, u.totals, dev.get(d))
            assert all(x >= 0 for x in u.totals), (d, u.totals)
            assert u.count == cnt.get(d, 0), (d, u.count, cnt.get(d))
            for p, t in u.by_pid.items():
                assert t[_N] > 0 and all(x >= 0 for x in t), (d, p, t)
        assert set(dev) <= set(self._usage)
        assert {p: self.pid_totals(p) for p in self.pids()} == pid, ([self.pid_totals(p) for p in self.pids()], pid)
        assert sum(self.pid_count(p) for p in self.pids()) == len(self)
        assert {(p, d): t for d, u in self._usage.items() for p, t in u.by_pid.items()} == pd
        assert spaces == self._counts, (spaces, self._counts)
        assert sorted(self._t.owners()) == sorted(owners) and all(self.owned_count(p) == n for p, n in owners.items())
        assert len(self._strings) == named, (len(self._strings), named)


def _load_native_mirror():
    from .._native import load_set_up

    return load_set_up("mirror", Event, _DeviceUsage, (_ALLOC, _REF_INC, _REF_DEC, _FREE, _FREE_UNKNOWN, _CLEANUP))


_native_mirror = _load_native_mirror()


# ------------------------------------------------------------------ the server's run of ALLOC / FREE messages
_WIRE_TYPES = frozenset(WIRE_CLASSES.values())
_TYPE_LABELS = ("DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE")
_EV_ALLOC, _EV_REF_INC, _EV_REF_DEC, _EV_FREE, _EV_FREE_UNKNOWN = 1, 2, 3, 4, 5
#: alloc_ok_pid for "checked, but no PID settled yet": no int32 PID equals it
NO_PID = 1 << 40


def apply_wire(reg: Registry, msgs: list, start: int, ts: int, pre_s5: bool, cap: int, alloc_ok_pid: int | None,
               frees_ok: bool, inv_len: int, encode: bool, lines: int) -> tuple[int, bytes | None, bytes | None, int]:
    """:meth:`Registry.apply` each of ``msgs[start:]`` in turn while it is an ordinary ALLOC / FREE (the bulk
    of a server's traffic), the events and log lines made as bytes, no Event object. Returns ``(next,
    events, lines, nlines)``: ``msgs[start:next]`` were applied, ``msgs[next]`` is left to the caller's
    general rules. ``encode``: the events as EVENT records (eventcodec), else None; ``lines``: 0 none,
    1 hex ids, 2 decimal ids (the original's lines, UTF-8; else None). The compiled twin
    (tt_memtop/_native/ingest.c, :func:`wire_applier`) gives the same results.

    The run stops at (leaves to the caller) the first message that is not a WireMessage ALLOC / FREE of
    the buffer space; an ALLOC the original of the layout drops (``pre_s5``: the 72/112-byte rules, else
    also a size outside (0, MAX_SIZE]); an ALLOC while ``cap`` (> 0) entries are live; with peer checks
    (``alloc_ok_pid`` not None) an ALLOC of another PID, or a FREE unless ``frees_ok``; a device at or
    beyond ``inv_len`` (>= 0); an entry of a type past TRACE in the way, or a named one a FREE would
    remove. Each message taken is what :meth:`Registry.apply` does, event for event.
    """
    if _EVENT_PACK is None:
        _init_event_pack()
    tb = reg._t
    find, row_of, set_refs, add, remove = tb.find, tb.row, tb.set_refs, tb.add, tb.remove
    account = reg._account
    counts = reg._counts
    pack = _EVENT_PACK
    wire = _WIRE_TYPES
    evs: list[bytes] = []
    text: list[str] = []
    add_ev, add_text = evs.append, text.append
    hex_ids = lines == 1
    checked = alloc_ok_pid is not None
    live = len(tb) if cap > 0 else 0
    seq = reg.seq
    applied = unknown = unstorable = 0
    n = len(msgs)
    i = start
    try:
        while i < n:
            m = msgs[i]
            if m.__class__ not in wire:
                break
            t, dev, size, bt, pid, bid = m[:6]
            if t == 1:
                if not (0 <= dev < MAX_DEVICES and bt <= 4 and (pre_s5 or 0 < size <= MAX_SIZE)):
                    break
                if cap > 0 and live >= cap:
                    break
                if checked and pid != alloc_ok_pid:
                    break
            elif t == 2:
                if bt == 5 or bt == 6 or (checked and not frees_ok):
                    break
            else:
                break
            if inv_len >= 0 and dev >= inv_len:
                break
            s = find(0, dev, bid)
            if t == 1:
                if s >= 0:
                    row = row_of(s)
                    ebt = row[2]
                    if not 0 <= ebt <= 4:
                        break
                    refs = min(row[5] + 1, _U32)
                    set_refs(s, refs)
                    kind = _EV_REF_INC
                else:
                    kind, ebt, refs = _EV_ALLOC, bt, 1
                    try:
                        add(dev, bid, bt, size, pid, 1, ts, seq + 1, False)
                    except (OverflowError, TypeError):
                        unstorable += 1
                    else:
                        counts[0] += 1
                        account(dev, bt, size, pid, +1)
                        live += 1
            elif s < 0:
                kind, ebt, refs = _EV_FREE_UNKNOWN, 0, 0
                unknown += 1
            else:
                row = row_of(s)
                dev, bid, ebt, size, pid, refs, _ts, _seq, has = row
                refs -= 1
                if not 0 <= ebt <= 4 or (has and refs <= 0):
                    break
                if refs > 0:
                    set_refs(s, refs)
                    kind = _EV_REF_DEC
                else:
                    remove(s)
                    counts[0] -= 1
                    account(dev, ebt, size, pid, -1)
                    live -= 1
                    kind, refs = _EV_FREE, 0
            seq += 1
            applied += 1
            i += 1
            if encode:
                add_ev(pack(seq, ts, kind, pid, dev, ebt, bid, size, refs, 0, 0, 0))
            if lines:
                ids = f"0x{bid:x}" if hex_ids else str(bid)
                if kind <= _EV_REF_INC:
                    add_text(f"✓ [PID {pid}] Allocated {size} bytes of {_TYPE_LABELS[ebt]} on device {dev} "
                             f"(buffer_id={ids}{f', ref_count={refs}' if kind == _EV_REF_INC else ''})")
                elif kind != _EV_FREE_UNKNOWN:
                    add_text(f"✗ [PID {pid}] Freed buffer {ids} on device {dev} ({size} bytes, "
                             f"{f'ref_count={refs} remaining' if refs > 0 else 'FINAL'})")
                else:
                    add_text(f"⚠ [PID {pid}] Deallocation for unknown buffer {ids} on device {dev} "
                             f"(allocated before tracking started)")
    finally:
        reg.seq = seq
        reg.messages += applied
        reg.unknown_frees += unknown
        reg.unstorable += unstorable
    return (i, b"".join(evs) if encode else None,
            ("\n".join(text) + "\n").encode("utf-8") if text else (b"" if lines else None), len(text))


_EVENT_PACK = None


def _init_event_pack() -> None:
    """eventcodec's EVENT packer (imported on first use: eventcodec imports this module)."""
    global _EVENT_PACK
    from .eventcodec import EVENT

    _EVENT_PACK = EVENT.pack


def wire_applier():
    """:func:`apply_wire`, compiled (tt_memtop/_native/ingest.c) when built and not turned off."""
    return native_wire_applier() or apply_wire


def native_wire_applier():
    """The compiled twin of :func:`apply_wire`, or None (not built, or MEMTOP_PURE_PYTHON)."""
    from .._native import load_set_up
    from .eventcodec import EVENT

    mod = load_set_up("ingest", _DeviceUsage, tuple(WIRE_CLASSES.values()), EVENT.format, MAX_DEVICES, MAX_SIZE)
    return mod.apply_wire if mod is not None else None
