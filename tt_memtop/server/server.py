"""The allocation server: a drop-in for ``allocation_server_poc`` plus a subscription feed.

Semantics, replies and log lines follow PROTOCOL.md §3–§5; the extension (SUBSCRIBE,
DUMP_REPORT, HELLO) is specified in docs/EXTENSION.md. Design points:

* **Producers never wait on monitors.** Each producer connection is read from the event loop's
  reader callback (producers.py); each read's whole frames are decoded at once (framing.py),
  applied to the registry, and the resulting events handed to every subscriber's bounded queue
  synchronously, all in that callback (no await on the ingest path; only a reply the peer does not
  take at once is finished by the connection's task). docs/PERFORMANCE.md has the figures. A subscriber whose queue overflows is told RESYNC and gets a
  fresh snapshot when its writer catches up.
* **One event loop, one registry.** All state changes happen on the loop thread, so a snapshot
  taken between two awaits is consistent, and sequence numbers are gap-free.
* **Never crash on input.** Bad frames and invalid messages are counted and published as BAD_FRAME
  events; our own diagnostics go to stderr once per kind, the original's warning lines every time
  (as it does); the connection is dropped only after many consecutive bad bytes.
* **The kernel, not the message, says who is connected** (``SO_PEERCRED``, see peers.py): liveness
  of PID-namespace PIDs, PID mismatches, and who may free whose buffers.
* **One connection's failure ends that connection only** (a monitor that vanishes mid-write, an
  unexpected error in a handler); running out of file descriptors refuses new connections; a full
  disk stops the recording; a log nobody reads drops log lines (server/logwriter.py). None of
  them stops ingest. docs/ROBUSTNESS.md lists what a producer can be made to wait for.
* **Encode once.** Each batch of events is encoded once; every subscriber and the recording share
  the bytes. A subscriber's snapshot is encoded in time slices from a frozen view of the registry
  (``Registry.freeze``), with other tasks running in between; events after it are queued meanwhile.

Deliberate differences from the original (documented in docs/COMPATIBILITY.md): no 8-device limit;
``kill(pid, 0)`` failing with EPERM means *alive* (the original wipes a live process of another
user); whole frames are always assembled (no stale tails).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import anyio
import anyio.abc

from .._compat import BaseExceptionGroup
from ..core import eventcodec as codec
from ..core import logformat as lf
from ..core.devices import Inventory
from ..core.events import Event, EventKind
from ..core.protocol import Layout
from ..core.registry import Registry
from ..procs import pid_exists
from .framing import FrameReader, parse_layout
from .logwriter import LogWriter
from .peers import Ownership, PeerCred, peer_credentials
from .producers import ProducerIngest

__all__ = ["AllocationServer", "ServerConfig", "ServerStats", "SocketInUseError", "pid_alive"]

#: What a peer that went away looks like (ends its connection quietly)
_PEER_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, ConnectionError, OSError)
#: Most events put in one EVENTS record on the subscription stream.
_MAX_EVENTS_PER_RECORD = 8192
#: Longest stretch of snapshot encoding between two yields to other tasks (seconds).
_SNAPSHOT_SLICE_S = 0.003
_SNAPSHOT_SLICE_MIN = 1024  # entries encoded before the clock is looked at again
#: most bytes in one snapshot slice: joining and sending tens of MB is itself a long step
_SNAPSHOT_SLICE_BYTES = 1 << 20
#: Most entries a periodic dead-process cleanup removes between two yields to other tasks (~10 ms)
_CLEANUP_SLICE = 4096
#: accept() errors that mean "out of descriptors or memory": refuse the connection, keep serving
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Collector settings while serving (as the TUI, ui/app.py). The registry is columns (core/table.py), so
#: its entries cost the collector nothing; these keep whatever else accumulates (queued batches, per-
#: connection state) from making full collections frequent. Young generations are still collected often;
#: everything alive is moved out of the collector (gc.freeze) each time the registry grew by GC_FREEZE_GROWTH.
GC_THRESHOLDS = (10_000, 10, 1_000)
GC_FREEZE_GROWTH = 200_000
#: Bytes per live entry the default --max-buffers assumes (measured by RSS over 1 M entries, bench_memory.py:
#: ~60-70 B with the compiled table, ~220 B in pure Python), with room to spare
_BYTES_PER_ENTRY = 100
_BYTES_PER_ENTRY_PURE = 250
_DEFAULT_MAX_ENTRIES = 50_000_000


def default_max_buffers() -> int:
    """50 M live entries, or fewer if half of this machine's memory would not hold them."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    per = _BYTES_PER_ENTRY if Registry().native else _BYTES_PER_ENTRY_PURE
                    return max(100_000, min(_DEFAULT_MAX_ENTRIES, total // 2 // per))
    except (OSError, ValueError, IndexError):
        pass
    return _DEFAULT_MAX_ENTRIES


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection needs a descriptor). Returns (soft, hard)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


#: listen() backlog (the kernel caps it at net.core.somaxconn)
LISTEN_BACKLOG = 65536


class SocketInUseError(RuntimeError):
    """Another server answers on the socket path (or the path is not a socket): we refuse to replace it."""


def pid_alive(pid: int) -> bool:
    """``kill(pid, 0)``: dead only if the process does not exist (EPERM means alive, unlike the original)."""
    return pid <= 0 or pid_exists(pid)


@dataclass
class ServerConfig:
    socket_path: str = "/tmp/tt_allocation_server.sock"
    inventory: Inventory = field(default_factory=Inventory)
    layout: Layout | int | str = "auto"
    log_format: lf.IdFormat = "hex"
    quiet: bool = False
    record: str | None = None
    cleanup_interval_s: float = 5.0
    stats_interval_s: float = 10.0
    extensions: bool = True
    #: print the device-detection block at start-up (S2+); False gives S1's banner
    detection_banner: bool = True
    #: where the inventory came from, for the detection block ("" = the original's "using TT-Metal APIs")
    inventory_origin: str = ""
    #: a device beyond the inventory seen on the wire is added with the last device's capacities
    grow_inventory: bool = False
    #: how long a connection of unknown layout may stay quiet before a lone frame is accepted
    detect_idle_s: float = 0.05
    #: events a subscriber may have queued before it is resynchronised
    subscriber_queue: int = 262_144
    #: a subscriber that was sent nothing for this long gets a HEARTBEAT with the server's clock
    #: (monitors tick their time rules on it); 0 turns heartbeats off
    heartbeat_s: float = 0.1
    max_bad_bytes: int = 4096
    #: ``memtop serve --journal``: restore the registry from this file at start, keep it up to date
    journal: str | None = None
    #: permissions of the socket file (0600: only our user's processes may connect), and its group
    socket_mode: int = 0o600
    socket_group: int | None = None
    #: accept every FREE whatever the sender's UID (peer credentials are still counted)
    trust_all: bool = False
    #: validate every request fully (protocol.validate) instead of as the original of its layout does
    strict: bool = False
    #: log every original-format warning once per kind instead of every time (as the original does)
    dedupe_warnings: bool = False
    #: live entries (buffers + CBs + kernels) beyond which new ALLOCs are refused; 0 = no bound
    max_buffers: int = 0


@dataclass
class ServerStats:
    connections: int = 0
    messages: int = 0
    bad_frames: int = 0
    bad_bytes: int = 0
    invalid_messages: int = 0
    subscribers: int = 0
    resyncs: int = 0
    #: connections whose messages report a PID other than the sender's (namespace PIDs / unexplained)
    pid_namespace: int = 0
    pid_mismatch: int = 0
    refused_frees: int = 0
    #: ALLOCs that replaced a live entry of another user (a stale or squatted address)
    evicted_claims: int = 0
    restored_buffers: int = 0
    #: connections closed at once because the server was out of file descriptors
    refused_connections: int = 0
    #: ALLOCs refused because --max-buffers live entries existed
    refused_allocs: int = 0
    #: connections that ended on an unexpected error in their handler (the server went on)
    connection_errors: int = 0
    #: None while recording (or not asked to); else why the recording stopped
    recording_error: str | None = None
    #: the longest the event loop was seen busy (a 50 ms ticker's worst lateness): what ingest waited at most
    max_loop_lag_s: float = 0.0
    #: the same, counting only CPU time this thread used (excludes time the OS did not run the server)
    max_loop_busy_s: float = 0.0


class _Subscriber:
    """A monitor's bounded queue of encoded records (shared bytes). ``push`` is O(1); it never blocks."""

    __slots__ = ("limit", "queue", "queued", "overflow", "dropped", "wake")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queue: list[tuple[bytes, int]] = []  # (encoded records, events in them)
        self.queued = 0  # events in queue
        self.overflow = False
        self.dropped = 0
        self.wake = anyio.Event()

    def push(self, chunk: bytes, nevents: int) -> None:
        if self.overflow:
            self.dropped += nevents
        elif nevents and self.queued + nevents > self.limit:
            self.overflow = True
            self.dropped += self.queued + nevents
            self.queue = []
            self.queued = 0
        else:
            self.queue.append((chunk, nevents))
            self.queued += nevents
        self.wake.set()

    def take(self, max_bytes: int = 1 << 20) -> bytes:
        """The oldest queued records, about ``max_bytes`` of them (joining a long backlog at once would stall)."""
        q = self.queue
        k, size, n = 0, 0, 0
        while k < len(q) and (k == 0 or size + len(q[k][0]) <= max_bytes):
            size += len(q[k][0])
            n += q[k][1]
            k += 1
        out = q[0][0] if k == 1 else b"".join(c for c, _ in q[:k])
        del q[:k]
        self.queued -= n
        if q:
            self.wake.set()  # more to send
        return out


class _Conn:
    __slots__ = ("cid", "reader", "peer", "pid_noted", "refusal_noted", "refused", "alloc_ok")

    def __init__(self, cid: int, reader: FrameReader, peer: PeerCred | None = None) -> None:
        self.cid = cid
        self.reader = reader
        self.peer = peer
        self.pid_noted = False  # the reported-vs-real PID line was logged for this connection
        self.refusal_noted = False
        self.refused = 0  # ALLOCs refused by --max-buffers
        #: (PID, Ownership.version): this connection's ALLOCs of PID need no peer check while the version holds
        self.alloc_ok: tuple[int, int] | None = None


class AllocationServer(ProducerIngest):
    """Serve the allocation protocol on a Unix socket until cancelled. See the module docstring.

    The ingest path (a producer connection's reads, checks, registry, log lines, replies) is
    :class:`~tt_memtop.server.producers.ProducerIngest`."""

    def __init__(self, config: ServerConfig, log: TextIO | None = None, err: TextIO | None = None,
                 is_alive: Callable[[int], bool] = pid_alive, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.config = config
        self.registry = Registry()
        self.stats = ServerStats()
        self._log = log if log is not None else sys.stdout  # None when stdout is closed (memtop serve >&-)
        self._err = err if err is not None else self._log
        self._logw = LogWriter(self._log, self._err)
        self._max_buffers = config.max_buffers
        self._is_alive = is_alive
        self._clock = clock
        self._layout = parse_layout(config.layout)
        self._id_format = config.log_format
        self._subs: set[_Subscriber] = set()
        self._snapshot_turn: anyio.Lock | None = None  # one snapshot slice at a time, server-wide (made on the loop)
        self._logged_kinds: set[str] = set()
        self._next_cid = 0
        self._recorder = None
        self._journal = None
        self._journal_sync_due = False
        self._socket_ino: int | None = None
        self.ownership = Ownership(config.trust_all)
        #: reported PID -> who really sent it (the last connection that differed), for INFO
        self._peer_notes: dict[int, dict] = {}
        self.started_wall_ns = time.time_ns()
        #: where the state before this server's start came from: "journal" (restored) or "unknown"
        self.prior_state = "unknown"
        self._status: dict = {}  # the server's health as monitors see it (STATUS records)
        self._status_frame = b""
        self._frozen_at = 0  # len(registry) at the last gc.freeze()
        self._render = lf.line_renderer()  # per-event log lines of a chunk -> (UTF-8 bytes, count)

    def ledger(self) -> tuple[Registry, ServerStats, Inventory]:
        """Read-only access for in-process observers (the metrics exporter): the registry, counters, inventory.

        Call it on the event loop thread, and only read what it returns.
        """
        return self.registry, self.stats, self.config.inventory

    # ================================================================== lifecycle
    async def serve(self, *, task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind, report started, serve until cancelled; on the way out print stats and unlink."""
        path = self.config.socket_path
        prepare_socket_path(path)
        notes = self._open_files(path)  # before binding: a bad path fails with nothing bound and nothing printed
        try:
            listener = await self._listen(path)
        except OSError as exc:
            self._close_files()
            raise _start_error(exc, f"cannot listen on {path}: {_bind_reason(path, exc)}") from exc
        with contextlib.suppress(OSError):
            self._socket_ino = os.stat(path).st_ino
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        restore_handler = self._install_loop_handler()
        try:
            self._out(lf.start_banner(path, self.config.inventory if self.config.detection_banner else None,
                                      self.config.inventory_origin))
            self._out([lf.CLEANUP_STARTED])
            self._out(notes, err=True)
            if self.prior_state == "journal":
                self.run_cleanup()  # owners that died while the server was down
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._every_async, self.config.cleanup_interval_s, self.run_cleanup_sliced)
                tg.start_soon(self._every, self.config.stats_interval_s, self._print_stats)
                tg.start_soon(self._watch_loop_lag)
                tg.start_soon(self._every, 1.0, self._maybe_freeze)
                if self._recorder is not None:
                    tg.start_soon(self._every, 0.2, self._flush_recording)
                if self._journal is not None:
                    tg.start_soon(self._every_async, 1.0, self._sync_journal)
                task_status.started(self)
                await self._accept_loop(listener, tg)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            gc.set_threshold(*gc_thresholds)
            restore_handler()
            self._shutdown()

    def _install_loop_handler(self) -> Callable[[], None]:
        """Errors the asyncio loop reports outside any task: logged once per kind, never a bare traceback.

        One is known and harmless: a socket's reader callback firing again for a wait that has just
        completed (``Future.set_result`` on a done future, InvalidStateError) when the loop is busy.
        """
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not the asyncio backend
            return lambda: None
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            exc = context.get("exception")
            if isinstance(exc, asyncio.InvalidStateError):
                return
            what = type(exc).__name__ if exc is not None else "error"
            self._once("loop:" + what, [f"⚠️  Event loop: {context.get('message', 'error')} ({what}: {exc}); "
                                        f"the server keeps running"])

        loop.set_exception_handler(handler)
        return lambda: loop.set_exception_handler(previous)

    def _maybe_freeze(self) -> None:
        """``gc.freeze()`` once the registry has grown by GC_FREEZE_GROWTH live entries (see there)."""
        n = len(self.registry)
        if n - self._frozen_at >= GC_FREEZE_GROWTH:
            gc.collect(1)  # young cycles go first; only what is really alive is frozen
            gc.freeze()
            self._frozen_at = n
        elif n < self._frozen_at:
            self._frozen_at = n

    async def _accept_loop(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        """Accept connections until cancelled. Out of descriptors: refuse (accept and close at once), log once.

        A spare descriptor is kept open for exactly that case: closing it lets us accept the
        waiting connection and close it, so the client gets EOF instead of hanging in the backlog
        and the loop does not spin on a listener that stays readable.
        """
        raw = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        spare = _open_spare()
        try:
            while True:
                try:
                    stream = await listener.accept()
                except anyio.BrokenResourceError as exc:
                    cause = exc.__cause__
                    if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_EXHAUSTED:
                        if isinstance(cause, OSError) and cause.errno in (errno.ECONNABORTED, errno.EPROTO,
                                                                          errno.EINTR):
                            continue
                        raise
                    self._once("accept:" + errno.errorcode.get(cause.errno, str(cause.errno)), [
                        f"⚠️  Refusing new connections: {os.strerror(cause.errno)} "
                        f"({self.stats.connections} accepted so far; raise the limit with ulimit -n). "
                        f"Existing connections are served as before"])
                    refused = False
                    if spare is not None:
                        os.close(spare)
                        spare = None
                        try:
                            conn, _ = raw.accept()
                        except OSError:
                            pass
                        else:
                            conn.close()
                            refused = True
                            self.stats.refused_connections += 1
                        spare = _open_spare()
                    if not refused:
                        await anyio.sleep(0.05)  # nothing could be freed: wait instead of spinning
                    continue
                tg.start_soon(self._handle_connection, stream)
        finally:
            if spare is not None:
                os.close(spare)

    def _shutdown(self) -> None:
        self._print_stats()
        st = self.stats
        if st.bad_frames or st.invalid_messages:
            self._out([f"⚠️  Rejected {st.invalid_messages} invalid messages and {st.bad_frames} bad frames "
                       f"({st.bad_bytes} bytes); the first of each kind is logged above"], err=True)
        self._out([lf.CLEANUP_STOPPED])
        path = self.config.socket_path
        with contextlib.suppress(OSError):
            if self._socket_ino is None or os.stat(path).st_ino == self._socket_ino:
                os.unlink(path)
        if self._recorder is not None:
            try:
                self._recorder.close()
            except OSError as exc:
                self._recording_failed(exc)
            self._recorder = None
        if self._journal is not None:
            with contextlib.suppress(OSError, ValueError):
                self._journal.close()
            self._journal = None
        self._out(lf.stop_banner())
        self._logw.close()
        report = os.environ.get("MEMTOP_SERVE_STATUS_FILE")  # benchmarks/bench_stall.py: figures at exit
        if report:
            import json

            with contextlib.suppress(OSError), open(report, "w") as f:
                json.dump(self.status(), f)

    async def _watch_loop_lag(self, tick: float = 0.05) -> None:
        """Track how late a 50 ms ticker wakes: wall-clock lateness, and the CPU this thread spent meanwhile.

        On a loaded machine the wall figure includes time the OS did not run us; the CPU figure
        bounds what the server's own work can have delayed ingest by.
        """
        clock, cpu = time.perf_counter, time.thread_time
        st = self.stats
        while True:
            t0, c0 = clock(), cpu()
            await anyio.sleep(tick)
            lag = clock() - t0 - tick
            if lag > st.max_loop_lag_s:
                st.max_loop_lag_s = lag
            busy = min(lag, cpu() - c0)
            if busy > st.max_loop_busy_s:
                st.max_loop_busy_s = busy

    # ================================================================== files and socket
    def _open_files(self, path: str) -> list[str]:
        """Open the journal (restoring its state) and the recording. Returns the stderr lines to log."""
        from ..recording import RecordingError, RecordingWriter

        cfg = self.config
        notes: list[str] = []
        if cfg.journal and cfg.record and os.path.realpath(cfg.journal) == os.path.realpath(cfg.record):
            raise OSError(f"--journal and --record name the same file ({cfg.record}); use two files")
        try:
            if cfg.journal:
                notes += self._restore_journal(path)
            if cfg.record:
                try:
                    self._recorder = RecordingWriter(cfg.record, cfg.inventory, socket_path=path, clock=self._clock)
                except (OSError, RecordingError) as exc:
                    raise OSError(f"cannot write the recording {cfg.record}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from exc
                rec = self._recorder
                if rec.previous_sessions:
                    notes.append(f"memtop serve: appending session {rec.previous_sessions + 1} to the recording "
                                 f"{cfg.record} (the earlier sessions are kept)")
                if rec.dropped_tail:
                    notes.append(f"memtop serve: {cfg.record}: cut {rec.dropped_tail} bytes of a torn last record "
                                 f"before appending")
        except BaseException:
            self._close_files()
            raise
        return notes

    def _restore_journal(self, path: str) -> list[str]:
        from .. import journal
        from ..recording import RecordingError

        cfg = self.config
        try:
            state = journal.load(cfg.journal)
        except (OSError, RecordingError) as exc:
            raise OSError(f"cannot read the journal {cfg.journal}: {getattr(exc, 'strerror', None) or exc}") from exc
        notes = []
        if state is not None:
            owners = {b.owner_pid for b in state.buffers}
            for pid, doc in state.owners.items():
                if pid in owners:
                    self.ownership.restore(pid, doc.get("uid"), doc.get("host_pids") or ())
            state.owners = {p: d for p, d in state.owners.items() if p in owners}
            self.registry.load_snapshot([b.copy() for b in state.buffers], state.seq)
            self.prior_state = "journal"
            self.stats.restored_buffers = len(state.buffers)
            total = sum(b.size for b in state.buffers)
            notes.append(f"memtop serve: restored {len(state.buffers)} buffers ({total / 1048576:g} MB) of "
                         f"{len(owners)} processes from the journal {cfg.journal}")
            if state.torn_note:
                notes.append(f"memtop serve: {state.torn_note}")
        try:
            self._journal = journal.open_compacted(cfg.journal, state, cfg.inventory, socket_path=path,
                                                   clock=self._clock)
        except (OSError, RecordingError) as exc:
            raise OSError(f"cannot write the journal {cfg.journal}: {getattr(exc, 'strerror', None) or exc}") from exc
        return notes

    def _close_files(self) -> None:
        for name in ("_recorder", "_journal"):
            w = getattr(self, name)
            if w is not None:
                with contextlib.suppress(OSError):
                    w.close()
                setattr(self, name, None)

    def _journal_failed(self, exc: OSError) -> None:
        """Stop journaling; empty the journal, so that a restart says "state unknown" instead of restoring stale state."""
        from ..recording import open_private

        self._out([f"⚠️  memtop serve: the journal {self.config.journal} cannot be written ({exc.strerror or exc}); "
                   f"journaling stopped, the server goes on (the journal was emptied: a restart will not restore "
                   f"stale state)"], err=True)
        with contextlib.suppress(OSError, ValueError):
            self._journal.close()
        self._journal = None
        with contextlib.suppress(OSError):
            fd = open_private(self.config.journal)
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)

    async def _sync_journal(self) -> None:
        """The journal's once-a-second fsync, in a worker thread: on a busy disk an fsync takes up to
        seconds, and on the loop thread every producer would wait for it."""
        j = self._journal
        if j is not None and self._journal_sync_due:
            self._journal_sync_due = False
            try:
                await anyio.to_thread.run_sync(j.sync)  # the file object's own lock orders it with writes
            except (OSError, ValueError) as exc:
                if self._journal is j:  # not already stopped (a closed file is ValueError) meanwhile
                    self._journal_failed(exc if isinstance(exc, OSError) else OSError(str(exc)))

    async def _listen(self, path: str):
        """Bind ``path`` with the configured mode (no moment with wider permissions) and group, and
        listen, in one synchronous step, under a temporary name renamed to ``path`` once listening:
        the socket file never exists without a listener behind it.
        (anyio's ``create_unix_listener`` binds and chmods in worker threads before it listens, so a
        TT-Metal process or monitor connecting in that window - milliseconds on a loaded host - was
        refused although the socket file was already there.)"""
        mode = self.config.socket_mode
        if not hasattr(anyio.abc.SocketListener, "from_socket"):  # anyio < 4.9: its own (threaded) bind
            return await self._listen_anyio(path, mode)
        # Even bind() and listen() back to back leave a window (two system calls) in which a client
        # spinning on the path is refused: bind a temporary name beside it, listen, then rename it into
        # place (atomic), unless the temporary name would be too long for a socket address.
        tmp = os.path.join(os.path.dirname(path) or ".", f".memtop-{os.getpid():x}.sock")
        if len(os.fsencode(tmp)) > 107 or len(os.fsencode(path)) > 107:
            tmp = path  # (a path too long to bind must fail as such, not be renamed into place)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if tmp != path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)  # a leftover of this PID (a crashed start): ours to replace
            old = os.umask(0o777 & ~mode)
            try:
                raw.bind(tmp)
            finally:
                os.umask(old)
            try:
                os.chmod(tmp, mode)
                if self.config.socket_group is not None:
                    os.chown(tmp, -1, self.config.socket_group)
                raw.listen(LISTEN_BACKLOG)
                if tmp != path:
                    os.rename(tmp, path)
            except BaseException:
                if tmp != path:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                raise
        except BaseException:
            raw.close()
            raise
        return await anyio.abc.SocketListener.from_socket(raw)

    async def _listen_anyio(self, path: str, mode: int):
        old = os.umask(0o777 & ~mode)
        try:
            listener = await anyio.create_unix_listener(path, mode=mode)
        finally:
            os.umask(old)
        if self.config.socket_group is not None:
            try:
                os.chown(path, -1, self.config.socket_group)
            except OSError:
                await listener.aclose()
                raise
        return listener

    def server_info(self) -> dict:
        """What monitors are told in the subscription greeting (INFO record) and show in --json."""
        st = self.stats
        own = self.ownership
        return {"started_wall_ns": self.started_wall_ns, "prior_state": self.prior_state,
                "journal": self.config.journal, "restored_buffers": st.restored_buffers,
                "pid_mismatch_connections": st.pid_mismatch, "pid_namespace_connections": st.pid_namespace,
                "refused_frees": own.refused_frees, "evicted_claims": st.evicted_claims,
                "trust_all": self.config.trust_all,
                "reported_pids": sorted(self._peer_notes.values(), key=lambda d: d["pid"])}

    async def _every(self, interval: float, fn: Callable[[], object]) -> None:
        """Call ``fn`` every ``interval`` s; an error in it is logged once per kind and the next call still happens."""
        if interval <= 0:
            return
        while True:
            await anyio.sleep(interval)
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a periodic job must not end the server
                name = getattr(fn, "__name__", "job")
                self._once(f"periodic:{name}:{type(exc).__name__}", [
                    f"⚠️  {name} failed ({type(exc).__name__}: {exc}); the server keeps running"])

    async def _every_async(self, interval: float, fn: Callable[[], object]) -> None:
        """:meth:`_every` for a coroutine function ``fn``."""
        if interval <= 0:
            return
        while True:
            await anyio.sleep(interval)
            try:
                await fn()
            except Exception as exc:  # noqa: BLE001 - a periodic job must not end the server
                name = getattr(fn, "__name__", "job").replace("_sliced", "")
                self._once(f"periodic:{name}:{type(exc).__name__}", [
                    f"⚠️  {name} failed ({type(exc).__name__}: {exc}); the server keeps running"])

    # ================================================================== output
    def _out(self, lines: list[str], err: bool = False) -> None:
        """Log ``lines``: queued for the writer thread, never blocking (see server/logwriter.py)."""
        self._logw.write(lines, err)

    @property
    def log_lines_dropped(self) -> int:
        return self._logw.dropped_total

    def _once(self, kind: str, lines: list[str]) -> None:
        """Log ``lines`` the first time ``kind`` happens; later occurrences are only counted."""
        if kind in self._logged_kinds:
            return
        self._logged_kinds.add(kind)
        self._out(lines + ["   (further occurrences of this kind are counted, not logged)"], err=True)

    def _print_stats(self) -> None:
        self._out(lf.stats_block(self.registry))

    # ================================================================== events
    def _publish(self, events: list) -> None:
        """Encode ``events`` once; queue the bytes for every subscriber and the recording.

        ``events``: Events, and runs of events already encoded (bytes of EVENT records, from
        Registry.apply_wire), in order."""
        if not events or not (self._subs or self._recorder is not None or self._journal is not None):
            return
        records = _records(events)
        if self._subs:
            if len(records) == 1:
                rec0, n = records[0]
                chunk = _U32.pack(len(rec0)) + rec0
            else:
                chunk = b"".join(codec.frame(r) for r, _ in records)
                n = sum(k for _, k in records)
            for sub in self._subs:
                sub.push(chunk, n)
        rec = self._recorder
        if rec is not None:
            try:
                for r, k in records:
                    rec.write_record(r, k)
            except (OSError, ValueError) as exc:
                self._recording_failed(exc)
        jr = self._journal
        if jr is not None:
            try:
                for r, k in records:
                    jr.write_record(r, k)
                self._journal_sync_due = True
            except (OSError, ValueError) as exc:
                self._journal_failed(exc)

    # ================================================================== recording and health
    def _flush_recording(self) -> None:
        if self._recorder is not None:
            try:
                self._recorder.flush()
            except (OSError, ValueError) as exc:
                self._recording_failed(exc)

    def _recording_failed(self, exc: BaseException) -> None:
        """Stop recording (disk full, I/O error...): one log line, a STATUS for monitors; ingest goes on."""
        rec, self._recorder = self._recorder, None
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        path = rec.path if rec is not None else self.config.record
        events = rec.events if rec is not None else 0
        if rec is not None:
            with contextlib.suppress(OSError, ValueError):
                rec.close()
        if rec is not None and rec._f is not None and not rec._f.closed:  # close() failed half-way
            with contextlib.suppress(OSError, ValueError):
                os.close(rec._f.fileno())
        if self.stats.recording_error is None:
            self.stats.recording_error = f"{reason} writing {path}"
            self._out([f"⚠️  Recording stopped: {reason} writing {path} (about {events} events recorded; "
                       f"the rest of this run is not recorded). The server keeps running"], err=True)
            self._set_status(recording="stopped", recording_error=self.stats.recording_error)

    def _set_status(self, **changes: object) -> None:
        """Update the health every subscriber sees (a STATUS record now, and after each snapshot)."""
        self._status.update(changes)
        self._status_frame = codec.frame(codec.encode_status(self._status))
        for sub in self._subs:
            sub.push(self._status_frame, 0)

    def status(self) -> dict:
        """The server's counters and health (what STATUS records carry, plus live figures)."""
        st = self.stats
        return {**self._status, "refused_connections": st.refused_connections, "refused_allocs": st.refused_allocs,
                "log_lines_dropped": self.log_lines_dropped, "connection_errors": st.connection_errors,
                "max_loop_lag_s": round(st.max_loop_lag_s, 6), "max_loop_busy_s": round(st.max_loop_busy_s, 6), "connections": st.connections,
                "recording": "stopped" if st.recording_error else ("on" if self._recorder is not None else "off")}

    def run_cleanup(self) -> list[Event]:
        """Remove the entries of dead owner PIDs; log the block and publish the events."""
        reg = self.registry
        dead = [p for p in reg.pids() if not self._owner_alive(p)]
        if not dead:
            return []
        events = reg.cleanup(dead, self._clock())
        for p in dead:
            self.ownership.forget(p)
        self._out(lf.cleanup_block(events))
        self._publish(events)
        return events

    async def run_cleanup_sliced(self) -> list[Event]:
        """:meth:`run_cleanup` in slices of _CLEANUP_SLICE entries, other tasks (ingest) running between
        them: a dead process that held a million buffers costs ingest a few ms at a time, not seconds.
        Each slice's events are published as it is done; the log block comes at the end, whole."""
        reg = self.registry
        dead = [p for p in reg.pids() if not self._owner_alive(p)]
        if not dead:
            return []
        ts = self._clock()
        events: list[Event] = []
        while True:
            part = reg.cleanup(dead, ts, limit=_CLEANUP_SLICE)
            if not part:
                break
            self._publish(part)
            events += part
            await anyio.sleep(0)
        for p in dead:
            self.ownership.forget(p)
        self._out(lf.cleanup_block(events))
        return events

    def dump_lines(self) -> list[str]:
        """Cleanup, then the DUMP_REMAINING report, as the original prints it (request line to completion)."""
        lines = [lf.DUMP_REQUEST]
        dead = [p for p in self.registry.pids() if not self._owner_alive(p)]
        events = self.registry.cleanup(dead, self._clock())
        for p in dead:
            self.ownership.forget(p)
        lines += lf.cleanup_block(events)
        lines += lf.dump_report(self.registry)
        lines.append(lf.DUMP_COMPLETE)
        events.append(self.registry.note(Event(EventKind.DUMP, ts_ns=self._clock(), text="DUMP_REMAINING")))
        self._publish(events)
        return lines

    def _owner_alive(self, pid: int) -> bool:
        """Liveness of a reported owner PID: through its host PIDs when it is a namespace PID (peers.py)."""
        return self.ownership.alive(pid, self._is_alive)

    # ================================================================== connections
    async def _handle_connection(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one connection. Whatever happens in it ends this connection only, never the server."""
        self._next_cid += 1
        self.stats.connections += 1
        peer = peer_credentials(stream.extra(anyio.abc.SocketAttribute.raw_socket, None))
        conn = _Conn(self._next_cid, FrameReader(self._layout, max_bad_bytes=self.config.max_bad_bytes), peer)
        try:
            await self._serve_connection(stream, conn)
        except _PEER_GONE:
            pass
        except Exception as exc:  # noqa: BLE001 - includes ExceptionGroups from a subscriber's task group
            self._connection_error(conn, exc)
        except BaseExceptionGroup as group:  # novermin (the 3.10 backport via _compat): cancellation + errors
            cancelled, rest = group.split(anyio.get_cancelled_exc_class())
            if rest is not None:
                self._connection_error(conn, rest)
            if cancelled is not None:
                raise cancelled from None
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()

    def _connection_error(self, conn: _Conn, exc: BaseException) -> None:
        leaves = _leaves(exc)
        if all(isinstance(e, _PEER_GONE) for e in leaves):
            return  # the peer went away (possibly reported by several tasks at once): not an error
        self.stats.connection_errors += 1
        first = next(e for e in leaves if not isinstance(e, _PEER_GONE))
        self._once("conn-error:" + type(first).__name__, [
            f"⚠️  Connection {conn.cid} ended on an internal error ({type(first).__name__}: {first}); "
            f"the server keeps running"])

    # ================================================================== subscription
    async def _send_snapshot(self, stream: anyio.abc.ByteStream, sub: _Subscriber) -> None:
        """Send a SNAPSHOT of the registry as of now; events after it are queued in ``sub`` meanwhile.

        Freezing the registry (a view of its rows: nothing copied in the compiled table, a few ms pure),
        resetting the queue and registering happen with no await in between, so the snapshot is
        exactly the state before the first queued event. The rows are then encoded and sent in
        slices of about 3 ms / 1 MiB, with other tasks (ingest) running in between; a slow reader
        holds only its own slice, never the loop. Slices take turns server-wide, so monitors
        attaching together cost ingest one slice per loop pass, not one each.
        """
        reg = self.registry
        fz = reg.freeze()
        sub.queue, sub.queued, sub.overflow = [], 0, False
        # While a big snapshot is encoded and sent, the events behind it may number as many as its
        # entries (they cost about the same memory) before the subscriber counts as fallen behind.
        sub.limit = max(self.config.subscriber_queue, len(fz))
        self._subs.add(sub)
        try:
            head = codec.encode_snapshot_head(fz.seq, self._clock(), self.config.inventory, fz.totals, len(fz))
            await stream.send(codec.U32.pack(len(head) + fz.encoded_size()) + head)
            encode, clock = fz.encode, time.perf_counter
            pos, end = 0, fz.done_at
            if self._snapshot_turn is None:
                self._snapshot_turn = anyio.Lock()
            while pos < end:
                async with self._snapshot_turn:
                    t_end = clock() + _SNAPSHOT_SLICE_S
                    parts, nbytes = [], 0
                    while pos < end:
                        data, pos = encode(pos, _SNAPSHOT_SLICE_MIN)
                        parts.append(data)
                        nbytes += len(data)
                        if nbytes >= _SNAPSHOT_SLICE_BYTES or clock() >= t_end:
                            break
                    chunk = b"".join(parts)
                await stream.send(chunk)  # waits for a slow reader (this task alone, not holding the turn)
                await anyio.sleep(0)  # let ingest run
        finally:
            reg.thaw(fz)
        sub.limit = self.config.subscriber_queue
        if self._status_frame:
            await stream.send(self._status_frame)

    async def _serve_subscriber(self, stream: anyio.abc.ByteStream, conn: _Conn) -> None:
        sub = _Subscriber(self.config.subscriber_queue)
        self.stats.subscribers += 1
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._drain_input, stream, tg.cancel_scope)
                await stream.send(codec.frame(codec.encode_hello(info=self.server_info())))  # at once, with INFO
                await self._send_snapshot(stream, sub)
                beat = self.config.heartbeat_s
                while True:
                    if beat > 0:
                        with anyio.move_on_after(beat):
                            await sub.wake.wait()
                        if not sub.wake.is_set():  # quiet: the server's clock, so monitors' time rules run
                            await stream.send(codec.frame(codec.encode_heartbeat(self._clock(), self.registry.seq)))
                            continue
                    else:
                        await sub.wake.wait()
                    sub.wake = anyio.Event()
                    if sub.overflow:
                        dropped, sub.dropped = sub.dropped, 0
                        self.stats.resyncs += 1
                        await stream.send(codec.frame(codec.encode_resync(dropped, "subscriber queue overflow")))
                        await self._send_snapshot(stream, sub)
                    elif sub.queue:
                        await stream.send(sub.take())
        finally:
            self._subs.discard(sub)
            self.stats.subscribers -= 1

    async def _drain_input(self, stream: anyio.abc.ByteStream, scope: anyio.CancelScope) -> None:
        """A subscriber's further input is ignored; its EOF ends the subscription."""
        try:
            while await stream.receive(65536):
                pass
        except Exception:  # noqa: BLE001 - EndOfStream, broken pipe...: the monitor has gone
            pass
        scope.cancel()


_EVENTS_KIND = bytes((codec.RecordKind.EVENTS,))
_EVENT_SIZE = codec.EVENT.size
_U32 = codec.U32


def _records(events: list) -> list[tuple[bytes, int]]:
    """(EVENTS record, events in it) for ``events`` (Events and bytes of encoded ones, see _publish), at
    most _MAX_EVENTS_PER_RECORD each: the records eventcodec.encode_events makes of the same events."""
    first = events[0]
    if len(events) == 1 and first.__class__ is bytes and len(first) <= _MAX_EVENTS_PER_RECORD * _EVENT_SIZE:
        n = len(first) // _EVENT_SIZE
        return [(b"".join((_EVENTS_KIND, _U32.pack(n), first)), n)]
    out: list[tuple[bytes, int]] = []
    parts: list[bytes] = []
    count = 0
    encode = codec.encode_event
    for item in events:
        if item.__class__ is bytes:  # a run of encoded events (fixed size: no strings)
            pos, end = 0, len(item)
            while pos < end:
                take = min(_MAX_EVENTS_PER_RECORD - count, (end - pos) // _EVENT_SIZE)
                if take <= 0:
                    raise ValueError("a run of encoded events that is not whole EVENT records")
                parts.append(item[pos:pos + take * _EVENT_SIZE])
                pos += take * _EVENT_SIZE
                count += take
                if count == _MAX_EVENTS_PER_RECORD:
                    out.append((_EVENTS_KIND + codec.U32.pack(count) + b"".join(parts), count))
                    parts, count = [], 0
        else:
            parts.append(encode(item))
            count += 1
            if count == _MAX_EVENTS_PER_RECORD:
                out.append((_EVENTS_KIND + codec.U32.pack(count) + b"".join(parts), count))
                parts, count = [], 0
    if count:
        out.append((_EVENTS_KIND + codec.U32.pack(count) + b"".join(parts), count))
    return out


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``."""
    if isinstance(exc, BaseExceptionGroup):  # novermin (the 3.10 backport via _compat)
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _open_spare() -> int | None:
    """A descriptor held in reserve for refusing connections when the process runs out of them."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None



def _start_error(exc: OSError, message: str) -> OSError:
    """An OSError that prints as ``message`` alone and keeps ``exc``'s errno."""
    err = OSError(message)
    err.errno = exc.errno
    return err


def _bind_reason(path: str, exc: OSError) -> str:
    """Why binding ``path`` failed, in words a user can act on."""
    parent = os.path.dirname(path) or "."
    if len(os.fsencode(path)) >= 108:
        return f"the path is {len(os.fsencode(path))} bytes long; Unix sockets allow at most 107"
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(parent):
        return f"the directory {parent} does not exist"
    if isinstance(exc, PermissionError):
        return f"permission denied (cannot create a file in {parent})"
    return exc.strerror or str(exc)


def prepare_socket_path(path: str) -> None:
    """Remove a stale socket file; refuse (SocketInUseError) a live one or a non-socket file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUseError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as exc:
        raise SocketInUseError(f"cannot tell whether a server is listening on {path} ({exc}); "
                               f"refusing to replace it") from exc
    finally:
        probe.close()
    raise SocketInUseError(f"another allocation server is already listening on {path}; "
                           f"stop it first or choose another --socket")
