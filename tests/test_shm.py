"""TT-Metal's per-chip shared-memory statistics: layouts, parser, view, source, CLI and TUI.

Everything runs on real files in temporary directories, written by the simulator's writer
(``tt_memtop.sim.shm_writer``, the v4 protocol of ``SharedMemoryStatsProvider``) or, for the older
layouts and the broken regions, packed by hand from an independent ctypes description.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys

import anyio
import pytest

from tt_memtop.core import shm_layout as L
from tt_memtop.core.model import MonitorState, new_state
from tt_memtop.core.phases import Phase
from tt_memtop.core.shm_layout import Region, RegionProblem, parse_region, read_consistent, region_file_name
from tt_memtop.core.usage import ProcessUsage, TotalsEvents, build_view
from tt_memtop.sim.shm_writer import RegionWriter, sim_chip_unique_id
from tt_memtop.sources.base import TotalsSample
from tt_memtop.sources.shm import ShmSource

MEMTOP = [sys.executable, "-m", "tt_memtop"]
MiB = 1024 * 1024
DRAM, L1, L1_SMALL, TRACE, CB = 0, 1, 3, 4, 5


# ------------------------------------------------------------------ an independent ctypes description
def ctypes_region(pools: int, init_state: bool, padding: int):
    """DeviceMemoryRegion as ctypes lays it out (natural alignment), from the header's field list."""

    class Chip(ctypes.Structure):
        _fields_ = [("chip_id", ctypes.c_uint32), ("is_remote", ctypes.c_uint32),
                    ("counters", ctypes.c_uint64 * pools)]

    class Proc(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_int32), ("counters", ctypes.c_uint64 * pools),
                    ("last_update_timestamp", ctypes.c_uint64), ("process_name", ctypes.c_char * 64)]

    fields = [("version", ctypes.c_uint32), ("num_active_processes", ctypes.c_uint32),
              ("last_update_timestamp", ctypes.c_uint64), ("reference_count", ctypes.c_uint32),
              ("board_serial", ctypes.c_uint64), ("asic_id", ctypes.c_uint64), ("device_id", ctypes.c_uint32),
              ("totals", ctypes.c_uint64 * pools), ("chip_stats", Chip * 16), ("processes", Proc * 64)]
    if init_state:
        fields.append(("init_state", ctypes.c_uint32))
    if padding:
        fields.append(("padding", ctypes.c_uint8 * padding))

    class Region_(ctypes.Structure):
        _fields_ = fields

    return Region_, Chip, Proc


@pytest.mark.parametrize("layout, pools, init, pad", [(L.V4, 5, True, 0), (L.V3, 5, False, 64), (L.V1, 5, False, 64),
                                                      (L.BRANCH_KERNEL, 6, False, 64)])
