"""Worst producer stall: how long can `memtop serve` make a TT-Metal process wait in send()?

Starts `memtop serve` as its own process, preloads it with live buffers, then runs producer
processes that send ALLOC/FREE at a steady rate (small sends, like TT-Metal's one struct per
send()) and time every send(). Meanwhile "monkey" monitors attach, read the snapshot part-way,
stream, stall (never read) and are SIGKILLed at random stages; optionally connection floods
beyond the fd limit, a log pipe nobody reads, and a recording on a file system that fills up.
At the end it checks that nothing was lost (QUERY totals = what producers left live, a healthy
mirror subscriber equals the server) and that the server exits 0 on SIGTERM.

    python benchmarks/bench_stall.py                      # 1 M live buffers, the docs' figures
    python benchmarks/bench_stall.py --preload 100000 --messages 50000 --seconds 10
    python benchmarks/bench_stall.py --table                # in-process: the registry table's worst call

Prints worst / p99 send() block per run; the goal (docs/ROBUSTNESS.md) is worst < 50 ms.
``--step-profile FILE`` also lists the server's single event-loop steps over 20 ms of CPU, with the
coroutine each ran (what to fix, as opposed to time the OS did not run the server).
tests/test_faults.py runs the same machinery, smaller, with assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

MSG = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I")  # v144, PROTOCOL.md §2.5
TAIL = (0,) * 18
SIZE = 4096

#: A TT-Metal-like producer: ALLOC n buffers on one device, FREE every other one, one small send()
#: per `chunk` messages at `rate` messages/s; prints JSON with its send() block times.
PRODUCER = r"""
import json, os, socket, struct, sys, time
sock, dev, n, chunk, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
MSG = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I"); TAIL = (0,) * 18; pid = os.getpid(); base = pid << 32
frames = []
for i in range(n):
    frames.append(MSG.pack(1, dev, 4096, i % 5, pid, base | i, 0, *TAIL))
    if i % 2:
        frames.append(MSG.pack(2, dev, 0, 0, pid, base | (i - 1), 0, *TAIL))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
print("connected", flush=True)
blocks = []
worst_b = worst_at = 0.0
t_start = time.perf_counter()
for k in range(0, len(frames), chunk):
    data = b"".join(frames[k:k + chunk])
    if rate:
        due = t_start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    t0 = time.perf_counter()
    s.sendall(data)
    b = time.perf_counter() - t0
    if b > worst_b:
        worst_b, worst_at = b, t0 - t_start
    blocks.append(b)
s.sendall(MSG.pack(3, dev, 0, 0, pid, 0, 0, *TAIL))
got = b""
while len(got) < 144:
    c = s.recv(144 - len(got))
    if not c:
        break
    got += c
blocks.sort()
print(json.dumps({"pid": pid, "device": dev, "messages": len(frames), "live": (n + 1) // 2,
                  "seconds": time.perf_counter() - t_start, "worst": blocks[-1] if blocks else 0,
                  "p99": blocks[int(len(blocks) * 0.99)] if blocks else 0, "sends": len(blocks),
                  "replied": len(got) == 144, "worst_at": worst_at, "started": t_start}), flush=True)
"""

#: A monitor that misbehaves: connects, subscribes and then (mode) leaves at once, reads part of the
#: snapshot, streams, or stalls (never reads); it is SIGKILLed at a random moment.
MONKEY = r"""
import socket, struct, sys, time
sock, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if mode == "stall":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(sock)
if mode == "connect":
    sys.exit(0)
s.sendall(struct.pack("<B3xiQB3xiQ", 64, 0, 0, 0, 0, 0) + bytes(72 - 32))
if mode == "handshake":
    sys.exit(0)
if mode == "snapshot":
    s.recv(2000)
    time.sleep(3600)
if mode == "stream":
    while s.recv(1 << 16):
        pass
