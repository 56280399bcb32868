"""``memtop simulate``: drive any allocation server with a simulated TT-Metal workload.

Each simulated process is a real child process with its own PID, speaking the chosen message
layout over the socket, so the server's ownership and dead-PID cleanup behave as with TT-Metal.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from ..cli import add_socket_argument
from ..sim.scenarios import SCENARIOS, build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--scenario", default="llama-t3k", choices=sorted(SCENARIOS), help="workload (default llama-t3k)")
    parser.add_argument("--protocol", default="144", choices=["72", "112", "128", "144", "648"],
                        help="message layout to send (default 144, the newest TT-Metal client; "
                             "72/112/648 send only ALLOC/FREE, 128/144 also CB and KERNEL messages)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X", help="time scale: 2 runs twice as fast")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same workload)")
    parser.add_argument("--no-dump", action="store_true",
                        help="do not send DUMP_REMAINING after a process exits leaking (the server's own "
                             "periodic check then cleans up)")
    parser.add_argument("--shm", metavar="DIR", default=None,
                        help="no server: write TT-Metal's per-chip shared-memory statistics (v4 regions "
                             "tt_device_<id>_memory) in DIR, as a mainline TT-Metal process does (e.g. /dev/shm)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and their phases, then exit")


def run(args: argparse.Namespace) -> int:
    from ..sim.driver import run_scenario

    if args.list:
        for name in SCENARIOS:
            sc = build(name, args.seed)
            print(f"{name}: {sc.description}")
            for lab in sc.labels():
                print(f"    slot {lab.slot}  {lab.start_s:7.3f}-{lab.end_s:7.3f} s  {lab.phase.value}")
        return 0
    if args.speed <= 0:
        print("memtop simulate: --speed must be positive", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(f"memtop simulate: {line}", file=sys.stderr, flush=True)

    if args.shm:
        try:
            os.makedirs(args.shm, exist_ok=True)
        except OSError as exc:
            print(f"memtop simulate: cannot create {args.shm}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if not os.access(args.shm, os.W_OK | os.X_OK):
            print(f"memtop simulate: cannot write in {args.shm}", file=sys.stderr)
            return 1
    try:
        result = anyio.run(lambda: run_scenario(args.socket, args.scenario, seed=args.seed, layout=int(args.protocol),
                                                speed=args.speed, dump_after_leak=not args.no_dump, log=say,
                                                shm_dir=args.shm))
    except OSError as exc:
        print(f"memtop simulate: {exc}", file=sys.stderr)
        return 1
    failed = {slot: code for slot, code in result.returncodes.items() if code}
    say(f"{args.scenario} done in {result.elapsed_s:.1f} s")
    if failed:
        where = f"can {args.shm} be written?" if args.shm else f"is a server listening on {args.socket}?"
        say(f"workers failed: {failed} ({where})")
        return 1
    return 0
