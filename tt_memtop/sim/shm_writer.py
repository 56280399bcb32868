"""Write per-chip shared-memory regions the way TT-Metal's ``SharedMemoryStatsProvider`` (v4) does.

Why: so the SHM source, the demo and the tests run without hardware. Each simulated process
(a real child, with its own PID) attaches to the region of every chip it opens, as a TT-Metal
``Device`` does at initialisation:

* the first process creates ``tt_device_<chip_unique_id>_memory`` (mode 0600, ``ftruncate`` to
  ``sizeof(DeviceMemoryRegion)``), claims initialisation (``init_state`` 0 -> 1), writes the
  header, marks every chip slot unused but slot 0 (its own chip, ``chip_id`` = logical id) and
  publishes ``init_state`` = 'REDY' last;
* every attaching process reaps the slots of dead PIDs (``kill(pid, 0)``; EPERM is alive),
  subtracting their bytes from the totals, resets the totals if nobody is left, then claims its
  own slot (pid, zeroed counters, name from ``/proc/<pid>/comm``);
* an allocation adds its size to the region's total, the chip's entry and the process's slot (a
  free subtracts, saturating at 0): deltas, never recomputed sums;
* a process that exits releases its slot (its bytes subtracted, the slot zeroed, pid 0 last); a
  killed one leaves its slot behind for the next attacher to reap.

All offsets come from :mod:`tt_memtop.core.shm_layout` (``V4``). TT-Metal makes each update an
atomic read-modify-write; Python cannot, so writers of one region serialise with ``flock`` on the
file instead. Readers never lock: they see exactly what a TT-Metal reader sees.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections.abc import Callable

from ..core.protocol import BufferType
from ..core.shm_layout import (
    CHIP_UNUSED,
    INIT_IN_PROGRESS,
    INIT_READY,
    MAX_CHIPS,
    MAX_PROCESSES,
    NAME_LEN,
    V4,
    region_file_name,
)
from ..procs import pid_exists

__all__ = ["POOL_INDEX", "RegionWriter", "pid_alive", "sim_chip_unique_id"]

#: BufferType -> index of its pool in the region's counters (SYSTEM_MEMORY and KERNEL are not counted).
POOL_INDEX = {int(BufferType.DRAM): 0, int(BufferType.L1): 1, int(BufferType.L1_SMALL): 2,
              int(BufferType.TRACE): 3, int(BufferType.CB): 4}
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
L = V4


def sim_chip_unique_id(device: int) -> int:
    """A stable, made-up UMD chip_unique_id for simulated logical device ``device``."""
    return ((0x1834 + device // 2) << 32) | (0x51E0 + device)


def pid_alive(pid: int) -> bool:
    """``kill(pid, 0)``, as TT-Metal checks it: EPERM means the PID exists (another user's)."""
    return pid > 0 and pid_exists(pid)


def _now_ns() -> int:
    return time.time_ns()


class RegionWriter:
    """One process's attachment to one chip's region (a ``SharedMemoryStatsProvider``)."""

    def __init__(self, shm_dir: str, chip_unique_id: int, device_id: int, *, pid: int | None = None,
                 name: str | None = None, alive: Callable[[int], bool] = pid_alive,
                 clock: Callable[[], int] = _now_ns) -> None:
        self.path = os.path.join(shm_dir, region_file_name(chip_unique_id))
        self.chip_unique_id = chip_unique_id
        self.device_id = device_id
        self.pid = os.getpid() if pid is None else pid
        self.name = name if name is not None else _comm(self.pid)
        self.alive = alive
        self.clock = clock
        self.slot: int | None = None
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self.fd = os.open(self.path, os.O_RDWR)
        with self._locked():
            if os.fstat(self.fd).st_size < L.size:
                os.ftruncate(self.fd, L.size)
            self.mm = mmap.mmap(self.fd, L.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._attach()

    # ------------------------------------------------------------------ raw access
    def _u32(self, off: int) -> int:
        return _U32.unpack_from(self.mm, off)[0]

    def _set_u32(self, off: int, v: int) -> None:
        _U32.pack_into(self.mm, off, v)

    def _u64(self, off: int) -> int:
        return _U64.unpack_from(self.mm, off)[0]

    def _set_u64(self, off: int, v: int) -> None:
        _U64.pack_into(self.mm, off, v)

    def _add(self, off: int, delta: int) -> None:
        """Add ``delta`` (may be negative) to the u64 at ``off``, saturating at 0."""
        self._set_u64(off, max(0, self._u64(off) + delta))

    def _locked(self):
        return _FileLock(self.fd)

    # ------------------------------------------------------------------ provider behaviour
    def _attach(self) -> None:
        state = self._u32(L.init_state)
        version = self._u32(0)
        if state != INIT_READY or version != 4:
            if version in (2, 3) and self._live_pid_in_table():
                # TT-Metal takes an older layout over only when no live process owns a slot in it
                self.mm.close()
                os.close(self.fd)
                raise RuntimeError(f"{self.path}: a v{version} region still in use by a live process; not taken over")
            self._set_u32(L.init_state, INIT_IN_PROGRESS)
            self._initialize()
            self._set_u32(L.init_state, INIT_READY)  # published last
        self.reap_dead()
        if self._u32(16) == 0:  # nobody attached: clear what a killed predecessor left in the aggregates
            self._reset_aggregates()
        self.slot = self._claim()
        self._set_u64(24, 0)
        self._set_u64(32, self.chip_unique_id)
        self._set_u32(40, self.device_id)

    def _live_pid_in_table(self) -> bool:
        for i in range(MAX_PROCESSES):
            pid = _I32.unpack_from(self.mm, self._slot_base(i))[0]
            if pid > 0 and pid != self.pid and self.alive(pid):
                return True
        return False

    def _initialize(self) -> None:
        mm = self.mm
        mm[:L.init_state] = bytes(L.init_state)
        self._set_u32(0, 4)
        self._set_u64(8, self.clock())
        self._set_u64(32, self.chip_unique_id)
        self._set_u32(40, self.device_id)
        for i in range(MAX_CHIPS):
            self._set_u32(L.chips + i * L.chip_size, CHIP_UNUSED)
        self._set_u32(L.chips, self.device_id)  # chip_stats[0]: this chip, local

    def _reset_aggregates(self) -> None:
        for k in range(len(L.pools)):
            self._set_u64(L.totals + 8 * k, 0)
        for i in range(MAX_CHIPS):
            base = L.chips + i * L.chip_size
            if self._u32(base) != CHIP_UNUSED:
                for k in range(len(L.pools)):
                    self._set_u64(base + L.chip_counters + 8 * k, 0)

    def _slot_base(self, i: int) -> int:
        return L.processes + i * L.proc_size

    def _claim(self) -> int | None:
        for i in range(MAX_PROCESSES):
            if _I32.unpack_from(self.mm, self._slot_base(i))[0] == self.pid:
                return i
        for i in range(MAX_PROCESSES):
            base = self._slot_base(i)
            if _I32.unpack_from(self.mm, base)[0] == 0:
                _I32.pack_into(self.mm, base, self.pid)
                for k in range(len(L.pools)):
                    self._set_u64(base + L.proc_counters + 8 * k, 0)
                self._set_u64(base + L.proc_timestamp, self.clock())
                raw = self.name.encode()[:NAME_LEN - 1]
                self.mm[base + L.proc_name: base + L.proc_name + NAME_LEN] = raw.ljust(NAME_LEN, b"\0")
                self._set_u32(16, self._u32(16) + 1)  # reference_count
                self._set_u32(4, self._u32(4) + 1)  # num_active_processes
                return i
        return None  # table full: this process is not tracked (TT-Metal warns and records nothing)

    def _release(self, i: int) -> None:
        base = self._slot_base(i)
        for k in range(len(L.pools)):
            off = base + L.proc_counters + 8 * k
            self._add(L.totals + 8 * k, -self._u64(off))
            self._set_u64(off, 0)
        self._set_u64(base + L.proc_timestamp, 0)
        self.mm[base + L.proc_name: base + L.proc_name + NAME_LEN] = bytes(NAME_LEN)
        _I32.pack_into(self.mm, base, 0)  # claimable again: last
        self._set_u32(16, max(0, self._u32(16) - 1))
        self._set_u32(4, max(0, self._u32(4) - 1))
        self._set_u64(8, self.clock())

    def reap_dead(self) -> int:
        """Release the slots of PIDs that no longer exist; returns how many."""
        n = 0
        for i in range(MAX_PROCESSES):
            pid = _I32.unpack_from(self.mm, self._slot_base(i))[0]
            if pid > 0 and pid != self.pid and not self.alive(pid):
                self._release(i)
                n += 1
        return n

    def _chip_entry(self, chip_id: int) -> int | None:
        for i in range(MAX_CHIPS):
            if self._u32(L.chips + i * L.chip_size) == chip_id:
                return L.chips + i * L.chip_size
        for i in range(MAX_CHIPS):
            base = L.chips + i * L.chip_size
            if self._u32(base) == CHIP_UNUSED:
                self._set_u32(base, chip_id)
                self._set_u32(base + 4, 0)
                return base
        return None

    def record(self, buffer_type: int, size: int, allocate: bool, chip_id: int | None = None) -> None:
        """``record_allocation`` / ``record_deallocation`` of ``size`` bytes of ``buffer_type``."""
        if self.slot is None:
            return  # no slot, no bytes: TT-Metal records nothing for an untracked process
        k = POOL_INDEX.get(int(buffer_type))
        delta = size if allocate else -size
        with self._locked():
            if k is not None:
                self._add(L.totals + 8 * k, delta)
                chip = self._chip_entry(self.device_id if chip_id is None else chip_id)
                if chip is not None:
                    self._add(chip + L.chip_counters + 8 * k, delta)
            now = self.clock()
            self._set_u64(8, now)
            if k is not None:
                base = self._slot_base(self.slot)
                self._add(base + L.proc_counters + 8 * k, delta)
                self._set_u64(base + L.proc_timestamp, now)

    def close(self) -> None:
        """The provider's destructor: release our slot, reap the dead, reset if nobody is left."""
        if getattr(self, "mm", None) is None:
            return
        with self._locked():
            if self.slot is not None and _I32.unpack_from(self.mm, self._slot_base(self.slot))[0] == self.pid:
                self._release(self.slot)
            self.reap_dead()
            if self._u32(16) == 0:
                self._reset_aggregates()
        self.mm.close()
        self.mm = None
        os.close(self.fd)


class _FileLock:
    """``flock`` for the writers of one region (TT-Metal uses atomics; see the module docstring)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:  # closed by a refused attach
            pass


def _comm(pid: int) -> str:
    """What TT-Metal stores as the process name: ``/proc/<pid>/comm`` ("unknown" if unreadable)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.readline().strip()
    except OSError:
        return "unknown"


def play_shm(script, shm_dir: str, start: float, speed: float) -> int:
    """Play a :class:`~tt_memtop.sim.scenarios.ProcessScript` into the regions in ``shm_dir``.

    The process attaches to the region of each of its devices first (as ``Device`` init does), then
    records every ALLOC / FREE / CB_ALLOC / CB_FREE when it falls due (KERNEL messages have no SHM
    counterpart), then detaches, unless the script leaks: then it dies without releasing anything,
    leaving its slots for the next attacher (or a reader) to find dead. Returns an exit status.
    """
    from ..core.protocol import MsgType

    os.makedirs(shm_dir, exist_ok=True)
    writers = {d: RegionWriter(shm_dir, sim_chip_unique_id(d), d) for d in script.devices}
    kinds = {int(MsgType.ALLOC): True, int(MsgType.FREE): False, int(MsgType.CB_ALLOC): True,
             int(MsgType.CB_FREE): False}
    plan = [(t, m) for t, m in script.messages if int(m.type) in kinds and m.device_id in writers]
    i, n = 0, len(plan)
    while i < n:
        now = (time.monotonic() - start) * speed
        due = plan[i][0]
        if due > now:
            time.sleep(min((due - now) / speed, 0.02))
            continue
        while i < n and plan[i][0] <= now:
            _t, m = plan[i]
            cb = int(m.type) in (int(MsgType.CB_ALLOC), int(MsgType.CB_FREE))
            writers[m.device_id].record(int(BufferType.CB) if cb else m.buffer_type, m.size, kinds[int(m.type)])
            i += 1
    remaining = script.exit_s / speed - (time.monotonic() - start)
    if remaining > 0:
        time.sleep(remaining)
    if script.leaks:  # killed: no destructor runs, the slots stay claimed with their bytes
        os._exit(0)
    for w in writers.values():
        w.close()
    return 0
