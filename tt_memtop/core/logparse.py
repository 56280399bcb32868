"""Parse the original allocation server's stdout (every known version) back into events.

Why: most users already have logs (``allocation_server_poc > debug-llama.log``) and an
original server running. Turning its stdout into the same :class:`Event` stream our server
produces lets every pane, the replay and the report work on them unchanged.

Pure and incremental: feed raw ``bytes`` lines (no trailing newline) in order, get events
back. Formats are those of PROTOCOL.md §5 (S1–S5, the enhanced server, the 648-byte note):

* alloc / free / unknown-free lines become ALLOC, REF_INC, REF_DEC, FREE, FREE_UNKNOWN events;
  ids are decimal (S1–S3) or ``0x`` hex (S4+); an optional ``Line NNNN: `` prefix is dropped;
* a FREE line does not name the buffer type and a cleanup block does not list buffer ids,
  so the parser keeps a light *shadow* of the live buffers (key -> type, size, owner, refs).
  ``PID N is dead`` becomes one CLEANUP event per buffer that PID owns, then PROCESS_EXIT,
  exactly what :meth:`Registry.cleanup` emits; a registry rebuilt from the events therefore
  matches the server's state (checked against the log's own DUMP report in the tests);
* a ref_count / free line for a buffer the log never showed allocated (the log began late)
  is passed on with ``text`` saying so and counted in ``stats.orphans``; nothing is invented;
* ``🚀 ... started`` means a fresh server with empty state: every live buffer is removed
  with a CLEANUP event (``text="server restarted"``);
* validation / framing complaints become BAD_FRAME events carrying the line;
* blocks that are not events (DUMP_REMAINING reports, statistics, cleanup summaries, device
  detection, CB/KERNEL lines, DUMP_KERNELS, the 648-byte DUMP entries) become *records*
  (the dataclasses of :mod:`.logrecords`) collected in :attr:`LogParser.records`, each stamped
  with the line number and the sequence number of the last event before it, so order is never lost;
* anything else is counted (``unknown``, or ``malformed`` when it starts like an event line
  but does not parse) and a few samples are kept. A bad line never raises.

Speed (``benchmarks/bench_logparse.py``): alloc / free lines (> 95 % of a log) take a fast
path that cuts each line at one byte into two halves that repeat even when the line does not
(the buffer id sits in one half), each distinct half being parsed once by its part of the
full-line regex; lines that repeat whole are also served from a line cache while that pays.
Every other line goes through :func:`.logclassify.classify` (what each line is, out of context, is
:mod:`.logclassify`'s; what the lines mean together is this module's). See :meth:`LogParser._feed`.
"""


from __future__ import annotations

import copy
import gc
from collections.abc import Iterable

from .devices import DeviceInfo, Inventory, arch_spec
from .events import Event, EventKind
from .logclassify import (
    _A_SPLIT,
    _CHECK_3RD,
    _CROSS_3RD,
    _F_SPLIT,
    K_ALLOC,
    K_BLANK,
    K_BOX_TITLE,
    K_CBK,
    K_CLEAN_PID,
    K_CLEAN_REMOVED,
    K_CLEAN_START,
    K_D648,
    K_D648_TRACE,
    K_DETECT,
    K_DETECT_DEV,
    K_DETECT_RAW,
    K_DF_BUFFER,
    K_DF_COUNTS,
    K_DF_SUMMARY,
    K_DUMP_BUFFER,
    K_DUMP_DEVICE,
    K_DUMP_EMPTY,
    K_DUMP_END,
    K_DUMP_GROUP,
    K_DUMP_REMAINING,
    K_DUMP_START,
    K_FREE,
    K_HISTORY,
    K_KDUMP_DEVICE,
    K_KDUMP_END,
    K_KDUMP_FIELD,
    K_KDUMP_TOTAL,
    K_LISTEN,
    K_MALFORMED,
    K_NOISE,
    K_SIZE_CHANGE,
    K_START,
    K_STATS_DEVICE,
    K_STATS_END,
    K_STATS_FIELD,
    K_STATS_START,
    K_STOP,
    K_TOTAL_TRACKED,
    K_UNKNOWN_FREE,
    K_VALIDATION,
    _alloc_head,
    _alloc_tail,
    _free_head,
    _free_tail,
    _int_id,
    _kb,
    classify,
)
from .logrecords import (
    MAX_DUMP_ENTRIES,
    CbKernelChange,
    DeviceDetected,
    DumpBuffer,
    DumpGroup,
    DumpReport,
    KernelDump,
    ParseStats,
    ProcessCleanup,
    Record,
    ServerBanner,
    SizeChange,
    StatsReport,
)
from .protocol import MAX_DEVICES, Arch, BufferType
from .registry import Buffer

