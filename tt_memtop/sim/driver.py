"""Run a scenario against an allocation server: one real child process per simulated TT-Metal process.

Works with any server that listens on the socket: ours, or an original C++ ``allocation_server_poc``
(choose the ``layout`` it was built for; its 8-device limit drops the Galaxy scenario's higher
devices). Children are ``python -m tt_memtop.sim.worker``; they share a start time so the slots
keep their relative timing, given only once every child is connected (``--wait-start``): on a
loaded machine a child may take seconds to import, and a fixed head start would let it begin late. When a leaking child has exited, the driver sends DUMP_REMAINING (as
``dump_remaining_buffers.py`` does): servers run their dead-PID cleanup first, so the cleanup
shows at once instead of at the server's next 3–5 s check. Cancelling the run kills the children.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ..core.protocol import AllocMessage, Layout, MsgType, encode
from .scenarios import Scenario, build

#: About how long the children take to be ready (import, build, connect) on an idle machine.
STARTUP_S = 0.5
#: Scenario time zero is this long after the last child said it is ready (all receive it at once).
START_MARGIN_S = 0.05
#: How long the children get to import, build their messages and connect.
READY_TIMEOUT_S = 120.0


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    pids: dict[int, int] = field(default_factory=dict)  # slot -> real PID
    returncodes: dict[int, int] = field(default_factory=dict)  # slot -> exit status
    elapsed_s: float = 0.0


def worker_command(socket_path: str, name: str, slot: int, *, seed: int, layout: Layout, speed: float,
                   start_at: float | None = None, shm_dir: str | None = None,
                   process_name: str | None = None) -> list[str]:
    """The child's command line; without ``start_at`` it waits for time zero on stdin (``--wait-start``).
    Paths are made absolute: the child runs in :func:`package_root`."""
    where = ["--shm", os.path.abspath(shm_dir)] if shm_dir else ["--socket", os.path.abspath(socket_path)]
    named = ["--name", process_name] if process_name else []
    start = ["--start-at", repr(start_at)] if start_at is not None else ["--wait-start"]
    return [sys.executable, "-m", "tt_memtop.sim.worker", *where, *named, "--scenario", name,
            "--slot", str(slot), "--seed", str(seed), "--protocol", str(int(layout)), "--speed", repr(speed),
            *start]


def package_root() -> str:
    """The directory holding this ``tt_memtop`` package: the children's working directory. ``python -m``
    puts the working directory first on ``sys.path``, so run from anywhere else a ``tt_memtop`` folder
    there (another checkout, another version) would be imported instead of this one."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def process_name(scenario: Scenario, slot: int) -> str:
    """The name a simulated process takes (its ``/proc/<pid>/comm``, at most 15 characters)."""
    base = scenario.name if len(scenario.processes) == 1 else f"{scenario.name}.{slot}"
    return base[:15]


def request_dump(socket_path: str, layout: Layout) -> None:
    """Send one DUMP_REMAINING on its own connection (runs the server's dead-PID cleanup)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        sock.sendall(encode(AllocMessage(type=MsgType.DUMP_REMAINING), layout))


async def run_scenario(socket_path: str, name: str, *, seed: int = 0, layout: Layout | int = Layout.V144,
                       speed: float = 1.0, dump_after_leak: bool = True,
                       log: Callable[[str], None] | None = None, shm_dir: str | None = None,
                       stderr=None) -> RunResult:
    """Play scenario ``name`` against the server at ``socket_path`` (or, with ``shm_dir``, into TT-Metal
    shared-memory regions there, no server involved); return when every child has exited.
    ``stderr``: where the children's complaints go (default: this process's stderr; a monitor that owns
    the terminal passes a file, see :func:`first_failure`)."""
    layout = Layout(layout)
    if speed <= 0:
        raise ValueError("speed must be positive")
    say = log or (lambda _line: None)
    scenario = build(name, seed)
    result = RunResult(scenario)
    started = time.monotonic()
    procs: dict[int, anyio.abc.Process] = {}
    try:
        for script in scenario.processes:
            cmd = worker_command(socket_path, name, script.slot, seed=seed, layout=layout, speed=speed,
                                 shm_dir=shm_dir,
                                 process_name=process_name(scenario, script.slot) if shm_dir else None)
            proc = await anyio.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                            cwd=package_root())
            procs[script.slot] = proc
            result.pids[script.slot] = proc.pid
            say(f"slot {script.slot}: pid {proc.pid} on devices {_span(script.devices)}, "
                f"{len(script.messages):,} messages over {script.exit_s:.1f} s"
                f"{' (exits without freeing)' if script.leaks else ''}")
        await _start_together(list(procs.values()))
        async with anyio.create_task_group() as tg:
            for script in scenario.processes:
                tg.start_soon(_await_child, procs[script.slot], script.slot, script.leaks, socket_path, layout,
                              dump_after_leak and not shm_dir, result, say)
    finally:
        with anyio.CancelScope(shield=True):
            for proc in procs.values():
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    result.elapsed_s = time.monotonic() - started
    return result


async def _start_together(procs: list[anyio.abc.Process]) -> None:
    """Wait until every child said ``ready`` (or ended), then give them all the same time zero."""
    async def ready(proc: anyio.abc.Process) -> None:
        seen = b""
        while b"\n" not in seen:
            try:
                seen += await proc.stdout.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # it ended before being ready: its exit status says why

    with anyio.move_on_after(READY_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            for proc in procs:
                tg.start_soon(ready, proc)
    zero = f"{time.monotonic() + START_MARGIN_S!r}\n".encode()
    for proc in procs:
        try:
            await proc.stdin.send(zero)
            await proc.stdin.aclose()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass  # it ended already


async def _await_child(proc: anyio.abc.Process, slot: int, leaks: bool, socket_path: str, layout: Layout,
                       dump_after_leak: bool, result: RunResult, say: Callable[[str], None]) -> None:
    code = await proc.wait()
    result.returncodes[slot] = code
    say(f"slot {slot}: pid {proc.pid} exited with status {code}")
    if leaks and dump_after_leak:
        await anyio.sleep(0.2)  # let the server read what the dead process had already sent
        try:
            request_dump(socket_path, layout)
        except OSError as exc:
            say(f"could not request DUMP_REMAINING: {exc}")


def first_failure(result: RunResult, stderr_path: str) -> str | None:
    """None if every child exited 0; else one line: which slot failed and its last complaint."""
    failed = sorted(slot for slot, code in result.returncodes.items() if code != 0)
    if not failed:
        return None
    try:
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        lines = []
    why = lines[-1] if lines else f"exit status {result.returncodes[failed[0]]}"
    return f"simulated process (slot {failed[0]}) failed: {why}"


def _span(devices: tuple[int, ...]) -> str:
    if len(devices) > 1 and devices == tuple(range(devices[0], devices[-1] + 1)):
        return f"{devices[0]}-{devices[-1]}"
    return ",".join(map(str, devices))
