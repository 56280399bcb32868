"""Leak / lifecycle report of a whole run (a server log or a recording). Pure.

Why: the questions people asked of ``debug-llama.log`` by hand (grep + spreadsheet) — what is
left at the end, which addresses were freed more often than allocated, how long the trace
buffers lived, who leaked what — answered from the same event stream every other view uses.

Feed it in order with :meth:`ReportBuilder.add` (events, and the log parser's records when the
input is a log), then :meth:`ReportBuilder.finish`. Memory is bounded by the number of distinct
(device, buffer id) keys and live buffers, never by the number of lines; past :data:`MAX_KEYS`
distinct keys, those whose every allocation was freed (and are not live) are folded into the
"fully freed" count (a key seen again later is then counted again), so that a run whose ids never
repeat still fits.

Positions: with a log parsed with ``line_as_ts=True`` an event's ``ts_ns`` is its line number
(``position_unit="line"``); with a recording it is the server's clock (``"ns"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import Event, EventKind
from .insight import Insight
from .leaks import LeakTracker, phase_before_exit
from .logrecords import DumpReport, ProcessCleanup, Record
from .phases import PhaseTracker
from .protocol import BufferType
from .registry import Buffer, Registry

__all__ = ["Report", "ReportBuilder", "dump_mismatches", "render_text"]

MiB = 1024 * 1024
TYPE_NAMES = [t.name for t in BufferType]
_ALLOC, _REF_INC, _REF_DEC, _FREE = EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE
_UNKNOWN, _CLEANUP, _TOTALS = EventKind.FREE_UNKNOWN, EventKind.CLEANUP, EventKind.TOTALS
_CB = int(BufferType.CB)

STATUS_FULLY_FREED = "fully freed"
STATUS_LIVE = "still allocated"
STATUS_OVER_FREED = "freed more often than allocated"
STATUS_NEVER_ALLOCATED = "freed but never seen allocated"
STATUS_CLEANED = "removed by dead-process cleanup"
#: distinct (device, buffer id) keys kept with their counters before balanced ones are folded (see above)
MAX_KEYS = 1 << 21
#: trace buffers listed (the first ones)
MAX_TRACE_ROWS = 1000


def _k(device: int, buffer_id: int) -> int | tuple[int, int]:
    """One int per (device, buffer id), as the registry keys them (a tuple only for a device outside 0..255)."""
    return buffer_id << 8 | device if 0 <= device < 256 else (device, buffer_id)


def _unk(key: int | tuple[int, int]) -> tuple[int, int]:
    return key if isinstance(key, tuple) else (key & 0xFF, key >> 8)


def _g(x: float) -> str:
    return format(x, "g")


def dump_mismatches(dump: DumpReport, buffers: list[Buffer]) -> list[str]:
    """Where ``buffers`` (a rebuilt state) disagree with a DUMP_REMAINING report of the log. [] = agree."""
    bufs = [b for b in buffers if b.buffer_type < _CB]
    out: list[str] = []
    if dump.total_tracked is not None and dump.total_tracked != len(bufs):
        out.append(f"total tracked allocations: log says {dump.total_tracked}, rebuilt state has {len(bufs)}")
    groups: dict[tuple[int, str], list[Buffer]] = {}
    for b in bufs:
        groups.setdefault((b.device, TYPE_NAMES[b.buffer_type]), []).append(b)
    seen = set()
    for grp in dump.groups:
        key = (grp.device, grp.type_name)
        seen.add(key)
        mine = groups.get(key, [])
        mb = _g(sum(b.size for b in mine) / MiB)
        if grp.count != len(mine) or grp.mb_text != mb:
            out.append(f"device {grp.device} {grp.type_name}: log says {grp.count} buffers / {grp.mb_text} MB, "
                       f"rebuilt {len(mine)} / {mb} MB")
    if dump.complete or dump.requested:
        for key in sorted(set(groups) - seen):
            out.append(f"device {key[0]} {key[1]}: {len(groups[key])} buffers rebuilt but absent from the log's DUMP")
    live = {(b.device, b.buffer_id): b for b in bufs}
    for db in dump.buffers:
        b = live.get((db.device, db.buffer_id))
        if b is None:
            out.append(f"device {db.device} buffer {db.buffer_id:#x}: listed by the log, not in the rebuilt state")
        elif (_g(b.size / 1024.0) != _g(db.size / 1024.0) or b.owner_pid != db.pid
              or b.ref_count != db.ref_count):
            out.append(f"device {db.device} buffer {db.buffer_id:#x}: log says {_g(db.size / 1024)} KB PID {db.pid} "
                       f"refs {db.ref_count}, rebuilt {_g(b.size / 1024)} KB PID {b.owner_pid} refs {b.ref_count}")
    return out


@dataclass
class Report:
    """The finished report; :meth:`as_dict` is the ``--json`` form."""

    position_unit: str
    remaining: dict[int, dict[str, dict]]  # device -> type -> {"buffers", "bytes", "ids"(<=10)}
    remaining_total: int
    allocations: dict[str, dict[str, float]]  # type -> {"count", "bytes", "ref_increments"}
    buffer_status: dict[str, int]  # status -> (device, id) keys
    problem_ids: list[dict]  # over-freed / never-allocated (device, id), worst first, with the devices involved
    trace_buffers: list[dict]
    leaks_by_pid: list[dict]
    cleanups: list[dict]
    unknown_frees: int
    unknown_free_addresses: int
    dumps: list[dict]
    parse: dict | None = None
    events: int = 0
    origin_ns: int = 0
    totals_samples: int = 0  # TOTALS sample markers (a `memtop --record` of shared-memory or polled totals)  # a recording's start on its clock (positions in "ns" are printed relative to it)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(slots=True)
class _Key:
    """Counters for one (device, buffer id): alloc-like and free-like messages."""

    allocs: int = 0
    frees: int = 0
    unknown: int = 0
    cleaned: int = 0


class ReportBuilder:
    """Accumulates the report; bounded by distinct keys and live buffers."""

    def __init__(self, position_unit: str = "line", max_ids: int = 50, map_until: int | None = None,
                 insight: Insight | None = None) -> None:
        self.position_unit = position_unit
        self.origin_ns = 0
        # the bank maps and peaks of the run, as of position ``map_until`` (None: the end)
        self.insight = insight
        self.map_until = map_until
        self.max_ids = max_ids
        self.registry = Registry()
        self._keys: dict[int | tuple[int, int], _Key] = {}
        self._key_limit = MAX_KEYS
        self._folded = 0  # balanced keys folded into the "fully freed" count
        self._alloc_count = [0] * len(TYPE_NAMES)
        self._alloc_bytes = [0] * len(TYPE_NAMES)
        self._ref_inc = [0] * len(TYPE_NAMES)
        self._trace_live: dict[tuple[int, int], dict] = {}
        self._trace: list[dict] = []
        self._cleanups: list[dict] = []
        self._dumps: list[dict] = []
        self._unknown = 0
        self._events = 0
        self._samples = 0
        # leaks: what dead-PID cleanups reclaimed, and warm-up buffers alive in replay (phases need a real
        # clock: recordings only; a log's positions are line numbers)
        self._phases = PhaseTracker() if position_unit == "ns" else None
        self._leaks = LeakTracker()
        self._phase_of = self._phases.phase if self._phases is not None else None
        self._before_exit = (lambda pid: phase_before_exit(self._phases, pid)) if self._phases is not None else None

    def _key(self, ev: Event) -> _Key:
        key = _k(ev.device, ev.buffer_id)
        k = self._keys.get(key)
        if k is None:
            if len(self._keys) >= self._key_limit:
                self._fold()
            k = self._keys[key] = _Key()
        return k

    def _fold(self) -> None:
        """Too many distinct keys: count the balanced, dead ones (all a report says of them) and drop them."""
        reg = self.registry
        drop = [key for key, k in self._keys.items()
                if k.allocs == k.frees and not k.unknown and not k.cleaned and reg.get(*_unk(key)) is None]
        for key in drop:
            del self._keys[key]
        self._folded += len(drop)
        self._key_limit = max(MAX_KEYS, 2 * len(self._keys))

    def _event(self, ev: Event) -> None:
        kind = ev.kind
        bt = ev.buffer_type
        if kind == _ALLOC:
            if bt < _CB:
                self._key(ev).allocs += 1
            self._alloc_count[bt] += 1
            self._alloc_bytes[bt] += ev.size
            if bt == BufferType.TRACE:
                self._trace_live[(ev.device, ev.buffer_id)] = {
                    "device": ev.device, "buffer_id": ev.buffer_id, "size": ev.size, "pid": ev.pid,
                    "allocated_at": ev.ts_ns, "freed_at": None, "lifetime": None, "end": "still allocated"}
        elif kind == _REF_INC:
            self._key(ev).allocs += 1
            self._ref_inc[bt] += 1
        elif kind == _REF_DEC or kind == _FREE:
            if bt < _CB:
                self._key(ev).frees += 1
        elif kind == _UNKNOWN:
            k = self._key(ev)
            k.frees += 1
            k.unknown += 1
            self._unknown += 1
        elif kind == _CLEANUP:
            self._key(ev).cleaned += 1
        elif kind == _TOTALS:
            if ev.device == -1:
                self._samples += 1
            return  # totals change no buffer
        if (kind == _FREE or kind == _CLEANUP) and bt == BufferType.TRACE:
            t = self._trace_live.pop((ev.device, ev.buffer_id), None)
            if t is not None:
                t["freed_at"] = ev.ts_ns
                t["lifetime"] = ev.ts_ns - t["allocated_at"]
                t["end"] = "freed" if kind == _FREE else "owner process died"
                if len(self._trace) < MAX_TRACE_ROWS:
                    self._trace.append(t)
        self.registry.apply_event(ev)
        if self._phases is not None:
            self._phases.observe(ev)
        if kind == _ALLOC or kind == _FREE or kind == _CLEANUP:
            self._leaks.observe((ev,), self._phase_of, self._before_exit,
                                self._phases.segments if self._phases is not None else None, self.registry)

    def _record(self, rec: Record) -> None:
        if isinstance(rec, DumpReport):
            miss = dump_mismatches(rec, list(self.registry.buffers()))
            self._dumps.append({"at": rec.line, "complete": rec.complete, "total_tracked": rec.total_tracked,
                                "agrees_with_rebuilt_state": not miss, "mismatches": miss[:20]})
            del self._dumps[:-20]  # keep the last ones only
        elif isinstance(rec, ProcessCleanup):
            self._cleanups.append({"pid": rec.pid, "at": rec.line, "buffers": rec.removed, "bytes": rec.removed_bytes,
                                   "server_said": {k: {"count": n, "MB": mb} for k, (n, mb) in rec.logged.items()},
                                   "consistent": rec.consistent})
            del self._cleanups[:-1000]

    def add(self, events: list[Event], records: list[Record] = ()) -> None:
        """Fold a chunk: events in order, and the parser's records (each applied after the events up to its seq)."""
        recs = sorted(records, key=lambda r: r.seq) if records else []
        i = 0
        for ev in events:
            while i < len(recs) and recs[i].seq < ev.seq:
                self._record(recs[i])
                i += 1
            self._event(ev)
        for rec in recs[i:]:
            self._record(rec)
        self._events += len(events)
        if self.insight is not None and events:
            until = self.map_until
            if until is None or events[-1].ts_ns <= until:
                self.insight.observe(events)
            elif events[0].ts_ns <= until:
                self.insight.observe([e for e in events if e.ts_ns <= until])

    def finish(self, parse_stats: dict | None = None) -> Report:
        reg = self.registry
        remaining: dict[int, dict[str, dict]] = {}
        n_rem = 0
        for b in reg.buffers():
            if b.buffer_type >= _CB:
                continue
            n_rem += 1
            g = remaining.setdefault(b.device, {}).setdefault(TYPE_NAMES[b.buffer_type],
                                                               {"buffers": 0, "bytes": 0, "ids": []})
            g["buffers"] += 1
            g["bytes"] += b.size
            if len(g["ids"]) <= 10:
                g["ids"].append(b.buffer_id)
        for dev in remaining.values():
            for g in dev.values():
                g["ids"] = sorted(g["ids"]) if g["buffers"] <= 10 else []
        remaining = {d: dict(sorted(remaining[d].items(), key=lambda kv: TYPE_NAMES.index(kv[0])))
                     for d in sorted(remaining)}
        status: dict[str, int] = {STATUS_FULLY_FREED: self._folded} if self._folded else {}
        problems = []
        for key, k in self._keys.items():
            dev, bid = _unk(key)
            live = reg.get(dev, bid) is not None
            if k.allocs == 0 and k.frees > 0:
                st = STATUS_NEVER_ALLOCATED
            elif k.frees > k.allocs:
                st = STATUS_OVER_FREED
            elif live:
                st = STATUS_LIVE
            elif k.cleaned:
                st = STATUS_CLEANED
            else:
                st = STATUS_FULLY_FREED
            status[st] = status.get(st, 0) + 1
            if st in (STATUS_OVER_FREED, STATUS_NEVER_ALLOCATED):
                problems.append({"device": dev, "buffer_id": bid, "status": st, "allocs": k.allocs, "frees": k.frees,
                                 "unknown_frees": k.unknown})
        problems.sort(key=lambda p: (-(p["frees"] - p["allocs"]), p["device"], p["buffer_id"]))
        problems = problems[: self.max_ids]
        # which devices allocated and freed each problem id (an address is per device, ids repeat across a mesh)
        wanted = {p["buffer_id"] for p in problems}
        across: dict[int, dict[int, dict]] = {}
        for key, k in self._keys.items():
            dev, bid = _unk(key)
            if bid in wanted:
                across.setdefault(bid, {})[dev] = {"allocs": k.allocs, "frees": k.frees}
        for p in problems:
            per_dev = across.get(p["buffer_id"], {})
            p["allocated_on"] = sorted(d for d, c in per_dev.items() if c["allocs"])
            p["freed_on"] = sorted(d for d, c in per_dev.items() if c["frees"])
        leaks = []
        for pid in reg.pids():
            t = reg.pid_totals(pid)
            leaks.append({"pid": pid, "kind": "live_at_end", "buffers": reg.pid_count(pid), "bytes": sum(t),
                          "by_type": {TYPE_NAMES[i]: v for i, v in enumerate(t) if v},
                          "devices": sorted(reg.pid_device_totals(pid))})
        leaks.sort(key=lambda x: -x["bytes"])
        leaks += self._leaks.rows()
        trace = self._trace + list(self._trace_live.values())[:MAX_TRACE_ROWS]
        return Report(
            position_unit=self.position_unit,
            remaining=remaining,
            remaining_total=n_rem,
            allocations={TYPE_NAMES[i]: {"count": self._alloc_count[i], "bytes": self._alloc_bytes[i],
                                         "ref_increments": self._ref_inc[i]}
                         for i in range(len(TYPE_NAMES)) if self._alloc_count[i] or self._ref_inc[i]},
            buffer_status=dict(sorted(status.items())),
            problem_ids=problems,
            trace_buffers=trace[:1000],
            leaks_by_pid=leaks,
            cleanups=self._cleanups,
            unknown_frees=self._unknown,
            unknown_free_addresses=sum(1 for k in self._keys.values() if k.unknown),
            dumps=self._dumps,
            parse=parse_stats,
            events=self._events,
            origin_ns=self.origin_ns,
            totals_samples=self._samples,
        )


