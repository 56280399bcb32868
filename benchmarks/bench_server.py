"""Sustained ingest rate of `memtop serve`, in messages per second.

Runs the server as its own process (log to a file, or --quiet), then 1 and 4 producer processes
(benchmarks/producer.py: pre-packed 144-byte ALLOC/FREE messages, sent in 1 MiB chunks, then a
QUERY round trip so that the clock stops only when the server has applied everything).

    python benchmarks/bench_server.py [--messages N] [--journal] [--monitors 0,5,20]

``--journal`` adds runs with ``--quiet --journal FILE`` (every batch written through, fsync once a
second) to show what the journal costs.

With --monitors, it also measures 4 producers (--quiet) while that many monitors subscribe and read
everything, and prints the rate relative to no monitor (each batch of events is encoded once for
all subscribers, so the ratio should stay near 1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _start_server(sock: str, log_path: str | None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    args = [sys.executable, "-m", "tt_memtop", "serve", "--socket", sock, "--devices", "4", *extra]
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    if not log_path:
        args.append("--quiet")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    while not os.path.exists(sock):
        if proc.poll() is not None:
            raise SystemExit("server failed to start")
        time.sleep(0.05)
    return proc


def _run(sock: str, producers: int, per_producer: int) -> float:
    procs = [subprocess.Popen([sys.executable, str(HERE / "producer.py"), sock, str(per_producer)],
                              stdout=subprocess.PIPE, text=True) for _ in range(producers)]
    times = [float(p.communicate()[0].split()[1]) for p in procs]
    return producers * per_producer / max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=400_000, help="messages per run, split among producers")
    ap.add_argument("--journal", action="store_true", help="also measure --quiet --journal FILE")
    ap.add_argument("--monitors", default="", metavar="N,N,...", help="monitor counts to compare (e.g. 0,5,20)")
    args = ap.parse_args()
    if args.monitors:
        _monitors(args.messages, [int(x) for x in args.monitors.split(",")])
        return
    tmp = tempfile.mkdtemp(prefix="mtbench", dir="/tmp")
    print(f"{'log':<18}{'producers':>10}{'messages':>12}{'msg/s':>12}")
    configs = [("to file", True, ()), ("off (--quiet)", False, ())]
    if args.journal:
        configs.append(("--quiet --journal", False, ("--journal", os.path.join(tmp, "state.journal"))))
    for label, log_on, extra in configs:
        for producers in (1, 4):
            sock = os.path.join(tmp, "b.sock")
            log_path = os.path.join(tmp, "server.log") if log_on else None
            if extra and os.path.exists(extra[1]):
                os.unlink(extra[1])
            server = _start_server(sock, log_path, extra)
            try:
                rate = _run(sock, producers, args.messages // producers)
            finally:
                server.terminate()
                server.wait(10)
            print(f"{label:<18}{producers:>10}{args.messages:>12}{rate:>12,.0f}", flush=True)


def _monitors(messages: int, counts: list[int]) -> None:
    from bench_stall import MONKEY

    tmp = tempfile.mkdtemp(prefix="mtbench", dir="/tmp")
    print(f"{'monitors':>9}{'producers':>10}{'messages':>12}{'msg/s':>12}{'ratio':>8}")
    base = None
    for n in counts:
        sock = os.path.join(tmp, "m.sock")
        server = _start_server(sock, None)
        mons = [subprocess.Popen([sys.executable, "-c", MONKEY, sock, "stream"]) for _ in range(n)]
        try:
            time.sleep(1.0 + 0.05 * n)  # all subscribed
            rate = _run(sock, 4, messages // 4)
        finally:
            for m in mons:
                m.kill()
                m.wait()
            server.terminate()
            server.wait(10)
        base = base or rate
        print(f"{n:>9}{4:>10}{messages:>12}{rate:>12,.0f}{rate / base:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