time.sleep(3600)
"""

MODES = ("connect", "handshake", "snapshot", "stream", "stall")


@dataclass
class Figures:
    worst_send_s: float = 0.0
    server_loop_lag_s: float = 0.0  # the server's own worst event-loop stall (MEMTOP_SERVE_STATUS_FILE)
    server_loop_busy_s: float = 0.0  # the same in CPU time of the server's thread (excludes OS descheduling)
    server_status: dict = field(default_factory=dict)
    p99_send_s: float = 0.0
    sends: int = 0
    messages: int = 0
    expected: dict = field(default_factory=dict)
    actual: dict = field(default_factory=dict)
    lost_events: int = 0
    mirror_equal: bool = False
    mirror_resyncs: int = 0
    monkeys: int = 0
    floods: int = 0
    server_exit: int | None = None
    tracebacks: int = 0
    stderr_tail: str = ""
    seconds: float = 0.0
    server_cpu_s: float = 0.0  # CPU the server process used in all (user + system), for the load it was given
    server_major_faults: int = 0  # page faults that waited for the disk (pages the kernel had reclaimed)
    producers: list = field(default_factory=list)  # (worst block s, at s after the producer started) each

    def line(self) -> str:
        return (f"worst send() block {self.worst_send_s * 1e3:.1f} ms, p99 {self.p99_send_s * 1e3:.2f} ms over "
                f"{self.sends:,} sends ({self.messages:,} messages); server loop worst stall "
                f"{self.server_loop_lag_s * 1e3:.1f} ms wall / {self.server_loop_busy_s * 1e3:.1f} ms CPU; events lost {self.lost_events}; "
                f"mirror equal {self.mirror_equal} ({self.mirror_resyncs} resyncs); {self.monkeys} monkey monitors, "
                f"{self.floods} fd floods; server exit {self.server_exit}; {self.seconds:.1f} s, server CPU "
                f"{self.server_cpu_s:.1f} s, {self.server_major_faults} major page faults")


def _cpu_seconds(pid: int) -> tuple[float, int]:
    """User + system CPU of a running process and its major page faults (waits for the disk), from Linux
    /proc; (0, 0) if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[9])
    except (OSError, ValueError, IndexError):
        return 0.0, 0


