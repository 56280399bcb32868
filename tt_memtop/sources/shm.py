"""Source: mainline TT-Metal's per-chip shared-memory statistics (``/dev/shm/tt_device_*_memory``).

Why: every mainline TT-Metal process keeps these regions up to date, on by default, with no
server: the zero-config source. They hold totals only (per chip, and per process with its
name), so this source has ``TOTALS`` and ``PROCESSES`` but no per-buffer ``EVENTS``; the panes
that need events say how to get them.

Each scan lists the directory, maps every region read-only (kept mapped between scans; a file
that is replaced, resized or removed is remapped or dropped), copies it until two copies agree
(:func:`~tt_memtop.core.shm_layout.read_consistent`), parses it, checks the liveness of every
slot's PID (``kill(pid, 0)``; EPERM means alive) and builds the view (:mod:`tt_memtop.core.usage`).
Scans are cheap (tens of µs per region, see ``benchmarks/bench_shm.py``), so the default rate is
20 Hz; a sample is emitted when anything changed, and at least every :data:`KEEPALIVE_S` so
time-based views (phases, Δ) see time pass. Nothing is ever written to a region.

Capacities (for the bars): ``--arch``, else the architecture ``/sys/class/tenstorrent`` reports
for the installed cards (PCI device id), else Wormhole.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import time
from collections.abc import Callable

import anyio

from ..core.devices import DeviceInfo, Inventory, arch_spec
from ..core.shm_layout import (
    SHM_PREFIX,
    SHM_SUFFIX,
    RegionProblem,
    chip_unique_id_from_name,
    parse_region,
    read_consistent,
)
from ..core.usage import UsageView, build_view
from ..procs import pid_exists
from .base import Capability, Emit, Source, Status, TotalsSample

__all__ = ["CAPS", "DEFAULT_INTERVAL", "DEFAULT_SHM_DIR", "SHM_DIR_ENV", "ShmSource", "default_shm_dir",
           "detect_arch", "has_regions", "pid_alive", "totals_only_message"]

DEFAULT_SHM_DIR = "/dev/shm"
SHM_DIR_ENV = "TT_MEMTOP_SHM_DIR"
DEFAULT_INTERVAL = 0.05  # 20 Hz
KEEPALIVE_S = 1.0
MAX_READ = 16384  # bytes of a region file read: every layout fits (the largest is 9280)
SYSFS = "/sys/class/tenstorrent"
CAPS = frozenset({Capability.TOTALS, Capability.PROCESSES})
#: PCI device ids of Tenstorrent cards -> arch name in core.devices.ARCHS
PCI_ARCH = {0xFACA: "grayskull", 0x401E: "wormhole_b0", 0xB140: "blackhole"}


def default_shm_dir() -> str:
    return os.environ.get(SHM_DIR_ENV) or DEFAULT_SHM_DIR


def totals_only_message(shm_dir: str, interval: float) -> str:
    return (f"reading TT-Metal's shared-memory statistics in {shm_dir} every {interval * 1000:g} ms: totals per "
            f"device and per process, no per-buffer events. For the event feed and buffers run `memtop serve` "
            f"with a TT-Metal build that has the AllocationClient (TT_ALLOC_TRACKING_ENABLED=1)")


def pid_alive(pid: int) -> bool:
    """``kill(pid, 0)`` as TT-Metal checks it: EPERM means the PID exists (another user's process)."""
    return pid > 0 and pid_exists(pid)


def region_paths(shm_dir: str) -> list[str]:
    """The region files in ``shm_dir`` (``tt_device_<decimal id>_memory``), sorted."""
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return []
    return sorted(os.path.join(shm_dir, n) for n in names
                  if n.startswith(SHM_PREFIX) and n.endswith(SHM_SUFFIX) and chip_unique_id_from_name(n) is not None)


def has_regions(shm_dir: str) -> bool:
    return bool(region_paths(shm_dir))


def hardware_present(sysfs: str = SYSFS) -> bool:
    """Tenstorrent cards on this machine (the kernel driver lists them in ``/sys/class/tenstorrent``)?"""
    try:
        return bool(os.listdir(sysfs))
    except OSError:
        return False


def detect_arch(sysfs: str = SYSFS) -> str | None:
    """The arch of the installed Tenstorrent cards from ``/sys/class/tenstorrent/*/device/device``
    (None when there are none, or they differ)."""
    found = set()
    try:
        entries = os.listdir(sysfs)
    except OSError:
        return None
    for e in entries:
        try:
            with open(os.path.join(sysfs, e, "device", "device")) as f:
                found.add(PCI_ARCH.get(int(f.read().strip(), 16)))
        except (OSError, ValueError):
            continue
    found.discard(None)
    return found.pop() if len(found) == 1 else None


class _Mapped:
    """One region file mapped read-only, remapped when the file changes identity or size.

    The size is checked (``stat``) before every copy. TT-Metal only ever resizes a region between
    its layouts (``ftruncate`` to 8576, 8640 or 9280 bytes: three pages each), so a mapping can
    never reach past the end of the file (which would be SIGBUS) between that check and the copy.
    """

    __slots__ = ("path", "key", "mm", "size", "fd", "data", "parsed")

    def __init__(self, path: str) -> None:
        self.path = path
        self.data = b""  # the last consistent copy, and what it parsed to
        self.parsed = None
        self.key = None
        self.mm: mmap.mmap | None = None
        self.size = 0
        self.fd = -1

    def read(self) -> tuple[bytes, int, bool] | OSError:
        """(a consistent copy, or the last of several that disagreed; the file's size; consistent?)"""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.close()
            return exc
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device of that name must not block or be mapped
            self.close()
            return OSError(0, "not a regular file")
        key = (st.st_dev, st.st_ino, st.st_size)
        if key != self.key:
            self.close()
            if st.st_size == 0:
                self.key = key
                return b"", 0, True
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                # no layout is longer than MAX_READ: a huge file of that name costs no more than a region
                self.mm = mmap.mmap(self.fd, min(st.st_size, MAX_READ), mmap.MAP_SHARED, mmap.PROT_READ)
            except (OSError, ValueError) as exc:
                self.close()
                return exc if isinstance(exc, OSError) else OSError(str(exc))
            self.key, self.size = key, st.st_size
        mm = self.mm
        if mm is None:
            return b"", 0, True
        data, consistent = read_consistent(lambda: mm[:])
        return data, self.size, consistent

    def close(self) -> None:
        self.data, self.parsed = b"", None
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.key = None


class ShmSource(Source):
    """Sample the regions in ``shm_dir`` every ``interval`` s; emit a TotalsSample when something changed."""

    capabilities = CAPS
    local = True  # the PIDs in the slots are this machine's

    def __init__(self, shm_dir: str | None = None, interval: float = DEFAULT_INTERVAL, arch: str | None = None,
                 *, clock: Callable[[], int] = time.monotonic_ns, alive: Callable[[int], bool] = pid_alive,
                 sysfs: str = SYSFS, crosscheck: bool = False) -> None:
        self.shm_dir = shm_dir or default_shm_dir()
        self.interval = interval
        self.clock = clock
        self.alive = alive
        self.crosscheck = crosscheck
        found = None if arch else detect_arch(sysfs)
        self.arch = arch_spec(arch or found or "wormhole_b0")
        #: where the capacities come from: "--arch", "sysfs" (the installed cards) or "default"
        self.arch_source = "--arch" if arch else ("sysfs" if found else "default")
        self.description = f"TT-Metal shared memory ({self.shm_dir})"
        self.short_description = "shm"
        self._maps: dict[str, _Mapped] = {}
        self.last_view: UsageView | None = None
        self.scans = 0

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    def scan(self) -> UsageView:
        """One pass over every region: read, parse, check liveness, build the view."""
        paths = region_paths(self.shm_dir)
        for gone in set(self._maps) - set(paths):
            self._maps.pop(gone).close()
        scanned = []
        for path in paths:
            m = self._maps.get(path)
            if m is None:
                m = self._maps[path] = _Mapped(path)
            got = m.read()
            if isinstance(got, OSError):
                why = got.strerror or str(got)
                if isinstance(got, PermissionError):
                    why += " (TT-Metal creates regions mode 0600: run memtop as the user that runs TT-Metal)"
                scanned.append((path, RegionProblem("unreadable", f"cannot read {os.path.basename(path)}: {why}")))
                continue
            data, size, consistent = got
            if consistent and m.parsed is not None and data == m.data:
                scanned.append((path, m.parsed))  # unchanged since the last scan: nothing to parse
                continue
            parsed = parse_region(data, size, consistent=consistent,
                                  file_chip_id=chip_unique_id_from_name(os.path.basename(path)))
            m.data, m.parsed = (data, parsed) if consistent else (b"", None)
            scanned.append((path, parsed))
        pids = {s.pid for _p, r in scanned if not isinstance(r, RegionProblem) for s in r.slots if s.pid > 0}
        view = build_view(scanned, {pid: self.alive(pid) for pid in pids})
        self.last_view = view
        self.scans += 1
        return view

    def inventory(self, view: UsageView) -> Inventory:
        a = self.arch
        return Inventory(tuple(DeviceInfo(d, a.arch, a.num_dram_channels, a.dram_size_per_channel,
                                          a.l1_size_per_core, a.total_dram, a.total_l1)
                               for d in sorted(view.totals)))

    def sample(self) -> TotalsSample:
        view = self.scan()
        return TotalsSample(self.clock(), dict(view.totals), self.inventory(view), dict(view.processes),
                            list(view.regions), self.crosscheck)

    def status_message(self, view: UsageView) -> str:
        """Counts and problems first (the header shows the start), then what this source can give."""
        live = sum(1 for r in view.regions if r.state == "active")
        stale = sum(1 for r in view.regions if r.state in ("stale", "idle"))
        parts = [f"{live} active region{'s' if live != 1 else ''}"]
        if stale:
            parts.append(f"{stale} idle/stale")
        dead = sum(len(r.dead_slots) for r in view.regions)
        if dead:
            parts.append(f"{dead} slot{'s' if dead != 1 else ''} of dead PIDs")
        for r in view.problems():
            parts.append(f"not read: {os.path.basename(r.path)}: {r.message}")
        if not view.regions:
            parts.append(f"no tt_device_*_memory regions in {self.shm_dir} yet")
        return " · ".join(parts) + " · " + totals_only_message(self.shm_dir, self.interval)

    @staticmethod
    def _signature(view: UsageView) -> tuple:
        return (tuple(sorted(view.totals.items())),
                tuple((p.pid, p.name, p.alive, tuple(sorted(p.devices.items()))) for p in view.processes.values()),
                tuple((r.path, r.state, r.message, r.device, r.leftover) for r in view.regions))

    async def run(self, emit: Emit) -> None:
        last_sig = None
        last_status = None
        last_emit = 0.0
        try:
            while True:
                sample = self.sample()
                view = self.last_view
                assert view is not None
                status = self.status_message(view)
                if status != last_status:
                    emit(Status("connected", status, CAPS))
                    last_status = status
                sig = self._signature(view)
                now = time.monotonic()
                if sig != last_sig or now - last_emit >= KEEPALIVE_S:
                    emit(sample)
                    last_sig, last_emit = sig, now
                await anyio.sleep(self.interval)
        finally:
            self.close()




class WithShmCrossCheck(Source):
    """Our server's events for everything, plus TT-Metal's shared-memory totals beside them.

    Why: the two are independent records of the same allocations (the AllocationClient's messages,
    the SharedMemoryStatsProvider's counters). Where they disagree for more than a moment, events
    were lost or never sent (MonitorState.drift). Only the shared-memory samples are forwarded, as
    ``crosscheck`` samples: the event source stays the authority for the bars.
    """

    def __init__(self, events: Source, shm: ShmSource) -> None:
        self.events = events
        self.shm = shm
        shm.crosscheck = True
        self.description = f"{events.description} + shared-memory cross-check ({shm.shm_dir})"
        self.capabilities = getattr(events, "capabilities", frozenset())
        self.local = True

    async def run(self, emit: Emit) -> None:
        emit(self.shm.sample())  # before the first snapshot: one-shot output then has both

        def from_shm(update) -> None:
            if isinstance(update, TotalsSample):
                emit(update)

        async with anyio.create_task_group() as tg:
            tg.start_soon(self.shm.run, from_shm)
            await self.events.run(emit)
            tg.cancel_scope.cancel()


class ShmDemoSource(Source):
    """The demo in shared-memory mode: simulated TT-Metal processes write v4 regions in a private
    directory (``memtop simulate --shm``), and an :class:`ShmSource` reads them, as on a machine
    that runs a mainline TT-Metal release and no allocation server."""

    capabilities = CAPS
    local = True

    def __init__(self, scenario: str = "llama-t3k", speed: float = 0.25, loop: bool = True, *, seed: int = 0,
                 interval: float = DEFAULT_INTERVAL, arch: str | None = "wormhole_b0") -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.scenario, self.speed, self.loop, self.seed = scenario, speed, loop, seed
        self.interval, self.arch = interval, arch
        self.description = f"DEMO {scenario} at {speed:g}x, TT-Metal shared memory"
        self.runs = 0

    async def run(self, emit: Emit) -> None:
        import shutil
        import tempfile

        from ..sim.driver import first_failure, run_scenario

        tmpdir = tempfile.mkdtemp(prefix="memtop-shm-demo-")
        errors = tmpdir + ".stderr"  # beside the regions' directory (the source scans that one)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ShmSource(tmpdir, self.interval, self.arch).run, emit)
                why = None
                while True:
                    with open(errors, "w") as err:  # not the terminal: the monitor draws there
                        result = await run_scenario("", self.scenario, seed=self.seed, speed=self.speed,
                                                    shm_dir=tmpdir, stderr=err)
                    self.runs += 1
                    why = first_failure(result, errors)
                    if why or not self.loop:
                        break
                    await anyio.sleep(1.0)
                await anyio.sleep(0.5)
                emit(Status("ended", f"{self.description}: {why or 'scenario finished'}", CAPS))
                tg.cancel_scope.cancel()
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(errors)
