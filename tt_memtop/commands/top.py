"""``memtop`` (no sub-command): the live monitor, or one-shot output for scripts.

``run`` picks a source (``open_source``), falls back to offering the built-in demo when no server
answers, and sends non-TTY / ``--once`` / ``--json`` / ``--ndjson`` runs to the one-shot printer.
``run_monitor`` runs the TUI on any Source; ``memtop demo`` and ``memtop replay`` call it too.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import add_socket_argument, add_view_arguments, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--protocol", default="auto", choices=["auto", "72", "112", "128", "144", "648"],
                        help="message layout to speak to the server (default: auto-detect)")
    parser.add_argument("--interval", type=positive_float, default=0.5, metavar="S",
                        help="poll interval for the original server, and --ndjson period (default 0.5)")
    parser.add_argument("--follow", metavar="LOG", help="follow an allocation-server log file for the event feed")
    parser.add_argument("--once", action="store_true",
                        help="print once and exit: a table per device (with --json/--ndjson: one document / line)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document and exit (implies --once)")
    out.add_argument("--ndjson", action="store_true",
                     help="print one JSON line every --interval seconds (with --once: one line)")
    add_view_arguments(parser)
    parser.add_argument("--no-demo", action="store_true", help="never offer the demo when no server answers")


def _say(msg: str) -> None:
    print(f"memtop: {msg}", file=sys.stderr)


def run_monitor(args: argparse.Namespace, source, **app_kw) -> int:
    """Run the TUI on ``source`` with the filters, theme and refresh period from ``args``."""
    from ..ui.app import MemtopApp
    from ..ui.filters import ViewFilter

    try:
        view_filter = ViewFilter.from_args(getattr(args, "device", None), getattr(args, "type", None),
                                           getattr(args, "pid", None))
    except ValueError as exc:
        _say(f"bad filter: {exc}")
        return 2
    interval = getattr(args, "interval", 0.5) or 0.5
    app = MemtopApp(source, view_filter=view_filter, theme=getattr(args, "theme", None),
                    sample_period=max(0.1, interval), **app_kw)
    app.run()
    return int(app.return_code or 0)


def _oneshot(args: argparse.Namespace) -> int:
    from ..output.oneshot import run_oneshot

    return int(run_oneshot(args) or 0)


def run(args: argparse.Namespace) -> int:
    if args.once or args.json or args.ndjson or not sys.stdout.isatty():  # --json/--ndjson imply --once
        return _oneshot(args)
    from ..sources.demo import DemoSource
    from ..sources.open import open_source

    try:
        source = open_source(args)
    except (OSError, ValueError) as exc:
        _say(str(exc))
        return 1
    if source is not None:
        return run_monitor(args, source)
    where = args.follow or args.socket
    if getattr(args, "socket_explicit", False):
        _say(f"no allocation server listens on {args.socket}.")
        _say("start one there with `memtop serve --socket PATH` (or the original allocation_server_poc), "
             "or run `memtop demo` for the built-in demo.")
        return 1
    if args.no_demo:
        _say(f"no allocation server answers at {where}.")
        _say("start one with `memtop serve` (or the original allocation_server_poc), then run memtop again.")
        return 1
    # Nothing to monitor: show the product working on a simulated workload rather than an empty screen.
    # The header says DEMO and why, so nobody mistakes it for their hardware.
    return run_monitor(args, DemoSource(reason=f"no server at {where}"))