def _devs(devs: list[int]) -> str:
    return ",".join(map(str, devs)) or "none"


def _mb(n: float) -> str:
    return f"{n / MiB:,.2f} MB"


def _lifetime(t: dict, unit: str) -> str:
    if t["lifetime"] is None:
        return "still allocated at the end"
    if unit == "line":
        return f"lines {t['allocated_at']:,}–{t['freed_at']:,} ({t['lifetime']:,} lines), {t['end']}"
    return f"{t['lifetime'] / 1e9:.3f} s, {t['end']}"


_LEAK_KIND = {
    "live_at_end": "still allocated at the end",
    "died": "died holding them (no teardown); the server's dead-PID cleanup reclaimed",
    "exited": "exited after its teardown still holding them; the server's dead-PID cleanup reclaimed",
    "reclaimed": "the server's dead-PID cleanup reclaimed (the process exited holding them)",
    "outlived_warmup": "allocated during warm-up, still alive when it started replaying",
}


def _leak_text(lk: dict, unit: str, origin_ns: int = 0) -> str:
    what = f"{lk['buffers']:,} buffers, {_mb(lk['bytes'])}"
    if lk.get("by_type"):
        what += " (" + ", ".join(f"{k} {_mb(v)}" for k, v in lk["by_type"].items()) + ")"
    if lk.get("devices"):
        what += f" on devices {','.join(map(str, lk['devices']))}"
    kind = lk.get("kind", "live_at_end")
    how = _LEAK_KIND.get(kind, kind)
    at = lk.get("at_ns")
    when = ""
    if at is not None and kind != "live_at_end":
        when = f" at line {at:,}" if unit == "line" else f" at {(at - origin_ns) / 1e9:.3f} s"
    return f"{how}{when}: {what}"