def _connect(path: str, timeout: float = 10.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def _any_refused(socks: list[socket.socket]) -> bool:
    """Has the server closed one of these (a refused connection reads EOF)?"""
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                return True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return True
    return False


def query(path: str, device: int) -> int:
    """DRAM+L1+L1_SMALL+TRACE bytes on ``device`` (one QUERY on a fresh connection, two frames to skip detection)."""
    with _connect(path, 30) as s:
        q = MSG.pack(3, device, 0, 0, 0, 0, 0, *TAIL)
        s.sendall(q + q)
        got = b""
        while len(got) < 288:
            c = s.recv(288 - len(got))
            if not c:
                raise EOFError("server closed")
            got += c
    from tt_memtop.core.protocol import decode

    r = decode(got[:144], 144)
    return r.dram_allocated + r.l1_allocated + r.l1_small_allocated + r.trace_allocated


def preload(path: str, n: int, devices: int) -> dict[int, int]:
    """Allocate n live buffers spread over devices, from this process (kept alive for the run)."""
    pid = os.getpid()
    out: dict[int, int] = {}
    with _connect(path, 120) as s:
        step = 100_000
        for k in range(0, n, step):
            frames = [MSG.pack(1, i % devices, SIZE, 0, pid, (1 << 62) | i, 0, *TAIL) for i in range(k, min(n, k + step))]
            s.sendall(b"".join(frames))
        s.sendall(MSG.pack(3, 0, 0, 0, pid, 0, 0, *TAIL))
        got = b""
        while len(got) < 144:
            got += s.recv(144 - len(got))
    for i in range(devices):
        out[i] = SIZE * len(range(i, n, devices))
    return out


class Mirror(threading.Thread):
    """A healthy monitor: mirrors the server through the subscription, checking sequence numbers."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.gaps = 0
        self.resyncs = 0
        self.error: str | None = None
        self.stop = threading.Event()
        from tt_memtop.core.registry import Registry

        self.reg = Registry()

    def run(self) -> None:
        import anyio

        try:
            anyio.run(self._main)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            self.error = f"{type(exc).__name__}: {exc}"

    async def _main(self) -> None:
        import anyio

        from tt_memtop.client import Resync, subscribe
        from tt_memtop.sources.base import EventBatch, Snapshot

        async with anyio.create_task_group() as tg:
            async def watch_stop() -> None:
                while not self.stop.is_set():
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

            tg.start_soon(watch_stop)
            async for item in subscribe(self.path, hello_timeout=10):
                if isinstance(item, Snapshot):
                    self.reg.load_snapshot(item.buffers, item.seq)
                elif isinstance(item, Resync):
                    self.resyncs += 1
                elif isinstance(item, EventBatch):
                    for ev in item.events:
                        if ev.seq != self.reg.seq + 1:
                            self.gaps += 1
                        self.reg.apply_event(ev)

    def totals(self, device: int) -> int:
        return sum(self.reg.wire_totals(device)[:4])


def run(*, preload_n: int, producers: int, messages: int, rate: float, chunk: int = 8, devices: int = 2,
        seconds: float = 0.0, fd_limit: int = 0, log: str = "stalled", record_dir: str | None = None,
        seed: int = 1, monitors: int = 6, step_profile: str | None = None, server_nice: int = 0) -> Figures:
    """Run the scenario (see the module docstring); return its figures. ``log``: "stalled" | "quiet"."""
    rnd = random.Random(seed)
    fig = Figures()
    t_begin = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="mtstall", dir="/tmp")
    path = os.path.join(tmp, "s.sock")
    args = [sys.executable, "-m", "tt_memtop", "serve", "--socket", path, "--devices", str(devices),
            "--cleanup-interval", "3600", "--stats-interval", "2"]
    if log == "quiet":
        args.append("--quiet")
    if record_dir:
        args += ["--record", os.path.join(record_dir, "run.rec")]
    err = open(os.path.join(tmp, "stderr.txt"), "w+")  # noqa: SIM115

    def limits() -> None:
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
        if server_nice:
            os.nice(server_nice)

    status_file = os.path.join(tmp, "status.json")
    env = {**os.environ, "MEMTOP_SERVE_STATUS_FILE": status_file}
    if step_profile:  # benchmarks/step_profile/sitecustomize.py, in the server only
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "step_profile")
        env.update(MEMTOP_STEP_PROFILE=step_profile, PYTHONPATH=os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH", "")) if p))
    # its own session, as `memtop serve` started from its own terminal is: with the scheduler's autogroups
    # (Linux default) a session shares the CPU as one, and the producers and monkeys are in this one
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, preexec_fn=limits, env=env,
                              start_new_session=True)
    drained = bytearray()
    drain = threading.Thread(target=lambda: drained.extend(server.stdout.read()), daemon=True)
    procs: list[subprocess.Popen] = []
    monkeys: list[tuple[float, subprocess.Popen]] = []
    mirror = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("memtop serve did not start")
            time.sleep(0.05)
        if log != "stalled":
            drain.start()
        expected = preload(path, preload_n, devices) if preload_n else {d: 0 for d in range(devices)}
        mirror = Mirror(path)
        mirror.start()
        per = messages // max(1, producers)
        for p in range(producers):
            procs.append(subprocess.Popen([sys.executable, "-c", PRODUCER, path, str(p % devices), str(per),
                                           str(chunk), str(rate)], stdout=subprocess.PIPE, text=True))
        for p in procs:  # connected before any flood: a connection made at the fd limit is refused, by design
            p.stdout.readline()
        t_end = time.monotonic() + seconds
        next_flood = time.monotonic() + 1.0
        while any(p.poll() is None for p in procs) or time.monotonic() < t_end:
            now = time.monotonic()
            if len(monkeys) < monitors:
                mode = rnd.choice(MODES)
                m = subprocess.Popen([sys.executable, "-c", MONKEY, path, mode], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                monkeys.append((now + rnd.uniform(0.05, 2.0), m))
                fig.monkeys += 1
            for due, m in list(monkeys):
                if now >= due:
                    m.kill()
                    m.wait()
                    monkeys.remove((due, m))
            if fd_limit and now >= next_flood:
                socks = []
                with contextlib.suppress(OSError):
                    for _ in range(fd_limit + 50):
                        socks.append(_connect(path, 2))
                hold_until = time.monotonic() + 4.0  # until the server refuses one (EOF), or 4 s
                while time.monotonic() < hold_until and not _any_refused(socks):
                    time.sleep(0.1)
                for s in socks:
                    s.close()
                fig.floods += 1
                next_flood = now + 2.0
            time.sleep(0.05)
        results = [json.loads(p.communicate()[0]) for p in procs]
        fig.producers = [(round(r["worst"], 4), round(r["worst_at"], 2)) for r in results]
        for r in results:
            expected[r["device"]] = expected.get(r["device"], 0) + r["live"] * SIZE
            fig.worst_send_s = max(fig.worst_send_s, r["worst"])
            fig.p99_send_s = max(fig.p99_send_s, r["p99"])
            fig.sends += r["sends"]
            fig.messages += r["messages"]
        fig.expected = expected
        fig.actual = {d: query(path, d) for d in range(devices)}
        fig.lost_events = sum(abs(expected[d] - fig.actual[d]) for d in range(devices)) // SIZE
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and mirror.error is None:
            if all(mirror.totals(d) == fig.actual[d] for d in range(devices)):
                fig.mirror_equal = mirror.gaps == 0
                break
            time.sleep(0.1)
        fig.mirror_resyncs = mirror.resyncs
        if mirror.error:
            fig.stderr_tail += f"mirror: {mirror.error}\n"
    finally:
        for _, m in monkeys:
            m.kill()
            m.wait()
        for p in procs:
            if p.poll() is None:
                p.kill()
        if mirror is not None:
            mirror.stop.set()
        if not drain.is_alive() and log == "stalled":
            drain.start()  # the reader comes back: the stalled log drains
        time.sleep(0.2)
        fig.server_cpu_s, fig.server_major_faults = _cpu_seconds(server.pid)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            fig.server_exit = server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            fig.server_exit = server.wait()
        drain.join(10)
        with contextlib.suppress(OSError, ValueError):
            with open(status_file) as f:
                fig.server_status = json.load(f)
            fig.server_loop_lag_s = fig.server_status.get("max_loop_lag_s", 0.0)
            fig.server_loop_busy_s = fig.server_status.get("max_loop_busy_s", 0.0)
        err.seek(0)
        text = err.read()
        fig.tracebacks = text.count("Traceback")
        fig.stderr_tail += "\n".join(text.splitlines()[-15:])
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)
        fig.seconds = time.monotonic() - t_begin
    return fig


def table_worst_call(live: int = 1_000_000, churn: int = 2_000_000, pure: bool = False) -> str:
    """The longest single add()/remove() (CPU time of this thread) of the registry's table while it fills
    to ``live`` rows and then churns (free the oldest, add a new one: what holds 1 M live while producers
    run), with what the table says of its own work per call (stats()). No server, no other process."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    from tt_memtop.core.table import table_class

    t = table_class(pure)()
    clock = time.thread_time_ns
    worst = {"fill": 0, "churn": 0}
    add, remove, find = t.add, t.remove, t.find
    for i in range(live):
        c = clock()
        add(i & 1, i, 0, 4096, 1000 + i % 4, 1, i, i, False)
        worst["fill"] = max(worst["fill"], clock() - c)
    for k in range(churn):
        s = find(0, k & 1, k)
        c = clock()
        remove(s)
        add((live + k) & 1, live + k, 0, 4096, 1000 + k % 4, 1, k, live + k, False)
        worst["churn"] = max(worst["churn"], clock() - c)
    st = t.stats()
    return (f"{'pure' if t.__class__.__module__.endswith('core.table') else 'compiled'} table, {live:,} live: worst "
            f"add while filling {worst['fill'] / 1e6:.2f} ms, worst remove+add while churning {churn:,} "
            f"{worst['churn'] / 1e6:.2f} ms (CPU); {st['compactions']} compactions (most slots per call "
            f"{st['max_scanned']}, rows moved {st['max_moved']}), {st['growths']} index doublings (most old "
            f"buckets moved per call {st['max_migrated']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preload", type=int, default=1_000_000, help="live buffers before the run (default 1 M)")
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--messages", type=int, default=400_000, help="ALLOC/FREE messages in all, split among producers")
    ap.add_argument("--rate", type=float, default=20_000, help="messages/s per producer (0 = as fast as possible)")
    ap.add_argument("--seconds", type=float, default=0.0, help="keep the monkeys going at least this long")
    ap.add_argument("--monitors", type=int, default=6, help="misbehaving monitors at any time (0 = none: baseline)")
    ap.add_argument("--fd-limit", type=int, default=0, help="run the server with this RLIMIT_NOFILE and flood it")
    ap.add_argument("--step-profile", metavar="FILE",
                    help="write the server's event-loop steps over 20 ms of CPU (with their coroutine stacks) to FILE")
    ap.add_argument("--log", choices=["stalled", "quiet"], default="stalled",
                    help="stalled: log lines into a pipe nobody reads until the end (default); quiet: --quiet")
    ap.add_argument("--server-nice", type=int, default=0,
                    help="run the server at this nice increment (negative needs root): on a shared machine, "
                         "separates what the server does from time the OS gives other jobs")
    ap.add_argument("--table", action="store_true",
                    help="only the in-process table figure (worst single call at --preload live rows), both tables")
    args = ap.parse_args()
    if args.table:
        for pure in (False, True):
            print(table_worst_call(args.preload, 2 * args.preload, pure))
        return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    fig = run(preload_n=args.preload, producers=args.producers, messages=args.messages, rate=args.rate,
              seconds=args.seconds, fd_limit=args.fd_limit, log=args.log,
              monitors=args.monitors, step_profile=args.step_profile, server_nice=args.server_nice)
    print(fig.line())
    if args.step_profile and os.path.exists(args.step_profile):
        with open(args.step_profile) as f:
            print("server steps over 20 ms of CPU:", "".join(f.readlines()[:6]), sep="\n", end="")
    if fig.lost_events or not fig.mirror_equal or fig.server_exit != 0 or fig.tracebacks:
        print(fig.stderr_tail)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
