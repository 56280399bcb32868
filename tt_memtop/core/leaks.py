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
        # key -> (pid, size, ts) of live non-TRACE buffers allocated while the live phase said loading or
        # warm-up; which of them really came from warm-up is decided with hindsight (phase segments)
        self.warm: dict = {}
        # pid -> the most warm-up buffers seen alive while it replayed: {"buffers", "bytes", "at_ns"}
        self.outlived: dict[int, dict] = {}
        self._replaying: set[int] = set()

    def observe(self, events, phase_of=None, last_phase=None, segments=None) -> None:
        """``phase_of(pid)``: the live phase; ``last_phase(pid)``: the phase before an exit;
        ``segments()``: the phase tracker's segments (hindsight), to tell warm-up from loading."""
        warm = self.warm

        def reclaimed(ev) -> None:
            self._reclaimed(ev, last_phase)

        if _native_pass is not None:
            _native_pass(events, warm, phase_of, _EARLY, reclaimed, _ALLOC, _FREE, _CLEANUP, _CB, _TRACE)
        else:
            _warm_pass(events, warm, phase_of, reclaimed)
        if phase_of is not None and events and warm:
            self._check_replay({ev.pid for ev in events}, phase_of, events[-1].ts_ns, segments)

    def _check_replay(self, pids, phase_of, ts: int, segments) -> None:
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
            n = nbytes = 0
            for p, size, at in self.warm.values():
                if p == pid and (spans is None or any(a <= at < b for a, b in spans)):
                    n += 1
                    nbytes += size
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


def _warm_pass(events, warm: dict, phase_of, reclaimed) -> None:
    """LeakTracker's per-event pass (see :meth:`LeakTracker.observe`): the warm-up set in, FREE and
    CLEANUP out, CLEANUPs to ``reclaimed``. The reference of the compiled pass (tt_memtop/_native/leaks.c)."""
    early: dict[int, bool] = {}  # pid -> phase_of(pid) in _EARLY: nothing here changes the phases
    for ev in events:
        k = ev.kind
        if k == _ALLOC:
            if phase_of is not None and ev.buffer_type < _CB and ev.buffer_type != _TRACE:
                pid = ev.pid
                e = early.get(pid)
                if e is None:
                    e = early[pid] = phase_of(pid) in _EARLY
                if e:
                    d = ev.device  # _k, inlined
                    warm[ev.buffer_id << 8 | d if 0 <= d < 256 else (d, ev.buffer_id)] = (pid, ev.size, ev.ts_ns)
        elif k == _FREE:
            if warm:
                d = ev.device
                warm.pop(ev.buffer_id << 8 | d if 0 <= d < 256 else (d, ev.buffer_id), None)
        elif k == _CLEANUP:
            if warm:
                warm.pop(_k(ev.device, ev.buffer_id), None)
            reclaimed(ev)


def _load_native_pass():
    from .._native import load

    mod = load("leaks")
    return mod.warm_pass if mod is not None else None


_native_pass = _load_native_pass()
