"""One-shot output for scripts: ``--once`` (a table), ``--json`` (one document), ``--ndjson`` (a line per interval).

Why: a monitor must be usable from scripts and pipes; a non-TTY stdout gets this instead of a
broken TUI. Works for every source: the state is folded into a :class:`MonitorState` exactly as
the UI does, and :func:`build_document` turns it into one schema-versioned dict that both the
table and the JSON are rendered from, so they never disagree.

With TT-Metal's shared-memory statistics as the source, devices also carry ``chip_unique_id``,
``logical_id`` and ``state`` (active / stale / idle), processes carry ``name``, ``alive``, ``state``,
``last_update_ns`` and ``by_device`` (``buffers`` is null: totals only), and a ``shm`` section lists
every region read (``regions``), those not read and why (``problems``), and, beside an event source,
``crosscheck.drift`` (device -> pool -> events vs shm bytes).

JSON schema (``schema_version`` 2; docs/MEMORY_MODEL.md explains the pool figures)::

    {"schema_version": 2, "generated_at": ISO-8601 UTC,
     "source": {"kind", "description", "status", "message", "capabilities": [...], "per_buffer": bool,
                "server"?: {...} (memtop serve's STATUS: "recording", "recording_error", "refused_allocs"...)},
     "filters": {"devices": [...], "types": [...], "pids": [...]},
     "devices": [{"device", "arch", "buffers" (null when only totals are known),
                  "bytes": {"DRAM", "L1", "SYSTEM_MEMORY"?, "L1_SMALL", "TRACE", "CB", "KERNEL"},
                  "total" (DRAM+L1+SYSTEM_MEMORY+L1_SMALL+TRACE, as the server's statistics),
                  "capacity": {"DRAM", "L1"} | null, "used_fraction": {"DRAM", "L1"} | null,
                  "pools": {"DRAM" | "L1" | "L1_SMALL" | "TRACE": {
                      "current_bytes", "peak_bytes", "peak_at" (ns, events' clock), "peak_at_s" (since start),
                      "banks", "range": [lo, hi] (per-bank addresses), "range_known", "bank_size",
                      "used_per_bank", "free_per_bank", "largest_free_bytes" (per bank), "largest_free_at",
                      "free_segments", "largest_allocatable_bytes" (largest free x banks), "fragmentation",
                      "at_peak"?: {"bytes", "at_ns", "top_buffers": [...], "by_pid", "by_phase"}}} | null,
                  "headroom": {"trace_bytes", "trace_peak_bytes", "trace_region_size", "trace_region_known",
                      "suggested_trace_region_size", "l1_cb_top", "l1_lowest_buffer", "l1_headroom",
                      "warnings": [{"pool", "level": "tight" | "would_fail", "typical_bytes", ...}]} | null}],
     "processes": [{"pid", "buffers", "bytes": {...}, "total", "devices": [...], "phase"?: {...},
                    "peak_bytes": {type: bytes}, "peak_at": {type: ns}}],
     "leaks": [{"pid", "kind": "died" | "exited" | "outlived_warmup", "buffers", "bytes", ...}],
     "phases": [{"pid", "phase", "since_ns", "devices", "evidence"}]   (when phase inference is available)}

``pools`` / ``headroom`` are null when the source gives totals only (no addresses).

``SYSTEM_MEMORY`` appears only with per-buffer data; polled totals (the original's QUERY) count
it inside ``L1_SMALL``. ``used_fraction`` counts TRACE in DRAM and L1_SMALL/CB/KERNEL in L1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import TextIO

import anyio

from .._compat import BaseExceptionGroup
from ..core.insight import warning_text
from ..core.model import MonitorState, new_state
from ..core.protocol import BufferType
from ..sources.base import Snapshot, Source, Status, TotalsSample
from ..sources.liveness import ProcLiveness
from ..ui.filters import ViewFilter

__all__ = ["SCHEMA_VERSION", "build_document", "render_table", "run_oneshot", "run_oneshot_async",
           "stdout_is_tty"]

SCHEMA_VERSION = 2
TYPE_KEYS = [t.name for t in BufferType]  # index = BufferType value
#: Columns of the table, as in realtime_monitor.py (plus CB/KERNEL when non-zero).
TABLE_TYPES = ("DRAM", "L1", "L1_SMALL", "TRACE")
_MB = 1024 * 1024
_IN_TOTAL = ("DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE")
_IN_DRAM = ("DRAM", "TRACE")
_IN_L1 = ("L1", "SYSTEM_MEMORY", "L1_SMALL", "CB", "KERNEL")
SETTLE_TIMEOUT_S = 10.0


def stdout_is_tty(stream: TextIO | None = None) -> bool:
    """Should ``memtop`` start the TUI? Not when stdout is a pipe or a file (one-shot output instead)."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _source_kind(source: Source | None) -> str:
    if type(source).__name__ == "RecordingSource":  # memtop --record: say what is recorded
        source = source.source
    name = type(source).__name__ if source is not None else ""
    return {"SubscribeSource": "subscribe", "PollSource": "poll", "FollowLogSource": "log",
            "FollowWithPolling": "log+poll", "ReplaySource": "replay", "ShmSource": "shm",
            "WithShmCrossCheck": "subscribe+shm", "DemoSource": "demo"}.get(name, name.lower() or "none")


