"""The exporter end to end, all real processes: ``memtop serve --metrics-port`` and ``memtop exporter``.

A holder process allocates known buffers and waits; ``memtop simulate`` runs a workload beside it.
While it runs, every scrape must be self-consistent (device totals = the sum of the processes',
the holder's bytes exact); once it has finished, every device × pool figure must equal the
server's registry (its subscription snapshot) and its QUERY totals, byte for byte. When the
holder exits, its series are gone from the next scrapes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tt_memtop import Client
from tt_memtop.api import Snapshot
from tt_memtop.exporter.view import POOLS

MEMTOP = [sys.executable, "-m", "tt_memtop"]
ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
#: BufferType -> pool label: SYSTEM_MEMORY (3) counts in l1_small, as in the wire totals
POOL_OF_TYPE = {0: "dram", 1: "l1", 2: "l1_small", 3: "l1_small", 4: "trace", 5: "cb", 6: "kernel"}
#: What the holder allocates: (device, pool, buffer type, bytes, buffer id); type 2 is SYSTEM_MEMORY, in l1_small
HELD = [(0, "dram", 0, 64 * MiB, 0x1000), (0, "l1", 1, 3 * MiB, 0x2000), (1, "trace", 4, 12 * MiB, 0x3000),
        (1, "l1_small", 2, 256 * 1024, 0x4000), (1, "l1_small", 3, 4096, 0x4100), (3, "dram", 0, 5 * MiB + 7, 0x5000)]
HOLDER = """
import sys, anyio
from tt_memtop.client import AllocationClient
async def main():
    async with await AllocationClient.connect(sys.argv[1]) as c:
        for dev, btype, size, bid in %r:
            await c.alloc(dev, size, btype, bid)
        await c.query(0)  # a reply: everything before it has been applied
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
anyio.run(main)
""" % [(d, t, s, b) for d, _p, t, s, b in HELD]


def _scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    assert "# HELP tt_memtop_source_up " in text and "# TYPE tt_memtop_source_up gauge" in text
    if "tt_memtop_used_bytes{" in text:
        assert "# HELP tt_memtop_used_bytes " in text and "# TYPE tt_memtop_used_bytes gauge" in text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _used(scrape: dict) -> dict[tuple[int, str], int]:
    return {(int(dict(k)["device"]), dict(k)["pool"]): int(v) for (n, k), v in scrape.items()
            if n == "tt_memtop_used_bytes"}


def _process_used(scrape: dict) -> dict[int, dict[tuple[int, str], int]]:
    out: dict[int, dict] = defaultdict(dict)
    for (n, k), v in scrape.items():
        if n == "tt_memtop_process_used_bytes":
            lab = dict(k)
            out[int(lab["pid"])][int(lab["device"]), lab["pool"]] = int(v)
    return out


def _labels_of(scrape: dict) -> set[str]:
    return {name for (_n, k) in scrape for name, _v in k}


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            assert proc.poll() is None, "process died"
            continue
        if needle in line:
            return line
    raise AssertionError(f"no {needle!r} line")


async def _registry(sock: str) -> tuple[dict[tuple[int, str], int], dict]:
    """The server's registry as a subscription snapshot, by device × pool; and its QUERY totals."""
    async with Client(sock) as c:
        totals = await c.totals()
        async for item in c.subscribe():
            assert isinstance(item, Snapshot)
            sums: dict[tuple[int, str], int] = defaultdict(int)
            for b in item.buffers:
                sums[b.device, POOL_OF_TYPE[b.buffer_type]] += b.size
            return dict(sums), totals
    raise AssertionError("no snapshot")


def _nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


