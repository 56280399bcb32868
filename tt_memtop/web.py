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

__all__ = ["WEB_DRIVER_ENV", "in_web_session", "session_command", "serve_web"]

#: textual-serve tells the app process to draw for the browser through this variable.
WEB_DRIVER_ENV = "TEXTUAL_DRIVER"


def in_web_session() -> bool:
    """Is this process a browser tab's app (textual-serve's web driver), so a TUI without a TTY?"""
    return "web_driver" in os.environ.get(WEB_DRIVER_ENV, "")


def session_command(args: argparse.Namespace) -> list[str]:
    """The command each browser tab runs: this memtop, read-only, with the same source and view options."""
    cmd = [sys.executable, "-m", "tt_memtop", "--read-only", "--socket", args.socket]
    for flag, value in (("--protocol", args.protocol), ("--follow", args.follow), ("--device", args.device),
                        ("--type", args.type), ("--pid", args.pid), ("--theme", args.theme)):
        if value not in (None, "", "auto"):
            cmd += [flag, str(value)]
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