def _sums(filt: ViewFilter, state: MonitorState) -> tuple[dict[int, list[int]], dict[int, int], dict[int, list]]:
    """Per-device and per-PID bytes by type (and counts) from the live buffers, filters applied."""
    dev: dict[int, list[int]] = {}
    count: dict[int, int] = {}
    pid: dict[int, list] = {}  # pid -> [bytes by type, count, devices]
    for b in state.registry.buffers():
        if not filt.matches(b.device, b.buffer_type, b.owner_pid, b.buffer_id):
            continue
        dev.setdefault(b.device, [0] * len(TYPE_KEYS))[b.buffer_type] += b.size
        if b.buffer_type < BufferType.CB:
            count[b.device] = count.get(b.device, 0) + 1
        p = pid.setdefault(b.owner_pid, [[0] * len(TYPE_KEYS), 0, set()])
        p[0][b.buffer_type] += b.size
        p[1] += 1
        p[2].add(b.device)
    return dev, count, pid


def _bytes(by_type: list[int], filt: ViewFilter, polled: bool) -> dict[str, int]:
    out = {}
    for i, key in enumerate(TYPE_KEYS):
        if polled and key == "SYSTEM_MEMORY":
            continue
        if filt.type_ok(i) or (polled and key == "L1_SMALL" and filt.type_ok(int(BufferType.SYSTEM_MEMORY))):
            out[key] = by_type[i]
    return out


def _phase(ps) -> dict:
    return {"pid": ps.pid, "phase": str(ps.phase), "since_ns": ps.since_ns, "devices": list(ps.devices),
            "evidence": ps.evidence}


