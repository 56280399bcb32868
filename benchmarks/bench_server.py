"""Ingest speed of `memtop serve` against the original C++ ``allocation_server_poc``, same load, same run.

    python benchmarks/bench_server.py --original /path/to/s4 [--layout 112] [--producers 1,4,16]
    python benchmarks/bench_server.py                      # ours only: absolute figures
    python benchmarks/bench_server.py --original BINARY --rate 25000  # CPU at a realistic 25k msg/s
    python benchmarks/bench_server.py --monitors 0,5,20    # producer rate while monitors subscribe

The load is benchmarks/loadgen.c, compiled here with gcc: K producer processes, each connected
before a start barrier, each sending N ALLOC/FREE frames of the layout with one blocking ``send()``
per frame (as TT-Metal's client does), then a QUERY whose reply says the server applied everything.
Both servers log to a file. For each K the servers run A B A B (``--rounds``), each on a fresh
process; the figures are medians: messages/s from the barrier to the last reply, and the server's
CPU time per message (user + system of the whole process, all threads, from /proc/PID/stat). With
one producer the message order is fixed, so the per-message log lines of both are compared too.

The original is a binary built from its public source (tests/original_servers.py builds S1 (72 B,
decimal ids) and S4 (112 B, hex ids) with the socket path patched); its socket path is read from its
"Listening on:" line. Without --original there is nothing to compare with in the same run, so only
absolute figures are printed (they depend on the machine; ratios do not, much). ``--pure`` runs ours
with MEMTOP_PURE_PYTHON=1 as well; ``--baseline DIR`` runs another checkout's tt_memtop too (a change's
before and after, interleaved with the rest).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_TICK = os.sysconf("SC_CLK_TCK")


def build_loadgen(workdir: str) -> str:
    exe = os.path.join(workdir, "loadgen")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("bench_server: needs gcc (or cc) to build benchmarks/loadgen.c")
    subprocess.run([cc, "-O2", "-std=c11", "-o", exe, str(HERE / "loadgen.c")], check=True)
    return exe


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _wait_socket(proc: subprocess.Popen, path: str, log: str | None = None) -> str:
    """Wait until the server listens; with ``log``, the path is read from its "Listening on:" line."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited at start ({proc.returncode})")
        if log is not None and not path:
            with open(log, encoding="utf-8", errors="replace") as f:
                m = re.search(r"Listening on: (\S+)", f.read())
            if m:
                path = m.group(1)
        if path and os.path.exists(path):
            return path
        time.sleep(0.02)
    raise SystemExit("server did not start listening")


def start_ours(sock: str, log: str, layout: int, env: dict | None = None, quiet: bool = False) -> tuple:
    args = [sys.executable, "-m", "tt_memtop", "serve", "--socket", sock, "--devices", "4",
            "--log-format", "decimal" if layout == 72 else "hex"]
    if quiet:
        args.append("--quiet")
    out = open(log, "w")  # noqa: SIM115 - closed by stop()
    # ``-m`` puts the working directory first on sys.path: another checkout (PYTHONPATH) runs from its own
    cwd = (env or {}).get("PYTHONPATH") or None
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return proc, out, _wait_socket(proc, sock)


def start_original(exe: str, log: str) -> tuple:
    out = open(log, "w")  # noqa: SIM115
    proc = subprocess.Popen([exe], stdout=out, stderr=subprocess.STDOUT)
    return proc, out, _wait_socket(proc, "", log)


def stop(server: tuple) -> None:
    proc, out, _ = server
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out.close()