def render_text(rep: Report, title: str = "") -> str:
    """The human-readable report."""
    out = [f"memtop report{': ' + title if title else ''}"]
    if rep.parse:
        p = rep.parse
        out.append(f"  {p['lines']:,} lines, {rep.events:,} events; {p['unknown']:,} unrecognised and "
                   f"{p['malformed']:,} malformed lines")
    if rep.totals_samples and not rep.allocations and not rep.unknown_frees:
        out += ["", f"This recording holds {rep.totals_samples:,} totals samples only (memtop --record of TT-Metal's "
                    f"shared-memory statistics or of a polled server): there is no per-buffer event to report on. "
                    f"`memtop replay` plays the totals back and `memtop analyze` infers the phases from them."]
        return "\n".join(out)
    out += ["", "Allocations by type (new buffers; cumulative bytes):"]
    for name, a in rep.allocations.items():
        extra = f", plus {a['ref_increments']:,} re-allocations of a live address" if a["ref_increments"] else ""
        out.append(f"  {name:<13} {a['count']:>9,} allocations ({_mb(a['bytes'])} cumulative){extra}")
    out += ["", f"Remaining at the end (what DUMP_REMAINING would list): {rep.remaining_total:,} buffers"]
    if not rep.remaining:
        out.append("  none - perfect cleanup")
    for dev, types in rep.remaining.items():
        out.append(f"  Device {dev}: " + ", ".join(f"{t} {g['buffers']:,} ({_mb(g['bytes'])})" for t, g in types.items()))
    out += ["", "Buffer addresses (per device) by status:"]
    out += [f"  {st:<35} {n:>9,}" for st, n in rep.buffer_status.items()]
    if rep.unknown_frees:
        out.append(f"  {rep.unknown_frees:,} unknown-buffer frees across {rep.unknown_free_addresses:,} addresses")
    if rep.problem_ids:
        out += ["", "Worst addresses (freed more often than allocated / never seen allocated):"]
        for p in rep.problem_ids[:10]:
            out.append(f"  {p['buffer_id']:#x} ({p['buffer_id']}) on device {p['device']}: allocated {p['allocs']:,}, "
                       f"freed {p['frees']:,} - {p['status']}; "
                       + (f"this id was allocated on devices {_devs(p['allocated_on'])}" if p["allocated_on"]
                          else "this id was never allocated on any device")
                       + f", freed on {_devs(p['freed_on'])}")
    if rep.trace_buffers:
        out += ["", "TRACE buffers:"]
        for t in rep.trace_buffers[:16]:
            out.append(f"  device {t['device']} {t['buffer_id']:#x} {_mb(t['size'])} PID {t['pid']}: "
                       f"{_lifetime(t, rep.position_unit)}")
        if len(rep.trace_buffers) > 16:
            out.append(f"  ... {len(rep.trace_buffers) - 16} more")
    out += ["", "Leaks by PID:"]
    if not rep.leaks_by_pid:
        out.append("  none")
    for lk in rep.leaks_by_pid:
        out.append(f"  PID {lk['pid']}: {_leak_text(lk, rep.position_unit, rep.origin_ns)}")
    if rep.cleanups:
        out += ["", "Dead-process cleanups:"]
        for c in rep.cleanups[-10:]:
            said = c["server_said"].get("buffers")
            check = "" if c["consistent"] else f" (server said {said['count']})"
            out.append(f"  PID {c['pid']} at {rep.position_unit} {c['at']:,}: {c['buffers']} buffers, "
                       f"{_mb(c['bytes'])}{check}")
    if rep.dumps:
        out += ["", "DUMP_REMAINING reports in the log:"]
        for d in rep.dumps[-5:]:
            verdict = "matches the rebuilt state" if d["agrees_with_rebuilt_state"] else \
                f"DIFFERS from the rebuilt state: {d['mismatches'][0]}"
            frag = "" if d["complete"] else " (fragment)"
            total = "?" if d["total_tracked"] is None else f"{d['total_tracked']:,}"
            out.append(f"  at line {d['at']:,}{frag}: {total} buffers; {verdict}")
    return "\n".join(out)
