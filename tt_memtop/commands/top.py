"""``memtop`` (no sub-command): the live monitor, or one-shot output for scripts."""

from __future__ import annotations

import argparse

from ..cli import add_socket_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--protocol", default="auto", choices=["auto", "72", "112", "128", "144", "648"],
                        help="message layout to speak to the server (default: auto-detect)")
    parser.add_argument("--interval", type=float, default=0.5, metavar="S",
                        help="poll interval for the original server, and --ndjson period (default 0.5)")
    parser.add_argument("--follow", metavar="LOG", help="follow an allocation-server log file for the event feed")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--once", action="store_true", help="print one table per device and exit")
    out.add_argument("--json", action="store_true", help="print one JSON document and exit")
    out.add_argument("--ndjson", action="store_true", help="print one JSON line every --interval seconds")
    parser.add_argument("--device", metavar="LIST", help="only these devices, e.g. 0,3 or 0-3")
    parser.add_argument("--type", metavar="LIST", help="only these buffer types, e.g. TRACE,L1")
    parser.add_argument("--pid", metavar="LIST", help="only these PIDs")
    parser.add_argument("--theme", default=None, help="Textual theme (e.g. memtop-dark, memtop-light, memtop-contrast)")
    parser.add_argument("--no-demo", action="store_true", help="never offer the demo when no server answers")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("memtop: the monitor is not built yet")
