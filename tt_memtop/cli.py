"""``memtop`` and its sub-commands.

Each sub-command lives in its own module under :mod:`tt_memtop.commands` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them to argparse.
``memtop`` with no sub-command is the monitor itself (:mod:`tt_memtop.commands.top`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

DEFAULT_SOCKET = "/tmp/tt_allocation_server.sock"
SOCKET_ENV = "TT_MEMTOP_SOCKET"

#: sub-command -> one-line help. Order is the order of ``memtop --help``.
COMMANDS: dict[str, str] = {
    "serve": "run the allocation server (drop-in for allocation_server_poc) with a subscription feed",
    "demo": "run the built-in demo: in-process server + simulated TT-Metal workload, in the monitor",
    "simulate": "drive any allocation server with a simulated TT-Metal workload",
    "replay": "replay a server log or a recording in the monitor (pause, step, seek, speed)",
    "analyze": "print the trace-phase timeline of a recording or a server log",
    "report": "leak / lifecycle report of a server log or a recording",
    "dump": "ask a live server for DUMP_REMAINING",
    "exporter": "export Prometheus metrics (HTTP /metrics or a node_exporter textfile) from any source",
}


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def positive_float(text: str) -> float:
    """argparse type for durations and rates: a usage error (exit 2) rather than a silent default."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


class _ExplicitSocket(argparse.Action):
    """``--socket PATH`` typed by the user: remember it (``socket_explicit``), so that a socket that
    does not answer is an error, never a reason to start the demo."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.socket_explicit = True


def add_socket_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=default_socket(), metavar="PATH", action=_ExplicitSocket,
                        help=f"allocation server socket (default: ${SOCKET_ENV} or {DEFAULT_SOCKET})")
    # $TT_MEMTOP_SOCKET is a deliberate choice too
    parser.set_defaults(socket_explicit=bool(os.environ.get(SOCKET_ENV)))


#: Device ids a filter may name (the protocol's limit; Galaxy uses 0-31).
MAX_DEVICE_ID = 255


def _id_list(text: str, what: str, limit: int | None) -> str:
    """Check a LIST of ids/ranges ("0,3", "0-3"); returns the text unchanged (parsed again by ViewFilter)."""
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number or a range like 0-3") from None
        if a < 0:
            raise argparse.ArgumentTypeError(f"{part}: {what}s are 0 or more")
        if b < a:
            raise argparse.ArgumentTypeError(f"{part}: the range goes down (did you mean {b}-{a}?)")
        if limit is not None and b > limit:
            raise argparse.ArgumentTypeError(f"{part}: {what}s go from 0 to {limit}")
        if b - a > 4096:
            raise argparse.ArgumentTypeError(f"{part}: range too long")
    return text


def device_list(text: str) -> str:
    return _id_list(text, "device id", MAX_DEVICE_ID)


def pid_list(text: str) -> str:
    return _id_list(text, "PID", None)


def type_list(text: str) -> str:
    from .core.protocol import BufferType

    for part in text.split(","):
        part = part.strip()
        if part and not part.isdigit():
            try:
                BufferType.parse(part)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        elif part and int(part) > max(BufferType):
            raise argparse.ArgumentTypeError(f"buffer type {part} does not exist (0-{int(max(BufferType))})")
    return text


def theme_names() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    from .ui.themes import THEME_ALIASES, THEMES

    return [t.name for t in THEMES] + sorted(THEME_ALIASES) + sorted(BUILTIN_THEMES)


def theme_name(text: str) -> str:
    names = theme_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown theme {text!r} (choose from {', '.join(names)})")
    return text


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """Filters and theme: every command that shows the monitor takes them (checked here: exit 2)."""
    parser.add_argument("--device", type=device_list, metavar="LIST", help="only these devices, e.g. 0,3 or 0-3")
    parser.add_argument("--type", type=type_list, metavar="LIST", help="only these buffer types, e.g. TRACE,L1")
    parser.add_argument("--pid", type=pid_list, metavar="LIST", help="only these PIDs")
    parser.add_argument("--theme", type=theme_name, default=None, metavar="NAME",
                        help="Textual theme (memtop-dark, memtop-light, memtop-contrast, or any built-in)")
    # SUPPRESS: a flag given before the sub-command is not reset by the sub-command's own default
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="settings file (default: $XDG_CONFIG_HOME/tt-memtop/config.toml)")
    parser.add_argument("--print-config", action="store_true", default=argparse.SUPPRESS,
                        help="print the settings in effect (a config file to start from) and exit")
    from .geometry_args import add_geometry_arguments

    add_geometry_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memtop",
        description="htop for Tenstorrent accelerator memory (DRAM / L1 / L1_SMALL / TRACE per device).",
    )
    parser.add_argument("--version", action="version", version=f"memtop {__version__}")
    top = importlib.import_module(".commands.top", __package__)
    top.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        try:
            mod = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:  # a command not built yet must not break the others
            if exc.name and exc.name.endswith(f"commands.{name}"):
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    parser.set_defaults(_run=top.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "print_config", False):
        from .commands.top import print_config

        return print_config(args)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `memtop --ndjson | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
