"""Leaks, honestly: what each process left behind, and how we know.

Why: a process that dies holding 256 buffers is the leak people look for, yet after the server's
dead-PID cleanup nothing is live any more and a "live at the end" report says "none". Three
kinds are told apart (per PID):

* ``died`` — buffers reclaimed by the dead-PID cleanup of a process that had not torn down (killed
  or crashed: it never freed them);
* ``exited`` — buffers still held when a process that had torn its device down went away (an
  orderly exit that forgot some; the cleanup reclaimed them too);
* ``outlived_warmup`` — buffers allocated during warm-up (compile / first runs, where every
  temporary is freed by the end of the op) still alive while their process replays a trace.

Pure; fed events plus a ``phase_of(pid)`` function (the phase tracker's, O(1)). Bounded: the
warm-up set holds only live buffers allocated in warm-up, the reclaimed table one row per PID.
"""

from __future__ import annotations

from .events import EventKind
from .phases import Phase
from .protocol import BufferType

__all__ = ["LeakTracker"]

_ALLOC, _FREE, _CLEANUP = EventKind.ALLOC, EventKind.FREE, EventKind.CLEANUP
TYPE_NAMES = [t.name for t in BufferType]
_CB = int(BufferType.CB)
_TRACE = int(BufferType.TRACE)
_WARMUP, _REPLAY = Phase.WARMUP, Phase.REPLAY


def _k(device: int, buffer_id: int):
    return buffer_id << 8 | device if 0 <= device < 256 else (device, buffer_id)


class LeakTracker:
    def __init__(self) -> None:
        self.reclaimed: dict[int, dict] = {}  # pid -> {"buffers", "bytes", "by_type", "devices", "at_ns", "how"}
        self.warm: dict = {}  # key -> (pid, size) of live non-TRACE buffers allocated during warm-up

    def observe(self, events, phase_of=None, last_phase=None) -> None:
        warm = self.warm
        for ev in events:
            k = ev.kind
            if k == _ALLOC:
                if phase_of is not None and ev.buffer_type < _CB and ev.buffer_type != _TRACE \
                        and phase_of(ev.pid) is _WARMUP:
                    warm[_k(ev.device, ev.buffer_id)] = (ev.pid, ev.size)
            elif k == _FREE:
                if warm:
                    warm.pop(_k(ev.device, ev.buffer_id), None)
            elif k == _CLEANUP:
                if warm:
                    warm.pop(_k(ev.device, ev.buffer_id), None)
                self._reclaimed(ev, last_phase)

    def _reclaimed(self, ev, last_phase) -> None:
        r = self.reclaimed.get(ev.pid)
        if r is None:
            before = last_phase(ev.pid) if last_phase is not None else None
            how = "exited" if before in (Phase.TEARDOWN, Phase.RELEASED) else "died"
            r = self.reclaimed[ev.pid] = {"pid": ev.pid, "kind": how, "buffers": 0, "bytes": 0, "by_type": {},
                                          "devices": set(), "at_ns": ev.ts_ns}
        r["buffers"] += 1
        r["bytes"] += ev.size
        name = TYPE_NAMES[ev.buffer_type] if 0 <= ev.buffer_type < len(TYPE_NAMES) else str(ev.buffer_type)
        r["by_type"][name] = r["by_type"].get(name, 0) + ev.size
        r["devices"].add(ev.device)

    def outlived_warmup(self, phase_of) -> list[dict]:
        """Per PID now replaying: live buffers it allocated during warm-up."""
        out: dict[int, dict] = {}
        for (pid, size) in self.warm.values():
            if phase_of(pid) is not _REPLAY:
                continue
            r = out.setdefault(pid, {"pid": pid, "kind": "outlived_warmup", "buffers": 0, "bytes": 0})
            r["buffers"] += 1
            r["bytes"] += size
        return sorted(out.values(), key=lambda r: -r["bytes"])

    def rows(self, phase_of=None) -> list[dict]:
        """Every leak row, JSON-ready: reclaimed (died / exited) then outlived warm-up, largest first."""
        rows = [{**r, "devices": sorted(r["devices"])} for r in self.reclaimed.values()]
        rows.sort(key=lambda r: -r["bytes"])
        if phase_of is not None:
            rows += self.outlived_warmup(phase_of)
        return rows
