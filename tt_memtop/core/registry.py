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

    def copy(self) -> "Buffer":
        return Buffer(self.device, self.buffer_id, self.buffer_type, self.size, self.owner_pid, self.ref_count,
                      self.alloc_ts_ns, self.alloc_seq, self.name, self.stack_trace)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Buffer):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return (f"Buffer(dev={self.device}, id={self.buffer_id:#x}, type={BufferType(self.buffer_type).name}, "
                f"size={self.size}, pid={self.owner_pid}, refs={self.ref_count})")


class Registry:
    """Live buffers and per-device / per-process totals, driven by messages or by events."""

    def __init__(self) -> None:
        # One address space per kind of entry: buffers, CBs and kernels may share ids.
        self._buffers: dict[tuple[int, int], Buffer] = {}
        self._cbs: dict[tuple[int, int], Buffer] = {}
        self._kernels: dict[tuple[int, int], Buffer] = {}
        self._dev_totals: dict[int, list[int]] = {}  # device -> bytes by BufferType
        self._dev_counts: dict[int, int] = {}  # device -> live buffers (CB/KERNEL excluded, as num_buffers)
        self._pid_totals: dict[int, list[int]] = {}  # pid -> bytes by BufferType
        self._pid_dev_totals: dict[tuple[int, int], list[int]] = {}  # (pid, device) -> bytes by BufferType
        self._pid_counts: dict[int, int] = {}  # pid -> live entries
        self.seq = 0  # sequence number of the last event produced or applied
        self.unknown_frees = 0
        self.messages = 0

    # ------------------------------------------------------------------ queries
    def _space(self, buffer_type: int) -> dict[tuple[int, int], Buffer]:
        if buffer_type == _CB:
            return self._cbs
        if buffer_type == _KERNEL:
            return self._kernels
        return self._buffers

    def get(self, device: int, buffer_id: int, buffer_type: int = 0) -> Buffer | None:
        return self._space(buffer_type).get((device, buffer_id))

    def buffers(self) -> Iterator[Buffer]:
        """Every live entry: buffers, then CBs, then kernels."""
        yield from self._buffers.values()
        yield from self._cbs.values()
        yield from self._kernels.values()

    def __len__(self) -> int:
        return len(self._buffers) + len(self._cbs) + len(self._kernels)

    @property
    def num_buffers(self) -> int:
        """Live buffers as the original counts them (CBs and kernels excluded)."""
        return len(self._buffers)

    def devices(self) -> list[int]:
        """Devices that have ever held something, ascending."""
        return sorted(self._dev_totals)

    def device_totals(self, device: int) -> list[int]:
        """Bytes by :class:`BufferType` (7 entries; SYSTEM_MEMORY apart from L1_SMALL). A copy."""
        return list(self._dev_totals.get(device, (0,) * NTYPES))

    def device_count(self, device: int) -> int:
        return self._dev_counts.get(device, 0)

    def wire_totals(self, device: int) -> tuple[int, int, int, int, int, int]:
        """(dram, l1, l1_small, trace, cb, kernel) as a RESPONSE carries them: SYSTEM_MEMORY in l1_small."""
        t = self._dev_totals.get(device)
        if t is None:
            return (0, 0, 0, 0, 0, 0)
        return (t[0], t[1], t[2] + t[3], t[4], t[5], t[6])

    def pids(self) -> list[int]:
        """PIDs that own at least one live entry."""
        return sorted(p for p, n in self._pid_counts.items() if n > 0)

    def pid_totals(self, pid: int) -> list[int]:
        return list(self._pid_totals.get(pid, (0,) * NTYPES))

    def pid_device_totals(self, pid: int) -> dict[int, list[int]]:
        return {d: list(t) for (p, d), t in self._pid_dev_totals.items() if p == pid and any(t)}

    def pid_count(self, pid: int) -> int:
        return self._pid_counts.get(pid, 0)

    # ------------------------------------------------------------------ bookkeeping
    def _add(self, b: Buffer, sign: int) -> None:
        size = b.size * sign
        t = b.buffer_type
        dt = self._dev_totals.get(b.device)
        if dt is None:
            dt = self._dev_totals[b.device] = [0] * NTYPES
            self._dev_counts[b.device] = 0
        dt[t] += size
        if t != _CB and t != _KERNEL:
            self._dev_counts[b.device] += sign
        pt = self._pid_totals.get(b.owner_pid)
        if pt is None:
            pt = self._pid_totals[b.owner_pid] = [0] * NTYPES
        pt[t] += size
        key = (b.owner_pid, b.device)
        pdt = self._pid_dev_totals.get(key)
        if pdt is None:
            pdt = self._pid_dev_totals[key] = [0] * NTYPES
        pdt[t] += size
        n = self._pid_counts.get(b.owner_pid, 0) + sign
        if n:
            self._pid_counts[b.owner_pid] = n
        else:
            self._pid_counts.pop(b.owner_pid, None)
            self._pid_totals.pop(b.owner_pid, None)
            for k in [k for k in self._pid_dev_totals if k[0] == b.owner_pid]:
                del self._pid_dev_totals[k]

    def _insert(self, b: Buffer) -> None:
        space = self._space(b.buffer_type)
        key = (b.device, b.buffer_id)
        old = space.get(key)
        if old is not None:
            self._add(old, -1)
        space[key] = b
        self._add(b, +1)

    def _remove(self, b: Buffer) -> None:
        del self._space(b.buffer_type)[(b.device, b.buffer_id)]
        self._add(b, -1)

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
        key = (msg.device_id, msg.buffer_id)
        space = self._space(btype)
        b = space.get(key)
        if b is not None and btype != _CB and btype != _KERNEL:
            b.ref_count += 1
            return self._stamp(Event(EventKind.REF_INC, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                                     buffer_type=b.buffer_type, buffer_id=msg.buffer_id, size=msg.size,
                                     ref_count=b.ref_count))
        ev = self._stamp(Event(EventKind.ALLOC, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                               buffer_type=btype, buffer_id=msg.buffer_id, size=msg.size, ref_count=1,
                               name=name, stack_trace=trace))
        self._insert(Buffer(msg.device_id, msg.buffer_id, btype, msg.size, msg.process_id, 1, ts_ns, ev.seq,
                            name, trace))
        return ev

    def _free(self, msg: AllocMessage, ts_ns: int, space_type: int) -> Event:
        b = self._space(space_type).get((msg.device_id, msg.buffer_id))
        if b is None:
            self.unknown_frees += 1
            return self._stamp(Event(EventKind.FREE_UNKNOWN, ts_ns=ts_ns, pid=msg.process_id, device=msg.device_id,
                                     buffer_type=space_type, buffer_id=msg.buffer_id, size=msg.size))
        if space_type == 0:
            b.ref_count -= 1
            if b.ref_count > 0:
                return self._stamp(Event(EventKind.REF_DEC, ts_ns=ts_ns, pid=b.owner_pid, device=b.device,
                                         buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size,
                                         ref_count=b.ref_count))
        self._remove(b)
        return self._stamp(Event(EventKind.FREE, ts_ns=ts_ns, pid=b.owner_pid, device=b.device,
                                 buffer_type=b.buffer_type, buffer_id=b.buffer_id, size=b.size, ref_count=0,
                                 name=b.name))

    def cleanup(self, dead_pids: Iterable[int], ts_ns: int) -> list[Event]:
        """Remove every entry owned by each dead PID. Returns CLEANUP events, then one PROCESS_EXIT per PID.

        Whether a PID is dead is the caller's business (``kill(pid, 0)`` at the edge).
        """
        out: list[Event] = []
        for pid in sorted(set(dead_pids)):
            victims = [b for b in self.buffers() if b.owner_pid == pid]
            if not victims:
                continue
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

    def note(self, ev: Event) -> Event:
        """Stamp a non-state event (BAD_FRAME, DUMP, ...) with the next sequence number."""
        return self._stamp(ev)

    # ------------------------------------------------------------------ driven by events (mirrors)
    def apply_event(self, ev: Event) -> None:
        """Replay an event produced by another registry. Non-state events only advance ``seq``."""
        if ev.seq:
            self.seq = ev.seq
        k = ev.kind
        if k == EventKind.ALLOC:
            self._insert(Buffer(ev.device, ev.buffer_id, ev.buffer_type, ev.size, ev.pid, 1, ev.ts_ns, ev.seq,
                                ev.name, ev.stack_trace))
        elif k == EventKind.REF_INC or k == EventKind.REF_DEC:
            b = self._space(ev.buffer_type).get((ev.device, ev.buffer_id))
            if b is not None:
                b.ref_count = ev.ref_count
        elif k == EventKind.FREE or k == EventKind.CLEANUP:
            b = self._space(ev.buffer_type).get((ev.device, ev.buffer_id))
            if b is not None:
                self._remove(b)
        elif k == EventKind.FREE_UNKNOWN:
            self.unknown_frees += 1

    def load_snapshot(self, buffers: Iterable[Buffer], seq: int) -> None:
        """Replace the whole state with a snapshot taken at ``seq``."""
        self.__init__()
        for b in buffers:
            self._insert(b.copy())
        self.seq = seq

    def snapshot(self) -> list[Buffer]:
        """Copies of every live entry (for subscribers)."""
        return [b.copy() for b in self.buffers()]

    def check_invariants(self) -> None:
        """Assert that every total equals the sum over live entries and none is negative (for tests)."""
        dev: dict[int, list[int]] = {}
        cnt: dict[int, int] = {}
        pid: dict[int, list[int]] = {}
        for b in self.buffers():
            dev.setdefault(b.device, [0] * NTYPES)[b.buffer_type] += b.size
            if b.buffer_type not in (_CB, _KERNEL):
                cnt[b.device] = cnt.get(b.device, 0) + 1
            pid.setdefault(b.owner_pid, [0] * NTYPES)[b.buffer_type] += b.size
            assert b.ref_count >= 1, b
        for d, t in self._dev_totals.items():
            assert t == dev.get(d, [0] * NTYPES), (d, t, dev.get(d))
            assert all(x >= 0 for x in t), (d, t)
            assert self._dev_counts[d] == cnt.get(d, 0), (d, self._dev_counts[d], cnt.get(d))
        assert set(dev) <= set(self._dev_totals)
        assert {p: t for p, t in self._pid_totals.items()} == pid, (self._pid_totals, pid)