def build_document(state: MonitorState, source: Source | None = None, filt: ViewFilter | None = None,
                   now: dt.datetime | None = None) -> dict:
    """The state as one JSON-ready dict (see the module docstring for the schema)."""
    filt = filt or ViewFilter()
    now = now or dt.datetime.now(dt.timezone.utc)
    per_buffer = state.has_events
    server = getattr(source, "server_status", None)
    dev_sums, counts, pid_sums = _sums(filt, state) if per_buffer else ({}, {}, {})
    devices = []
    for d in state.devices():
        if not filt.device_ok(d):
            continue
        if per_buffer:
            by_type = dev_sums.get(d, [0] * len(TYPE_KEYS))
            buffers = counts.get(d, 0)
        else:
            w = state.polled.get(d, (0,) * 6)
            if filt.pids and state.has_process_totals:  # --pid: those processes' bytes on the device
                w = [0] * 6
                for pid in filt.pids:
                    p = state.polled_procs.get(pid)
                    for i, v in enumerate(p.devices.get(d, ()) if p is not None else ()):
                        w[i] += v
            by_type = [w[0], w[1], 0, w[2], w[3], w[4], w[5]]
            buffers = None
        b = _bytes(by_type, filt, not per_buffer)
        info = state.inventory.get(d)
        cap = None
        used = None
        if info is not None and (info.total_dram or info.total_l1):
            cap = {"DRAM": info.total_dram, "L1": info.total_l1}
            used = {"DRAM": sum(b.get(k, 0) for k in _IN_DRAM) / info.total_dram if info.total_dram else None,
                    "L1": sum(b.get(k, 0) for k in _IN_L1) / info.total_l1 if info.total_l1 else None}
        pools = headroom = None
        if per_buffer:
            ins = state.insight.device_doc(d)
            pools, headroom = ins["pools"], ins["headroom"]
            for p in pools.values():
                p["peak_at_s"] = round((p["peak_at"] - state.first_ts_ns) / 1e9, 3) if p["peak_at"] else None
        devices.append({"device": d, "arch": info.arch_name if info is not None and info.available else None,
                        "buffers": buffers, "bytes": b, "total": sum(b.get(k, 0) for k in _IN_TOTAL),
                        "capacity": cap, "used_fraction": used, "pools": pools, "headroom": headroom})
    phases = getattr(state, "phases", None)
    phase_by_pid = {}
    if phases is not None:
        try:
            phase_by_pid = {pid: _phase(ps) for pid, ps in phases.processes().items()}
        except Exception:  # phase inference is optional; never let it break the output
            phase_by_pid = {}
    shm_procs = state.has_process_totals
    kernel = not state.regions or any(r.layout.endswith("kernel") for r in state.regions)
    by_dev_row = {r.device: r for r in state.regions if r.device is not None}
    for entry in devices:
        if (shm_procs or state.regions) and not kernel and not per_buffer:
            entry["bytes"].pop("KERNEL", None)
        r = by_dev_row.get(entry["device"])
        if r is not None:
            entry["chip_unique_id"] = r.chip_unique_id
            entry["logical_id"] = r.logical_id
            entry["state"] = r.state
        if state.crosscheck and per_buffer:
            w = state.crosscheck.get(entry["device"])
            if w is not None:
                entry["shm_bytes"] = {"DRAM": w[0], "L1": w[1], "L1_SMALL": w[2], "TRACE": w[3], "CB": w[4]}
    processes = []
    pid_peaks = state.insight.peaks.pid_peaks()
    if shm_procs:
        pid_sums = {}
        for pid, p in state.polled_procs.items():
            if filt.pids and pid not in filt.pids:
                continue
            by_type = [0] * len(TYPE_KEYS)
            devs = set()
            for d, w in p.devices.items():
                if not filt.device_ok(d):
                    continue
                devs.add(d)
                for t, v in zip((0, 1, 3, 4, 5, 6), w, strict=True):
                    by_type[t] += v
            if not devs:
                continue
            b = _bytes(by_type, filt, True)
            if not kernel:
                b.pop("KERNEL", None)
            entry = {"pid": pid, "name": p.name, "alive": p.alive, "last_update_ns": p.last_update_ns or None,
                     "state": {True: "alive", False: "dead", None: "unknown"}[p.alive], "buffers": None,
                     "bytes": b, "total": sum(b.get(k, 0) for k in _IN_TOTAL), "devices": sorted(devs),
                     "by_device": {str(d): dict(zip(("DRAM", "L1", "L1_SMALL", "TRACE", "CB"), w[:5], strict=True))
                                   for d, w in sorted(p.devices.items()) if filt.device_ok(d)}}
            if pid in phase_by_pid:
                entry["phase"] = phase_by_pid[pid]
            processes.append(entry)
    for pid, (by_type, n, devs) in pid_sums.items():
        b = _bytes(by_type, filt, False)
        entry = {"pid": pid, "buffers": n, "bytes": b, "total": sum(b.get(k, 0) for k in _IN_TOTAL),
                 "devices": sorted(devs)}
        if pid in pid_peaks:
            _cur, peak, at = pid_peaks[pid]
            entry["peak_bytes"] = {TYPE_KEYS[i]: v for i, v in enumerate(peak) if v}
            entry["peak_at"] = {TYPE_KEYS[i]: at[i] for i, v in enumerate(peak) if v}
        if pid in phase_by_pid:
            entry["phase"] = phase_by_pid[pid]
        processes.append(entry)
    processes.sort(key=lambda p: (-p["total"], p["pid"]))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "source": {"kind": _source_kind(source), "description": getattr(source, "description", ""),
                   "status": state.status.state, "message": state.status.message,
                   "capabilities": sorted(c.value for c in state.capabilities), "per_buffer": per_buffer,
                   **({"server": server} if server else {})},
        "filters": {"devices": sorted(filt.devices), "types": [TYPE_KEYS[t] for t in sorted(filt.types)],
                    "pids": sorted(filt.pids)},
        "devices": devices,
        "processes": processes,
        "leaks": [lk for lk in state.insight.leaks.rows(state.phases.phase if state.phases is not None else None)
                  if not filt.pids or lk["pid"] in filt.pids] if per_buffer else [],
    }
    info = getattr(source, "server_info", None)
    if info is not None:  # memtop serve's INFO record: where its state came from, peer-credential counters
        from ..client import ServerInfo

        doc["source"]["server"] = {**doc["source"].get("server", {}), **info, "notes": ServerInfo(info).notes()}
        real = {d.get("pid"): d for d in info.get("reported_pids") or () if isinstance(d, dict)}
        for p in processes:  # a reported PID that is not the sender's: say who sent it
            d = real.get(p["pid"])
            if d is not None:
                p["host_pid"], p["uid"], p["pid_kind"] = d.get("host_pid"), d.get("uid"), d.get("kind")
    if phases is not None:
        doc["phases"] = [p for p in phase_by_pid.values() if not filt.pids or p["pid"] in filt.pids]
    if state.regions or state.crosscheck:
        doc["shm"] = _shm_section(state)
    return doc


