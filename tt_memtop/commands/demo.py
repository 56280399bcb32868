"""``memtop demo``: the monitor on a built-in simulated workload (no TT-Metal or server needed)."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_view_arguments
from ..sim.scenarios import SCENARIOS
from ..sources.demo import DEMO_SPEED, DemoSource


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="llama-t3k", choices=sorted(SCENARIOS), help="workload (default llama-t3k)")
    parser.add_argument("--speed", type=float, default=DEMO_SPEED, metavar="X",
                        help=f"time scale of the scenario's compressed timeline: 1 plays a Llama lifecycle in "
                             f"~7.5 s (default {DEMO_SPEED:g}: a ~30 s cycle)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same workload)")
    parser.add_argument("--no-loop", action="store_true", help="play the scenario once, then stop")
    parser.add_argument("--protocol", default="144", choices=["72", "112", "128", "144", "648"],
                        help="message layout the simulated processes send (default 144)")
    parser.add_argument("--shm", action="store_true",
                        help="shared-memory mode: the simulated processes write TT-Metal's per-chip statistics "
                             "(as a mainline release does) and the monitor reads them; no server")
    add_view_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .top import run_monitor

    if args.speed <= 0:
        print("memtop demo: --speed must be positive", file=sys.stderr)
        return 2
    if args.shm:
        from ..sources.shm import ShmDemoSource

        return run_monitor(args, ShmDemoSource(args.scenario, args.speed, loop=not args.no_loop, seed=args.seed))
    source = DemoSource(args.scenario, args.speed, loop=not args.no_loop, seed=args.seed, layout=int(args.protocol))
    return run_monitor(args, source)
