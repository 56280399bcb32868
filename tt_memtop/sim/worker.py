"""One simulated TT-Metal process: ``python -m tt_memtop.sim.worker --socket S --scenario N --slot K ...``.

Why a real child process: the server keys buffers on the sender's PID and cleans up after PIDs
that die (``kill(pid, 0)``), so a simulated process needs a PID of its own that really exits.

The worker rebuilds the scenario (deterministic from name and seed), keeps its slot's messages
that a ``--protocol`` client would send, stamps them with its own PID and sends them over one
persistent connection like the TT-Metal ``AllocationClient``: whole structs, in time, scaled by
``--speed``. Messages that fall due together go out in one ``send`` of at most 4 KiB of whole
structs, so even the original servers, which ``recv`` one struct at a time, never see a split
message. ``--start-at`` (a ``time.monotonic()`` value, shared by all workers of a run) is
scenario time zero; with ``--wait-start`` the worker gets it when every worker is ready instead: it
prints ``ready`` once connected (or set up) and reads time zero from stdin, so a worker slow to
start on a loaded machine never begins behind the others (it would then rush its late messages out
at once, out of order with the other slots). A leaking slot exits without freeing, as a crashed
process would.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from ..core.protocol import Layout, MsgType, encode
from .scenarios import ProcessScript, build, supports

SEND_LIMIT = 4096  # bytes per send(): one socket buffer unit, whole structs only


def encoded_messages(script: ProcessScript, layout: Layout, pid: int) -> list[tuple[float, bytes]]:
    """The messages of ``script`` a ``layout`` client sends, as ``(t_seconds, bytes)``, stamped with ``pid``."""
    out = []
    for t, msg in script.messages:
        if not supports(msg.type, layout):
            continue
        msg.process_id = pid
        msg.timestamp = 0 if msg.type == MsgType.FREE else time.time_ns()  # TT-Metal leaves FREE's at 0
        out.append((t, encode(msg, layout)))
    return out


def send_schedule(sock: socket.socket, messages: list[tuple[float, bytes]], start: float, speed: float,
                  exit_s: float) -> None:
    """Send each message when it falls due (scenario time × 1/speed after ``start``), then wait for ``exit_s``."""
    per_send = max(1, SEND_LIMIT // len(messages[0][1])) if messages else 1
    i, n = 0, len(messages)
    while i < n:
        now = (time.monotonic() - start) * speed
        due = messages[i][0]
        if due > now:
            time.sleep(min((due - now) / speed, 0.05))
            continue
        j = i
        while j < n and j - i < per_send and messages[j][0] <= now:
            j += 1
        sock.sendall(b"".join(m for _, m in messages[i:j]))
        i = j
    remaining = exit_s / speed - (time.monotonic() - start)
    if remaining > 0:
        time.sleep(remaining)


def set_process_name(name: str) -> None:
    """Take ``name`` as this process's ``/proc/self/comm`` (Linux ``prctl(PR_SET_NAME)``; else nothing)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def wait_start() -> float:
    """Say ``ready`` on stdout, then take scenario time zero from stdin (now, if the driver went away)."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    try:
        return float(line)
    except ValueError:
        return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tt_memtop.sim.worker", description=__doc__.splitlines()[0])
    p.add_argument("--socket", default=None)
    p.add_argument("--shm", default=None, metavar="DIR",
                   help="write TT-Metal shared-memory regions in DIR instead of talking to a server")
    p.add_argument("--name", default=None, help="process name (/proc/self/comm) to take, as TT-Metal records it")
    p.add_argument("--scenario", required=True)
    p.add_argument("--slot", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", type=int, default=144, choices=[int(x) for x in Layout])
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--start-at", type=float, default=None, help="time.monotonic() of scenario time 0")
    p.add_argument("--wait-start", action="store_true",
                   help="print 'ready' when set up, then read scenario time 0 (time.monotonic()) from stdin")
    args = p.parse_args(argv)
    script = build(args.scenario, args.seed).processes[args.slot]
    if args.name:
        set_process_name(args.name)
    start = args.start_at if args.start_at is not None else time.monotonic()
    if args.shm:
        from .shm_writer import play_shm

        if args.wait_start:
            start = wait_start()
        return play_shm(script, args.shm, start, args.speed)
    if not args.socket:
        p.error("--socket or --shm is required")
    messages = encoded_messages(script, Layout(args.protocol), os.getpid())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)  # as the TT-Metal client does
        try:
            sock.connect(args.socket)
        except OSError as exc:
            print(f"memtop simulate: slot {args.slot}: cannot connect to {args.socket}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        if args.wait_start:
            start = wait_start()
        try:
            send_schedule(sock, messages, start, args.speed, script.exit_s)
        except OSError as exc:  # the server went away mid-run
            print(f"memtop simulate: slot {args.slot}: the server at {args.socket} stopped reading "
                  f"({exc.strerror or exc})", file=sys.stderr)
            return 1
        if script.leaks:  # die like a crashed process: no frees, no orderly close
            sys.stdout.flush()
            os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