def _shm_section(state: MonitorState) -> dict:
    """What was read from TT-Metal's shared memory: every region (problems included), and drift."""
    regions = []
    for r in state.regions:
        entry = {"path": r.path, "state": r.state, "message": r.message, "version": r.version,
                 "layout": r.layout or None, "chip_unique_id": r.chip_unique_id, "logical_id": r.logical_id,
                 "device": r.device, "last_update_ns": r.last_update_ns or None,
                 "live_processes": r.live_processes, "dead_pids": list(r.dead_slots)}
        if any(r.leftover):
            entry["leftover_bytes"] = dict(zip(("DRAM", "L1", "L1_SMALL", "TRACE", "CB"), r.leftover[:5], strict=True))
        if r.clamped:
            entry["clamped_counters"] = r.clamped
        regions.append(entry)
    out: dict = {"regions": regions, "problems": [f"{os.path.basename(r.path)}: {r.message}"
                                                  for r in state.regions if not r.readable]}
    if state.crosscheck:
        drift = state.drift()
        out["crosscheck"] = {"drift": {str(d): {k: {"events": a, "shm": b} for k, (a, b) in v.items()}
                                       for d, v in sorted(drift.items())}}
    return out


def _mb(n: int) -> str:
    return f"{n / _MB:.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render_table(doc: dict) -> str:
    """``--once``: a table per device like realtime_monitor.py / ``nvitop -1``, then the processes."""
    src = doc["source"]
    demo = "DEMO " if src["kind"] == "demo" else ""  # simulated data says so (the TUI: its header badge)
    lines = [f"memtop · {demo}{src['description'] or src['kind']} · {doc['generated_at']}"]
    if not src["per_buffer"] and src["message"]:
        lines.append(f"note: {src['message']}")
    lines += [f"note: {n}" for n in src.get("server", {}).get("notes", [])]
    devs = doc["devices"]
    shown = [t for t in ("DRAM", "L1", "L1_SMALL", "TRACE", "CB", "KERNEL")
             if any(t in d["bytes"] for d in devs) and (t in TABLE_TYPES or any(d["bytes"].get(t) for d in devs))]
    sys_mem = any(d["bytes"].get("SYSTEM_MEMORY") for d in devs)
    has_cap = any(d["capacity"] for d in devs)
    head = ["Device", "Arch", "Buffers", *[f"{t} MB" for t in shown], "Total MB"]
    if has_cap:
        head += ["DRAM used", "L1 used"]
    rows = []
    for d in devs:
        b = d["bytes"]
        cells = [str(d["device"]), d["arch"] or "-", "-" if d["buffers"] is None else str(d["buffers"])]
        for t in shown:
            v = b.get(t, 0) + (b.get("SYSTEM_MEMORY", 0) if t == "L1_SMALL" else 0)
            cells.append(_mb(v))
        cells.append(_mb(d["total"]))
        if has_cap:
            u = d["used_fraction"] or {}
            cells += [_pct(u.get("DRAM")), _pct(u.get("L1"))]
        rows.append(cells)
    if not rows:
        lines.append("no devices to show")
    else:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def fmt(row: list[str]) -> str:  # numbers right-aligned, the arch name left-aligned
            return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

        lines += [fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)]
        if sys_mem:
            lines.append("(L1_SMALL includes SYSTEM_MEMORY, as the server's QUERY counts it)")
    pooled = [d for d in devs if d.get("pools")]
    replayed = (doc.get("source") or {}).get("kind") == "replay"
    if pooled:
        lines += ["", "Per bank (an allocation fails when it needs more than the largest free range of one bank; "
                      "docs/MEMORY_MODEL.md):"]
        head2 = ["Device", "DRAM largest free MB", "allocatable MB", "segs", "L1 largest free B", "allocatable MB",
                 "segs", "TRACE free MB", "DRAM peak MB"]
        rows2 = []
        for d in pooled:
            pd, pl, pt = d["pools"]["DRAM"], d["pools"]["L1"], d["pools"]["TRACE"]
            rows2.append([str(d["device"]), _mb(pd["largest_free_bytes"]), _mb(pd["largest_allocatable_bytes"]),
                          str(pd["free_segments"]), f"{pl['largest_free_bytes']:,}", _mb(pl["largest_allocatable_bytes"]),
                          str(pl["free_segments"]), _mb(pt["largest_free_bytes"]) if pt["bank_size"] else "-",
                          "-" if replayed else _mb(pd["peak_bytes"])])
        w2 = [max(len(r[i]) for r in [head2, *rows2]) for i in range(len(head2))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, w2, strict=True)) for r in [head2, *rows2]]
        if replayed:  # the state was rebuilt at the end: a peak since then would be the end state, not the run's
            lines.append("(a replay shows its end state; the run's peaks: `memtop report FILE --map`)")
        peak_trace = max((d.get("headroom") or {}).get("trace_peak_bytes", 0) for d in pooled)
        if peak_trace:
            sug = max((d.get("headroom") or {}).get("suggested_trace_region_size", 0) for d in pooled)
            lines.append(f"trace: peak {peak_trace:,} B of trace buffers on a device; suggested trace_region_size >= {sug:,}")
        for d in pooled:
            for w in (d.get("headroom") or {}).get("warnings", ()):
                lines.append(f"WARNING {warning_text(d['device'], w)}")
    procs = doc["processes"]
    if procs:
        lines += ["", f"{'PID':>8}  {'Name':<15}  {'Buffers':>7}  {'Total MB':>9}  Devices  Phase"]
        for p in procs:
            phase = p.get("phase", {}).get("phase", "")
            if p.get("alive") is False:
                phase = "dead (slot left behind)"
            buffers = "-" if p["buffers"] is None else p["buffers"]
            lines.append(f"{p['pid']:>8}  {(p.get('name') or '-')[:15]:<15}  {buffers:>7}  {_mb(p['total']):>9}  "
                         f"{','.join(map(str, p['devices'])):<7}  {phase}")
    for problem in doc.get("shm", {}).get("problems", []):
        lines.append(f"not read: {problem}")
    for d, pools in doc.get("shm", {}).get("crosscheck", {}).get("drift", {}).items():
        lines.append(f"DRIFT on device {d}: " + ", ".join(f"{k} events {v['events']:,} B vs shm {v['shm']:,} B"
                                                          for k, v in pools.items()))
    return "\n".join(lines)


