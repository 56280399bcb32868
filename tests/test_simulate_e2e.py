"""End to end, all real processes: ``memtop serve --record`` + ``memtop simulate`` + ``memtop analyze --json``.

Each scenario runs sped up (a few seconds) in a given wire layout; the phases analyze finds in
the recording — and in the server's stdout log — must be the scenario's, process by process.
No timing is asserted: only the order of phases.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tt_memtop.sim.scenarios import build

MEMTOP = [sys.executable, "-m", "tt_memtop"]
CASES = [("llama-t3k", "144", 3.0), ("cnn", "72", 2.0), ("two-process", "112", 2.0), ("leaky", "144", 2.0),
         ("galaxy", "648", 2.0)]


def _wait_for_socket(path: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)


def _phases_by_process(rows: list[dict], slots: dict[int, int]) -> list[list[str]]:
    """Phase sequences per PID, in slot order (``slots``: pid -> slot, from what simulate says), not in
    the order they began: two processes that start close together may be seen in either order."""
    order: dict[int, list[str]] = {}
    for row in sorted(rows, key=lambda r: r["start_s"]):
        order.setdefault(row["pid"], []).append(row["phase"])
    return [order[pid] for pid in sorted(order, key=lambda p: slots.get(p, len(slots) + p))]


def _slots(stderr: str) -> dict[int, int]:
    """pid -> slot, from ``memtop simulate``'s ``slot K: pid P on devices ...`` lines."""
    found = re.findall(r"slot (\d+): pid (\d+) on devices", stderr)
    return {int(pid): int(slot) for slot, pid in found}


@pytest.mark.parametrize(("name", "protocol", "speed"), CASES, ids=[c[0] for c in CASES])
def test_simulate_serve_analyze(tmp_path, name, protocol, speed):
    sock, rec, log = str(tmp_path / "s.sock"), str(tmp_path / "rec.bin"), tmp_path / "server.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "--record", rec, "--devices", "32"],
                                  stdout=log_file, stderr=subprocess.PIPE)
        try:
            _wait_for_socket(sock, server)
            sim = subprocess.run([*MEMTOP, "simulate", "--socket", sock, "--scenario", name, "--protocol", protocol,
                                  "--speed", str(speed)], capture_output=True, text=True, timeout=120)
            assert sim.returncode == 0, sim.stderr
            slots = _slots(sim.stderr)
            assert len(slots) == len(build(name).processes), sim.stderr
            time.sleep(0.5)  # the recording is flushed every 0.2 s
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)
    expected = [[lab.phase.value for lab in p.labels] for p in build(name).processes]

    out = subprocess.run([*MEMTOP, "analyze", rec, "--json", "--speed", str(speed)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert isinstance(rows, list)
    assert {"pid", "devices", "phase", "start_s", "end_s"} <= set(rows[0])
    # Real processes on a shared machine: a stall of the simulator can last long enough to look idle.
    assert [[p for p in seq if p != "idle"] for seq in _phases_by_process(rows, slots)] == [
        [p for p in seq if p != "idle"] for seq in expected]

    out = subprocess.run([*MEMTOP, "analyze", str(log), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from_log = _phases_by_process(json.loads(out.stdout), slots)
    # A log has no clock: a process waiting while nothing else happens cannot look idle.
    assert [[p for p in seq if p != "idle"] for seq in from_log] == [[p for p in seq if p != "idle"]
                                                                       for seq in expected]


def test_a_worker_slow_to_start_does_not_begin_behind_the_others(tmp_path, monkeypatch):
    """The flake of ``[two-process]`` on a loaded machine: slot 0 (scenario time 0) took longer to import
    than the fixed head start, so slot 1 (time 0.8 s) spoke first and the phases came out of order.
    Time zero is now given once every worker is connected: slot 0 made 1.5 s late still speaks first."""
    import socket as socketlib
    import threading

    import anyio

    from tt_memtop.sim import driver

    path = str(tmp_path / "s.sock")
    srv = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    first: dict[int, float] = {}  # connection number -> monotonic time of its first bytes
    stop = threading.Event()

    def serve() -> None:
        conns = []
        srv.settimeout(0.05)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.setblocking(False)
                conns.append(c)
            except TimeoutError:
                pass
            for i, c in enumerate(conns):
                try:
                    if c.recv(1 << 16) and i not in first:
                        first[i] = time.monotonic()
                except BlockingIOError:
                    pass

    real = driver.worker_command

    def slow_slot0(socket_path, name, slot, **kw):
        cmd = real(socket_path, name, slot, **kw)
        if slot == 0:  # sleep before running the worker, as a child stalled by a loaded machine would
            code = "import runpy, time; time.sleep(1.5); " \
                   "runpy.run_module('tt_memtop.sim.worker', run_name='__main__', alter_sys=True)"
            cmd = [cmd[0], "-c", code, *cmd[3:]]
        return cmd

    monkeypatch.setattr(driver, "worker_command", slow_slot0)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        result = anyio.run(lambda: driver.run_scenario(path, "two-process", layout=112, speed=8.0))
    finally:
        stop.set()
        t.join(5)
        srv.close()
    assert result.returncodes == {0: 0, 1: 0}
    assert len(first) == 2
    # slot 1 connects first (slot 0 is asleep), so it is connection 0: it must still speak after slot 1's ...
    slot1_conn, slot0_conn = 0, 1
    assert first[slot0_conn] < first[slot1_conn], first