__all__ = ["LOG_CB_TOTAL_ID", "LOG_KERNEL_TOTAL_ID", "LogParser"]

MiB = 1024 * 1024
GiB = 1024 * MiB

_new = object.__new__
_ALLOC, _REF_INC, _REF_DEC, _FREE = EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE
_FREE_UNKNOWN, _CLEANUP, _EXIT = EventKind.FREE_UNKNOWN, EventKind.CLEANUP, EventKind.PROCESS_EXIT
_BAD, _DUMP = EventKind.BAD_FRAME, EventKind.DUMP


def _event(kind: EventKind, seq: int, pid: int, device: int, buffer_type: int, buffer_id: int, size: int,
           ref_count: int, text: str = "") -> Event:
    # Event.__init__ takes keywords; setting the slots directly is ~3x faster on the hot path.
    ev = _new(Event)
    ev.seq = seq
    ev.ts_ns = 0
    ev.kind = kind
    ev.pid = pid
    ev.device = device
    ev.buffer_type = buffer_type
    ev.buffer_id = buffer_id
    ev.size = size
    ev.ref_count = ref_count
    ev.name = ""
    ev.stack_trace = ""
    ev.text = text
    return ev


_ORPHAN = "buffer allocated before the log began"
#: Buffer ids of the per-device CB and KERNEL totals taken from S5's ``[CB_*]`` / ``[KERNEL_*]`` lines
#: (see ``LogParser(cb_kernel_totals=True)``): those lines carry neither an id nor a PID, only the
#: server's running total, so each device gets one entry per kind whose size is that total.
LOG_CB_TOTAL_ID = 0xFFFF_FFFF_FFFF_0CB0
LOG_KERNEL_TOTAL_ID = 0xFFFF_FFFF_FFFF_0CE0
_CBK_ENTRY = {"CB_ALLOC": (int(BufferType.CB), LOG_CB_TOTAL_ID), "CB_FREE": (int(BufferType.CB), LOG_CB_TOTAL_ID),
              "KERNEL_LOAD": (int(BufferType.KERNEL), LOG_KERNEL_TOTAL_ID),
              "KERNEL_UNLOAD": (int(BufferType.KERNEL), LOG_KERNEL_TOTAL_ID)}
_CBK_ENTRY_ID = {int(BufferType.CB): LOG_CB_TOTAL_ID, int(BufferType.KERNEL): LOG_KERNEL_TOTAL_ID}
_CBK_NAME = {int(BufferType.CB): "CB total (S5 log lines carry no ids)",
             int(BufferType.KERNEL): "kernel total (S5 log lines carry no ids)"}


