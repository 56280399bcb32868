"""Leaks, honestly: what each process left behind, and how we know.

Why: a process that dies holding 256 buffers is the leak people look for, yet after the server's
dead-PID cleanup nothing is live any more and a "live at the end" report says "none". Three
kinds are told apart (per PID):

* ``died`` (``reclaimed`` when phases are unknown) — buffers reclaimed by the dead-PID cleanup of a process that had not torn down (killed
  or crashed: it never freed them);
* ``exited`` — buffers still held when a process that had torn its device down went away (an
  orderly exit that forgot some; the cleanup reclaimed them too);
* ``outlived_warmup`` — buffers allocated during warm-up (compile / first runs, where every
  temporary is freed by the end of the op) still alive when their process starts replaying a trace.

Pure; fed events plus a ``phase_of(pid)`` function (the phase tracker's, O(1)). Bounded: the
warm-up set holds only live buffers allocated while loading or warming up (the phase tracker's
segments then tell, with hindsight, which were warm-up), the reclaimed table one row per PID.

The warm-up set keeps a key and an allocation time per buffer, nothing else: which process holds it
and its size are the registry's row (``observe(..., registry=)``), read when a process starts
replaying, for the few buffers allocated inside one of its warm-up spans. A monitor watching a model
load holds every weight in it (a million buffers): ~22 B each compiled (``_native/leaks.c``
``WarmSet``), instead of ~200 B for a dict entry, its key and a (pid, size, ts) tuple. The row is the
ALLOC's as long as the key is in the set: an ALLOC of the key that does not join the set (a new
buffer under it) takes it out, as FREE and CLEANUP do; a row whose allocation time is not the set's
(a snapshot that replaced the registry) is not counted.
"""

from __future__ import annotations

from .events import EventKind
from .phases import Phase
from .protocol import BufferType

__all__ = ["LeakTracker", "phase_before_exit"]

_ALLOC, _FREE, _CLEANUP = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP
TYPE_NAMES = [t.name for t in BufferType]
_CB = int(BufferType.CB)
_TRACE = int(BufferType.TRACE)
_WARMUP, _REPLAY = Phase.WARMUP, Phase.REPLAY
_EARLY = frozenset((Phase.LOADING, Phase.WARMUP, Phase.IDLE))


def _k(device: int, buffer_id: int):
    return buffer_id << 8 | device if 0 <= device < 256 else (device, buffer_id)


def phase_before_exit(tracker, pid: int):
    """The last phase ``pid`` was in before it was seen exiting (None: unknown)."""
    last = None
    for seg in tracker.segments():
        if seg.pid == pid and seg.phase is not Phase.EXITED:
            last = seg.phase
    return last


