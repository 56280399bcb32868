"""The log parser against real server output, quoted excerpts, our own formatter, and garbage."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from session_72byte import EXCERPTS, SESSION_LOG

from tt_memtop.core import logclassify as lp
from tt_memtop.core import logformat as lf
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import EventKind
from tt_memtop.core.logparse import LogParser
from tt_memtop.core.logrecords import (
    CbKernelChange,
    DeviceDetected,
    DumpReport,
    KernelDump,
    ProcessCleanup,
    ServerBanner,
    SizeChange,
    StatsReport,
)
from tt_memtop.core.protocol import AllocMessage, Arch, BufferType, MsgType
from tt_memtop.core.registry import Registry
from tt_memtop.core.report import dump_mismatches


def parse(lines: list[str] | bytes, parser: LogParser | None = None):
    parser = parser or LogParser()
    raw = lines.splitlines() if isinstance(lines, bytes) else [ln.encode() for ln in lines]
    events = parser.feed(raw)
    parser.finish()
    return parser, events


def rebuild(events) -> Registry:
    reg = Registry()
    for ev in events:
        reg.apply_event(ev)
    reg.check_invariants()
    return reg


def key_state(reg: Registry) -> dict:
    return {(b.device, b.buffer_id): (b.buffer_type, b.size, b.owner_pid, b.ref_count) for b in reg.buffers()}


# ---------------------------------------------------------------------------------------- the real session log
@pytest.fixture(scope="module")
def session():
    parser, events = parse(SESSION_LOG.read_bytes())
    return parser, events, parser.take_records()


def test_session_accounting(session):
    parser, events, _ = session
    s = parser.stats
    assert s.lines == 167
    assert s.unknown == 0 and s.malformed == 0 and s.orphans == 0
    assert s.lines == s.event_lines + s.known + s.blank + s.unknown + s.malformed
    assert [ev.seq for ev in events] == list(range(1, len(events) + 1))


def test_session_rebuilt_state_equals_the_dump(session):
    _, events, records = session
    reg = rebuild(events)
    dumps = [r for r in records if isinstance(r, DumpReport)]
    assert len(dumps) == 2 and all(d.complete and d.requested for d in dumps)
    final = dumps[-1]
    assert final.total_tracked == final.total_remaining == 16 == reg.num_buffers
    assert dump_mismatches(final, list(reg.buffers())) == []
    assert len(final.buffers) == 16  # every group has <= 10 buffers, so each is listed
    by_dev = {}
    for b in final.buffers:
        by_dev.setdefault(b.device, set()).add((b.type_name, b.buffer_id, b.size, b.pid, b.ref_count))
    assert sorted(by_dev) == [0, 1, 2, 3, 5]
    assert ("L1", 0x19000, 65536, 8174, 1) in by_dev[0]
    assert ("TRACE", 0x3E363C80, 12503040, 8174, 1) in by_dev[2]
    assert not any(t == "TRACE" for t, *_ in by_dev[1])  # freed FINAL on device 1
    assert by_dev[5] == {("SYSTEM_MEMORY", 0x100, 256, 8174, 1)}
    # per-device contents of the registry, exactly
    assert reg.device_totals(0)[:5] == [1 << 20, 65536, 0, 24576, 12503040]
    assert reg.device_totals(5)[BufferType.SYSTEM_MEMORY] == 256
    assert reg.get(0, 0x19000).ref_count == 1


def test_session_dead_pid_cleanup(session):
    _, events, records = session
    exits = [ev for ev in events if ev.kind == EventKind.PROCESS_EXIT]
    assert [(ev.pid, ev.ref_count, ev.size) for ev in exits] == [(8216, 2, 4096 + 8192)]
    cleaned = {(ev.device, ev.buffer_id) for ev in events if ev.kind == EventKind.CLEANUP}
    assert cleaned == {(6, 30583), (6, 34952)}
    (pc,) = [r for r in records if isinstance(r, ProcessCleanup)]
    assert pc.pid == 8216 and pc.removed == 2 and pc.logged == {"buffers": (2, "0.0117188")} and pc.consistent
    assert rebuild(events).pids() == [8174]
    # the first dump was taken after the cleanup and agrees with the state at that point
    first = next(r for r in records if isinstance(r, DumpReport))
    upto = [ev for ev in events if ev.seq <= first.seq]
    assert dump_mismatches(first, list(rebuild(upto).buffers())) == []


def test_session_stats_block_matches(session):
    _, events, records = session
    reg = rebuild(events)
    (stats,) = [r for r in records if isinstance(r, StatsReport)]
    assert stats.active == 16
    for dev, fields in stats.devices.items():
        t = reg.device_totals(dev)
        assert fields == {"buffers": reg.device_count(dev), "dram": t[0], "l1": t[1], "total": sum(t[:5])}
    banners = [r.kind for r in records if isinstance(r, ServerBanner)]
    assert banners == ["start", "stop"]


def test_session_event_details(session):
    _, events, _ = session
    ref_inc = [ev for ev in events if ev.kind == EventKind.REF_INC]
    assert [(ev.device, ev.buffer_id, ev.ref_count, ev.buffer_type) for ev in ref_inc] == [(0, 102400, 2, 1)]
    unknown = [ev for ev in events if ev.kind == EventKind.FREE_UNKNOWN]
    assert [(ev.pid, ev.device, ev.buffer_id) for ev in unknown] == [(8174, 2, 0xDEAD000)]
    free = [ev for ev in events if ev.kind == EventKind.FREE]
    assert [(ev.device, ev.buffer_type, ev.size) for ev in free] == [(1, BufferType.TRACE, 12503040)]
    assert sum(ev.kind == EventKind.DUMP for ev in events) == 2


# ---------------------------------------------------------------------------------------- excerpts from notes
def test_excerpts():
    parser, events = parse(EXCERPTS.read_bytes())
    records = parser.take_records()
    allocs = [ev for ev in events if ev.kind == EventKind.ALLOC]
    # "Line NNNNN: " prefixes are dropped; decimal ids
    assert [(ev.device, ev.buffer_id, ev.buffer_type) for ev in allocs[:3]] == [
        (4, 1043741824, BufferType.TRACE), (0, 1043741824, BufferType.TRACE), (3, 1043741824, BufferType.TRACE)]
    assert (0, 328467008, BufferType.DRAM, 16384) in {(e.device, e.buffer_id, e.buffer_type, e.size) for e in allocs}
    frees = [ev for ev in events if ev.kind == EventKind.FREE]
    assert [(ev.pid, ev.device, ev.buffer_type) for ev in frees] == [(1000131, 4, BufferType.TRACE),
                                                                       (1000131, 0, BufferType.TRACE)]
    bad = [ev.text for ev in events if ev.kind == EventKind.BAD_FRAME]
    assert bad == ["⚠️  Invalid device_id 2657333 - ignoring message",
                   "⚠️  Too many consecutive errors (10) - closing connection (likely protocol mismatch)"]
    dumps = [r for r in records if isinstance(r, DumpReport)]
    assert len(dumps) == 2 and not any(d.complete for d in dumps)
    assert [(b.device, b.type_name, b.buffer_id, b.size, b.pid) for b in dumps[0].buffers] == [
        (0, "TRACE", 0x3E363C80, 12503040, 919068)]
    assert dumps[1].total_tracked == 381
    assert [(g.device, g.type_name, g.count, g.mb_text) for g in dumps[1].groups] == [
        (0, "DRAM", 21, "19.43"), (0, "L1", 28, "6.14")]
    (pc,) = [r for r in records if isinstance(r, ProcessCleanup)]
    assert pc.logged == {"buffers": (5, "15.2"), "CBs": (8, "2.4"), "kernels": (4, "0.199219")}
    assert not pc.consistent  # we never saw PID 12345's buffers
    # the only unrecognised lines are the file's own comments and headings
    assert parser.stats.malformed == 0
    assert all(text.startswith(("#", "===")) for _, text in parser.stats.samples)


# ---------------------------------------------------------------------------------------- round trip through logformat
def _workload(seed: int, n: int = 600):
    """Random ALLOC / FREE / cleanup traffic applied to a server-side registry; yields (event or block lines)."""
    rnd = random.Random(seed)
    reg = Registry()
    out: list = []
    pids = [100, 200, 300]
    ids = [rnd.randrange(1, 1 << 34) for _ in range(40)] + [0, 1, 255, 256]
    for _ in range(n):
        r = rnd.random()
        dev = rnd.randrange(4)
        if r < 0.5:
            m = AllocMessage(MsgType.ALLOC, device_id=dev, size=rnd.choice([256, 4096, 12503040]),
                             buffer_type=rnd.randrange(5), process_id=rnd.choice(pids), buffer_id=rnd.choice(ids))
        elif r < 0.97:
            m = AllocMessage(MsgType.FREE, device_id=dev, buffer_id=rnd.choice(ids), process_id=rnd.choice(pids))
        else:
            dead = [rnd.choice(pids)]
            out.append(("cleanup", reg.cleanup(dead, 0)))
            continue
        out.append(("event", reg.apply(m, 0)))
    return reg, out


@pytest.mark.parametrize("id_format", ["hex", "decimal"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_round_trip_through_logformat(id_format, seed):
    server, items = _workload(seed)
    lines = lf.start_banner("/tmp/x.sock", Inventory.uniform(4))
    expected = []
    for what, payload in items:
        if what == "event":
            lines.append(lf.event_line(payload, id_format))
            expected.append(payload)
        else:
            lines += lf.cleanup_block(payload)
            expected += payload
    lines += [lf.DUMP_REQUEST, *lf.dump_report(server), lf.DUMP_COMPLETE, *lf.stats_block(server), *lf.stop_banner()]
    parser, events = parse(lines)
    assert parser.stats.unknown == parser.stats.malformed == 0
    state_events = [ev for ev in events if ev.kind not in (EventKind.DUMP,)]
    assert len(state_events) == len(expected)
    for got, want in zip(state_events, expected, strict=True):
        assert (got.kind, got.pid, got.device, got.buffer_id, got.ref_count) == (
            want.kind, want.pid, want.device, want.buffer_id, want.ref_count)
        if want.kind != EventKind.FREE_UNKNOWN:  # the unknown-free line shows no size and no type
            assert (got.buffer_type, got.size) == (want.buffer_type, want.size)
    reg = rebuild(events)
    assert key_state(reg) == key_state(server)
    (dump,) = [r for r in parser.take_records() if isinstance(r, DumpReport)]
    assert dump_mismatches(dump, list(reg.buffers())) == []
    inv = parser.inventory
    assert len(inv) == 4 and inv.get(0).arch == Arch.WORMHOLE_B0 and inv.get(0).total_l1 == 179_896_320


def test_restart_banner_resets_state():
    lines = [lf.alloc_line(1, 4096, 0, 0, 0x10), *lf.start_banner("/tmp/s"), lf.alloc_line(2, 8192, 1, 0, 0x20)]
    parser, events = parse(lines)
    reg = rebuild(events)
    assert key_state(reg) == {(0, 0x20): (1, 8192, 2, 1)}
    assert [e.text for e in events if e.kind == EventKind.CLEANUP] == ["server restarted"]


# ---------------------------------------------------------------------------------------- other versions' blocks
def test_s5_lines_detection_cb_kernel_and_kernel_dump():
    reg = Registry()
    for m in [AllocMessage(MsgType.KERNEL_LOAD, device_id=0, size=57344, buffer_type=1, process_id=7, buffer_id=0xAB),
              AllocMessage(MsgType.CB_ALLOC, device_id=1, size=65536, process_id=7, buffer_id=3)]:
        reg.apply(m, 0)
    lines = ["🔍 Device detection (using UMD Cluster for accurate specs):",
             "DRAM size per channel: 1073741824", "Number of DRAM channels: 12", "L1 size per core: 1499136",
             "Grid size: 8x8", "Arch: Wormhole_B0", "Is remote: 1",
             "   Device 0: Wormhole_B0 (12GB DRAM, 91MB L1) [Remote]", "   Total: 1 device(s) detected",
             lf.kernel_line(True, "Fabric", 0, 57344, 57344), lf.cb_line(True, 1, 65536, 65536),
             lf.cb_line(False, 1, 65536, 0), *lf.dump_kernels(reg, 3_000_000_000)]
    parser, events = parse(lines)
    recs = parser.take_records()
    assert events == [] and parser.stats.unknown == parser.stats.malformed == 0
    (det,) = [r for r in recs if isinstance(r, DeviceDetected)]
    assert (det.device, det.remote, det.exact, det.total_dram, det.total_l1) == (0, True, True, 12 << 30,
                                                                                  1499136 * 64)
    cbk = [(r.kind, r.device, r.kernel_type, r.delta_mb) for r in recs if isinstance(r, CbKernelChange)]
    assert cbk == [("KERNEL_LOAD", 0, "Fabric", 0.0546875), ("CB_ALLOC", 1, "", 0.0625), ("CB_FREE", 1, "", 0.0625)]
    (kd,) = [r for r in recs if isinstance(r, KernelDump)]
    assert kd.complete and kd.total == 1 and kd.devices == {0: (0.0546875, 1)}
    assert kd.kernels == [{"device": 0, "kernel_id": 0xAB, "size": 57344, "pid": 7, "age_s": 3}]


def test_enhanced_server_and_648_lines():
    lines = [
        "🚀 Enhanced Allocation Server started (with history tracking)",
        "✓ [PID 5] Allocated 4096 bytes of L1 on device 0 (buffer_id=0x1000)",
        "⚠ [PID 5] Buffer reused with DIFFERENT size: old=4096 new=8192 (buffer_id=4096, device=0)",
        "✓ [PID 5] Allocated 8192 bytes of L1 on device 0 (buffer_id=0x1000, ref_count=2)",
        "⚠ [PID 5] Deallocation for unknown buffer 0x2000 on device 0 (never tracked or allocated before server started)",
        "⚠ [PID 5] Deallocation for ALREADY FREED buffer 0x3000 on device 1 (allocs=1 frees=2)",
        "   Last 5 events for this buffer:",
        "     FREE size=4096 pid=5 ref=0",
        "     ALLOC size=4096 pid=5 ref=1",
        "🔹 ID: 0x1b233ee0 | Size: 16128 KB | PID: 845661 | Refs: 1 | Age: 108s | 📝 model_weights_shard_0",
        "  └─ 📍 ttnn::from_torch at model.py:42",
    ]
    parser, events = parse(lines)
    recs = parser.take_records()
    assert parser.stats.unknown == parser.stats.malformed == 0
    unknown = [(e.device, e.buffer_id, e.text) for e in events if e.kind == EventKind.FREE_UNKNOWN]
    assert unknown == [(0, 0x2000, "never tracked or allocated before server started"),
                       (1, 0x3000, "ALREADY FREED (allocs=1 frees=2)")]
    (sc,) = [r for r in recs if isinstance(r, SizeChange)]
    assert (sc.old, sc.new, sc.buffer_id) == (4096, 8192, 0x1000)
    (dump,) = [r for r in recs if isinstance(r, DumpReport)]
    (b,) = dump.buffers
    assert (b.buffer_id, b.size, b.pid, b.ref_count, b.age_s, b.name) == (0x1B233EE0, 16128 * 1024, 845661, 1, 108,
                                                                          "model_weights_shard_0")
    assert b.stack_trace == "ttnn::from_torch at model.py:42"


def test_orphan_frees_are_counted_not_invented():
    lines = ["✗ [PID 9] Freed buffer 0x40 on device 0 (4096 bytes, ref_count=1 remaining)",
             "✗ [PID 9] Freed buffer 0x40 on device 0 (4096 bytes, FINAL)",
             "✓ [PID 9] Allocated 4096 bytes of L1 on device 0 (buffer_id=0x80, ref_count=3)"]
    parser, events = parse(lines)
    assert parser.stats.orphans == 3
    assert len(rebuild(events)) == 0


# ---------------------------------------------------------------------------------------- garbage never crashes
def test_malformed_lines_are_counted_and_neighbours_survive():
    good = "✓ [PID 1] Allocated 4096 bytes of DRAM on device 0 (buffer_id=0x10)"
    lines = [good.encode(), b"\xe2\x9c\x93 [PID 1] Allocated 4096 bytes of DRAM on dev",  # torn by a crash
             b"\xff\xfe garbage", "✓ [PID x] Allocated 1 bytes of DRAM on device 0 (buffer_id=1)".encode(),
             "✓ [PID 1] Allocated 4096 bytes of BOGUS on device 0 (buffer_id=0x11)".encode(),
             "✓ [PID 1] Allocated 4096 bytes of DRAM on device 0 (buffer_id=007)".encode(),
             b"", "✗ [PID 1] Freed buffer 0x10 on device 0 (4096 bytes, FINAL)".encode()]
    parser = LogParser()
    events = parser.feed(lines)
    assert [e.kind for e in events] == [EventKind.ALLOC, EventKind.FREE]
    s = parser.stats
    assert s.lines == 8 and s.blank == 1 and s.malformed == 4 and s.unknown == 1
    assert s.lines == s.event_lines + s.known + s.blank + s.unknown + s.malformed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20), st.integers(0, 2**32))
def test_fuzz_never_raises(chunks, seed):
    rnd = random.Random(seed)
    templates = [lf.alloc_line(1, 4096, 1, 0, 0x10), lf.free_line(1, 0x10, 0, 4096, 0), *lf.stats_block(Registry()),
                 lf.DUMP_REQUEST, "   PID 3 is dead, removing its buffers...", "Device 0:", "  L1: 1 buffers, 1 MB total"]
    lines = []
    for c in chunks:
        t = rnd.choice(templates).encode()
        cut = rnd.randrange(len(t) + 1)
        lines.append(t[:cut] + c + t[cut:] if rnd.random() < 0.5 else c)
    parser = LogParser()
    events = parser.feed(lines)
    parser.finish()
    rebuild(events)
    s = parser.stats
    assert s.lines == len(lines) == s.event_lines + s.known + s.blank + s.unknown + s.malformed


# ---------------------------------------------------------------------------------------- fast path == general path
_FIELD_VARIANTS = {
    "pid": ["1", "919068", "-1", "0", "x", "", "08"],
    "size": ["4096", "0", "12503040", "-4", "4k", ""],
    "type": ["DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE", "CB", "KERNEL", "BOGUS", "dram", ""],
    "dev": ["0", "3", "7", "8", "-1", "12", "x", ""],
    "id": ["0x10", "0x3e363c80", "0", "455294688", "0x0", "007", "0X10", "0xAB", "0x", "0x_1", "-5", "1_0", " 1", ""],
    "rc": ["", "", "", "1", "2", "0", "07", "-1", "x"],
}


def _random_hot_line(rnd: random.Random) -> bytes:
    """An alloc / free / unknown-free line, mostly well-formed, sometimes with one odd field or a torn end."""
    f = {k: (v[0] if k == "rc" else rnd.choice(v[:3])) for k, v in _FIELD_VARIANTS.items()}
    f["rc"] = rnd.choice(["", "", "2", "1"])
    if rnd.random() < 0.3:  # one field from the odd end of its list
        k = rnd.choice(list(_FIELD_VARIANTS))
        f[k] = rnd.choice(_FIELD_VARIANTS[k])
    shape = rnd.randrange(5)
    if shape <= 1:
        rc = f", ref_count={f['rc']}" if f["rc"] else ""
        line = f"✓ [PID {f['pid']}] Allocated {f['size']} bytes of {f['type']} on device {f['dev']} (buffer_id={f['id']}{rc})"
    elif shape <= 3:
        rest = f"ref_count={f['rc']} remaining" if f["rc"] else "FINAL"
        line = f"✗ [PID {f['pid']}] Freed buffer {f['id']} on device {f['dev']} ({f['size']} bytes, {rest})"
    else:
        line = f"⚠ [PID {f['pid']}] Deallocation for unknown buffer {f['id']} on device {f['dev']} (allocated before tracking started)"
    raw = line.encode()
    r = rnd.random()
    if r < 0.03:
        raw = raw[:rnd.randrange(len(raw))]
    elif r < 0.06:
        raw += rnd.choice([b" ", b")", b"\r", b"x"])
    elif r < 0.08:
        raw = b"Line 1234: " + raw
    elif r < 0.10:
        i = rnd.randrange(len(raw))
        raw = raw[:i] + rnd.choice([b"=", b"v", b" on device ", b" (buffer_id=", b"\xff"]) + raw[i:]
    return raw


def _random_log(rnd: random.Random, n: int) -> list[bytes]:
    pool = [_random_hot_line(rnd) for _ in range(max(1, n // 4))]  # lines repeat, as in a real log
    other = [b"", *(ln.encode() for ln in lf.stats_block(Registry())), b"   PID 1 is dead, removing its buffers...",
             "🚀 Allocation Server started".encode(), b"garbage"]
    out = []
    for _ in range(n):
        r = rnd.random()
        out.append(rnd.choice(pool) if r < 0.6 else _random_hot_line(rnd) if r < 0.97 else rnd.choice(other))
    return out


def _parse_with(lines: list[bytes], *, fast: bool, hot: bool | None, chunk: int = 37):
    parser = LogParser()
    parser.FAST_PATH = fast
    parser.ADAPT_LINES = 50  # decide often, so both ways of the line cache are exercised
    events = []
    for i in range(0, len(lines), chunk):
        if hot is not None:  # force the line cache on or off for alloc / free lines
            parser._hot_on, parser._hot_retry = hot, 0 if hot else 1 << 60
        events += parser.feed(lines[i:i + chunk])
    parser.finish()
    return parser, events


def _outcome(parser: LogParser, events) -> tuple:
    s = parser.stats.as_dict()
    return ([tuple(getattr(ev, k) for k in ev.__slots__) for ev in events], s, sorted(parser._live.items()),
            [repr(r) for r in parser.take_records()])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 400))
def test_fast_path_gives_the_same_result_as_classify(seed, n):
    lines = _random_log(random.Random(seed), n)
    want = _outcome(*_parse_with(lines, fast=False, hot=None))
    for hot in (None, True, False):
        assert _outcome(*_parse_with(lines, fast=True, hot=hot)) == want


def test_fast_path_halves_match_the_full_line_regex():
    """Both halves valid <=> the whole line is that kind, with the same fields (classify() is the reference)."""
    rnd = random.Random(7)
    shapes = ((lp._CHECK_3RD, lp._A_SPLIT, lp._alloc_head, lp._alloc_tail, lp.K_ALLOC),
              (lp._CROSS_3RD, lp._F_SPLIT, lp._free_head, lp._free_tail, lp.K_FREE))
    for _ in range(3000):
        raw = _random_hot_line(rnd)
        whole = lp.classify(raw)
        for glyph_3rd, split, head_of, tail_of, kind in shapes:
            head, _, tail = raw.partition(split)
            h, t = head_of(head), tail_of(tail)
            if h and t:
                assert whole[0] == kind, raw
                if kind == lp.K_ALLOC:
                    assert whole == (kind, h[0], h[3], h[2], t[0], h[1], t[1]), raw
                else:
                    assert whole == (kind, h[0], t[0], 0, h[1], t[1], t[2]), raw
            elif raw[2:3] == glyph_3rd:
                assert whole[0] != kind, raw


def test_fast_path_on_a_generated_model_log_matches_classify():
    """The benchmark's own generator (both workloads, small): identical events, stats and shadow state."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "bench_logparse", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_logparse.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for workload in ("model", "unique"):
        lines = [ln.encode() for ln in bench.generate(6000, workload)]
        want = _outcome(*_parse_with(lines, fast=False, hot=None, chunk=1000))
        got = _outcome(*_parse_with(lines, fast=True, hot=None, chunk=1000))
        assert got == want
        assert want[1]["unknown"] == want[1]["malformed"] == 0
