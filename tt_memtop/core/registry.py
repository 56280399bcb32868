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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .events import Event, EventKind
from .protocol import AllocMessage, BufferType, KernelType, MsgType

NTYPES = len(BufferType)
_CB = int(BufferType.CB)
_KERNEL = int(BufferType.KERNEL)
_KERNEL_NAMES = {int(k): k.name.title() for k in KernelType}
_ALLOC, _REF_INC, _REF_DEC, _FREE = EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE
_FREE_UNKNOWN, _CLEANUP = EventKind.FREE_UNKNOWN, EventKind.CLEANUP


class Buffer:
    """One live entry: a buffer, a circular buffer (CB) or a kernel binary."""

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

    #: Hashed by identity: the registry's owner index keys on entries. Two live entries are never
    #: equal (they differ in device, buffer_id or id space), so each is its own key.
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return (f"Buffer(dev={self.device}, id={self.buffer_id:#x}, type={BufferType(self.buffer_type).name}, "
                f"size={self.size}, pid={self.owner_pid}, refs={self.ref_count})")


def _key(device: int, buffer_id: int) -> int | tuple[int, int]:
    """The dict key of (device, buffer_id) within one id space: one int, ``buffer_id << 8 | device``.

    An int is half the size of a tuple, hashes faster and is not tracked by the GC. It is unique
    for any ``buffer_id`` (even negative) as long as ``0 <= device < 256`` (``MAX_DEVICES``); any
    other device falls back to the tuple, so the mapping stays one-to-one whatever the input.
    """
    return buffer_id << 8 | device if 0 <= device < 256 else (device, buffer_id)


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


def _space_rank(b: Buffer) -> int:
    return 1 if b.buffer_type == _CB else 2 if b.buffer_type == _KERNEL else 0


class FrozenState:
    """The registry as of ``seq``, held open while a subscriber's snapshot is encoded piecemeal.

    ``buffers`` are the live entries themselves (no copies: taking them is one C-level list copy,
    cheap even for millions of entries). Entries only ever change in place by their ref_count, so
    the registry records the original ref_count of an entry the first time it changes while this
    state is open (:meth:`ref_count` gives the value as of ``seq``). Release it with
    :meth:`Registry.thaw`.
    """

    __slots__ = ("seq", "buffers", "totals", "_refs")

    def __init__(self, seq: int, buffers: list[Buffer], totals: dict[int, tuple[int, list[int]]]) -> None:
        self.seq = seq
        self.buffers = buffers
        self.totals = totals  # device -> (live buffers, bytes by type)
        self._refs: dict[int, int] = {}

    def keep(self, b: Buffer) -> None:
        if b.alloc_seq <= self.seq and id(b) not in self._refs:
            self._refs[id(b)] = b.ref_count

    def ref_count(self, b: Buffer) -> int:
        return self._refs.get(id(b), b.ref_count) if self._refs else b.ref_count


