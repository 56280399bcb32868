"""``memtop report LOG_OR_RECORDING [--json]``: leak / lifecycle report of a whole run.

Streams the file (bounded memory on multi-million-line logs) through the log parser (or the
recording reader) into :class:`~tt_memtop.core.report.ReportBuilder`; see that module for
what is reported.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..core.logparse import LogParser
from ..core.report import Report, ReportBuilder, render_text
from ..sources.logfile import NotALogError, check_log, is_recording, open_log, read_line_chunks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="LOG_OR_RECORDING",
                        help="allocation-server stdout (any version; .gz accepted) or a memtop recording")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")


def build_report(path: str, notes: list[str] | None = None) -> Report:
    """The report of the log or recording at ``path``; what was skipped (a torn tail) is appended to ``notes``."""
    if is_recording(path):
        from ..recording import RecordingReader

        builder = ReportBuilder(position_unit="ns")
        reader = RecordingReader(path)
        for events in reader.batches():
            builder.add(events)
        note = reader.torn_note()
        if note and notes is not None:
            notes.append(note)
        return builder.finish()
    builder = ReportBuilder(position_unit="line")
    parser = LogParser(line_as_ts=True)
    with open_log(path) as f:
        for lines, _ in read_line_chunks(f):
            events = parser.feed(lines)
            builder.add(events, parser.take_records())
    parser.finish()
    builder.add([], parser.take_records())
    return builder.finish(parser.stats.as_dict())


def run(args: argparse.Namespace) -> int:
    from ..recording import RecordingError

    notes: list[str] = []
    try:
        check_log(args.file)
        rep = build_report(args.file, notes)
    except (OSError, RecordingError, NotALogError) as exc:
        print(f"memtop report: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"memtop report: note: {note}", file=sys.stderr)
    if args.json:
        doc = {"schema_version": 1, "file": args.file, **rep.as_dict()}
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(render_text(rep, args.file))
    return 0
