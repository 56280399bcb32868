"""``memtop --web``: the same Textual app in a browser, served by textual-serve.

textual-serve starts one ``memtop`` process per browser tab, its screen streamed over a
websocket to a terminal emulator in the page. Each runs with ``--read-only``: it watches the same
source the web server was pointed at (a subscription or polling only reads), and refuses every
action that would reach past its own view (see ``WRITE_ACTIONS`` in :mod:`tt_memtop.ui.app`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

__all__ = ["WEB_DRIVER_ENV", "add_web_arguments", "in_web_session", "run_web", "session_command", "wants_web"]

#: textual-serve tells the app process to draw for the browser through this variable.
WEB_DRIVER_ENV = "TEXTUAL_DRIVER"
WEB_PORT = 8000
WEB_ADDR = "127.0.0.1"


def add_web_arguments(parser: argparse.ArgumentParser) -> None:
    """``memtop``'s web-view flags."""
    web = parser.add_argument_group("web view")
    web.add_argument("--web", action="store_true", help="serve this monitor to browsers (read-only) instead of "
                                                        "the terminal")
    web.add_argument("--port", type=_web_port, default=None, help=f"web view port (default {WEB_PORT})")
    web.add_argument("--web-addr", default=None, metavar="ADDR",
                     help=f"web view address (default {WEB_ADDR}; 0.0.0.0 to let other hosts in)")
    web.add_argument("--read-only", action="store_true",
                     help="a view that acts on nothing but itself (what each web view tab runs)")


def _web_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {port}")
    return port


def wants_web(args: argparse.Namespace) -> bool:
    return bool(args.web or args.port is not None or args.web_addr is not None)


def run_web(args: argparse.Namespace) -> int:
    """``memtop --web``: check the flags (2 on a usage error), then serve."""
    if not args.web:
        print("memtop: --port and --web-addr are options of --web", file=sys.stderr)
        return 2
    if args.once or args.json or args.ndjson:
        print("memtop: --web shows the monitor: it cannot be combined with --once, --json or --ndjson",
              file=sys.stderr)
        return 2
    args.port = WEB_PORT if args.port is None else args.port
    args.web_addr = args.web_addr or WEB_ADDR
    return serve_web(args)


def in_web_session() -> bool:
    """Is this process a browser tab's app (textual-serve's web driver), so a TUI without a TTY?"""
    return "web_driver" in os.environ.get(WEB_DRIVER_ENV, "")


def session_command(args: argparse.Namespace) -> list[str]:
    """The command each browser tab runs: this memtop, read-only, with the same source and view options."""
    cmd = [sys.executable, "-m", "tt_memtop", "--read-only", "--socket", args.socket]
    for flag, value in (("--protocol", args.protocol), ("--follow", args.follow), ("--source", args.source),
                        ("--shm-dir", args.shm_dir), ("--shm-interval", args.shm_interval), ("--arch", args.arch),
                        ("--device", args.device), ("--type", args.type), ("--pid", args.pid),
                        ("--theme", args.theme), ("--config", getattr(args, "config", None))):
        if value not in (None, "", "auto"):
            cmd += [flag, str(value)]
    if args.interval is not None:  # None: the config file's refresh, as in the terminal
        cmd += ["--interval", repr(args.interval)]
    if args.no_demo:
        cmd.append("--no-demo")
    return cmd


def serve_web(args: argparse.Namespace) -> int:
    """Serve until interrupted; 1 when the address cannot be used."""
    from textual_serve.server import Server

    command = shlex.join(session_command(args))
    server = Server(command, host=args.web_addr, port=args.port, title="memtop")
    try:
        server.serve()
    except OSError as exc:
        print(f"memtop: cannot serve the web view on {args.web_addr}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0