class LogParser:
    """Incremental parser: :meth:`feed` lines in order, read events back; records pile up in
    :attr:`records` (drain with :meth:`take_records`)."""

    CACHE_LIMIT = 1 << 16
    ADAPT_LINES = 1 << 14  # lines between two decisions about the line cache (see _adapt)
    FAST_PATH = True  # False sends every line through classify() (for tests: both give the same result)

    def __init__(self, first_seq: int = 0, *, line_as_ts: bool = False, cb_kernel_totals: bool = False) -> None:
        #: stamp each event's ``ts_ns`` with its line number (logs have no clock; reports want positions)
        self.line_as_ts = line_as_ts
        #: turn S5 CB / KERNEL lines into one live entry per device and kind holding the server's running
        #: total (LOG_CB_TOTAL_ID / LOG_KERNEL_TOTAL_ID), so that monitors show CB and KERNEL bytes
        self.cb_kernel_totals = cb_kernel_totals
        self._cbk: dict[tuple[int, int], int] = {}  # (device, buffer_type) -> bytes, with cb_kernel_totals
        self.stats = ParseStats()
        self.records: list[Record] = []
        self.seq = first_seq
        self.line = 0
        # shadow of live buffers: (device, buffer_id) -> (buffer_type, size, owner_pid, ref_count); entries are
        # immutable (a new buffer's entry is shared with the classification cache), changes replace them
        self._live: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        # line caches (see _feed): alloc / free lines -> their tuple, other lines -> classify()
        self._hot: dict[bytes, tuple] = {}
        self._cache: dict[bytes, tuple] = {}
        self._hot_on = True  # whether alloc / free lines use their line cache (see _adapt)
        self._hot_stats = [0, 0]  # [lines, alloc / free lines that missed the cache] since the last decision
        self._hot_retry = 0  # line number from which to try the cache again
        self._hot_backoff = self.ADAPT_LINES
        # halves of alloc / free lines (see _feed): alloc head, alloc tail, free head, free tail
        self._parts: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
        self._block: object | None = None  # the record being assembled (dump, stats, kernel dump)
        self._dev: int = 0  # current "Device N:" inside a block
        self._type: str = ""
        self._cleanup: ProcessCleanup | None = None
        self._raw: dict[str, object] = {}  # pending S5 detection values
        self._detected: dict[int, DeviceDetected] = {}
        self._kernel: dict | None = None

    # ------------------------------------------------------------------ public API
    def feed(self, lines: Iterable[bytes]) -> list[Event]:
        """Parse complete lines (bytes, without newline). Returns the events they produced.

        The cyclic garbage collector is paused for the call: a chunk creates hundreds of
        thousands of acyclic objects, and collecting them while they are still referenced
        more than halves the speed. Reference counting is unaffected.
        """
        if not gc.isenabled():
            return self._feed(lines)
        gc.disable()
        try:
            return self._feed(lines)
        finally:
            gc.enable()

    def _feed(self, lines: Iterable[bytes]) -> list[Event]:
        """The loop. Each line is classified into a tuple (``K_*`` kind first), then handled.

        Classification, fastest first:

        * **line cache**: a model run repeats the same lines every iteration, so the tuple of
          each distinct line is cached and most lines cost one dict look-up. While most lines
          are new (model load, or a log where ids never repeat) the cache would only cost
          time and memory, so alloc / free lines then skip it (:meth:`_adapt` decides);
        * **fast path** for alloc / free lines (> 95 % of a real log): such a line differs
          from its neighbours mostly in one field (the buffer id), so it is cut with one
          ``bytes.partition`` into two halves that do repeat (see ``_A_HEAD``, ``_F_HEAD``):
          alloc = head (pid, size, type, device) + tail (id, ref_count), free = head (pid, id)
          + tail (device, size, ref_count). Each distinct half is matched once against its
          part of the full-line regex and its fields are cached (``_parts``), so a new line
          costs a partition and two dict look-ups, however many distinct ids the log has;
        * **general path**: every other line, and any whose halves are not both valid, goes
          through :func:`classify`; non-event lines then go to :meth:`_structure`.

        Alloc / free tuples are ``(kind, pid, device, buffer_type, buffer_id, size, ref_count,
        key, entry)``; the Event is built inline (see :func:`_event`) and the shadow updated.
        """
        out: list[Event] = []
        app = out.append
        cache = self._cache
        cache_get = cache.get
        hot = self._hot
        hot_get = hot.get
        use_hot = self._hot_on or self.line >= self._hot_retry
        limit = self.CACHE_LIMIT
        a_heads, a_tails, f_heads, f_tails = self._parts
        a_head_get, a_tail_get, f_head_get, f_tail_get = a_heads.get, a_tails.get, f_heads.get, f_tails.get
        learn = self._learn
        check_3rd, cross_3rd = (_CHECK_3RD, _CROSS_3RD) if self.FAST_PATH else (None, None)
        live = self._live
        live_get, live_pop = live.get, live.pop
        new = _new
        line_ts = self.line_as_ts
        stats = self.stats
        seq = seq_start = self.seq
        lineno = start = self.line
        misses = 0
        slow_events = slow_lines = 0  # events / event lines from structure lines (the rest are 1:1)
        for lineno, raw in enumerate(lines, start + 1):  # noqa: B007 - lineno is read after the loop
            c = hot_get(raw) if use_hot else None
            if c is not None:  # line cache hit
                kind, pid, dev, bt, bid, size, rc, key, entry = c
            else:
                kind = 0
                third = raw[2:3]
                if third == check_3rd:  # fast path, alloc
                    head, _, tail = raw.partition(_A_SPLIT)
                    h = a_head_get(head)
                    if h is None:
                        h = learn(a_heads, head, _alloc_head)
                    t = a_tail_get(tail)
                    if t is None:
                        t = learn(a_tails, tail, _alloc_tail)
                    if h and t:
                        kind = K_ALLOC
                        pid, size, bt, dev, entry = h
                        bid, rc = t
                elif third == cross_3rd:  # fast path, free
                    head, _, tail = raw.partition(_F_SPLIT)
                    h = f_head_get(head)
                    if h is None:
                        h = learn(f_heads, head, _free_head)
                    t = f_tail_get(tail)
                    if t is None:
                        t = learn(f_tails, tail, _free_tail)
                    if h and t:
                        kind = K_FREE
                        pid, bid = h
                        dev, size, rc = t
                        bt, entry = 0, None
                if kind:
                    key = (dev, bid)
                    if use_hot:
                        misses += 1
                        if len(hot) >= limit:
                            hot.clear()
                        hot[raw] = (kind, pid, dev, bt, bid, size, rc, key, entry)
                else:  # general path
                    c = cache_get(raw)
                    if c is None:
                        c = classify(raw)
                        if len(cache) >= limit:
                            cache.clear()
                        cache[raw] = c
                    kind = c[0]
                    if kind == K_ALLOC or kind == K_FREE:  # e.g. behind a "Line NNNN: " prefix
                        _, pid, dev, bt, bid, size, rc = c
                        key, entry = (dev, bid), (bt, size, pid, 1)
                    else:
                        if kind == K_UNKNOWN_FREE:
                            seq += 1
                            ev = _event(_FREE_UNKNOWN, seq, c[1], c[3], 0, c[2], 0, 0, c[4])
                            if line_ts:
                                ev.ts_ns = lineno
                            app(ev)
                        elif kind == K_BLANK:
                            stats.blank += 1
                        else:
                            self.seq, self.line = seq, lineno
                            before = len(out)
                            self._structure(c, out)
                            if len(out) > before:
                                slow_events += len(out) - before
                                slow_lines += 1
                                stats.known -= 1
                            seq = self.seq
                        continue
            seq += 1
            ev = new(Event)
            ev.seq = seq
            ev.ts_ns = lineno if line_ts else 0
            ev.pid = pid
            ev.name = ev.stack_trace = ev.text = ""
            ev.device = dev
            ev.buffer_id = bid
            ev.size = size
            if kind == K_ALLOC:
                if rc:
                    ev.kind = _REF_INC
                    ev.ref_count = rc
                    ent = live_get(key)
                    if ent is None:
                        stats.orphans += 1
                        ev.buffer_type = bt
                        ev.text = _ORPHAN
                    else:
                        live[key] = (ent[0], ent[1], ent[2], rc)
                        ev.buffer_type = ent[0]
                else:
                    ev.kind = _ALLOC
                    ev.ref_count = 1
                    ev.buffer_type = bt
                    live[key] = entry
            else:
                ev.ref_count = rc
                if rc:
                    ev.kind = _REF_DEC
                    ent = live_get(key)
                    if ent is not None:
                        live[key] = (ent[0], ent[1], ent[2], rc)
                else:
                    ev.kind = _FREE
                    ent = live_pop(key, None)
                if ent is None:
                    stats.orphans += 1
                    ev.buffer_type = 0
                    ev.text = _ORPHAN
                else:
                    ev.buffer_type = ent[0]
            app(ev)
        stats.lines += lineno - start
        stats.event_lines += seq - seq_start - slow_events + slow_lines
        self.seq, self.line = seq, lineno
        if use_hot:
            self._adapt(lineno - start, misses)
        return out

    def _adapt(self, lines: int, misses: int) -> None:
        """Keep alloc / free lines in the line cache only while it pays.

        Decided every ``ADAPT_LINES`` lines: when more than half of them were new (model
        load, a log whose ids never repeat) the cache is skipped for the next ``backoff``
        lines, doubling each time the retry fails; a mostly-hit period resets the backoff.
        Only speed depends on this: both ways give the same tuples.
        """
        st = self._hot_stats
        st[0] += lines
        st[1] += misses
        if st[0] < self.ADAPT_LINES:
            return
        if st[1] * 2 > st[0]:
            self._hot_on = False
            self._hot_retry = self.line + self._hot_backoff
            self._hot_backoff = min(self._hot_backoff * 2, 64 * self.ADAPT_LINES)
        else:
            self._hot_on = True
            self._hot_backoff = self.ADAPT_LINES
        st[0] = st[1] = 0

    def _learn(self, cache: dict, part: bytes, parse) -> tuple | bool:
        """Parse one half of an alloc / free line (fast path) and remember the result, valid or not."""
        if len(cache) >= self.CACHE_LIMIT:
            cache.clear()
        value = cache[part] = parse(part)
        return value

    def feed_text(self, text: str) -> list[Event]:
        """Convenience for tests and small inputs."""
        return self.feed(text.encode("utf-8").splitlines())

    def finish(self) -> list[Event]:
        """End of input: close any open block (a DUMP fragment becomes an incomplete record)."""
        self._close_block()
        return []

    def clone(self) -> LogParser:
        """An independent copy of the parsing state (for replay checkpoints); records are not copied."""
        other = copy.copy(self)
        other.stats = copy.deepcopy(self.stats)
        other.records = []
        other._live = dict(self._live)
        other._cbk = dict(self._cbk)
        other._hot_stats = list(self._hot_stats)
        other._block = copy.deepcopy(self._block)
        other._cleanup = copy.deepcopy(self._cleanup)
        other._raw = dict(self._raw)
        other._detected = dict(self._detected)
        other._kernel = dict(self._kernel) if self._kernel is not None else None
        return other  # the caches are context-free and stay shared

    def take_records(self) -> list[Record]:
        out, self.records = self.records, []
        return out

    def state_size(self) -> int:
        """Live entries in the shadow state (what a :meth:`clone` costs, roughly: one dict entry each)."""
        return len(self._live) + len(self._cbk)

    def live_buffers(self) -> list[Buffer]:
        """The shadow state as registry buffers (for a Snapshot)."""
        out = [Buffer(d, b, e[0], e[1], e[2], e[3]) for (d, b), e in self._live.items()]
        out += [Buffer(d, _CBK_ENTRY_ID[t], t, size, 0, 1, name=_CBK_NAME[t]) for (d, t), size in self._cbk.items()]
        return out

    @property
    def inventory(self) -> Inventory:
        """Devices named by the log's detection block (empty for S1 logs)."""
        if not self._detected:
            return Inventory()
        infos = []
        # positions are device ids: fill gaps, but never past MAX_DEVICES (a log line may name device 2**31-1)
        for i in range(min(max(self._detected), MAX_DEVICES - 1) + 1):
            det = self._detected.get(i)
            infos.append(det.info() if det else DeviceInfo(i, Arch.INVALID, 0, 0, 0, 0, 0, False))
        return Inventory(tuple(infos))

    # ------------------------------------------------------------------ structure lines
    def _record(self, rec: Record) -> None:
        self.records.append(rec)

    def _emit(self, out: list[Event], ev: Event) -> None:
        self.seq += 1
        ev.seq = self.seq
        if self.line_as_ts:
            ev.ts_ns = self.line
        out.append(ev)

    def _close_block(self) -> None:
        blk = self._block
        if blk is not None:
            self._flush_kernel()
            self._record(blk)
            self._block = None

    def _structure(self, c: tuple, out: list[Event]) -> None:
        kind = c[0]
        st = self.stats
        st.known += 1
        blk = self._block
        if kind == K_START:
            self._close_block()
            self._cleanup = None
            for (dev, bid), e in list(self._live.items()):
                self._emit(out, _event(_CLEANUP, 0, e[2], dev, e[0], bid, e[1], e[3], "server restarted"))
            self._live.clear()
            for (dev, btype), size in list(self._cbk.items()):
                self._emit(out, _event(_CLEANUP, 0, 0, dev, btype, _CBK_ENTRY_ID[btype], size, 1, "server restarted"))
            self._cbk.clear()
            self._record(ServerBanner(self.line, self.seq, "start", "Allocation Server started"))
        elif kind == K_STOP:
            self._close_block()
            self._record(ServerBanner(self.line, self.seq, "stop", "Allocation Server stopped"))
        elif kind == K_BOX_TITLE:
            if "KERNEL" in c[1]:
                self._close_block()
                self._block = KernelDump(self.line, self.seq)
            elif "REMAINING" in c[1]:
                d = blk if isinstance(blk, DumpReport) else None
                if d is None or d.total_tracked is not None or d.groups or d.buffers:
                    self._close_block()  # a new report (the previous one was a fragment)
                    self._block = DumpReport(self.line, self.seq)
        elif kind in (K_NOISE, K_LISTEN, K_DETECT, K_HISTORY, K_DF_BUFFER, K_DF_COUNTS, K_DF_SUMMARY):
            pass
        elif kind == K_DETECT_RAW:
            self._detect_raw(c)
        elif kind == K_DETECT_DEV:
            self._detect_device(c)
        elif kind == K_VALIDATION:
            self._emit(out, _event(_BAD, 0, 0, 0, 0, 0, 0, 0, c[1]))
        elif kind == K_SIZE_CHANGE:
            pid, old, new, bid, dev = (int(x) for x in c[1:])
            ent = self._live.get((dev, bid))
            if ent is not None:
                self._live[(dev, bid)] = (ent[0], new, ent[2], ent[3])
            self._record(SizeChange(self.line, self.seq, pid, dev, bid, old, new))
        elif kind == K_CLEAN_START:
            self._cleanup = None
        elif kind == K_CLEAN_PID:
            self._clean_pid(int(c[1]), out)
        elif kind == K_CLEAN_REMOVED:
            n, what, mb, pid = int(c[1]), c[2], c[3], int(c[4])
            cl = self._cleanup
            if cl is None or cl.pid != pid:
                st.known -= 1
                st.malformed += 1
                st.samples.append((self.line, f"cleanup summary without its 'PID {pid} is dead' line"))
            else:
                cl.logged[what] = (n, mb)
        elif kind == K_DUMP_START:
            self._close_block()
            self._block = DumpReport(self.line, self.seq, requested=True)
            self._emit(out, _event(_DUMP, 0, 0, 0, 0, 0, 0, 0, "DUMP_REMAINING"))
        elif kind == K_DUMP_END:
            if isinstance(blk, DumpReport):
                blk.complete = True
                blk.seq = self.seq
                self._close_block()
        elif kind == K_TOTAL_TRACKED:
            self._dump(start=True).total_tracked = int(c[1])
        elif kind == K_DUMP_EMPTY:
            self._dump(start=True).empty = True
        elif kind == K_DUMP_DEVICE:
            self._dump(start=True)
            self._dev = int(c[1])
        elif kind == K_DUMP_GROUP:
            self._type = c[1]
            d = self._dump()
            if len(d.groups) < MAX_DUMP_ENTRIES:
                d.groups.append(DumpGroup(self._dev, c[1], int(c[2]), c[3]))
            else:
                d.omitted += 1
        elif kind == K_DUMP_BUFFER:
            d = self._dump()
            if len(d.buffers) < MAX_DUMP_ENTRIES:
                d.buffers.append(DumpBuffer(self._dev, self._type, _int_id(c[1]), _kb(c[2]), int(c[3]), int(c[4])))
            else:
                d.omitted += 1
        elif kind == K_DUMP_REMAINING:
            self._dump().total_remaining = int(c[1])
            if not self._dump().requested:  # a server without the request/complete lines (none known)
                self._dump().complete = True
        elif kind == K_D648:
            bid, kb, pid, refs, age, name = c[1:]
            d = self._dump(start=True)
            if len(d.buffers) >= MAX_DUMP_ENTRIES:
                d.omitted += 1
            else:
                d.buffers.append(DumpBuffer(self._dev, "", _int_id(bid), _kb(kb), int(pid), int(refs),
                                            (name or "").strip(), age_s=int(age) if age else None))
        elif kind == K_D648_TRACE:
            d = self._dump(start=True)
            if d.buffers and not d.omitted:  # (past the limit, the last buffer kept is not the one traced)
                b = d.buffers[-1]
                b.stack_trace = f"{b.stack_trace}\n{c[1]}" if b.stack_trace else c[1]
        elif kind == K_STATS_START:
            self._close_block()
            self._block = StatsReport(self.line, self.seq)
        elif kind == K_STATS_DEVICE:
            if isinstance(blk, StatsReport):
                self._dev = int(c[1])
                blk.devices[self._dev] = {}
            else:
                self._misplaced(c)
        elif kind == K_STATS_FIELD:
            if isinstance(blk, StatsReport) and self._dev in blk.devices:
                name, exact, kb = c[1], c[2], c[3]
                blk.devices[self._dev][name.lower()] = int(exact) if exact else _kb(kb)
            else:
                self._misplaced(c)
        elif kind == K_STATS_END:
            if isinstance(blk, StatsReport):
                blk.active = int(c[1])
                self._close_block()
            else:
                self._misplaced(c)
        elif kind == K_CBK:
            what, ktype, dev, delta, total = c[1:]
            self._record(CbKernelChange(self.line, self.seq, what, int(dev), ktype, float(delta), float(total)))
            if self.cb_kernel_totals:
                self._cb_kernel_total(out, what, int(dev), float(total))
        elif kind == K_KDUMP_TOTAL:
            if not isinstance(blk, KernelDump):
                self._close_block()
                self._block = blk = KernelDump(self.line, self.seq)
            blk.total = int(c[1])
        elif kind == K_KDUMP_DEVICE:
            if isinstance(blk, KernelDump):
                self._flush_kernel()
                self._dev = int(c[1])
                blk.devices[self._dev] = (float(c[2]), int(c[3]))
            else:
                self._misplaced(c)
        elif kind == K_KDUMP_FIELD:
            if isinstance(blk, KernelDump):
                self._kernel_field(c[1], c[2])
            else:
                self._misplaced(c)
        elif kind == K_KDUMP_END:
            if isinstance(blk, KernelDump):
                blk.complete = True
                self._close_block()
        elif kind == K_MALFORMED:
            st.known -= 1
            st.malformed += 1
            st.samples.append((self.line, c[1]))
        else:  # K_UNKNOWN
            st.known -= 1
            st.unknown += 1
            st.samples.append((self.line, c[1]))

    def _cb_kernel_total(self, out: list[Event], what: str, dev: int, total_mb: float) -> None:
        """The per-device CB / KERNEL entry follows the line's ``Total:`` (6 significant digits, as printed)."""
        btype, bid = _CBK_ENTRY[what]
        size = max(0, round(total_mb * 1048576))
        key = (dev, btype)
        old = self._cbk.get(key)
        if size == (old or 0):
            return
        if size:
            self._cbk[key] = size
            ev = _event(_ALLOC, 0, 0, dev, btype, bid, size, 1)
            ev.name = _CBK_NAME[btype]
        else:
            del self._cbk[key]
            ev = _event(_FREE, 0, 0, dev, btype, bid, old, 0)
        self._emit(out, ev)

    def _misplaced(self, c: tuple) -> None:
        st = self.stats
        st.known -= 1
        st.unknown += 1
        st.samples.append((self.line, f"{c!r} outside its block"))

    def _dump(self, start: bool = False) -> DumpReport:
        blk = self._block
        if not isinstance(blk, DumpReport):
            # a DUMP fragment (e.g. quoted in a note) without the request line
            self._close_block()
            blk = self._block = DumpReport(self.line, self.seq)
        blk.seq = self.seq  # the state it lists is the one after its own cleanup block
        return blk

    def _clean_pid(self, pid: int, out: list[Event]) -> None:
        victims = [(k, e) for k, e in self._live.items() if e[2] == pid]
        total = 0
        for (dev, bid), e in victims:
            del self._live[(dev, bid)]
            total += e[1]
            self._emit(out, _event(_CLEANUP, 0, pid, dev, e[0], bid, e[1], e[3]))
        if victims:
            self._emit(out, _event(_EXIT, 0, pid, 0, 0, 0, total, len(victims)))
        self._cleanup = ProcessCleanup(self.line, self.seq, pid, len(victims), total)
        self._record(self._cleanup)

    def _detect_raw(self, c: tuple) -> None:
        for key, value in c[1]:
            self._raw[key] = value if key == "arch" else int(value)

    def _detect_device(self, c: tuple) -> None:
        dev, arch, gb, mb, where = int(c[1]), c[2], int(c[3]), int(c[4]), c[5]
        det = DeviceDetected(self.line, self.seq, dev, arch, gb * GiB, mb * MiB,
                             None if where is None else where == "Remote")
        spec = None
        try:
            spec = arch_spec(arch)
        except ValueError:
            pass
        raw, self._raw = self._raw, {}
        if raw:  # S5 printed the exact figures just before this line
            det.num_dram_channels = raw.get("channels", 0)
            det.dram_size_per_channel = raw.get("per_channel", 0)
            det.l1_size_per_core = raw.get("l1_per_core", 0)
            if "remote" in raw and det.remote is None:
                det.remote = bool(raw["remote"])
            if det.num_dram_channels and det.dram_size_per_channel and det.l1_size_per_core and "grid_y" in raw:
                det.total_dram = det.num_dram_channels * det.dram_size_per_channel
                det.total_l1 = det.l1_size_per_core * raw["grid_x"] * raw["grid_y"]
                det.exact = True
        if not det.exact and spec is not None and spec.total_dram // GiB == gb and spec.total_l1 // MiB == mb:
            # The line's GB/MB are integer divisions; the arch defaults explain them exactly.
            det.total_dram, det.total_l1 = spec.total_dram, spec.total_l1
            det.num_dram_channels, det.dram_size_per_channel = spec.num_dram_channels, spec.dram_size_per_channel
            det.l1_size_per_core = spec.l1_size_per_core
            det.exact = True
        self._detected[dev] = det
        self._record(det)

    def _kernel_field(self, name: str, value: str) -> None:
        if value.startswith("0x"):  # "Kernel ID" opens an entry
            self._flush_kernel()
            self._kernel = {"device": self._dev, "kernel_id": int(value, 16)}
        elif self._kernel is not None:
            key = {"Size": "size", "Owner PID": "pid", "Age": "age_s"}[name]
            self._kernel[key] = _kb(value) if key == "size" else int(value)

    def _flush_kernel(self) -> None:
        k, self._kernel = self._kernel, None
        if k is not None and isinstance(self._block, KernelDump):
            self._block.kernels.append(k)
