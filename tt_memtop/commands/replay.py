"""``memtop replay FILE [--speed X] [--rate LINES_PER_S] [--step N]``: play a server log or a recording in the monitor.

Logs have no timestamps and play at ``--rate`` lines per second (by default 5000, lowered for a
short log so that it lasts at least 10 s); recordings play with their own timestamps. ``--speed``
scales both. In the monitor: p / Space pause and resume, ``.`` steps ``--step`` events, ``[`` / ``]``
seek 5 %, ``{`` / ``}`` jump to the start / end, ``-`` / ``+`` halve / double the speed. With
``--once`` / ``--json`` (or a non-terminal stdout) the final state is printed instead.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import add_view_arguments
from ..sources.logfile import NotALogError, check_log
from ..sources.replay import DEFAULT_RATE, ReplaySource

#: a log without --rate plays for at least this long at speed 1 (short logs are slowed down)
MIN_DURATION_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="allocation-server stdout (any version) or a memtop recording")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X", help="playback speed factor (default 1)")
    parser.add_argument("--rate", type=float, default=None, metavar="LINES_PER_S",
                        help=f"logs only: lines per second at speed 1 (default {DEFAULT_RATE:g}, or slower for a "
                             f"log that would play in under {MIN_DURATION_S:g} s)")
    parser.add_argument("--step", type=int, default=1, metavar="N", help="events per step ('.' key; default 1)")
    parser.add_argument("--paused", action="store_true", help="start paused")
    parser.add_argument("--arch", default=None, choices=["grayskull", "wormhole_b0", "blackhole"],
                        help="capacities for a log that names no device (S1 prints no detection block; "
                             "default: capacity unknown)")
    parser.add_argument("--once", action="store_true", help="print the final state as a table and exit")
    parser.add_argument("--json", action="store_true", help="print the final state as JSON and exit (implies --once)")
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..recording import RecordingError

    if args.speed <= 0 or (args.rate is not None and args.rate <= 0) or args.step < 1:
        print("memtop replay: --speed and --rate must be positive, --step at least 1", file=sys.stderr)
        return 2
    try:
        check_log(args.file)
        source = ReplaySource(args.file, args.speed, rate=args.rate or DEFAULT_RATE, paused=args.paused,
                              min_duration_s=0.0 if args.rate else MIN_DURATION_S, arch=args.arch)
    except (OSError, RecordingError, NotALogError) as exc:
        print(f"memtop replay: {exc}", file=sys.stderr)
        return 1
    note = getattr(source.timeline, "torn_note", None)
    if note:
        print(f"memtop replay: note: {note}", file=sys.stderr)
    if args.once or args.json or not sys.stdout.isatty():
        from ..output.oneshot import run_oneshot

        args.ndjson = False
        return run_oneshot(args, source)
    from .top import run_monitor

    return run_monitor(args, source, step_events=args.step)
