"""``memtop dump``: print the server's DUMP_REMAINING report (remaining buffers per device and type).

The server is probed first (silently, for any version: :mod:`tt_memtop.sources.probe`). ``memtop
serve`` is asked for DUMP_REPORT and its report printed; an original gets the plain 72-byte
DUMP_REMAINING alone on its connection (what ``dump_remaining_buffers.py`` sends; every version
takes it) and its report goes to that server's own log. Exactly one dump per run, however slow the
server: a busy one is waited for (up to ``--timeout``), never asked twice.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from ..cli import add_socket_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="how long to wait for a busy server to answer and for the report (default 30)")


def _say(msg: str) -> None:
    print(f"memtop dump: {msg}", file=sys.stderr)


async def _dump(path: str, timeout: float) -> int:
    from ..client import EXTENSION_LAYOUT, AllocationClient, ExtensionUnsupported
    from ..sources.probe import probe_server

    told = []

    def busy(waited: float) -> None:
        if not told:
            told.append(waited)
            _say(f"server busy: {path} accepted the connection but has not answered yet; waiting up to {timeout:g} s")

    kind = await probe_server(path, patience=timeout, on_busy=busy)
    if kind is None:
        _say(f"the server at {path} did not answer within {timeout:g} s; no dump requested")
        return 1
    if kind.ours:
        async with await AllocationClient.connect(path, EXTENSION_LAYOUT) as client:
            try:
                sys.stdout.write(await client.dump_report(timeout))
                return 0
            except (ExtensionUnsupported, TimeoutError):
                _say(f"the dump was requested but no report came back within {timeout:g} s "
                     f"(it is in the server's log); not asking again")
                return 1
    # An original server: a plain 72-byte DUMP_REMAINING alone on its connection works with every version.
    async with await AllocationClient.connect(path, EXTENSION_LAYOUT) as client:
        await client.dump()
    print(f"Dump request sent to {path} ({kind.describe()}): it does not send reports back; the report is in "
          f"that server's log (stdout).")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        _say("--timeout must be positive")
        return 2
    try:
        return anyio.run(_dump, args.socket, args.timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        _say(f"no allocation server at {args.socket}")
        return 1
    except OSError as exc:
        _say(f"{args.socket}: {exc}")
        return 1
