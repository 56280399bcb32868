"""The exporter's command-line flags; light (argparse only), since every ``memtop`` builds its parser."""

from __future__ import annotations

import argparse

DEFAULT_ADDR = "127.0.0.1"


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535; anything else is a usage error (exit 2)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {port}")
    return port


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """``memtop serve``'s exporter flags."""
    parser.add_argument("--metrics-port", type=port_number, default=None, metavar="PORT",
                        help="serve Prometheus metrics on http://ADDR:PORT/metrics (0: any free port)")
    parser.add_argument("--metrics-addr", default=DEFAULT_ADDR, metavar="ADDR",
                        help=f"address to serve the metrics on (default {DEFAULT_ADDR}; 0.0.0.0 for Prometheus "
                             f"on another host)")