class LeakTracker:
    def __init__(self) -> None:
        self.reclaimed: dict[int, dict] = {}  # pid -> {"buffers", "bytes", "by_type", "devices", "at_ns", "how"}
        # key -> alloc ts of live non-TRACE buffers allocated while the live phase said loading or warm-up;
        # which of them really came from warm-up is decided with hindsight (phase segments); their pid
        # and size are the registry's (or, without a registry, in _held)
        self.warm = WarmSet() if WarmSet is not None else {}
        self._held: dict = {}  # key -> (pid, size), only for a caller that passes no registry
        # pid -> the most warm-up buffers seen alive while it replayed: {"buffers", "bytes", "at_ns"}
        self.outlived: dict[int, dict] = {}
        self._replaying: set[int] = set()

    def observe(self, events, phase_of=None, last_phase=None, segments=None, registry=None) -> None:
        """``phase_of(pid)``: the live phase; ``last_phase(pid)``: the phase before an exit;
        ``segments()``: the phase tracker's segments (hindsight), to tell warm-up from loading;
        ``registry``: the registry the events were applied to (its rows say who holds a buffer and
        its size); without it the tracker keeps them itself."""
        warm = self.warm

        def reclaimed(ev) -> None:
            self._reclaimed(ev, last_phase)

        if registry is None and phase_of is not None:
            _hold_pass(events, self._held)  # (pid, size) of what may join the set below
        if _native_pass is not None:
            _native_pass(events, warm, phase_of, _EARLY, reclaimed, _ALLOC, _FREE, _CLEANUP, _CB, _TRACE)
        else:
            _warm_pass(events, warm, phase_of, reclaimed)
        if registry is None and self._held and len(self._held) > 2 * len(warm) + 64:
            self._held = {k: v for k, v in self._held.items() if k in warm}
        if phase_of is not None and events and warm:
            self._check_replay({ev.pid for ev in events}, phase_of, events[-1].ts_ns, segments, registry)

    def _holder(self, registry, key, at: int):
        """(pid, size) of the live buffer under ``key`` allocated at ``at``, or None."""
        if registry is None:
            return self._held.get(key)
        dev, bid = (key & 0xFF, key >> 8) if isinstance(key, int) else key
        b = registry.get(dev, bid, 0)
        if b is None or b.alloc_ts_ns != at:
            return None
        return b.owner_pid, b.size

    def _check_replay(self, pids, phase_of, ts: int, segments, registry=None) -> None:
        """When a process is (newly) replaying, count the warm-up buffers it still holds."""
        for pid in pids:
            if phase_of(pid) is not _REPLAY:
                self._replaying.discard(pid)
                continue
            if pid in self._replaying:
                continue
            self._replaying.add(pid)
            spans = [(sg.start_ns, sg.end_ns) for sg in segments() if sg.pid == pid and sg.phase is _WARMUP] \
                if segments is not None else None
            warm = self.warm
            if spans is None:
                inside = warm.items()
            else:
                inside = warm.within(spans) if hasattr(warm, "within") else None
                if inside is None:  # a dict, or values the compiled set does not hold
                    inside = [(k, at) for k, at in warm.items() if any(a <= at < b for a, b in spans)]
            n = nbytes = 0
            for key, at in inside:
                held = self._holder(registry, key, at)
                if held is not None and held[0] == pid:
                    n += 1
                    nbytes += held[1]
            if n and nbytes > self.outlived.get(pid, {}).get("bytes", 0):
                self.outlived[pid] = {"pid": pid, "kind": "outlived_warmup", "buffers": n, "bytes": nbytes,
                                      "at_ns": ts}

    def _reclaimed(self, ev, last_phase) -> None:
        r = self.reclaimed.get(ev.pid)
        if r is None:
            before = last_phase(ev.pid) if last_phase is not None else None
            how = "reclaimed" if before is None else "exited" if before in (Phase.TEARDOWN, Phase.RELEASED) else "died"
            r = self.reclaimed[ev.pid] = {"pid": ev.pid, "kind": how, "buffers": 0, "bytes": 0, "by_type": {},
                                          "devices": set(), "at_ns": ev.ts_ns}
        r["buffers"] += 1
        r["bytes"] += ev.size
        name = TYPE_NAMES[ev.buffer_type] if 0 <= ev.buffer_type < len(TYPE_NAMES) else str(ev.buffer_type)
        r["by_type"][name] = r["by_type"].get(name, 0) + ev.size
        r["devices"].add(ev.device)

    def rows(self, phase_of=None) -> list[dict]:
        """Every leak row, JSON-ready: reclaimed (died / exited / reclaimed) then outlived warm-up, largest first."""
        rows = [{**r, "devices": sorted(r["devices"])} for r in self.reclaimed.values()]
        rows.sort(key=lambda r: -r["bytes"])
        rows += sorted(self.outlived.values(), key=lambda r: -r["bytes"])
        return rows


def _warm_pass(events, warm, phase_of, reclaimed) -> None:
    """LeakTracker's per-event pass (see :meth:`LeakTracker.observe`): the warm-up set in, FREE and
    CLEANUP out (and an ALLOC of a key that does not join: a new buffer under it), CLEANUPs to
    ``reclaimed``. The reference of the compiled pass (tt_memtop/_native/leaks.c)."""
    early: dict[int, bool] = {}  # pid -> phase_of(pid) in _EARLY: nothing here changes the phases
    for ev in events:
        k = ev.kind
        if k == _ALLOC:
            bt = ev.buffer_type
            if bt < _CB:  # the registry's buffer id space
                e = False
                if phase_of is not None and bt != _TRACE:
                    pid = ev.pid
                    e = early.get(pid)
                    if e is None:
                        e = early[pid] = phase_of(pid) in _EARLY
                d = ev.device  # _k, inlined
                if e:
                    warm[ev.buffer_id << 8 | d if 0 <= d < 256 else (d, ev.buffer_id)] = ev.ts_ns
                elif warm:
                    warm.pop(ev.buffer_id << 8 | d if 0 <= d < 256 else (d, ev.buffer_id), None)
        elif k == _FREE:
            if warm:
                d = ev.device
                warm.pop(ev.buffer_id << 8 | d if 0 <= d < 256 else (d, ev.buffer_id), None)
        elif k == _CLEANUP:
            if warm:
                warm.pop(_k(ev.device, ev.buffer_id), None)
            reclaimed(ev)


def _hold_pass(events, held: dict) -> None:
    """Without a registry: (pid, size) of every buffer ALLOC that may join the set (kept while its key is)."""
    for ev in events:
        if ev.kind == _ALLOC and ev.buffer_type < _CB:
            held[_k(ev.device, ev.buffer_id)] = (ev.pid, ev.size)


def _load_native():
    from .._native import load_set_up
    from .events import Event

    return load_set_up("leaks", Event)


def _load_native_pass():
    mod = _load_native()
    return mod.warm_pass if mod is not None else None


_native = _load_native()
_native_pass = _native.warm_pass if _native is not None else None
WarmSet = _native.WarmSet if _native is not None else None