@pytest.fixture
def served(tmp_path):
    sock = str(tmp_path / "s.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "--devices", "8", "-q", "--cleanup-interval", "0.3",
                               "--metrics-port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        line = _wait_line(server, "metrics on http://")
        url = line.split("metrics on ", 1)[1].strip()
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        yield sock, url, env
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_serve_metrics_match_the_registry_while_a_workload_runs(served, tmp_path):
    sock, url, env = served
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    exporter = None
    try:
        assert holder.stdout.readline().strip() == "ready"
        held = defaultdict(int)
        for d, pool, _t, size, _b in HELD:
            held[d, pool] += size
        sim = subprocess.Popen([*MEMTOP, "simulate", "--socket", sock, "--scenario", "two-process", "--speed", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        textfile = tmp_path / "memtop.prom"
        exporter = subprocess.Popen([*MEMTOP, "exporter", "--socket", sock, "--port", "0", "--textfile",
                                     str(textfile), "--textfile-interval", "0.2"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env=env)
        exporter_url = _wait_line(exporter, "metrics on http://").split("metrics on ", 1)[1].strip()

        # While the workload runs: each scrape is one consistent instant.
        mid_run = 0
        while sim.poll() is None:
            s = _scrape(url)
            used, procs = _used(s), _process_used(s)
            summed = defaultdict(int)
            for per in procs.values():
                for k, v in per.items():
                    summed[k] += v
            assert _nonzero(used) == _nonzero(summed)
            assert _nonzero(procs[holder.pid]) == dict(held)
            if len(procs) > 1:
                mid_run += 1
            time.sleep(0.1)
        assert sim.returncode == 0, sim.stderr.read()
        assert mid_run >= 2, "never scraped while the simulated processes held memory"

        # After it: exactly the registry, and exactly what QUERY says.
        deadline = time.monotonic() + 20
        while True:
            s = _scrape(url)
            sums, totals = anyio.run(_registry, sock)
            used = _used(s)
            if _nonzero(used) == _nonzero(sums) and set(_process_used(s)) == {holder.pid}:
                break
            assert time.monotonic() < deadline, (used, sums)
            time.sleep(0.2)
        for dev, t in totals.items():
            assert tuple(used[dev, p] for p in POOLS) == tuple(t), dev
        assert _nonzero(used) == dict(held)  # the simulated processes freed everything or were cleaned up
        assert s[("tt_memtop_source_up", (("hostname", os.uname().nodename), ("source", "serve")))] == 1
        assert s[("tt_memtop_capacity_bytes", (("arch", "wormhole_b0"), ("device", "0"),
                                               ("hostname", os.uname().nodename), ("pool", "dram")))] == 12 << 30
        comm = Path(f"/proc/{holder.pid}/comm").read_text().strip()
        pids = {dict(k)["pid"]: dict(k)["comm"] for (n, k) in s if n == "tt_memtop_process_buffers"}
        assert pids == {str(holder.pid): comm}
        assert s[("tt_memtop_process_buffers", (("comm", comm), ("hostname", os.uname().nodename),
                                                ("pid", str(holder.pid))))] == len(HELD)
        assert not {"buffer_id", "address", "id"} & _labels_of(s)
        assert s[("tt_memtop_events_total", (("hostname", os.uname().nodename),))] > 1000

        # memtop exporter (over the subscription) and its textfile agree with serve's ledger.
        deadline = time.monotonic() + 20
        while _nonzero(_used(ex := _scrape(exporter_url))) != _nonzero(used):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert _process_used(ex) == _process_used(s)
        peaks = {(int(dict(k)["device"]), dict(k)["pool"]): v for (n, k), v in ex.items() if n == "tt_memtop_peak_bytes"}
        assert all(peaks[k] >= v for k, v in _used(ex).items() if k in peaks), (peaks, _used(ex))
        assert peaks[0, "dram"] >= held[0, "dram"] and peaks[1, "trace"] >= held[1, "trace"]
        assert not [n for (n, _k) in s if n == "tt_memtop_peak_bytes"]  # serve's ledger keeps no peaks
        states = {dict(k)["tt_memtop_process_phase"]: v for (n, k), v in ex.items()
                  if n == "tt_memtop_process_phase" and dict(k)["pid"] == str(holder.pid)}
        assert len(states) == 8 and sum(states.values()) == 1, states  # the exporter infers phases
        deadline = time.monotonic() + 20
        while True:
            text = textfile.read_text() if textfile.exists() else ""
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            got = {(int(x.labels["device"]), x.labels["pool"]): int(x.value)
                   for x in fams["tt_memtop_used_bytes"].samples} if "tt_memtop_used_bytes" in fams else {}
            if _nonzero(got) == _nonzero(used):
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)

        # The holder exits: its bytes leave the totals and its series are gone.
        holder.stdin.close()
        holder.wait(timeout=20)
        deadline = time.monotonic() + 20
        while True:
            s = _scrape(url)
            if not _process_used(s):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert not any(n.startswith("tt_memtop_process_") for (n, _k) in s)
        assert all(v == 0 for v in _used(s).values())
        # Stopped, the exporter leaves only the textfile (a write in flight has its temporary file beside it)
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(timeout=20)
        assert textfile.exists()
        assert not [p for p in os.listdir(tmp_path) if p.startswith("memtop.prom.")], "a temporary file was left"
    finally:
        for proc in (holder, exporter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


def test_exporter_polls_an_original_style_server(tmp_path):
    """``--no-extensions`` (no subscription, as the original): totals by polling, exact; no per-process series."""
    sock = str(tmp_path / "o.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "--devices", "4", "-q", "--no-extensions"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    holder = exporter = None
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)
        assert holder.stdout.readline().strip() == "ready"
        exporter = subprocess.Popen([*MEMTOP, "exporter", "--socket", sock, "--port", "0", "--interval", "0.1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        url = _wait_line(exporter, "metrics on http://").split("metrics on ", 1)[1].strip()
        held = defaultdict(int)
        for d, pool, _t, size, _b in HELD:
            held[d, pool] += size
        deadline = time.monotonic() + 20
        while True:
            s = _scrape(url)
            if _nonzero(_used(s)) == dict(held):
                break
            assert time.monotonic() < deadline, _used(s)
            time.sleep(0.2)
        host = os.uname().nodename
        assert s[("tt_memtop_source_up", (("hostname", host), ("source", "poll")))] == 1
        assert 0 <= s[("tt_memtop_source_lag_seconds", (("hostname", host), ("source", "poll")))] < 30
        assert not [n for (n, _k) in s if n.startswith("tt_memtop_process_") or n == "tt_memtop_buffers"]
    finally:
        for proc in (holder, exporter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)


def test_exporter_waits_for_a_server_and_follows_it_when_it_comes(tmp_path):
    sock = str(tmp_path / "late.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    exporter = subprocess.Popen([*MEMTOP, "exporter", "--socket", sock, "--port", "0", "--retry", "0.2"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    server = holder = None
    try:
        url = _wait_line(exporter, "metrics on http://").split("metrics on ", 1)[1].strip()
        host = os.uname().nodename
        s = _scrape(url)
        assert s[("tt_memtop_source_up", (("hostname", host), ("source", "none")))] == 0
        assert not _used(s)
        server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "--devices", "4", "-q"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)
        assert holder.stdout.readline().strip() == "ready"
        held = defaultdict(int)
        for d, pool, _t, size, _b in HELD:
            held[d, pool] += size
        deadline = time.monotonic() + 30
        while _nonzero(_used(s := _scrape(url))) != dict(held):
            assert time.monotonic() < deadline, _used(s)
            time.sleep(0.2)
        assert s[("tt_memtop_source_up", (("hostname", host), ("source", "subscribe")))] == 1
    finally:
        for proc in (holder, exporter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)


def test_exporter_reads_tt_metal_shared_memory(tmp_path):
    """Mainline TT-Metal, no server: totals per chip and per process (with TT-Metal's process name); a
    dead PID's slot is neither memory in use nor a process."""
    from tt_memtop.sim.shm_writer import RegionWriter, sim_chip_unique_id

    dead = next(p for p in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{p}"))
    w0 = RegionWriter(str(tmp_path), sim_chip_unique_id(0), 0, name="model")
    w0.record(0, 40 * MiB, True)
    w0.record(4, 12 * MiB, True)
    w1 = RegionWriter(str(tmp_path), sim_chip_unique_id(1), 1, name="model")
    w1.record(1, 3 * MiB, True)
    gone = RegionWriter(str(tmp_path), sim_chip_unique_id(1), 1, pid=dead, name="gone", alive=lambda _p: True)
    gone.record(0, 5 * MiB, True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    exporter = subprocess.Popen([*MEMTOP, "exporter", "--source", "shm", "--shm-dir", str(tmp_path), "--port", "0",
                                 "--socket", str(tmp_path / "none.sock")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = _wait_line(exporter, "metrics on http://").split("metrics on ", 1)[1].strip()
        want = {(0, "dram"): 40 * MiB, (0, "trace"): 12 * MiB, (1, "l1"): 3 * MiB}
        deadline = time.monotonic() + 20
        while _nonzero(_used(s := _scrape(url))) != want:
            assert time.monotonic() < deadline, _used(s)
            time.sleep(0.2)
        procs = _process_used(s)
        assert set(procs) == {os.getpid()} and _nonzero(procs[os.getpid()]) == want
        names = {dict(k)["comm"] for (n, k) in s if n == "tt_memtop_process_used_bytes"}
        assert names == {"model"}
        assert s[("tt_memtop_source_up", (("hostname", os.uname().nodename), ("source", "shm")))] == 1
    finally:
        exporter.kill()
        exporter.wait(timeout=10)
        for w in (w0, w1):
            w.close()


def test_exporter_reports_ledger_vs_shared_memory_drift(served, tmp_path):
    """Our server's events and TT-Metal's shared memory side by side: where they disagree, by how much."""
    from tt_memtop.sim.shm_writer import RegionWriter, sim_chip_unique_id

    sock, _url, env = served
    shm = tmp_path / "shm"
    shm.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    w0 = RegionWriter(str(shm), sim_chip_unique_id(0), 0, name="model")
    w0.record(0, 60 * MiB, True)  # the ledger has 64 MiB of DRAM on device 0: 4 MiB were never reported here
    w0.record(1, 3 * MiB, True)  # L1 agrees
    exporter = None
    try:
        assert holder.stdout.readline().strip() == "ready"
        exporter = subprocess.Popen([*MEMTOP, "exporter", "--socket", sock, "--shm-dir", str(shm), "--port", "0"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        url = _wait_line(exporter, "metrics on http://").split("metrics on ", 1)[1].strip()
        lab = (("arch", "wormhole_b0"), ("device", "0"), ("hostname", os.uname().nodename))
        deadline = time.monotonic() + 20
        while (s := _scrape(url)).get(("tt_memtop_ledger_drift_bytes", (*lab, ("pool", "dram")))) != 4 * MiB:
            assert time.monotonic() < deadline, {k: v for k, v in s.items() if "drift" in k[0]}
            time.sleep(0.2)
        assert s[("tt_memtop_ledger_drift_bytes", (*lab, ("pool", "l1")))] == 0
        assert s[("tt_memtop_source_up", (("hostname", os.uname().nodename), ("source", "subscribe+shm")))] == 1
        assert _nonzero(_process_used(s)[holder.pid])  # the events stay the authority: per-process figures
    finally:
        for proc in (holder, exporter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        w0.close()
