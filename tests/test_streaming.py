"""``memtop replay`` / ``analyze`` / ``report`` stream: memory bounded whatever the input's length.

Real subprocesses under an address-space limit (RLIMIT_AS) that holding every event would exceed,
checkpoints held to their budget, seeks across appended sessions giving exactly the state a
straight read gives, and gzipped recordings read by every reader.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from tt_memtop.core import logformat as lf
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.registry import Buffer, Registry
from tt_memtop.recording import RecordingReader, RecordingWriter
from tt_memtop.sources.logfile import check_log
from tt_memtop.sources.replay import ReplaySource
from tt_memtop.sources.timeline import Checkpoints as _Checkpoints
from tt_memtop.sources.timeline import RecordingTimeline as _RecordingTimeline

DEVICES = 4
_A, _F = EventKind.ALLOC, EventKind.FREE


def write_sessions(path: str, events_per_session: int, sessions: int = 3, weights: int = 500,
                   restore_last: bool = False) -> int:
    """``sessions`` appended server runs: weights kept live, then the same activations allocated and freed.

    ``restore_last``: the last session restored a journal (a SNAPSHOT of two buffers). Returns the events written.
    """
    written = 0
    wall = 10**18
    for s in range(sessions):
        restored = None
        if restore_last and s == sessions - 1:
            restored = (7, [Buffer(0, 0x9000, 0, 4096, 99, 2, 5, 3, "kept"), Buffer(1, 0x9000, 1, 512, 99, 1, 6, 4)])
        n, duration = _write_session(path, 100 + s, 10**12 + s * 10**11, wall, events_per_session, weights, restored)
        written += n
        wall += duration + 10**9
    return written


def _write_session(path: str, pid: int, start: int, wall: int, events: int, weights: int, restored) -> tuple[int, int]:
    now = [start]
    w = RecordingWriter(path, Inventory.uniform(DEVICES), clock=lambda: now[0], wall_clock=lambda: wall,
                        restored=restored)
    seq = first = 7 if restored else 0
    batch: list[Event] = []

    def add(kind: EventKind, dev: int, bid: int, size: int, bt: int = 0) -> None:
        nonlocal seq, batch
        seq += 1
        now[0] += 25_000
        batch.append(Event(kind, seq=seq, ts_ns=now[0], pid=pid, device=dev, buffer_type=bt, buffer_id=bid,
                           size=size, ref_count=1 if kind == _A else 0))
        if len(batch) == 256:
            w.write_events(batch)
            batch = []

    for i in range(weights):
        add(_A, i % DEVICES, 0x4000_0000 + i * 0x100, 1 << 16)
    n = weights
    while n < events - weights // 2:
        dev = n % DEVICES
        bid = 0x1000_0000 + (n // DEVICES % 16) * 0x40
        add(_A, dev, bid, 8192, 1)
        add(_F, dev, bid, 8192, 1)
        n += 2
    for i in range(weights // 2):  # the other half stays live: the next session's start ends it
        add(_F, i % DEVICES, 0x4000_0000 + i * 0x100, 1 << 16)
    w.write_events(batch)
    w.close()
    return seq - first, now[0] - start


def straight_state(path: str, upto: int | None = None) -> tuple[dict, int]:
    """The state after the first ``upto`` events of a straight read (no seek): {(dev, id, type): (size, pid, refs)}."""
    reg = Registry()
    for i, ev in enumerate(RecordingReader(path)):
        if upto is not None and i >= upto:
            break
        reg.apply_event(ev)
    return _state(reg.buffers()), reg.seq


def _state(buffers) -> dict:
    return {(b.device, b.buffer_id, b.buffer_type): (b.size, b.owner_pid, b.ref_count) for b in buffers}


# ------------------------------------------------------------------------------------------ subprocesses
_LIMITED = textwrap.dedent("""
    import resource, sys
    limit = int(sys.argv[1]) << 10
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from tt_memtop.cli import main
    try:
        code = main(sys.argv[2:])
    finally:
        if not limit:
            peak = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmPeak")][0]
            print("VmPeak", peak, file=sys.stderr)
    raise SystemExit(code)
