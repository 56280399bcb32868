"""``memtop dump``: print the server's DUMP_REMAINING report (remaining buffers per device and type)."""

from __future__ import annotations

import argparse
import sys

import anyio

from ..cli import add_socket_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--timeout", type=float, default=2.0, metavar="S",
                        help="how long to wait for the report (default 2)")


async def _dump(path: str, timeout: float) -> int:
    from ..client import EXTENSION_LAYOUT, AllocationClient, ExtensionUnsupported

    async with await AllocationClient.connect(path, EXTENSION_LAYOUT) as client:
        try:
            sys.stdout.write(await client.dump_report(timeout))
            return 0
        except ExtensionUnsupported:
            pass
    # An original server: a plain 72-byte DUMP_REMAINING alone on its connection works with every version.
    async with await AllocationClient.connect(path, EXTENSION_LAYOUT) as client:
        await client.dump()
    print(f"Dump request sent to {path}: this server does not send reports back (an original allocation "
          f"server?); the report is in that server's log (stdout).")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.timeout > 0:  # a zero wait would take a memtop server for an original one and dump twice
        print("memtop dump: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        return anyio.run(_dump, args.socket, args.timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"memtop dump: no allocation server at {args.socket}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"memtop dump: {args.socket}: {exc}", file=sys.stderr)
        return 1