def measure(server: tuple, loadgen: str, layout: int, k: int, n: int, rate: float = 0) -> tuple[float, float]:
    """(messages/s, server CPU µs per message) of one loadgen run against a started server."""
    proc, _, sock = server
    time.sleep(0.3)  # start-up work done
    c0 = cpu_seconds(proc.pid)
    res = subprocess.run([loadgen, sock, str(layout), str(k), str(n // k), "1024", str(rate / k)],
                         capture_output=True, text=True)
    c1 = cpu_seconds(proc.pid)
    if res.returncode != 0:
        raise SystemExit(f"loadgen failed: {res.stderr.strip()}")
    msgs, secs = res.stdout.split()
    return int(msgs) / float(secs), (c1 - c0) * 1e6 / int(msgs)


def _count_lines(log: str) -> int:
    with open(log, "rb") as f:
        return sum(1 for line in f if b"[PID " in line)


def _message_lines(log: str) -> list[str]:
    """The per-message lines of a one-producer run, with the producer's PID (in ids too) written as P."""
    with open(log, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if "[PID " in line]
    m = re.search(r"\[PID (\d+)\]", lines[0]) if lines else None
    if m is None:
        return lines
    pid = int(m.group(1))
    out = []
    for line in lines:
        line = line.replace(f"[PID {pid}]", "[PID P]")
        line = re.sub(rf"0x{pid:x}([0-9a-f]{{8}})\b", r"0xP\1", line)
        line = re.sub(r"\b\d{10,}\b", lambda x: f"P+{int(x.group(0)) - (pid << 32)}", line)
        out.append(line)
    return out


def compare(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="mtbench", dir="/tmp")
    loadgen = build_loadgen(tmp)
    layout = args.layout
    subjects: list[tuple[str, object]] = []
    if args.original:
        subjects.append(("original", args.original))
    subjects.append(("memtop", None))
    if args.pure:
        subjects.append(("memtop-pure", {**os.environ, "MEMTOP_PURE_PYTHON": "1"}))
    if args.baseline:  # another checkout of tt_memtop (built in place), run the same way: A/B in one run
        base = {**os.environ, "PYTHONPATH": os.path.abspath(args.baseline)}
        subjects.append(("baseline", base))
        if args.pure:
            subjects.append(("baseline-pure", {**base, "MEMTOP_PURE_PYTHON": "1"}))
    pace = f", offered {args.rate:,.0f} msg/s" if args.rate else ""
    print(f"# layout {layout} B, {args.messages} messages per run{pace}, {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if not args.original:
        print("# no --original: absolute figures only (a ratio needs the original measured in the same run; "
              "build it with tests/original_servers.py)")
    print(f"{'server':<14}{'K':>4}{'msg/s':>12}{'CPU µs/msg':>12}{'log lines':>11}{'ratio msg/s':>13}"
          f"{'ratio CPU':>11}", flush=True)
    for k in args.producers:
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in subjects}
        lines: dict[str, int] = {}
        same: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for name, what in subjects:
                log = os.path.join(tmp, f"{name}.log")
                sock = os.path.join(tmp, "ours.sock")
                server = start_original(what, log) if name == "original" else start_ours(sock, log, layout, what)
                try:
                    results[name].append(measure(server, loadgen, layout, k, args.messages, args.rate))
                finally:
                    stop(server)
                lines[name] = _count_lines(log)
                if k == 1 and args.original:
                    same[name] = _message_lines(log)
        base = None
        for name, _ in subjects:
            rate = statistics.median(r for r, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            if name == "original":
                base = (rate, cpu)
            ratio = f"{rate / base[0]:>13.2f}{cpu / base[1]:>11.2f}" if base and name != "original" else ""
            print(f"{name:<14}{k:>4}{rate:>12,.0f}{cpu:>12.2f}{lines[name]:>11}{ratio}", flush=True)
        if same:
            ref = same.pop("original")
            for name, got in same.items():
                verdict = "identical" if got == ref else "DIFFERENT"
                print(f"# K=1: {name}'s per-message log lines vs the original's (PID normalised): {verdict}")
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


def _monitors(messages: int, counts: list[int]) -> None:
    from bench_stall import MONKEY

    tmp = tempfile.mkdtemp(prefix="mtbench", dir="/tmp")
    print(f"{'monitors':>9}{'producers':>10}{'messages':>12}{'msg/s':>12}{'ratio':>8}")
    base = None
    for n in counts:
        sock = os.path.join(tmp, "m.sock")
        server = start_ours(sock, os.devnull, 144, quiet=True)
        mons = [subprocess.Popen([sys.executable, "-c", MONKEY, sock, "stream"]) for _ in range(n)]
        try:
            time.sleep(1.0 + 0.05 * n)  # all subscribed
            procs = [subprocess.Popen([sys.executable, str(HERE / "producer.py"), sock, str(messages // 4)],
                                      stdout=subprocess.PIPE, text=True) for _ in range(4)]
            times = [float(p.communicate()[0].split()[1]) for p in procs]
            rate = messages / max(times)
        finally:
            for m in mons:
                m.kill()
                m.wait()
            stop(server)
        base = base or rate
        print(f"{n:>9}{4:>10}{messages:>12}{rate:>12,.0f}{rate / base:>8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", metavar="BINARY", help="the original server, built from its source")
    ap.add_argument("--layout", type=int, default=None, choices=[72, 112, 128, 144],
                    help="frame size (default: 72 for S1-like binaries named s1, else 112)")
    ap.add_argument("--producers", default="1,4,16", help="producer counts K (default 1,4,16)")
    ap.add_argument("--messages", type=int, default=200_000, help="messages per run, split among producers")
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds per K (default 2: A B A B)")
    ap.add_argument("--pure", action="store_true", help="also run ours with MEMTOP_PURE_PYTHON=1")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also run the tt_memtop of another checkout (its C files built in place: python setup.py "
                         "build_ext --inplace), e.g. the main branch: before/after figures in the same run")
    ap.add_argument("--rate", type=float, default=0, metavar="MSG/S",
                    help="offer this many messages/s in all (paced producers) instead of as many as are taken: "
                         "the CPU figures then say what a realistic load costs")
    ap.add_argument("--monitors", default="", metavar="N,N,...", help="monitor counts to compare (e.g. 0,5,20)")
    args = ap.parse_args()
    if args.monitors:
        _monitors(args.messages, [int(x) for x in args.monitors.split(",")])
        return
    if args.layout is None:
        args.layout = 72 if args.original and os.path.basename(args.original).lower().startswith("s1") else 112
    args.producers = [int(x) for x in args.producers.split(",")]
    compare(args)


if __name__ == "__main__":
    main()