def test_layout_offsets_match_an_independent_ctypes_description(layout, pools, init, pad):
    R, C, P = ctypes_region(pools, init, pad)
    assert layout.totals == R.totals.offset
    assert layout.chips == R.chip_stats.offset and layout.chip_size == ctypes.sizeof(C)
    assert layout.chip_counters == C.counters.offset
    assert layout.processes == R.processes.offset and layout.proc_size == ctypes.sizeof(P)
    assert layout.proc_counters == P.counters.offset
    assert layout.proc_timestamp == P.last_update_timestamp.offset and layout.proc_name == P.process_name.offset
    aligned = -(-ctypes.sizeof(R) // 64) * 64  # __attribute__((aligned(64)))
    assert layout.size == aligned
    if init:
        assert layout.init_state == R.init_state.offset == 8536
    # the figures of PROTOCOL.md §6.4 / §6.6
    assert {L.V4.size, L.V1.size, L.BRANCH_KERNEL.size} == {8576, 8640, 9280}
    assert L.V3.size == 8640  # v2/v3 ended in padding[64]; v4 put init_state there and dropped it
    assert (L.V4.chips, L.V4.processes, L.BRANCH_KERNEL.chips, L.BRANCH_KERNEL.processes) == (88, 856, 96, 992)


# ------------------------------------------------------------------ hand-packed regions of every layout
def pack_region(layout, version: int, *, device_id=0, board=0, asic=0, totals=(), chips=(), procs=(),
                init_state: int | None = None) -> bytes:
    buf = bytearray(layout.size)
    struct.pack_into("<IIQI", buf, 0, version, len(procs), 123, len(procs))
    struct.pack_into("<QQI", buf, 24, board, asic, device_id)
    n = len(layout.pools)
    struct.pack_into(f"<{n}Q", buf, layout.totals, *(list(totals) + [0] * n)[:n])
    for i in range(16):
        struct.pack_into("<I", buf, layout.chips + i * layout.chip_size, layout.chip_unused)
    for i, (cid, remote, vals) in enumerate(chips):
        base = layout.chips + i * layout.chip_size
        struct.pack_into("<II", buf, base, cid, remote)
        struct.pack_into(f"<{n}Q", buf, base + layout.chip_counters, *(list(vals) + [0] * n)[:n])
    for i, (pid, name, vals) in enumerate(procs):
        base = layout.processes + i * layout.proc_size
        struct.pack_into("<i", buf, base, pid)
        struct.pack_into(f"<{n}Q", buf, base + layout.proc_counters, *(list(vals) + [0] * n)[:n])
        struct.pack_into("<Q", buf, base + layout.proc_timestamp, 456)
        buf[base + layout.proc_name: base + layout.proc_name + len(name)] = name.encode()
    if layout.init_state is not None:
        struct.pack_into("<I", buf, layout.init_state, L.INIT_READY if init_state is None else init_state)
    return bytes(buf)


def test_every_known_version_parses_with_its_own_offsets():
    v4 = parse_region(pack_region(L.V4, 4, device_id=3, asic=777, totals=(10, 20, 30, 40, 50),
                                  chips=[(3, 0, (10, 20, 30, 40, 50))], procs=[(99, "pytest", (10, 20, 30, 40, 50))]))
    assert isinstance(v4, Region) and v4.layout == "v4"
    assert (v4.device_id, v4.chip_unique_id, v4.totals) == (3, 777, (10, 20, 30, 40, 50))
    assert [(s.pid, s.name, s.bytes, s.last_update_ns) for s in v4.slots] == [(99, "pytest", (10, 20, 30, 40, 50), 456)]
    v3 = parse_region(pack_region(L.V3, 3, device_id=1, asic=5, totals=(1, 2, 3, 4, 5), procs=[(7, "x", (1,))]))
    assert v3.layout == "v2-v3" and v3.version == 3 and v3.totals == (1, 2, 3, 4, 5)
    # v1: board_serial = board id, asic_id = location; chip slot 0 with chip_id 0 is device 0, not "unused"
    v1 = parse_region(pack_region(L.V1, 1, board=0x1834, asic=1, totals=(9, 0, 0, 0, 0), chips=[(0, 0, (9,))]))
    assert v1.layout == "v1" and v1.chip_unique_id == (0x1834 << 8) | 1 and v1.chips[0].bytes[0] == 9
    # the branch layout: six totals with KERNEL, 56-byte chips, 128-byte slots; told apart by its size
    br = parse_region(pack_region(L.BRANCH_KERNEL, 1, totals=(1, 2, 3, 4, 5, 6), procs=[(8, "k", (1, 2, 3, 4, 5, 6))]))
    assert br.layout == "v1-branch-kernel" and br.has_kernel and br.wire_totals() == (1, 2, 3, 4, 5, 6)
    assert br.slots[0].bytes == (1, 2, 3, 4, 5, 6) and br.slots[0].name == "k"


def test_unknown_version_half_initialised_and_truncated_regions_are_reported_not_read():
    unknown = parse_region(pack_region(L.V4, 9, totals=(5,)))
    assert isinstance(unknown, RegionProblem) and unknown.kind == "unknown-version" and "version 9" in unknown.message
    zero = parse_region(bytes(L.V4.size))
    assert isinstance(zero, RegionProblem) and zero.kind == "uninitialised"
    half = parse_region(pack_region(L.V4, 4, totals=(5,), init_state=L.INIT_IN_PROGRESS))
    assert isinstance(half, RegionProblem) and half.kind == "initialising" and "REDY" in half.message
    short = parse_region(pack_region(L.V4, 4)[:4000])
    assert isinstance(short, RegionProblem) and short.kind == "truncated"


def test_torn_reads_retry_until_two_copies_agree_and_impossible_counters_are_clamped():
    good = pack_region(L.V4, 4, totals=(100,))
    torn = bytearray(good)
    struct.pack_into("<Q", torn, L.V4.totals, 2**64 - 5)  # a half-written / wrapped counter
    copies = iter([bytes(torn), good, good])
    data, ok = read_consistent(lambda: next(copies))
    assert ok and data == good
    changing = iter(bytes([i]) * 8 for i in range(10))
    _data, ok = read_consistent(lambda: next(changing), attempts=4)
    assert not ok
    r = parse_region(bytes(torn), consistent=False)
    assert r.totals[0] == 0 and r.clamped == 1 and r.torn  # never 18 EiB, never negative


# ------------------------------------------------------------------ the writer (TT-Metal's v4 protocol)
def test_writer_claims_records_deltas_and_releases_like_the_provider(tmp_path):
    alive = {os.getpid(): True, 111: True}
    w = RegionWriter(str(tmp_path), 4242, 0, name="model", alive=lambda p: alive.get(p, False))
    path = tmp_path / region_file_name(4242)
    assert path.stat().st_size == L.V4.size and (path.stat().st_mode & 0o777) == 0o600
    r = parse_region(path.read_bytes())
    assert r.slots[0].pid == os.getpid() and r.slots[0].name == "model" and r.reference_count == 1
    w.record(DRAM, 40 * MiB, True)
    w.record(TRACE, 12503040, True)
    w.record(CB, 65536, True)
    w.record(DRAM, 10 * MiB, False)
    w.record(L1, 5, False)  # a free of more than is there saturates at 0
    r = parse_region(path.read_bytes())
    assert r.totals == (30 * MiB, 0, 0, 12503040, 65536)
    assert r.chips[0].chip_id == 0 and r.chips[0].bytes == r.totals
    assert r.slots[0].bytes == r.totals
    other = RegionWriter(str(tmp_path), 4242, 0, pid=111, name="second", alive=lambda p: alive.get(p, False))
    other.record(DRAM, 1 * MiB, True)
    w.close()  # our slot released: our bytes leave the totals
    r = parse_region(path.read_bytes())
    assert r.totals == (1 * MiB, 0, 0, 0, 0) and [s.pid for s in r.slots] == [111] and r.reference_count == 1
    alive[111] = False  # killed: its slot stays until the next attacher reaps it
    third = RegionWriter(str(tmp_path), 4242, 0, pid=222, name="third", alive=lambda p: p == 222)
    r = parse_region(path.read_bytes())
    assert [s.pid for s in r.slots] == [222] and r.totals == (0, 0, 0, 0, 0)
    third.close()
    other.mm.close()


# ------------------------------------------------------------------ the view
def region(device, chip, slots, totals=None, chips=None, version=4):
    tot = totals or tuple(map(sum, zip(*[s[2] for s in slots], strict=True))) if slots else (0,) * 5
    return Region("v4", version, chip, 0, device, len(slots), len(slots), 1, tuple(tot),
                  tuple(chips or [L.ChipUsage(device, False, tuple(tot))]),
                  tuple(L.SlotUsage(i, pid, name, tuple(b), 5) for i, (pid, name, b) in enumerate(slots)))


def test_view_marks_dead_slots_and_shows_stale_regions_idle():
    live = region(0, 100, [(10, "a", (5 * MiB, 0, 0, 0, 0)), (20, "b", (3 * MiB, 0, 0, 0, 0))])
    stale = region(1, 101, [(30, "old", (7 * MiB, 0, 0, 0, 0))])
    v = build_view([("/r0", live), ("/r1", stale)], {10: True, 20: False, 30: False})
    assert v.totals[0][0] == 5 * MiB  # the dead PID 20's 3 MiB are not memory in use
    assert v.totals[1] == (0,) * 6  # no live process at all: idle, not 7 MiB in use
    states = {r.path: r for r in v.regions}
    assert states["/r1"].state == "stale" and states["/r1"].leftover[0] == 7 * MiB
    assert states["/r0"].dead_slots == (20,) and "dead PID 20" in states["/r0"].message
    assert v.processes[10].alive and v.processes[20].alive is False
    assert v.processes[30].alive is False and v.processes[30].devices[1][0] == 7 * MiB  # listed, marked dead


def test_view_forms_per_chip_rows_without_double_counting():
    # gateway 0 also tracks remote chip 1 (no region of its own) and chip 2 (which has its own region)
    gw = region(0, 100, [(10, "a", (9, 0, 0, 0, 0))], totals=(9, 0, 0, 0, 0),
                chips=[L.ChipUsage(0, False, (4, 0, 0, 0, 0)), L.ChipUsage(1, True, (3, 0, 0, 0, 0)),
                       L.ChipUsage(2, True, (2, 0, 0, 0, 0))])
    own2 = region(2, 102, [(10, "a", (2, 0, 0, 0, 0))])
    v = build_view([("/g", gw), ("/c2", own2)], {10: True})
    assert {d: t[0] for d, t in v.totals.items()} == {0: 6, 1: 3, 2: 2}
    assert v.remote == {1}
    # two live regions that both say "device 0" keep two rows
    a, b = region(0, 5, [(1, "x", (1, 0, 0, 0, 0))]), region(0, 6, [(2, "y", (2, 0, 0, 0, 0))])
    v = build_view([("/a", a), ("/b", b)], {})
    assert sorted(v.totals) == [0, 1] and "taken" in v.regions[1].message


def test_phases_from_per_process_totals():
    state = new_state()
    devs = range(4)

    def sample(t, dram, trace):
        w = (dram, 0, 0, trace, 0, 0)
        state.apply(TotalsSample(int(t * 1e9), {d: w for d in devs}, None,
                                 {77: ProcessUsage(77, "llama", True, {d: w for d in devs})}))

    for i in range(10):  # weights streaming in
        sample(0.1 * i, (i + 1) * 200 * MiB, 0)
    assert state.phase_of(77) == Phase.LOADING
    sample(2.0, 2000 * MiB, 12503040)  # a trace buffer on every device of the mesh
    for i in range(30):  # then flat: replay
        sample(2.1 + 0.1 * i, 2000 * MiB, 12503040)
    assert state.phase_of(77) == Phase.REPLAY
    ev = TotalsEvents()
    assert ev.events(0, {1: ProcessUsage(1, "", False, {})})[-1].kind.name == "PROCESS_EXIT"


def test_drift_between_the_event_ledger_and_shared_memory_is_reported():
    from tt_memtop.core.events import Event, EventKind
    from tt_memtop.sources.base import EventBatch

    state = MonitorState()
    state.apply(EventBatch([Event(EventKind.ALLOC, seq=1, device=0, buffer_type=DRAM, buffer_id=1, size=100,
                                  pid=5, ref_count=1)]))
    state.apply(TotalsSample(0, {0: (100, 0, 0, 0, 0, 0)}, crosscheck=True))
    assert state.drift(5 * 10**9) == {}
    state.apply(TotalsSample(1, {0: (300, 0, 0, 0, 0, 0)}, crosscheck=True))
    assert state.drift(1) == {}  # a moment's skew is not drift
    assert state.drift(2 * 10**9) == {0: {"DRAM": (100, 300)}}
    assert state.device_wire_totals(0)[0] == 100  # the events stay the authority


# ------------------------------------------------------------------ the source on real files
def test_source_sees_an_updated_total_on_the_next_read_and_a_dead_pid(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        w = RegionWriter(str(tmp_path), sim_chip_unique_id(0), 0, name="me")
        dead = RegionWriter(str(tmp_path), sim_chip_unique_id(0), 0, pid=child.pid, name="victim")
        dead.record(DRAM, 3 * MiB, True)
        w.record(DRAM, 1 * MiB, True)
        src = ShmSource(str(tmp_path), arch="blackhole")
        s1 = src.sample()
        assert s1.totals[0][0] == 4 * MiB and s1.processes[child.pid].alive
        w.record(DRAM, 2 * MiB, True)
        assert src.sample().totals[0][0] == 6 * MiB  # the next read sees it
        child.kill()
        child.wait()
        s3 = src.sample()
        assert s3.processes[child.pid].alive is False and s3.totals[0][0] == 3 * MiB
        assert s3.regions[0].dead_slots == (child.pid,)
        assert s3.inventory.get(0).total_dram == 32 * 1024**3  # --arch blackhole
        w.close()
        dead.mm.close()
    finally:
        child.kill()
        child.wait()


async def run_memtop(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    with anyio.fail_after(60):
        return await anyio.run_process([*MEMTOP, *args], check=False, env={**os.environ, **(env or {})})


async def test_json_cli_shows_exact_device_and_process_bytes_and_reports_bad_regions(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        writers = [RegionWriter(str(tmp_path), sim_chip_unique_id(d), d, name="llama-t3k") for d in range(2)]
        for d, w in enumerate(writers):
            w.record(DRAM, (d + 1) * 100 * MiB, True)
            w.record(L1, 6 * MiB, True)
            w.record(L1_SMALL, 1 * MiB, True)
            w.record(TRACE, 12503040, True)
            w.record(CB, 65536, True)
        ghost = RegionWriter(str(tmp_path), sim_chip_unique_id(1), 1, pid=child.pid, name="killed")
        ghost.record(DRAM, 5 * MiB, True)
        child.kill()
        child.wait()
        (tmp_path / region_file_name(900)).write_bytes(pack_region(L.V4, 7, totals=(1,)))
        (tmp_path / region_file_name(901)).write_bytes(pack_region(L.V4, 4, totals=(1,), init_state=1))
        (tmp_path / "unrelated_file").write_bytes(b"x")
        r = await run_memtop("--shm-dir", str(tmp_path), "--source", "shm", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["source"]["kind"] == "shm" and "shared memory" in doc["source"]["description"]
        devs = {d["device"]: d for d in doc["devices"]}
        assert sorted(devs) == [0, 1]
        assert devs[1]["bytes"] == {"DRAM": 200 * MiB, "L1": 6 * MiB, "L1_SMALL": 1 * MiB, "TRACE": 12503040,
                                    "CB": 65536}
        assert devs[0]["chip_unique_id"] == sim_chip_unique_id(0) and devs[0]["state"] == "active"
        procs = {p["pid"]: p for p in doc["processes"]}
        me = procs[os.getpid()]
        assert me["name"] == "llama-t3k" and me["alive"] is True and me["devices"] == [0, 1]
        assert me["bytes"] == {"DRAM": 300 * MiB, "L1": 12 * MiB, "L1_SMALL": 2 * MiB, "TRACE": 2 * 12503040,
                               "CB": 131072}
        assert procs[child.pid]["state"] == "dead" and procs[child.pid]["name"] == "killed"
        problems = " ".join(doc["shm"]["problems"])
        assert "version 7" in problems and "REDY" in problems
        notes = [line for line in r.stderr.decode().splitlines() if "not read" in line]
        assert len(notes) == 2 and any(region_file_name(900) in n and "version 7" in n for n in notes)
        r = await run_memtop("--shm-dir", str(tmp_path), "--source", "shm", "--once")
        out = r.stdout.decode()
        assert "llama-t3k" in out and "not read:" in out and "dead" in out
    finally:
        child.kill()
        child.wait()


async def test_simulate_writes_regions_a_leaking_process_leaves_its_slot_and_memtop_picks_shm(tmp_path):
    shm = tmp_path / "shm"
    r = await run_memtop("simulate", "--shm", str(shm), "--scenario", "leaky", "--speed", "8")
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(shm))
    assert files == sorted(region_file_name(sim_chip_unique_id(d)) for d in range(2))
    # no --source: no server on the socket, regions present -> the shared-memory source
    r = await run_memtop("--socket", str(tmp_path / "none.sock"), "--json", env={"TT_MEMTOP_SHM_DIR": str(shm)})
    doc = json.loads(r.stdout)
    assert doc["source"]["kind"] == "shm"
    regions = doc["shm"]["regions"]
    assert all(x["state"] == "stale" and x["dead_pids"] and x["leftover_bytes"]["TRACE"] for x in regions)
    assert all(d["bytes"]["DRAM"] == 0 for d in doc["devices"])  # a dead run's leftovers are not in use
    (p,) = doc["processes"]  # the killed process: its slots are marked, its bytes not counted as in use
    assert p["state"] == "dead" and p["name"] == "leaky" and p["devices"] == [0, 1] and p["bytes"]["TRACE"]


# ------------------------------------------------------------------ the TUI
async def test_tui_on_shared_memory_shows_bars_processes_with_names_and_the_source(tmp_path):
    from tt_memtop.ui.app import MemtopApp
    from tt_memtop.ui.widgets.device_pane import DevicePane
    from tt_memtop.ui.widgets.header_bar import HeaderBar

    writers = [RegionWriter(str(tmp_path), sim_chip_unique_id(d), d, name="llama-t3k") for d in range(2)]
    for w in writers:
        w.record(DRAM, 40 * MiB, True)
        w.record(TRACE, 12503040, True)
    app = MemtopApp(ShmSource(str(tmp_path)), clock=lambda: 0.0, pane="processes")
    try:
        async with app.run_test(size=(200, 40)) as pilot:
            with anyio.fail_after(10):
                while not app.state.polled_procs:
                    await pilot.pause(0.05)
            await pilot.pause(0.6)
            rows = {r.device: r for r in app.query_one(DevicePane).rows}
            assert rows[1].totals[0] == 40 * MiB and rows[1].totals[4] == 12503040
            header = str(app.query_one(HeaderBar).render())
            assert "TT-Metal shared memory" in header
            table = app.w_processes.table
            cells = [str(c) for c in table.get_row_at(0)]
            assert str(os.getpid()) in cells and "llama-t3k" in cells and "alive" in cells
            writers[0].record(DRAM, 10 * MiB, True)
            with anyio.fail_after(10):
                while app.state.polled.get(0, (0,))[0] != 50 * MiB:
                    await pilot.pause(0.05)
    finally:
        for w in writers:
            w.close()


# ------------------------------------------------------------------ source choice, cross-check, recording
def _args(tmp_path, **kw):
    import argparse

    ns = argparse.Namespace(socket=str(tmp_path / "none.sock"), protocol="auto", interval=0.5, follow=None,
                            source="auto", shm_dir=str(tmp_path / "shm"), shm_interval=None, arch=None)
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


async def test_source_choice_prefers_subscription_then_shm_then_poll(tmp_path):
    from server_helpers import running_server, short_socket

    from tt_memtop.sources.open import open_source_async
    from tt_memtop.sources.shm import WithShmCrossCheck
    from tt_memtop.sources.subscribe import SubscribeSource

    assert await open_source_async(_args(tmp_path)) is None  # nothing at all: the caller offers the demo
    forced = await open_source_async(_args(tmp_path, source="shm"))
    assert isinstance(forced, ShmSource)  # forced: even with no region yet
    (tmp_path / "shm").mkdir()
    w = RegionWriter(str(tmp_path / "shm"), 7, 0, name="x")
    try:
        assert isinstance(await open_source_async(_args(tmp_path)), ShmSource)
        path = short_socket(tmp_path)
        async with running_server(path):
            both = await open_source_async(_args(tmp_path, socket=path))
            assert isinstance(both, WithShmCrossCheck) and isinstance(both.events, SubscribeSource)
            assert "cross-check" in both.description
            assert isinstance(await open_source_async(_args(tmp_path, socket=path, source="subscribe")),
                              SubscribeSource)
    finally:
        w.close()


async def test_crosscheck_beside_our_server_shows_drift_in_json(tmp_path):
    from server_helpers import running_server, short_socket

    from tt_memtop.client import AllocationClient
    from tt_memtop.output.oneshot import run_oneshot_async

    shm = tmp_path / "shm"
    shm.mkdir()
    w = RegionWriter(str(shm), 7, 0, name="x")
    w.record(DRAM, 5 * MiB, True)  # shared memory says 5 MiB on device 0 ...
    path = short_socket(tmp_path)
    try:
        async with running_server(path):
            async with await AllocationClient.connect(path, 144) as c:  # ... the events say 1 MiB
                await c.alloc(0, 1 * MiB, DRAM, 0x1000, pid=4242)
            import io

            import tt_memtop.core.model as model

            grace, model.DRIFT_GRACE_NS = model.DRIFT_GRACE_NS, 0
            try:
                out = io.StringIO()
                args = _args(tmp_path, socket=path, json=True, once=False, ndjson=False, device=None, type=None,
                             pid=None)
                assert await run_oneshot_async(args, out=out) == 0
            finally:
                model.DRIFT_GRACE_NS = grace
        doc = json.loads(out.getvalue())
        assert doc["source"]["kind"] == "subscribe+shm" and doc["source"]["per_buffer"]
        dev0 = next(d for d in doc["devices"] if d["device"] == 0)
        assert dev0["bytes"]["DRAM"] == 1 * MiB and dev0["shm_bytes"]["DRAM"] == 5 * MiB
        assert doc["shm"]["crosscheck"]["drift"]["0"]["DRAM"] == {"events": 1 * MiB, "shm": 5 * MiB}
    finally:
        w.close()


async def test_record_shm_totals_and_replay_them(tmp_path):
    from tt_memtop.core.usage import expand_recorded_totals
    from tt_memtop.recording import read_recording
    from tt_memtop.sources.record import RecordingSource

    shm = tmp_path / "shm"
    shm.mkdir()
    w = RegionWriter(str(shm), sim_chip_unique_id(0), 0, name="llama")
    rec = str(tmp_path / "run.rec")
    src = RecordingSource(ShmSource(str(shm), interval=0.02), rec)
    seen = []
    try:
        async def drive():
            with anyio.move_on_after(10):
                await src.run(seen.append)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            await anyio.sleep(0.2)
            w.record(DRAM, 300 * MiB, True)
            await anyio.sleep(0.2)
            w.record(TRACE, 12503040, True)
            await anyio.sleep(0.3)
            tg.cancel_scope.cancel()
    finally:
        w.close()
    events = list(read_recording(rec))
    assert events and all(e.kind.name == "TOTALS" for e in events)
    state = MonitorState()
    from tt_memtop.sources.base import EventBatch

    state.apply(EventBatch(events))
    assert not state.has_events and state.polled[0][:4] == (300 * MiB, 0, 0, 12503040)
    assert state.polled_procs[os.getpid()].name == "llama"
    assert any(e.kind.name == "ALLOC" and e.buffer_type == TRACE for e in expand_recorded_totals(events))
    r = await run_memtop("analyze", rec)
    assert b"replay" in r.stdout or b"capture" in r.stdout, r.stdout
    r = await run_memtop("replay", rec, "--json")
    doc = json.loads(r.stdout)
    assert not doc["source"]["per_buffer"]
    assert doc["devices"][0]["bytes"]["DRAM"] == 300 * MiB  # the last sample recorded
    assert doc["processes"][0]["name"] == "llama" and doc["processes"][0]["pid"] == os.getpid()


def test_filters_apply_to_per_process_totals():
    from tt_memtop.output.oneshot import build_document
    from tt_memtop.sources.base import Capability, Status
    from tt_memtop.ui.filters import ViewFilter
    from tt_memtop.ui.procinfo import ProcInfo
    from tt_memtop.ui.widgets.processes_pane import process_rows

    state = MonitorState()
    state.apply(Status("connected", "", frozenset({Capability.TOTALS, Capability.PROCESSES})))
    a = {0: (10, 1, 0, 4, 0, 0), 1: (10, 1, 0, 4, 0, 0)}
    b = {1: (7, 0, 0, 0, 0, 0)}
    state.apply(TotalsSample(1, {0: (10, 1, 0, 4, 0, 0), 1: (17, 1, 0, 4, 0, 0)}, None,
                             {5: ProcessUsage(5, "a", True, a), 6: ProcessUsage(6, "b", False, b)}))
    doc = build_document(state, None, ViewFilter.from_args("1", "DRAM,TRACE", "5"))
    assert [(d["device"], d["bytes"]) for d in doc["devices"]] == [(1, {"DRAM": 10, "TRACE": 4})]
    assert [(p["pid"], p["devices"], p["bytes"]) for p in doc["processes"]] == [(5, [1], {"DRAM": 10, "TRACE": 4})]
    rows = {r.pid: r for r in process_rows(state, ViewFilter(), ProcInfo(False, lambda: 0.0))}
    assert rows[5].name == "a" and rows[5].by_type[0] == 20 and rows[5].devices == (0, 1)
    assert rows[6].state == "dead" and rows[6].phase == "exited" and rows[6].count == -1


def test_arch_from_sysfs(tmp_path):
    from tt_memtop.sources.shm import detect_arch

    for i, dev in enumerate(("0x401e", "0x401e")):
        (tmp_path / f"tenstorrent!{i}" / "device").mkdir(parents=True)
        (tmp_path / f"tenstorrent!{i}" / "device" / "device").write_text(dev + "\n")
    assert detect_arch(str(tmp_path)) == "wormhole_b0"
    (tmp_path / "tenstorrent!1" / "device" / "device").write_text("0xb140\n")
    assert detect_arch(str(tmp_path)) is None  # mixed cards: no single answer
    assert detect_arch(str(tmp_path / "missing")) is None
    (tmp_path / "tenstorrent!1" / "device" / "device").write_text("0xb140\n")
    (tmp_path / "tenstorrent!0" / "device" / "device").write_text("0xb140\n")
    src = ShmSource(str(tmp_path), sysfs=str(tmp_path))
    assert src.arch.name == "Blackhole" and src.arch_source == "sysfs"


async def test_demo_in_shared_memory_mode():
    from tt_memtop.sources.shm import ShmDemoSource

    seen = []
    src = ShmDemoSource("cnn", speed=6, loop=False, interval=0.02)
    with anyio.fail_after(60):
        await src.run(seen.append)
    samples = [u for u in seen if isinstance(u, TotalsSample)]
    assert any(s.processes and any(p.name == "cnn" for p in s.processes.values()) for s in samples)
    assert any(s.totals.get(0, (0,) * 6)[3] for s in samples)  # a TRACE total was seen
    assert seen[-1].state == "ended"


def test_odd_files_of_a_region_name_are_reported_without_blocking(tmp_path):
    os.mkfifo(tmp_path / region_file_name(1))
    (tmp_path / region_file_name(2)).write_bytes(b"")
    (tmp_path / region_file_name(3)).write_bytes(pack_region(L.V4, 4, totals=(7,)) + bytes(1 << 20))  # oversized
    v = ShmSource(str(tmp_path)).scan()
    states = {os.path.basename(r.path): r for r in v.regions}
    assert states[region_file_name(1)].state == "unreadable" and "regular" in states[region_file_name(1)].message
    assert states[region_file_name(2)].state == "truncated"
    assert states[region_file_name(3)].readable and states[region_file_name(3)].version == 4


async def test_tui_marks_drift_between_events_and_shared_memory():
    from ui_fakes import FakeSource

    from tt_memtop.core.events import Event, EventKind
    from tt_memtop.ui.app import MemtopApp
    from tt_memtop.ui.widgets.device_pane import DevicePane
    from tt_memtop.ui.widgets.header_bar import HeaderBar

    ev = [Event(EventKind.ALLOC, seq=1, ts_ns=1, pid=5, device=0, buffer_type=DRAM, buffer_id=1, size=100,
                ref_count=1)]
    src = FakeSource(2, [ev])
    app = MemtopApp(src, clock=lambda: 0.0, state=MonitorState())
    async with app.run_test(size=(200, 40)) as pilot:
        with anyio.fail_after(10):
            while not app.state.registry.seq:
                await pilot.pause(0.05)
        src.emit(TotalsSample(1, {0: (100, 0, 0, 0, 0, 0), 1: (0,) * 6}, crosscheck=True))
        await pilot.pause(0.3)
        assert "agree" in str(app.query_one(HeaderBar).render())
        src.emit(TotalsSample(10, {0: (900, 0, 0, 0, 0, 0), 1: (0,) * 6}, crosscheck=True))
        src.emit(TotalsSample(3 * 10**9, {0: (900, 0, 0, 0, 0, 0), 1: (0,) * 6}, crosscheck=True))
        await pilot.pause(0.8)
        assert "DRIFT" in str(app.query_one(HeaderBar).render())
        rows = {r.device: r for r in app.query_one(DevicePane).rows}
        assert rows[0].phase == "DRIFT" and rows[1].phase != "DRIFT" and rows[0].totals[0] == 100


def test_stale_regions_are_no_evidence_of_drift():
    from tt_memtop.core.events import Event, EventKind
    from tt_memtop.core.usage import RegionStatus
    from tt_memtop.sources.base import EventBatch

    state = MonitorState()
    state.apply(EventBatch([Event(EventKind.ALLOC, seq=1, device=0, buffer_type=DRAM, buffer_id=1, size=100,
                                  pid=5, ref_count=1)]))
    stale = [RegionStatus("/r", "stale", device=0)]
    for ts in (0, 5 * 10**9):
        state.apply(TotalsSample(ts, {0: (0,) * 6}, regions=stale, crosscheck=True))
    assert state.drift() == {}


async def test_bad_paths_get_one_clear_line(tmp_path):
    r = await run_memtop("--shm-dir", str(tmp_path), "--source", "shm", "--json", "--record",
                         str(tmp_path / "missing" / "x.rec"))
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and "cannot write the recording" in err[0]
    (tmp_path / "file").write_text("")
    r = await run_memtop("simulate", "--shm", str(tmp_path / "file" / "sub"), "--scenario", "cnn")
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and "cannot create" in err[0]


def test_sparse_inventory_is_looked_up_by_device_id():
    from tt_memtop.core.devices import DeviceInfo, Inventory
    from tt_memtop.core.protocol import Arch

    inv = Inventory((DeviceInfo(4, Arch.WORMHOLE_B0, 12, 1 << 30, 1, 12 << 30, 1),
                     DeviceInfo(0, Arch.WORMHOLE_B0, 12, 1 << 30, 1, 12 << 30, 1)))
    assert inv.get(4).device_id == 4 and inv.get(0).device_id == 0 and inv.get(1) is None


CXX_REGION = r"""
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <sys/types.h>
// DeviceMemoryRegion v4, field for field as in tt_metal/impl/memory_tracking/memory_stats_shm.hpp
struct DeviceMemoryRegion {
    std::atomic<uint32_t> version;
    std::atomic<uint32_t> num_active_processes;
    std::atomic<uint64_t> last_update_timestamp;
    std::atomic<uint32_t> reference_count;
    std::atomic<uint64_t> board_serial;
    std::atomic<uint64_t> asic_id;
    std::atomic<uint32_t> device_id;
    std::atomic<uint64_t> total_dram_allocated, total_l1_allocated, total_l1_small_allocated,
        total_trace_allocated, total_cb_allocated;
    struct ChipStats {
        std::atomic<uint32_t> chip_id;
        std::atomic<uint32_t> is_remote;
        std::atomic<uint64_t> dram_allocated, l1_allocated, l1_small_allocated, trace_allocated, cb_allocated;
    } chip_stats[16];
    struct ProcessStats {
        std::atomic<pid_t> pid;
        std::atomic<uint64_t> dram_allocated, l1_allocated, l1_small_allocated, trace_allocated, cb_allocated;
        std::atomic<uint64_t> last_update_timestamp;
        char process_name[64];
    } processes[64];
    std::atomic<uint32_t> init_state;
} __attribute__((aligned(64)));
int main() {
    std::printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu\n", offsetof(DeviceMemoryRegion, total_dram_allocated),
                offsetof(DeviceMemoryRegion, chip_stats), sizeof(DeviceMemoryRegion::ChipStats),
                offsetof(DeviceMemoryRegion, processes), sizeof(DeviceMemoryRegion::ProcessStats),
                offsetof(DeviceMemoryRegion::ProcessStats, last_update_timestamp),
                offsetof(DeviceMemoryRegion::ProcessStats, process_name), offsetof(DeviceMemoryRegion, init_state),
                sizeof(DeviceMemoryRegion));
}
"""


def test_v4_offsets_match_what_a_cxx_compiler_makes_of_the_header(tmp_path):
    import shutil

    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "region.cpp"
    src.write_text(CXX_REGION)
    built = subprocess.run([cxx, "-std=c++17", "-o", str(tmp_path / "region"), str(src)], capture_output=True,
                           text=True, timeout=120)
    if built.returncode:
        pytest.skip(f"the compiler failed: {built.stderr[:200]}")
    got = subprocess.run([str(tmp_path / "region")], capture_output=True, text=True, timeout=30).stdout.split()
    v = L.V4
    assert list(map(int, got)) == [v.totals, v.chips, v.chip_size, v.processes, v.proc_size, v.proc_timestamp,
                                   v.proc_name, v.init_state, v.size]
