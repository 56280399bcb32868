"""The monitor end to end: can `memtop` fold 200k events/s from `memtop serve` and still draw 20+ fps?

The real path, three kinds of processes: ``memtop serve`` (its own process, ``--quiet``), K producer
processes (this file with ``--run-producer``: pre-packed 144-byte ALLOC/FREE messages over the real
socket, paced to a rate), and the monitor (this process): the real :class:`MemtopApp` subscribed
through the socket (:class:`SubscribeSource`), headless under Textual's test driver. Headless
Textual computes every frame but writes nothing; the benchmark turns each compositor update into
terminal bytes (what a real terminal would receive) so that cost is counted too.

Per rate (msg/s over all producers; ``max`` = unpaced) it prints:

* folded ev/s   events the monitor folded per second during the paced stretch;
* sent msg/s    what the producers achieved (the server may be the limit: compare);
* fps           frames actually displayed (compositor updates) per second;
* lag p50/p99   event-to-screen: from the server's receive timestamp of an event (the server
                and this process share CLOCK_MONOTONIC) to the first displayed frame drawn with
                it folded in; events between two frames are spread evenly over their timestamps;
* resync        RESYNC records (the server dropped events for this monitor) and events dropped;
* mon µs/ev     CPU of the monitor process per event folded (everything: decode, fold, frames);
* fold µs/ev    the same without the frames (decode + fold + the event loop);
* frame ms      CPU per displayed frame (the app's tick: widgets pull from the state; Textual's
                layout and render; thread CPU time, so a busy machine does not inflate it);
* srv µs/msg    CPU of ``memtop serve`` per message.

On a shared machine the rates and lags move with the load (printed); the CPU figures much less.

Every producer first allocates its share of ``--live`` buffers (the monitor folds them), then, on
a common start, streams churn: each message allocates one buffer and frees the one allocated
``live/K`` messages earlier, so the live count stays put. Buffer ids are addresses in the banks of
8 Wormhole devices (DRAM and L1), so the bank maps see a realistic layout.

    python benchmarks/bench_ui.py [--rates 100000,200000,300000,max] [--seconds 8] [--live 100000]
                                  [--producers 2] [--pane feed|buffers|processes|devices] [--raw]
                                  [--feeder serve|replay]

``--feeder replay`` replaces the server and the producers by one process that streams pre-encoded
EVENTS records (eventcodec's, as the server sends them) through the socket at the rate: what the
monitor alone can take, when the server is the limit on the machine at hand.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

MSG = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I")  # v144, PROTOCOL.md §2.5
TAIL = (0,) * 18
N_DEV = 8
TICK_S = 0.002  # producers send every 2 ms


# ------------------------------------------------------------------------------------------ producer
def _slot(idx: int, s: int) -> tuple[int, int, int, int]:
    """(device, buffer_type, size, address) of slot ``s`` of producer ``idx``: disjoint addresses."""
    dev = s % N_DEV
    k = s // N_DEV
    if s % 4 == 3:  # L1: 1 KiB per bank slots above the CBs
        return dev, 1, (1024, 2048, 4096)[k % 3] * 64, 0x40000 + ((idx * 1_000_003 + k) % 1200) * 0x400
    size = (2048, 8192, 32768, 98304)[k % 4]
    return dev, 0, size, 0x1000_0000 + (idx << 24) + k * 0x2000


def producer(path: str, idx: int, live: int, rate: float, seconds: float) -> None:
    """Preload ``live`` buffers, say so, wait for "go" on stdin, then churn at ``rate`` msg/s."""
    pid = os.getpid()
    pack = MSG.pack
    cycle = max(2 * live, 4096)
    slots = [_slot(idx, s) for s in range(cycle)]
    alloc = [pack(1, d, size, t, pid, addr, 0, *TAIL) for d, t, size, addr in slots]
    free = [pack(2, d, 0, 0, pid, addr, 0, *TAIL) for d, t, size, addr in slots]
    # message i of the churn: alloc slot (live + i) % cycle, free slot i % cycle (allocated live messages ago)
    churn = b"".join(alloc[(live + i) % cycle] + free[i % cycle] for i in range(cycle))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    s.connect(path)
    pre = b"".join(alloc[:live])
    for off in range(0, len(pre), 1 << 20):
        s.sendall(pre[off:off + (1 << 20)])
    print("loaded", flush=True)
    sys.stdin.readline()
    view = memoryview(churn)
    n = len(churn) // MSG.size  # messages per cycle (two per pair)
    sent = 0
    pos = 0
    t0 = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - t0 >= seconds:
            break
        due = (int((now - t0) * rate) - sent) if rate > 0 else 4096
        while due > 0:
            k = min(due, n - pos, 8192)
            s.sendall(view[pos * MSG.size:(pos + k) * MSG.size])
            sent += k
            due -= k
            pos = (pos + k) % n
        if rate > 0:
            time.sleep(TICK_S)
    elapsed = time.perf_counter() - t0
    print(f"done {sent} {elapsed:.3f}", flush=True)
    sys.stdin.readline()  # stay connected (no dead-PID cleanup) until the monitor is done
    s.close()


def feeder(path: str, live: int, rate: float, seconds: float) -> None:
    """``--feeder replay``: stand in for ``memtop serve`` on the subscription leg only (no producers).

    Speaks the subscription stream of docs/EXTENSION.md (HELLO, an empty SNAPSHOT, EVENTS records
    as the server encodes them, with eventcodec) through a real socket, paced to ``rate`` events/s:
    the monitor's own ceiling, whatever the server reaches on this machine. Every record carries
    the send time as its events' timestamp, as the server stamps a read's events with its receive time.
    """
    from tt_memtop.core import eventcodec as codec
    from tt_memtop.core.devices import Inventory
    from tt_memtop.core.events import Event, EventKind

    per_rec = 512
    cycle = max(2 * live, 4096)
    slots = [_slot(0, s) for s in range(cycle)]
    pid = os.getpid()
    seq = [0]

    def records(pairs) -> list[tuple[list[bytes], int]]:
        """Pre-encoded EVENTS records split around their timestamps: ``ts.join(parts)`` is the record."""
        out = []
        evs = []
        for kind, s in pairs:
            d, t, size, addr = slots[s]
            seq[0] += 1
            evs.append(Event(kind, seq=seq[0], ts_ns=0x7A7A7A7A7A7A7A7A, pid=pid, device=d, buffer_type=t,
                             buffer_id=addr, size=size, ref_count=1 if kind == EventKind.ALLOC else 0))
            if len(evs) == per_rec:
                out.append((codec.frame(codec.encode_events(evs)).split(b"\x7a" * 8), len(evs)))
                evs = []
        if evs:
            out.append((codec.frame(codec.encode_events(evs)).split(b"\x7a" * 8), len(evs)))
        return out

    pre = records((EventKind.ALLOC, s) for s in range(live))
    churn = records(pair for i in range(cycle) for pair in ((EventKind.ALLOC, (live + i) % cycle),
                                                             (EventKind.FREE, i % cycle)))
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    conn.recv(4096)  # the SUBSCRIBE frame
    conn.sendall(codec.frame(codec.encode_hello(info={"server": "bench_ui feeder"})))
    conn.sendall(codec.frame(codec.encode_snapshot(codec.SnapshotRecord(0, time.monotonic_ns(), Inventory.uniform(8)))))
    for parts, _n in pre:
        conn.sendall(struct.pack("<q", time.monotonic_ns()).join(parts))
    print("loaded", flush=True)
    sys.stdin.readline()
    sent = 0
    i = 0
    t0 = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - t0 >= seconds:
            break
        due = (int((now - t0) * rate) - sent) if rate > 0 else 8192
        while due > 0:
            parts, n = churn[i]
            i = (i + 1) % len(churn)
            conn.sendall(struct.pack("<q", time.monotonic_ns()).join(parts))
            sent += n
            due -= n
        if rate > 0:
            time.sleep(TICK_S)
    print(f"done {sent} {time.perf_counter() - t0:.3f}", flush=True)
    sys.stdin.readline()
    conn.close()


# ------------------------------------------------------------------------------------------ monitor
def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _weighted_pct(samples: list[tuple[float, float]], p: float) -> float:
    """The ``p`` quantile of (value, weight) samples."""
    if not samples:
        return float("nan")
    samples = sorted(samples)
    total = sum(w for _, w in samples)
    acc = 0.0
    for v, w in samples:
        acc += w
        if acc >= p * total:
            return v
    return samples[-1][0]


async def run_rate(args, rate: float) -> dict:
    from rich.console import Console
    from textual._compositor import CompositorUpdate
    from textual.screen import Screen

    from tt_memtop.sources.base import EventBatch
    from tt_memtop.sources.subscribe import SubscribeSource
    from tt_memtop.ui.app import MemtopApp, new_state

    tmp = tempfile.mkdtemp(prefix="mtui", dir="/tmp")
    sock = os.path.join(tmp, "s.sock")
    replay = args.feeder == "replay"
    if replay:  # the subscription leg only: a feeder process in place of the server and the producers
        server = subprocess.Popen([sys.executable, __file__, "--run-feeder", sock, str(args.live), str(rate),
                                   str(args.seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    else:
        server = subprocess.Popen([sys.executable, "-m", "tt_memtop", "serve", "--socket", sock, "--devices",
                                   str(N_DEV), "--quiet", *args.server_arg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    procs: list[subprocess.Popen] = []
    try:
        while not os.path.exists(sock):
            if server.poll() is not None:
                raise SystemExit("the server failed to start")
            time.sleep(0.02)
        state = new_state(phases=not args.no_phases)
        src = SubscribeSource(sock, probed=True, reconnect=False)
        app = MemtopApp(src, state=state, fps=args.fps, pane=args.pane, feed_grouped=not args.raw)
        ticks: list[tuple[int, int]] = [(0, 0)]  # (events_total, last_ts_ns) at the latest tick
        frames: list[tuple[int, int, int]] = []  # (display ns, events_total, last_ts_ns) of the frame shown
        resyncs = [0, 0]
        orig_tick = app._tick

        def tick() -> None:
            c0 = time.thread_time()
            orig_tick()
            draw_cpu[0] += time.thread_time() - c0
            ticks[-1] = (app.state.events_total, app.state.last_ts_ns)

        app._tick = tick  # an instance attribute: on_mount's set_interval picks up the wrapper
        # CPU spent drawing (thread time: what the frames cost, whatever else the machine runs)
        draw_cpu = [0.0, 0.0]  # our tick (widgets pull from the state), Textual's layout + render
        timer_update = Screen._on_timer_update

        def on_timer_update(screen) -> None:
            c0 = time.thread_time()
            timer_update(screen)
            draw_cpu[1] += time.thread_time() - c0

        Screen._on_timer_update = on_timer_update
        orig_display = app._display
        sink = Console(file=open(os.devnull, "w"), force_terminal=True, color_system="truecolor",  # noqa: SIM115
                       width=args.width, height=args.height, legacy_windows=False)

        def display(screen, renderable) -> None:
            orig_display(screen, renderable)
            if isinstance(renderable, CompositorUpdate):
                sink.file.write(renderable.render_segments(sink))  # what a terminal would be sent
                ev, ts = ticks[-1]
                frames.append((time.monotonic_ns(), ev, ts))

        app._display = display
        orig_emit = app.emit

        batches = [0]

        def emit(update) -> None:
            if isinstance(update, EventBatch):
                batches[0] += 1
            msg = getattr(update, "message", "")
            if "fell behind" in msg:
                resyncs[0] += 1
                try:
                    resyncs[1] += int(msg.split("fell behind: ")[1].split()[0])
                except (IndexError, ValueError):
                    pass
            orig_emit(update)

        app.emit = emit
        per = args.live // args.producers
        env = dict(os.environ)
        async with app.run_test(headless=True, size=(args.width, args.height)) as pilot:
            if replay:
                procs = [server]
                await asyncio.to_thread(server.stdout.readline)  # listening
                per = args.live
            else:
                procs = [subprocess.Popen([sys.executable, __file__, "--run-producer", sock, str(i), str(per),
                                           str(rate / args.producers if rate else 0), str(args.seconds)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                         for i in range(args.producers)]
            for p in procs:
                await asyncio.to_thread(p.stdout.readline)
            deadline = time.monotonic() + 120
            n_pre = per if replay else per * args.producers
            while app.state.events_total < n_pre and time.monotonic() < deadline:
                await pilot.pause(0.05)
            gc.collect()
            await pilot.pause(0.3)
            cpu0, scpu0 = time.process_time(), _cpu_s(server.pid)  # the feeder's when replaying
            draw0 = list(draw_cpu)
            b0 = batches[0]
            ev0, t0 = app.state.events_total, time.monotonic_ns()
            f0 = len(frames)
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            done = [await asyncio.to_thread(p.stdout.readline) for p in procs]
            t1 = time.monotonic_ns()
            ev1, f1 = app.state.events_total, len(frames)
            cpu1, scpu1 = time.process_time(), _cpu_s(server.pid)
            draw1 = list(draw_cpu)
            b1 = batches[0]
            sent = sum(int(d.split()[1]) for d in done)
            sent_s = max(float(d.split()[2]) for d in done)
            # let the backlog drain (a few seconds at most) so the lag of the last events is measured too
            target = ev0 + sent
            drain_until = time.monotonic() + 5
            while app.state.events_total < target and time.monotonic() < drain_until:
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            backlog = max(0, target - app.state.events_total)
            for p in procs:
                p.stdin.write("bye\n")
                p.stdin.flush()
        span = (t1 - t0) / 1e9
        lags: list[tuple[float, float]] = []
        prev_ev, prev_ts = None, None
        for when, ev, ts in frames[f0 - 1 if f0 else 0:]:
            if prev_ev is not None and ev > prev_ev and ev > ev0:
                n = ev - max(prev_ev, ev0)
                # events folded since the last frame: timestamps spread over (prev_ts, ts]
                k = 8
                for j in range(k):
                    t_ev = prev_ts + (ts - prev_ts) * (j + 0.5) / k
                    lags.append(((when - t_ev) / 1e6, n / k))
            prev_ev, prev_ts = ev, ts
        folded = ev1 - ev0
        return {"rate": rate, "folded_s": folded / span, "sent_s": sent / sent_s if sent_s else 0,
                "fps": (f1 - f0) / span, "p50": _weighted_pct(lags, 0.5), "p99": _weighted_pct(lags, 0.99),
                "max": max((v for v, _ in lags), default=float("nan")), "resyncs": resyncs[0],
                "dropped": resyncs[1], "backlog": backlog, "gaps": app.state.gaps,
                "cpu_us": (cpu1 - cpu0) / max(1, folded) * 1e6, "server_us": (scpu1 - scpu0) / max(1, sent) * 1e6,
                "live": len(app.state.registry), "per_batch": folded / max(1, b1 - b0),
                "tick_ms": (draw1[0] - draw0[0]) / max(1, f1 - f0) * 1e3,
                "render_ms": (draw1[1] - draw0[1]) / max(1, f1 - f0) * 1e3,
                # CPU of everything but drawing, per event folded: decode + fold + the event loop
                "fold_us": ((cpu1 - cpu0) - (draw1[0] - draw0[0]) - (draw1[1] - draw0[1])) / max(1, folded) * 1e6}
    finally:
        Screen._on_timer_update = timer_update
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def main(args) -> int:
    rates = [0.0 if r == "max" else float(r) for r in args.rates.split(",")]
    via = "a replay feeder (no server: the monitor's ceiling)" if args.feeder == "replay" else \
        f"memtop serve, {args.producers} producers"
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; via {via}; pane={args.pane} "
          f"live={args.live:,} phases={'off' if args.no_phases else 'on'} "
          f"{'pure Python' if os.environ.get('MEMTOP_PURE_PYTHON') else ''}")
    print(f"{'rate':>8} {'sent/s':>9} {'folded/s':>9} {'fps':>5} {'lag p50':>8} {'p99':>7} {'max':>7} "
          f"{'resync':>6} {'dropped':>8} {'backlog':>8} {'mon µs/ev':>9} {'fold µs/ev':>10} {'frame ms':>8} "
          f"{'srv µs/msg':>10} {'ev/rec':>6}")
    for rate in rates:
        r = await run_rate(args, rate)
        print(f"{'max' if not rate else f'{rate / 1000:.0f}k':>8} {r['sent_s']:>9,.0f} {r['folded_s']:>9,.0f} "
              f"{r['fps']:>5.1f} {r['p50']:>8.0f} {r['p99']:>7.0f} {r['max']:>7.0f} {r['resyncs']:>6} "
              f"{r['dropped']:>8,} {r['backlog']:>8,} {r['cpu_us']:>9.2f} {r['fold_us']:>10.2f} "
              f"{r['tick_ms'] + r['render_ms']:>8.1f} {r['server_us']:>10.2f} {r['per_batch']:>6.0f}", flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}; targets: folded >= 200,000/s, fps >= 20, lag p99 < 100 ms")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run-producer":
        a = sys.argv[2:]
        producer(a[0], int(a[1]), int(a[2]), float(a[3]), float(a[4]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--run-feeder":
        a = sys.argv[2:]
        feeder(a[0], int(a[1]), float(a[2]), float(a[3]))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="100000,200000,300000,max", help="msg/s over all producers; max = unpaced")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--live", type=int, default=100_000, help="buffers loaded before the churn")
    p.add_argument("--producers", type=int, default=2)
    p.add_argument("--fps", type=float, default=20.0)
    p.add_argument("--width", type=int, default=200)
    p.add_argument("--height", type=int, default=50)
    p.add_argument("--pane", default="feed", choices=["feed", "buffers", "processes", "devices"])
    p.add_argument("--raw", action="store_true", help="the feed shows every event (default: grouped)")
    p.add_argument("--no-phases", action="store_true")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for memtop serve")
    p.add_argument("--feeder", default="serve", choices=["serve", "replay"],
                   help="serve: memtop serve fed by producer processes (the real path, default); replay: a "
                        "process replaying encoded EVENTS records at the rate (the monitor's own ceiling)")
    sys.exit(asyncio.run(main(p.parse_args())))
