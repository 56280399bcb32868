"""``memtop demo``: the monitor on a built-in simulated workload (no TT-Metal or server needed).

When stdout is not a terminal (``memtop demo | head``, ``> file``), or with ``--once`` / ``--json``,
the scenario is played once (at speed 1 unless ``--speed`` is given) and the state is printed at
a representative moment (the middle of the first trace replay, else half-way), then memtop exits.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import add_view_arguments
from ..sim.scenarios import SCENARIOS, build
from ..sources.demo import DEMO_SPEED, DemoSource

#: scenario speed of the one-shot demo (its compressed timeline: a Llama lifecycle in ~7.5 s)
ONESHOT_SPEED = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="llama-t3k", choices=sorted(SCENARIOS), help="workload (default llama-t3k)")
    parser.add_argument("--speed", type=float, default=None, metavar="X",
                        help=f"time scale of the scenario's compressed timeline: 1 plays a Llama lifecycle in "
                             f"~7.5 s (default {DEMO_SPEED:g}: a ~30 s cycle; {ONESHOT_SPEED:g} for one-shot output)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same workload)")
    parser.add_argument("--no-loop", action="store_true", help="play the scenario once, then stop")
    parser.add_argument("--protocol", default="144", choices=["72", "112", "128", "144", "648"],
                        help="message layout the simulated processes send (default 144)")
    parser.add_argument("--shm", action="store_true",
                        help="shared-memory mode: the simulated processes write TT-Metal's per-chip statistics "
                             "(as a mainline release does) and the monitor reads them; no server")
    parser.add_argument("--once", action="store_true", help="print the state once (a table) and exit")
    parser.add_argument("--json", action="store_true", help="print the state once as JSON and exit")
    add_view_arguments(parser)


def sample_time_s(scenario: str, seed: int = 0) -> float:
    """Scenario time of the one-shot print: the middle of the first trace replay, else half-way."""
    sc = build(scenario, seed)
    replays = [lab for lab in sc.labels() if str(lab.phase) == "replay"]
    if replays:
        return (replays[0].start_s + replays[0].end_s) / 2
    return sc.duration_s / 2


def run(args: argparse.Namespace) -> int:
    from .top import run_monitor

    if args.speed is not None and args.speed <= 0:
        print("memtop demo: --speed must be positive", file=sys.stderr)
        return 2
    if args.shm:
        from ..sources.shm import ShmDemoSource

        return run_monitor(args, ShmDemoSource(args.scenario, args.speed if args.speed is not None else DEMO_SPEED,
                                               loop=not args.no_loop, seed=args.seed))
    oneshot = args.once or args.json or not sys.stdout.isatty()
    speed = args.speed if args.speed is not None else (ONESHOT_SPEED if oneshot else DEMO_SPEED)
    source = DemoSource(args.scenario, speed, loop=not (args.no_loop or oneshot), seed=args.seed,
                        layout=int(args.protocol))
    if oneshot:
        from ..output.oneshot import run_oneshot
        from ..sim.driver import STARTUP_S

        source.oneshot_delay_s = STARTUP_S + sample_time_s(args.scenario, args.seed) / speed
        args.ndjson = False
        return run_oneshot(args, source)
    return run_monitor(args, source)
