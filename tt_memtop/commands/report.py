"""``memtop report LOG_OR_RECORDING [--json]``: leak / lifecycle report of a whole run.

Streams the file (bounded memory on multi-million-line logs) through the log parser (or the
recording reader) into :class:`~tt_memtop.core.report.ReportBuilder`; see that module for
what is reported.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..core.insight import Insight
from ..core.logparse import LogParser
from ..core.report import Report, ReportBuilder, render_text
from ..geometry_args import add_geometry_arguments, geometry_from_args
from ..sources.logfile import NotALogError, check_log, is_recording, open_log, read_line_chunks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="LOG_OR_RECORDING",
                        help="allocation-server stdout (any version; .gz accepted) or a memtop recording")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--map", action="store_true",
                        help="add each device's DRAM and L1 address map (per bank: used, free, TRACE region, "
                             "largest free range) and its peaks")
    parser.add_argument("--map-at", type=_position, default=None, metavar="POS",
                        help="draw the map as of this position: seconds into a recording, a line of a log "
                             "(default: the end)")
    add_geometry_arguments(parser)


def _position(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def build_report(path: str, notes: list[str] | None = None, insight: Insight | None = None,
                 map_at: float | None = None) -> Report:
    """The report of the log or recording at ``path``; what was skipped (a torn tail) is appended to ``notes``.

    ``insight``: also fold the run into it (peaks, bank maps), up to ``map_at`` (seconds of a
    recording, the line of a log; None: the end).
    """
    if is_recording(path):
        from ..recording import RecordingReader

        reader = RecordingReader(path)
        if insight is not None:
            insight.set_inventory(reader.header.inventory)
            insight.origin_ns = reader.header.started_mono_ns
        first = reader.header.started_mono_ns
        builder = ReportBuilder(position_unit="ns", insight=insight,
                                map_until=None if map_at is None else int(first + map_at * 1e9))
        builder.origin_ns = first
        for events in reader.batches():
            builder.add(events)
        note = reader.torn_note()
        if note and notes is not None:
            notes.append(note)
        return builder.finish()
    builder = ReportBuilder(position_unit="line", insight=insight, map_until=None if map_at is None else int(map_at))
    parser = LogParser(line_as_ts=True)
    with open_log(path) as f:
        for lines, _ in read_line_chunks(f):
            events = parser.feed(lines)
            if insight is not None:
                insight.set_inventory(parser.inventory)
            builder.add(events, parser.take_records())
    parser.finish()
    builder.add([], parser.take_records())
    return builder.finish(parser.stats.as_dict())


def run(args: argparse.Namespace) -> int:
    from ..recording import RecordingError

    notes: list[str] = []
    insight = Insight(geometry_from_args(args)) if args.map else None
    try:
        check_log(args.file)
        rep = build_report(args.file, notes, insight, args.map_at)
    except (OSError, RecordingError, NotALogError) as exc:
        print(f"memtop report: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"memtop report: note: {note}", file=sys.stderr)
    if args.json:
        doc = {"schema_version": 2, "file": args.file, **rep.as_dict()}
        if insight is not None:
            doc["devices"] = {str(d): insight.device_doc(d) for d in insight.devices()}
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(render_text(rep, args.file))
        if insight is not None:
            print(render_maps(insight, rep.position_unit))
    return 0


def render_maps(insight: Insight, unit: str) -> str:
    """Every device's DRAM and L1 map, its peaks and headroom (``report --map``)."""
    from ..core.geometry import DRAM, L1, L1_SMALL, POOLS, TRACE
    from ..output.address_map import LEGEND, render_map

    out = ["", "Address maps (one bank of each pool; every bank of a pool holds the same ranges):", f"  {LEGEND}"]
    if not insight.devices():
        out.append("  no buffers with addresses")
    for d in insight.devices():
        out.append("")
        for memory in (DRAM, L1):
            out += render_map(insight, d, memory)
        peaks = []
        for t in (DRAM, L1, L1_SMALL, TRACE):
            peak, at = insight.peaks.device_peak(d, t)
            if peak:
                where = f"line {at:,}" if unit == "line" else f"{(at - insight.origin_ns) / 1e9:.3f} s"
                peaks.append(f"{POOLS[t]} {peak:,} B at {where}")
        if peaks:
            out.append("  peaks: " + "; ".join(peaks))
        h = insight.headroom(d)
        if h.trace_peak_bytes:
            region = "unknown" if h.trace_region_size is None else \
                f"{h.trace_region_size:,} B ({'configured' if h.trace_region_known else 'inferred from addresses'})"
            out.append(f"  trace: peak {h.trace_peak_bytes:,} B of trace buffers; trace region {region}; "
                       f"suggested trace_region_size >= {h.suggested_trace_region_size:,}")
        if h.l1_headroom is not None:
            out.append(f"  L1 headroom between the CBs (top {h.l1_cb_top:#x}) and the lowest L1 buffer "
                       f"({h.l1_lowest_buffer:#x}): {h.l1_headroom:,} B per bank")
        for w in h.warnings:
            out.append(f"  WARNING {w['pool']}: the next {w['typical_bytes']:,} B allocation needs "
                       f"{w['typical_per_bank']:,} B per bank, largest free is {w['largest_free_bytes']:,} B"
                       f" ({'would fail' if w['level'] == 'would_fail' else 'room for one more'})")
    return "\n".join(out)