""")
#: Address space a command may take beyond what it takes on a tiny input (measured first, in the same
#: environment, so that what the interpreter and the imports reserve does not matter). Streaming, the
#: inputs below cost about 5 MB more than a tiny one; holding their events cost 37 MB more (analyze of
#: the log) and 63 MB more (replay of the recording), measured on the code before streaming.
MARGIN_KB = 24 << 10
_ENV = {"MALLOC_ARENA_MAX": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def run_limited(*argv: str, tiny: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``memtop argv`` with an address-space limit of its VmPeak on ``tiny`` (same command) + MARGIN_KB."""
    env = {**os.environ, **_ENV, **(env or {})}
    base = subprocess.run([sys.executable, "-c", _LIMITED, "0", argv[0], tiny, *argv[2:]], capture_output=True,
                          text=True, timeout=120, env=env)
    assert base.returncode == 0, base.stderr[-2000:]
    peak_kb = int(base.stderr.strip().splitlines()[-1].split()[1])
    return subprocess.run([sys.executable, "-c", _LIMITED, str(peak_kb + MARGIN_KB), *argv], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory) -> tuple[str, int]:
    path = str(tmp_path_factory.mktemp("streaming") / "long.ttrec")
    return path, write_sessions(path, 80_000)


def test_replay_of_a_long_multi_session_recording_stays_within_a_memory_limit(long_recording, tmp_path):
    path, _ = long_recording
    tiny = str(tmp_path / "tiny.ttrec")
    write_sessions(tiny, 600, sessions=3, weights=100)
    p = run_limited("replay", path, "--json", tiny=tiny, env={"MEMTOP_PURE_PYTHON": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    expected, _ = straight_state(path)
    assert len(expected) == 250  # the last session's weights that were never freed
    assert sum(d["buffers"] for d in doc["devices"]) == len(expected)
    assert {pr["pid"] for pr in doc["processes"] if pr["buffers"]} == {102}


def test_analyze_and_report_of_a_long_log_stay_within_a_memory_limit(long_recording, tmp_path):
    path, _ = long_recording
    log = tmp_path / "long.log"
    with open(log, "w", encoding="utf-8") as f:
        f.write("\n".join(lf.start_banner("/tmp/tt_allocation_server.sock")) + "\n")
        for batch in RecordingReader(path).batches():
            f.write("".join(ln + "\n" for ev in batch if not ev.text and (ln := lf.event_line(ev))))
    tiny = tmp_path / "tiny.log"
    with open(log, encoding="utf-8") as src:
        tiny.write_text("".join(next(src) for _ in range(2000)))
    p = run_limited("analyze", str(log), "--json", tiny=str(tiny))
    assert p.returncode == 0, p.stderr[-2000:]
    assert {s["pid"] for s in json.loads(p.stdout)} == {100, 101, 102}
    p = run_limited("report", str(log), "--json", tiny=str(tiny))
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["remaining_total"] == 250


def test_every_reader_takes_a_gzipped_recording(tmp_path):
    path = str(tmp_path / "r.ttrec")
    write_sessions(path, 5_000)
    gz = str(tmp_path / "long.ttrec.gz")
    with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        dst.write(src.read())
    plain, gzipped = RecordingReader(path), RecordingReader(gz)
    assert gzipped.header == plain.header
    assert sum(map(len, gzipped.batches())) == sum(map(len, plain.batches())) and gzipped.sessions == 3
    check_log(gz)
    for cmd in ("report", "analyze", "replay"):
        a = subprocess.run([sys.executable, "-m", "tt_memtop", cmd, path, "--json"], capture_output=True, text=True,
                           timeout=300)
        b = subprocess.run([sys.executable, "-m", "tt_memtop", cmd, gz, "--json"], capture_output=True, text=True,
                           timeout=300)
        assert a.returncode == b.returncode == 0, (cmd, b.stderr)
        da, db = json.loads(a.stdout), json.loads(b.stdout)
        if cmd == "report":
            da.pop("file"), db.pop("file")
        if cmd == "replay":
            da, db = da["devices"], db["devices"]
        assert da == db, cmd


def test_a_truncated_gzipped_recording_reads_up_to_the_damage_with_a_note(tmp_path):
    path = str(tmp_path / "r.ttrec")
    write_sessions(path, 20_000, sessions=2)
    data = gzip.compress(open(path, "rb").read(), compresslevel=1)
    gz = tmp_path / "r.ttrec.gz"
    gz.write_bytes(data[: len(data) // 2])
    reader = RecordingReader(str(gz))
    n = sum(1 for _ in reader)
    assert 0 < n < sum(1 for _ in RecordingReader(path))
    assert reader.torn_bytes > 0 and "decompressed" in reader.torn_note()
    p = subprocess.run([sys.executable, "-m", "tt_memtop", "report", str(gz)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "skipped what follows" in p.stderr and "gzip stream is truncated" in p.stderr


def test_a_truncated_gzipped_log_is_one_line_error(tmp_path):
    lines = lf.start_banner("/tmp/tt_allocation_server.sock")
    lines += [lf.alloc_line(1, 4096, 0, 0, 0x1000 + i) for i in range(50_000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    gz = tmp_path / "s.log.gz"
    gz.write_bytes(data[: len(data) * 2 // 3])
    for cmd in ("report", "analyze", "replay"):
        p = subprocess.run([sys.executable, "-m", "tt_memtop", cmd, str(gz), "--json"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 1, (cmd, p.stdout[-300:], p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "gzip stream is truncated" in p.stderr, (cmd, p.stderr)


# ------------------------------------------------------------------------------------------ seeks and checkpoints
def test_seeks_across_sessions_and_a_restored_snapshot_give_the_straight_state(tmp_path):
    path = str(tmp_path / "s.ttrec")
    write_sessions(path, 6_000, sessions=3, weights=200, restore_last=True)
    tl = _RecordingTimeline(path, checkpoint_every=500)
    total = tl.total
    for pos in (total, total // 3, 2 * total // 3 + 17, 5, total - 1, total // 2, 0, total):
        tl.seek(pos)
        assert tl.pos == pos
        assert (_state(tl.registry.buffers()), tl.registry.seq) == straight_state(path, pos), pos
    assert len(tl.ckpt.items) > 3
    for frac in (0.9, 0.2, 0.55, 1.0, 0.01):  # time seeks: every event up to the time, none after
        seconds = frac * tl.duration_s
        tl.seek_time(seconds)
        limit = tl.t0 + int(seconds * 1e9)
        upto = 0
        for ev in RecordingReader(path):
            if ev.ts_ns > limit:
                break
            upto += 1
        assert tl.pos == upto, frac
        assert _state(tl.registry.buffers()) == straight_state(path, upto)[0], frac


def test_checkpoints_of_a_large_state_stay_within_their_budget(tmp_path):
    path = str(tmp_path / "big.ttrec")
    write_sessions(path, 16_000, sessions=1, weights=6_000)
    tl = _RecordingTimeline(path, checkpoint_every=100)
    tl.ckpt.budget = 1 << 19
    tracemalloc.start()
    try:
        tl.seek(tl.total)
        tl.seek(tl.total // 2)
        tl.seek(tl.total)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tl.ckpt.cost <= 1 << 19 and len(tl.ckpt.items) >= 1
    assert _state(tl.registry.buffers()) == straight_state(path)[0]
    # the registry (6k live buffers) plus a budget's worth of checkpoints, not one copy per checkpoint
    assert peak < 8 << 20, f"{peak:,} B"


def test_checkpoints_thin_out_to_their_budget():
    ck = _Checkpoints(interval=10, limit=64, budget=1000)
    for pos in range(0, 10_000, 10):
        if ck.due(pos):
            ck.add(pos, pos, cost=300)
    assert ck.cost <= 1000 and len(ck.items) <= 3 and ck.interval > 10
    assert not _Checkpoints(interval=10).due(15, size=10)  # a large state spaces them further apart


def test_a_fast_replay_tick_reads_a_bounded_batch(long_recording):
    path, _ = long_recording
    src = ReplaySource(path, speed=1e9)
    sent = []
    src._advance(sent.append, 1.0)
    from tt_memtop.sources.replay import MAX_PER_TICK

    assert len(sent) == 1 and len(sent[0].events) == MAX_PER_TICK
    assert src.position == MAX_PER_TICK and src.position_s < src.duration_s


def test_report_of_a_run_whose_ids_never_repeat_folds_balanced_keys(monkeypatch):
    from tt_memtop.core import report

    monkeypatch.setattr(report, "MAX_KEYS", 1000)

    def run(n: int) -> tuple[report.Report, int]:
        b = report.ReportBuilder(position_unit="line")  # a log's report (no phase tracker)
        seq = 0
        tracemalloc.start()
        try:
            for chunk in range(n // 500):
                evs = []
                for i in range(chunk * 500, chunk * 500 + 500):
                    seq += 2
                    evs += [Event(_A, seq=seq - 1, ts_ns=seq * 1000, pid=1, device=i % 2, buffer_id=0x1000 + i,
                                  size=64, ref_count=1),
                            Event(_F, seq=seq, ts_ns=seq * 1000 + 1, pid=1, device=i % 2, buffer_id=0x1000 + i,
                                  size=64)]
                if chunk == 1:  # a never-allocated free and a buffer left live: kept whatever the folding
                    evs += [Event(EventKind.FREE_UNKNOWN, seq=seq + 1, ts_ns=seq * 1000 + 2, pid=1, device=0,
                                  buffer_id=0xDEAD),
                            Event(_A, seq=seq + 2, ts_ns=seq * 1000 + 3, pid=1, device=1, buffer_id=0xBEEF, size=8,
                                  ref_count=1)]
                    seq += 2
                b.add(evs)
            return b.finish(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, peak_small = run(4_000)
    big, peak_big = run(40_000)
    assert big.buffer_status == {report.STATUS_FULLY_FREED: 40_000, report.STATUS_LIVE: 1,
                                 report.STATUS_NEVER_ALLOCATED: 1}
    assert [p["buffer_id"] for p in big.problem_ids] == [0xDEAD] and big.remaining_total == 1
    assert peak_big < 3 * peak_small, (peak_small, peak_big)  # 10x the events, not 10x the memory


def test_report_of_a_totals_recording_says_it_holds_samples_only(tmp_path):
    """``memtop --record`` of shared-memory totals writes TOTALS events only: no "perfect cleanup" claim."""
    from tt_memtop.commands.report import build_report
    from tt_memtop.core.report import render_text
    from tt_memtop.core.usage import ProcessUsage
    from tt_memtop.sources.base import TotalsSample
    from tt_memtop.sources.record import sample_events

    path = str(tmp_path / "totals.rec")
    with RecordingWriter(path, Inventory.uniform(2)) as w:
        for i in range(5):
            s = TotalsSample(ts_ns=i * 10**9, totals={0: (100 * i, 0, 0, 0, 0, 0)},
                             processes={5: ProcessUsage(5, "llama", True, {0: (100 * i, 0, 0, 0, 0, 0)})})
            w.write_events(sample_events(s, i * 10**9))
    rep = build_report(path)
    assert rep.totals_samples == 5 and rep.as_dict()["totals_samples"] == 5
    text = render_text(rep, path)
    assert "totals samples only" in text and "perfect cleanup" not in text


def _slow_scan(path: str) -> tuple:
    r = RecordingReader(path)
    total, t0, t1 = 0, None, None
    for batch in r.batches():
        if batch:
            t0 = batch[0].ts_ns if t0 is None else t0
            t1 = batch[-1].ts_ns
            total += len(batch)
    return (total, t0, t1), r.sessions, r.torn_bytes, r.damage


def test_the_players_quick_scan_counts_what_the_reader_yields(tmp_path):
    import struct
    import zlib

    from tt_memtop.core import eventcodec as codec

    path = str(tmp_path / "s.ttrec")
    write_sessions(path, 3_000, sessions=3, weights=100, restore_last=True)
    w = RecordingWriter(path, Inventory.uniform(DEVICES))
    w.write_events([Event(_A, seq=1, ts_ns=5, pid=1, buffer_id=1, size=8, ref_count=1, name="n" * 30, text="t")])
    w.close()
    cases = [path]
    for name, tail in (("torn", b"\x40\x00\x00\x00\x00\x00\x00\x00torn"),
                       ("bad", None)):  # a record with a valid CRC whose event has buffer_type 9
        p = str(tmp_path / f"{name}.ttrec")
        data = open(path, "rb").read()
        if tail is None:
            body = bytearray(codec.encode_events([Event(_A, seq=9, ts_ns=9, pid=1, buffer_id=2, size=8)]))
            body[1 + 4 + 8 + 8 + 1 + 4 + 4] = 9  # kind byte, count, seq, ts, kind, pid, device -> buffer_type
            tail = struct.pack("<II", len(body), zlib.crc32(bytes(body))) + bytes(body)
        open(p, "wb").write(data + tail)
        cases.append(p)
    for p in cases:
        r = RecordingReader(p)
        got = r.scan()
        want, sessions, torn, damage = _slow_scan(p)
        assert (got, r.sessions, r.torn_bytes, r.damage) == (want, sessions, torn, damage), p
    assert RecordingReader(cases[2]).scan()[0] == _slow_scan(path)[0][0] and _slow_scan(cases[2])[3]


def test_a_runaway_dump_block_is_counted_past_its_limit_not_held(monkeypatch):
    from tt_memtop.core import logparse
    from tt_memtop.core.logparse import LogParser
    from tt_memtop.core.logrecords import DumpReport

    monkeypatch.setattr(logparse, "MAX_DUMP_ENTRIES", 3)
    reg = Registry()
    for i in range(8):  # the original lists the buffers of a group this small
        reg.apply_event(Event(_A, seq=i + 1, pid=7, device=0, buffer_id=0x1000 * (i + 1), size=4096, ref_count=1))
    lines = [lf.DUMP_REQUEST, *lf.dump_report(reg), lf.DUMP_COMPLETE]
    parser = LogParser()
    parser.feed([ln.encode() for ln in lines])
    dumps = [r for r in parser.take_records() if isinstance(r, DumpReport)]
    assert len(dumps) == 1 and len(dumps[0].buffers) == 3 and dumps[0].omitted == 5
    assert dumps[0].total_tracked == 8
