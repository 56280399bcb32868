"""``memtop exporter``: Prometheus metrics from whatever memtop can read (subscription, SHM, polling, a log).

The source is chosen exactly as ``memtop`` chooses it (:func:`~tt_memtop.sources.open.open_source_async`);
when nothing answers the exporter keeps serving (``tt_memtop_source_up 0``) and retries. On the
host that runs ``memtop serve``, prefer ``memtop serve --metrics-port``: it reads the ledger itself.
"""

from __future__ import annotations

import argparse
import signal

import anyio

from .._compat import ExceptionGroup
from ..cli import add_socket_argument, positive_float
from ..exporter.args import DEFAULT_ADDR, port_number

DEFAULT_PORT = 9464


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--protocol", default="auto", choices=["auto", "72", "112", "128", "144", "648"],
                        help="message layout to speak to the server (default: auto-detect)")
    parser.add_argument("--interval", type=positive_float, default=0.5, metavar="S",
                        help="poll interval for the original server (default 0.5)")
    parser.add_argument("--follow", metavar="LOG", help="follow an allocation-server log file instead")
    parser.add_argument("--source", default="auto", choices=["auto", "subscribe", "shm", "poll", "follow"],
                        help="force a source (default auto: our server's subscription > TT-Metal shared memory > "
                             "the original server, polled)")
    parser.add_argument("--shm-dir", default=None, metavar="DIR",
                        help="where TT-Metal's tt_device_*_memory regions are (default: $TT_MEMTOP_SHM_DIR or /dev/shm)")
    parser.add_argument("--shm-interval", type=positive_float, default=None, metavar="S",
                        help="shared-memory sampling period (default 0.05: 20 Hz)")
    parser.add_argument("--arch", default=None, choices=["grayskull", "wormhole_b0", "blackhole"],
                        help="architecture for capacities when the source does not say (shared memory; the 72-byte "
                             "original server, a log without its device-detection block)")
    parser.add_argument("--port", type=port_number, default=None, dest="metrics_port", metavar="PORT",
                        help=f"serve http://ADDR:PORT/metrics (default {DEFAULT_PORT} unless --textfile is "
                             f"given; 0: any free port)")
    parser.add_argument("--addr", default=DEFAULT_ADDR, dest="metrics_addr", metavar="ADDR",
                        help=f"address to listen on (default {DEFAULT_ADDR}; 0.0.0.0 to be scraped from elsewhere)")
    parser.add_argument("--textfile", metavar="PATH",
                        help="write the metrics to PATH for node_exporter's textfile collector "
                             "(a .prom file in its --collector.textfile.directory)")
    parser.add_argument("--textfile-interval", type=positive_float, default=15.0, metavar="S",
                        help="seconds between textfile writes (default 15)")
    parser.add_argument("--retry", type=positive_float, default=2.0, metavar="S",
                        help="seconds between attempts when no source answers (default 2)")


def run(args: argparse.Namespace) -> int:
    from ..exporter.runner import ensure_textfile_dir, run_exporter, stderr_say

    say = stderr_say("memtop exporter")
    if args.metrics_port is None and not args.textfile:
        args.metrics_port = DEFAULT_PORT
    problem = ensure_textfile_dir(args.textfile) if args.textfile else None
    if problem:
        say(problem)
        return 2
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            async def stop_on_signal(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
                # a server's normal stop: exit 0, like memtop serve
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    task_status.started()
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            await tg.start(stop_on_signal)
            await run_exporter(args, say)

    try:
        anyio.run(main)
    except (OSError, ExceptionGroup) as exc:  # novermin (the 3.10 backport via _compat)
        while isinstance(exc, ExceptionGroup):  # novermin: raised inside the task group, it arrives wrapped
            exc = exc.exceptions[0]
        if not isinstance(exc, OSError):
            raise
        # the metrics port is taken, or the address is not ours
        say(f"cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: {exc.strerror or exc}")
        return 1
    return 0