class Registry:
    """Live buffers and per-device / per-process totals, driven by messages or by events.

    Bookkeeping per change is two dict look-ups (device, then owner PID within it); per-process
    figures (:meth:`pids`, :meth:`pid_totals`, :meth:`pid_count`) are summed over devices on demand.
    """

    def __init__(self) -> None:
        # One address space per kind of entry: buffers, CBs and kernels may share ids. Keys: _key().
        self._buffers: dict[int | tuple[int, int], Buffer] = {}
        self._cbs: dict[int | tuple[int, int], Buffer] = {}
        self._kernels: dict[int | tuple[int, int], Buffer] = {}
        self._usage: dict[int, _DeviceUsage] = {}  # every device that has ever held something
        # owner PID -> its live entries (dict keys: insertion-ordered, no values): what dead-process
        # cleanup removes, without scanning every entry
        self._owned: dict[int, dict[Buffer, None]] = {}
        # open snapshots (see :meth:`freeze`): each keeps the original ref_count of entries changed since
        self._frozen: list[FrozenState] = []
        self.seq = 0  # sequence number of the last event produced or applied
        self.unknown_frees = 0
        self.messages = 0

    # ------------------------------------------------------------------ queries
    def _space(self, buffer_type: int) -> dict[int | tuple[int, int], Buffer]:
        if buffer_type == _CB:
            return self._cbs
        if buffer_type == _KERNEL:
            return self._kernels
        return self._buffers

    def get(self, device: int, buffer_id: int, buffer_type: int = 0) -> Buffer | None:
        return self._space(buffer_type).get(_key(device, buffer_id))

    def buffers(self) -> Iterator[Buffer]:
        """Every live entry: buffers, then CBs, then kernels."""
        yield from self._buffers.values()
        yield from self._cbs.values()
        yield from self._kernels.values()

    def buffer_list(self) -> list[Buffer]:
        """The live entries of :meth:`buffers` as a new list (of the same objects, not copies): a
        consistent view that a worker thread can scan while the registry keeps changing."""
        return [*self._buffers.values(), *self._cbs.values(), *self._kernels.values()]

    def __len__(self) -> int:
        return len(self._buffers) + len(self._cbs) + len(self._kernels)

    @property
    def num_buffers(self) -> int:
        """Live buffers as the original counts them (CBs and kernels excluded)."""
        return len(self._buffers)

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

    # ------------------------------------------------------------------ bookkeeping
    def _account(self, b: Buffer, sign: int) -> None:
        """Add (sign +1) or take away (-1) ``b`` in the device and (pid, device) totals."""
        t = b.buffer_type
        size = b.size if sign > 0 else -b.size
        u = self._usage.get(b.device)
        if u is None:
            u = self._usage[b.device] = _DeviceUsage()
        u.totals[t] += size
        if t != _CB and t != _KERNEL:
            u.count += sign
        pt = u.by_pid.get(b.owner_pid)
        if pt is None:
            pt = u.by_pid[b.owner_pid] = [0] * (NTYPES + 1)
        pt[t] += size
        pt[_N] += sign
        if not pt[_N]:
            del u.by_pid[b.owner_pid]

    def _put(self, space: dict, key: int | tuple[int, int], b: Buffer) -> None:
        """Store ``b`` under ``key`` (its _key) in ``space`` (its id space), replacing any entry there."""
        old = space.get(key)
        if old is not None:
            self._account(old, -1)
            self._disown(old)
        space[key] = b
        self._account(b, +1)
        owned = self._owned.get(b.owner_pid)
        if owned is None:
            owned = self._owned[b.owner_pid] = {}
        owned[b] = None

    def _drop(self, space: dict, key: int | tuple[int, int], b: Buffer) -> None:
        del space[key]
        self._account(b, -1)
        self._disown(b)

    def _disown(self, b: Buffer) -> None:
        owned = self._owned.get(b.owner_pid)
        if owned is not None:
            owned.pop(b, None)
            if not owned:
                del self._owned[b.owner_pid]

    def _set_refs(self, b: Buffer, ref_count: int) -> None:
        """Change ``b.ref_count``, keeping the old value for every open snapshot that holds ``b``."""
        for fz in self._frozen:
            fz.keep(b)
        b.ref_count = ref_count

    def _insert(self, b: Buffer) -> None:
        self._put(self._space(b.buffer_type), _key(b.device, b.buffer_id), b)

    def _remove(self, b: Buffer) -> None:
        self._drop(self._space(b.buffer_type), _key(b.device, b.buffer_id), b)

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
        key = _key(msg.device_id, msg.buffer_id)
        space = self._space(btype)
        b = space.get(key)
        if b is not None and btype != _CB and btype != _KERNEL:
            self._set_refs(b, b.ref_count + 1)
            return self._stamp(Event(_REF_INC, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                                     buffer_type=b.buffer_type, buffer_id=msg.buffer_id, size=msg.size,
                                     ref_count=b.ref_count))
        ev = self._stamp(Event(_ALLOC, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                               buffer_type=btype, buffer_id=msg.buffer_id, size=msg.size, ref_count=1,
                               name=name, stack_trace=trace))
        self._put(space, key, Buffer(msg.device_id, msg.buffer_id, btype, msg.size, msg.process_id, 1, ts_ns,
                                     ev.seq, name, trace))
        return ev

    def _free(self, msg: AllocMessage, ts_ns: int, space_type: int) -> Event:
        space = self._space(space_type)
        key = _key(msg.device_id, msg.buffer_id)
        b = space.get(key)
        if b is None:
            self.unknown_frees += 1
            return self._stamp(Event(_FREE_UNKNOWN, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                                     buffer_type=space_type, buffer_id=msg.buffer_id, size=msg.size))
        if space_type == 0:
            self._set_refs(b, b.ref_count - 1)
            if b.ref_count > 0:
                return self._stamp(Event(_REF_DEC, ts_ns=ts_ns, pid=b.owner_pid, device=b.device,
                                         buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size,
                                         ref_count=b.ref_count))
        self._drop(space, key, b)
        return self._stamp(Event(_FREE, ts_ns=ts_ns, pid=b.owner_pid, device=b.device,
                                 buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size, ref_count=0,
                                 name=b.name))

    def cleanup(self, dead_pids: Iterable[int], ts_ns: int) -> list[Event]:
        """Remove every entry owned by each dead PID. Returns CLEANUP events, then one PROCESS_EXIT per PID.

        Whether a PID is dead is the caller's business (``kill(pid, 0)`` at the edge).
        """
        out: list[Event] = []
        for pid in sorted(set(dead_pids)):
            owned = self._owned.get(pid)
            if not owned:
                continue
            # buffers, then CBs, then kernels, each in allocation order (as a scan of buffers() gives them)
            victims = sorted(owned, key=_space_rank)
            total = 0
            for b in victims:
                self._remove(b)
                total += b.size
                out.append(self._stamp(Event(EventKind.CLEANUP, ts_ns=ts_ns, pid=pid, device=b.device,
                                             buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size,
                                             ref_count=b.ref_count, name=b.name)))
            out.append(self._stamp(Event(EventKind.PROCESS_EXIT, ts_ns=ts_ns, pid=pid, size=total,
                                         ref_count=len(victims))))
        return out

    def evict(self, device: int, buffer_id: int, buffer_type: int, ts_ns: int, text: str = "") -> Event | None:
        """Remove one entry whatever its ref_count (a stale or foreign claim on a key). Returns its CLEANUP event."""
        b = self.get(device, buffer_id, buffer_type)
        if b is None:
            return None
        self._remove(b)
        return self._stamp(Event(EventKind.CLEANUP, ts_ns=ts_ns, pid=b.owner_pid, device=b.device,
                                 buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size,
                                 ref_count=b.ref_count, name=b.name, text=text))

    def note(self, ev: Event) -> Event:
        """Stamp a non-state event (BAD_FRAME, DUMP, ...) with the next sequence number."""
        return self._stamp(ev)

    # ------------------------------------------------------------------ driven by events (mirrors)
    def apply_event(self, ev: Event) -> None:
        """Replay an event produced by another registry. Non-state events only advance ``seq``."""
        if ev.seq:
            self.seq = ev.seq
        k = ev.kind
        if k == _ALLOC or k == _FREE or k == _CLEANUP or k == _REF_INC or k == _REF_DEC:
            t = ev.buffer_type
            space = self._cbs if t == _CB else self._kernels if t == _KERNEL else self._buffers  # = _space(t)
            key = _key(ev.device, ev.buffer_id)
            if k == _ALLOC:
                self._put(space, key, Buffer(ev.device, ev.buffer_id, t, ev.size, ev.pid, 1, ev.ts_ns, ev.seq,
                                             ev.name, ev.stack_trace))
                return
            b = space.get(key)
            if b is not None:
                if k == _FREE or k == _CLEANUP:
                    self._drop(space, key, b)
                else:
                    self._set_refs(b, ev.ref_count)
        elif k == _FREE_UNKNOWN:
            self.unknown_frees += 1

    def owned_count(self, pid: int) -> int:
        """Live entries (buffers, CBs, kernels) owned by ``pid``."""
        return len(self._owned.get(pid, ()))

    def load_snapshot(self, buffers: Iterable[Buffer], seq: int) -> None:
        """Replace the whole state with a snapshot taken at ``seq``.

        The registry takes ownership of the Buffer objects (every producer makes fresh ones: a
        decoded SUBSCRIBE snapshot, :meth:`snapshot`, a log parser's state); not copying them halves
        the peak memory of attaching to a server with a million live buffers.
        """
        self.__init__()
        for b in buffers:
            self._insert(b)
        self.seq = seq

    def freeze(self) -> FrozenState:
        """The state as of now (:class:`FrozenState`), in O(entries) C-level copying; :meth:`thaw` it after use."""
        fz = FrozenState(self.seq, self.buffer_list(),
                         {d: (u.count, list(u.totals)) for d, u in sorted(self._usage.items())})
        self._frozen.append(fz)
        return fz

    def thaw(self, fz: FrozenState) -> None:
        """Stop tracking changes for ``fz`` (idempotent)."""
        if fz in self._frozen:
            self._frozen.remove(fz)

    def snapshot(self) -> list[Buffer]:
        """Copies of every live entry (for subscribers)."""
        return [b.copy() for b in self.buffers()]

    def check_invariants(self) -> None:
        """Assert that every total equals the sum over live entries and none is negative (for tests)."""
        dev: dict[int, list[int]] = {}
        cnt: dict[int, int] = {}
        pid: dict[int, list[int]] = {}
        pd: dict[tuple[int, int], list[int]] = {}
        for b in self.buffers():
            dev.setdefault(b.device, [0] * NTYPES)[b.buffer_type] += b.size
            if b.buffer_type not in (_CB, _KERNEL):
                cnt[b.device] = cnt.get(b.device, 0) + 1
            pid.setdefault(b.owner_pid, [0] * NTYPES)[b.buffer_type] += b.size
            pd.setdefault((b.owner_pid, b.device), [0] * NTYPES + [0])[b.buffer_type] += b.size
            pd[b.owner_pid, b.device][_N] += 1
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
        owners: dict[int, int] = {}
        for b in self.buffers():
            owners[b.owner_pid] = owners.get(b.owner_pid, 0) + 1
            assert b in self._owned[b.owner_pid], b
        assert {p: len(o) for p, o in self._owned.items()} == owners
