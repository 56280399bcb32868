"""``memtop serve``: run the allocation server in the foreground (a drop-in for allocation_server_poc)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

import anyio

from .._compat import ExceptionGroup
from ..cli import add_socket_argument, positive_float
from ..core.devices import ARCHS, Inventory, arch_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--devices", type=int, default=None, metavar="N",
                        help="devices to report in DEVICE_INFO replies (default: the chips /dev/tenstorrent lists, "
                             "else 8); a device used beyond them is added with the same capacities")
    parser.add_argument("--arch", default="wormhole_b0", choices=sorted(ARCHS), help="their architecture")
    parser.add_argument("--protocol", default="auto", choices=["auto", "72", "112", "128", "144", "648"],
                        help="message layout clients speak (default: detect per connection)")
    parser.add_argument("--log-format", default="hex", choices=["hex", "decimal"],
                        help="buffer ids in the log: hex (S4+, default) or decimal (S1-S3)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-allocation log lines")
    parser.add_argument("--record", metavar="FILE",
                        help="record every event to FILE; an existing recording gets a new session appended, "
                             "never truncated (docs/RECORDING.md)")
    parser.add_argument("--journal", metavar="FILE",
                        help="keep the registry in FILE and restore it at start, so a restarted server still knows "
                             "every buffer (written through at once, fsync'd every second; docs/RECORDING.md)")
    parser.add_argument("--socket-mode", type=_octal, default=0o600, metavar="MODE",
                        help="permissions of the socket file (default 600: only your user's processes connect; "
                             "660 with --group to let a group in)")
    parser.add_argument("--group", metavar="GROUP", help="group of the socket file (name or number)")
    parser.add_argument("--trust-all", action="store_true",
                        help="accept a FREE from any user (by default a FREE of another user's buffer is refused "
                             "and counted; root may free anything)")
    parser.add_argument("--banner", default="auto", choices=["auto", "s1", "s2"],
                        help="start-up banner: s1 = no device-detection block (S1, 72-byte era), s2 = with it "
                             "(S2+); auto = s1 with --protocol 72, else s2")
    parser.add_argument("--strict", action="store_true",
                        help="validate every request fully (size 0 / > 100 GiB on any layout, kernel types), not "
                             "as the original of the connection's layout")
    parser.add_argument("--dedupe-warnings", action="store_true",
                        help="log each kind of original warning line once (the original logs every occurrence)")
    parser.add_argument("--cleanup-interval", type=positive_float, default=5.0, metavar="S",
                        help="seconds between dead-process checks (default 5, as the original)")
    parser.add_argument("--stats-interval", type=positive_float, default=10.0, metavar="S",
                        help="seconds between statistics blocks (default 10, as the original)")
    parser.add_argument("--max-buffers", type=int, default=None, metavar="N",
                        help="refuse (and count) new allocations beyond N live entries instead of running out "
                             "of memory (default: 50 M, or fewer if half of this machine's memory would not hold "
                             "them; 0 = no bound)")
    parser.add_argument("--no-extensions", action="store_true",
                        help="behave exactly like the original: no subscription, unknown types ignored")
    from ..exporter.args import add_metrics_arguments

    add_metrics_arguments(parser)


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 600 or 660") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a permission mode (000-777)")
    return mode


def _group(name: str) -> int:
    import grp

    try:
        return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        raise ValueError(f"no group named {name!r}") from None
#: Where the tenstorrent kernel driver lists the PCIe-attached chips (remote chips, e.g. an N300's
#: second one, are reached through them and not listed).
DEV_DIR = "/dev/tenstorrent"
DEFAULT_DEVICES = 8


def local_chips(dev_dir: str = DEV_DIR) -> int:
    """How many chips the driver lists in ``dev_dir`` (0 when none or no driver)."""
    try:
        return sum(1 for name in os.listdir(dev_dir) if name.isdigit())
    except OSError:
        return 0


def inventory_origin(devices: int | None, arch: str, dev_dir: str = DEV_DIR) -> tuple[int, str]:
    """(device count, what the start-up detection line says about where it came from)."""
    name = arch_spec(arch).name
    if devices is not None:
        return devices, f"configured: {devices} × {name} (--devices/--arch); no hardware probed"
    found = local_chips(dev_dir)
    if found:
        return found, (f"{dev_dir} lists {found} PCIe chip(s); assumed {name} (--arch), remote chips are added "
                       f"when used (--devices N to set the count)")
    return DEFAULT_DEVICES, (f"configured: {DEFAULT_DEVICES} × {name} (default --devices/--arch; no {dev_dir}: "
                             f"no hardware probed)")


def run(args: argparse.Namespace) -> int:
    from ..server.server import (
        AllocationServer,
        ServerConfig,
        SocketInUseError,
        default_max_buffers,
        prepare_socket_path,
        raise_fd_limit,
    )

    if args.devices is not None and not 0 <= args.devices <= 256:
        print("memtop serve: --devices must be between 0 and 256", file=sys.stderr)
        return 2
    try:
        group = _group(args.group) if args.group else None
    except ValueError as exc:
        print(f"memtop serve: --group: {exc}", file=sys.stderr)
        return 2
    banner = args.banner if args.banner != "auto" else ("s1" if args.protocol == "72" else "s2")
    if args.max_buffers is not None and args.max_buffers < 0:
        print("memtop serve: --max-buffers must be 0 (no bound) or positive", file=sys.stderr)
        return 2
    raise_fd_limit()  # every connection is a descriptor: a T3K run with many processes outgrows 1024
    count, origin = inventory_origin(args.devices, args.arch)
    config = ServerConfig(socket_path=args.socket, inventory=Inventory.uniform(count, args.arch),
                          inventory_origin=origin, grow_inventory=True,
                          layout=args.protocol, log_format=args.log_format, quiet=args.quiet, record=args.record,
                          extensions=not args.no_extensions, cleanup_interval_s=args.cleanup_interval,
                          stats_interval_s=args.stats_interval, detection_banner=banner != "s1",
                          journal=args.journal, socket_mode=args.socket_mode, socket_group=group,
                          trust_all=args.trust_all, strict=args.strict, dedupe_warnings=args.dedupe_warnings,
                          max_buffers=default_max_buffers() if args.max_buffers is None else args.max_buffers)
    # stdout or stderr closed at start (memtop serve >&-) is None: that output goes nowhere
    server = AllocationServer(config, log=sys.stdout or _Nowhere(), err=sys.stderr or sys.stdout or _Nowhere())

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            if args.metrics_port is not None:  # first: a taken port fails before the socket is bound
                from ..exporter.runner import serve_ledger_metrics

                await tg.start(serve_ledger_metrics, server, args)
            await tg.start(server.serve)

    try:
        prepare_socket_path(args.socket)  # refuse a live server before printing anything
        anyio.run(main)
    except (OSError, SocketInUseError, ExceptionGroup) as exc:  # novermin (the 3.10 backport via _compat)
        while isinstance(exc, ExceptionGroup):  # novermin: errors raised inside the task group arrive wrapped
            exc = exc.exceptions[0]
        if not isinstance(exc, (OSError, SocketInUseError)):
            raise
        if sys.stderr is not None:
            print(f"memtop serve: {exc}", file=sys.stderr)
        return 1
    return 0


class _Nowhere:
    """A log stream for a closed stdout: accepts and discards."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