def _ended(update) -> bool:
    """A replay's final state is there (it seeks to its end in slices: earlier updates are not it)."""
    return isinstance(update, Status) and update.state == "ended"


def _settles(update, source: Source) -> bool:
    """Has ``source`` delivered a complete picture? (first sample / snapshot / caught-up log / end)."""
    if isinstance(update, TotalsSample) and update.crosscheck:
        return False  # shared-memory totals beside an event source: the events' snapshot settles it
    if isinstance(update, (TotalsSample, Snapshot)):
        return not getattr(source, "ready_on_connect", False)
    if isinstance(update, Status):
        return update.state == "ended" or (update.state == "connected" and getattr(source, "ready_on_connect", False))
    return False


async def run_oneshot_async(args: argparse.Namespace, source: Source | None = None, out: TextIO | None = None) -> int:
    """Print ``--once`` / ``--json`` (one shot) or ``--ndjson`` (every ``--interval``) for ``source``."""
    out = out or sys.stdout
    try:
        filt = ViewFilter.from_args(getattr(args, "device", None), getattr(args, "type", None),
                                    getattr(args, "pid", None))
    except ValueError as exc:
        print(f"memtop: bad filter: {exc}", file=sys.stderr)
        return 2
    if source is None:
        from ..sources.open import open_source_async

        try:
            source = await open_source_async(args)
        except ValueError as exc:  # e.g. --source follow without --follow
            print(f"memtop: {exc}", file=sys.stderr)
            return 2
        if source is None:
            from ..sources.open import nothing_found

            print(f"memtop: {nothing_found(args)}", file=sys.stderr)
            return 1
    replay = hasattr(source, "hold_at_end")
    if replay:  # a replay: jump to the end and report the final state, once the player says it ended
        source.hold_at_end = False
        if hasattr(source, "no_seeking"):  # nothing seeks back: no checkpoints to take
            source.no_seeking()
        source.seek(1.0)
    from ..geometry_args import geometry_from_args

    state = new_state(geometry=geometry_from_args(args))
    settled = anyio.Event()
    failed: list[Status] = []

    def emit(update) -> None:
        state.apply(update, time.monotonic_ns())
        if isinstance(update, Status) and update.state in ("disconnected", "error") and not settled.is_set():
            failed.append(update)
            settled.set()
        elif _ended(update) if replay else _settles(update, source):
            settled.set()

    ndjson = getattr(args, "ndjson", False)
    liveness = ProcLiveness()
    interval = max(0.05, getattr(args, "interval", 0.5) or 0.5)
    async with anyio.create_task_group() as tg:

        async def drive() -> None:
            await source.run(emit)
            settled.set()

        tg.start_soon(drive)
        with anyio.move_on_after(None if replay else SETTLE_TIMEOUT_S):  # a replay ends by itself
            await settled.wait()
        if not settled.is_set():
            tg.cancel_scope.cancel()
            print(f"memtop: gave up after {SETTLE_TIMEOUT_S:g} s: {state.status.message or 'no data'}", file=sys.stderr)
            return 1
        if failed and not state.has_events and not state.polled:
            tg.cancel_scope.cancel()
            print(f"memtop: {failed[0].message}", file=sys.stderr)
            return 1
        delay = getattr(source, "oneshot_delay_s", 0.0)  # the demo: print at a representative moment
        if delay:
            await anyio.sleep(delay)
        known = state.devices()
        if filt.devices and known and not filt.devices & set(known):
            tg.cancel_scope.cancel()
            print(f"memtop: no device {_ids(filt.devices)} here (this source has device {_ids(known)})",
                  file=sys.stderr)
            return 2
        if filt.pids and not state.has_events and not state.has_process_totals:
            print("memtop: note: --pid needs per-buffer events, which this source does not give "
                  "(totals are per device)", file=sys.stderr)
        for r in state.regions:  # shared-memory regions that were not read: one line each
            if not r.readable:
                print(f"memtop: note: not read: {r.path}: {r.message}", file=sys.stderr)
        if not ndjson:
            doc = build_document(state, source, filt)
            out.write((json.dumps(doc, indent=2) if getattr(args, "json", False) else render_table(doc)) + "\n")
            out.flush()
            tg.cancel_scope.cancel()
            return 0
        try:
            while True:
                if state.phases is not None and state.last_ts_ns:
                    now = state.server_now(time.monotonic_ns())
                    state.check_liveness(liveness.alive, now)
                    state.phases.tick(now)
                out.write(json.dumps(build_document(state, source, filt), separators=(",", ":")) + "\n")
                out.flush()
                if state.status.state == "ended" or getattr(args, "once", False):
                    break
                await anyio.sleep(interval)
        finally:
            tg.cancel_scope.cancel()
    return 0


def _ids(ids) -> str:
    """{0, 1, 2, 5} -> "0-2,5"."""
    out, run = [], []
    for i in sorted(ids):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _is_broken_pipe(exc: BaseException) -> bool:
    """A BrokenPipeError, possibly wrapped in (nested) exception groups by the task group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


def run_oneshot(args: argparse.Namespace, source: Source | None = None) -> int:
    """Synchronous entry point used by ``memtop`` (commands/top.py) and ``memtop replay``."""
    try:
        return anyio.run(run_oneshot_async, args, source)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        # `memtop --ndjson | head -1`: the reader went away. Not an error; silence the final flush.
        if not _is_broken_pipe(exc):
            raise
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0
