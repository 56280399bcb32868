"""The server's runs of ALLOC / FREE messages (registry.apply_wire, compiled or pure) against the reference loop.

ProducerIngest._ingest hands runs of ordinary ALLOC / FREE messages to registry.apply_wire (the
compiled twin in tt_memtop/_native/ingest.c when built, else its pure twin) and takes every other
message, and every message the run leaves to it, through its general loop. With ``_apply_runs =
None`` the loop takes every message: the reference. On random chunks (every message type, devices and
sizes the originals drop, ref-counted and named entries, peer credentials of one or two users,
--max-buffers, a growing inventory, malformed frames) the three must give the same replies, log and
warning lines, subscription bytes, registry state and counters.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tt_memtop.core import registry as registry_mod
from tt_memtop.core.devices import Inventory
from tt_memtop.core.eventcodec import decode_events_body
from tt_memtop.core.protocol import MAX_SIZE, AllocMessage, encode
from tt_memtop.server.framing import FrameReader
from tt_memtop.server.peers import PeerCred
from tt_memtop.server.server import AllocationServer, ServerConfig, _Conn, _records, _Subscriber

NATIVE = registry_mod.native_wire_applier()
PATHS = {"reference": None, "pure": registry_mod.apply_wire}
if NATIVE is not None:
    PATHS["native"] = NATIVE

_TYPES = [1] * 8 + [2] * 8 + [3, 5, 6, 8, 9, 10, 11, 12, 42, 66]
message = st.builds(
    AllocMessage,
    type=st.sampled_from(_TYPES),
    device_id=st.sampled_from([0, 0, 0, 1, 1, 1, 2, 7, 255, 256, -1]),
    size=st.sampled_from([64, 4096, 1 << 20, 0, MAX_SIZE, MAX_SIZE + 1, 1 << 50]),  # sums stay within u64
    buffer_type=st.sampled_from([0, 0, 1, 1, 2, 3, 4, 5, 6, 7]),
    process_id=st.sampled_from([100, 100, 101, 102]),
    buffer_id=st.sampled_from([0x1000, 0x2000, 0x3000, 0x4000]),
)
#: (connection, messages, index of a frame sent with a non-zero pad byte or None)
step = st.tuples(st.integers(0, 1), st.lists(message, min_size=1, max_size=40), st.none() | st.integers(0, 39))
setup = st.fixed_dictionaries({
    "layout": st.sampled_from([72, 112, 144, "auto"]),
    "quiet": st.booleans(),
    "log_format": st.sampled_from(["hex", "decimal"]),
    "max_buffers": st.sampled_from([0, 0, 3, 8]),
    "grow_inventory": st.booleans(),
    "dedupe_warnings": st.booleans(),
    "peers": st.sampled_from(["none", "one user", "two users"]),
    "subscriber": st.booleans(),
    "named": st.booleans(),
    "one_stream": st.booleans(),  # warnings and lines in one stream (2>&1): their order is compared too
})


class _Clock:
    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        self.t += 1000
        return self.t


def _server(cfg: dict, path):
    out = io.StringIO()
    err = out if cfg.get("one_stream") else io.StringIO()
    layout = cfg["layout"]
    srv = AllocationServer(ServerConfig(socket_path="/nonexistent", inventory=Inventory.uniform(2), layout=layout,
                                        quiet=cfg["quiet"], log_format=cfg["log_format"],
                                        max_buffers=cfg["max_buffers"], grow_inventory=cfg["grow_inventory"],
                                        dedupe_warnings=cfg["dedupe_warnings"]),
                           log=out, err=None if err is out else err, is_alive=lambda pid: pid != 102, clock=_Clock())
    srv._apply_runs = path
    sub = None
    if cfg["subscriber"]:
        sub = _Subscriber(1 << 40)
        srv._subs.add(sub)
    peers = {"none": (None, None), "one user": (PeerCred(100, 1000, 1000, (100,)), PeerCred(101, 1000, 1000, (101,))),
             "two users": (PeerCred(100, 1000, 1000, (100,)), PeerCred(101, 1001, 1001, (101,)))}[cfg["peers"]]
    conns = [_Conn(k + 1, FrameReader(layout), peers[k]) for k in range(2)]
    if cfg["named"]:  # entries with a name (as a v648 client or a kernel load makes them) in the way of FREEs
        srv.registry.apply(AllocMessage(type=1, device_id=0, buffer_id=0x2000, size=64, process_id=100,
                                        buffer_name="named"), 0)
        srv.registry.apply(AllocMessage(type=1, device_id=1, buffer_id=0x3000, size=64, process_id=101,
                                        stack_trace="trace"), 0)
    return srv, out, err, sub, conns


def _frames(msgs: list[AllocMessage], layout, bad: int | None) -> bytes:
    size = 144 if layout == "auto" else layout
    parts = [bytearray(encode(m, size)) for m in msgs]
    if bad is not None and bad < len(parts):
        parts[bad][2] = 1  # a pad byte: not a plain frame (the chunk goes frame by frame)
    return b"".join(parts)


def _state(srv, out, err, sub) -> dict:
    reg = srv.registry
    reg.check_invariants()
    stats = dataclasses.asdict(srv.stats)
    return {"out": out.getvalue(), "err": err.getvalue(),
            "stream": b"".join(c for c, _ in sub.queue) if sub is not None else b"",
            "buffers": list(reg.buffers()), "seq": reg.seq, "messages": reg.messages,
            "unknown": reg.unknown_frees, "unstorable": reg.unstorable,
            "totals": {d: (reg.device_totals(d), reg.device_count(d)) for d in reg.devices()},
            "pids": {p: reg.pid_totals(p) for p in reg.pids()}, "stats": stats,
            "inventory": len(srv.config.inventory), "owners": {p: (o.uid, sorted(o.host_pids))
                                                              for p, o in srv.ownership.owners().items()}}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=setup, steps=st.lists(step, min_size=1, max_size=8))
def test_runs_of_alloc_free_match_the_reference_loop(cfg, steps):
    runs = {name: _server(cfg, path) for name, path in PATHS.items()}
    replies = {name: [] for name in runs}
    for k, msgs, bad in steps:
        data = _frames(msgs, cfg["layout"], bad)
        for name, (srv, _out, _err, _sub, conns) in runs.items():
            res = conns[k].reader.feed(data)
            replies[name].append(srv._ingest(conns[k], res))
    want = _state(*runs["reference"][:4])
    for name in runs:
        assert replies[name] == replies["reference"], name
        got = _state(*runs[name][:4])
        for key in want:
            assert got[key] == want[key], (name, key)


def test_a_plain_chunk_is_one_run():
    """The common case really takes the fast path: one call, every event encoded, the same bytes."""
    calls = []
    cfg = {"layout": 144, "quiet": False, "log_format": "hex", "max_buffers": 0, "grow_inventory": False,
           "dedupe_warnings": False, "peers": "one user", "subscriber": True, "named": False}
    real = PATHS.get("native", registry_mod.apply_wire)
    srv, out, _err, sub, conns = _server(cfg, lambda *a: calls.append(a[2]) or real(*a))
    msgs = [AllocMessage(type=1, device_id=0, size=4096, process_id=100, buffer_id=0x1000 + 64 * i) for i in range(50)]
    msgs += [AllocMessage(type=2, device_id=0, process_id=100, buffer_id=0x1000 + 64 * i) for i in range(50)]
    srv._ingest(conns[0], conns[0].reader.feed(b"".join(encode(m, 144) for m in msgs)))
    # the first ALLOC is checked against the peer by the loop (it settles the PID), then one run takes the rest
    assert calls == [0, 1]
    evs = decode_events_body(sub.queue[0][0], 5)  # after the u32 length and the kind byte
    assert [e.kind.name for e in evs] == ["ALLOC"] * 50 + ["FREE"] * 50
    assert [e.seq for e in evs] == list(range(1, 101))
    assert out.getvalue().count("\n") == 100 and "Freed buffer 0x1000 on device 0 (4096 bytes, FINAL)" in out.getvalue()
    assert len(srv.registry) == 0 and srv.stats.messages == 100


@pytest.mark.parametrize("n", [1, 8191, 8192, 8193, 20000])
def test_records_split_as_encode_events_does(n):
    """_records cuts mixed lists (Events, runs of encoded events) where encode_events over the Events would."""
    from tt_memtop.core.eventcodec import encode_event, encode_events
    from tt_memtop.core.events import Event, EventKind

    evs = [Event(EventKind.ALLOC, seq=i + 1, pid=7, buffer_id=i, size=64, ref_count=1) for i in range(n)]
    want = [encode_events(evs[i:i + 8192]) for i in range(0, n, 8192)]
    blob = b"".join(map(encode_event, evs))
    mixed = [blob[:52 * (n // 3)], *evs[n // 3:n // 2], blob[52 * (n // 2):]]
    for items in ([blob], mixed, evs):
        got = _records([x for x in items if x != b""])
        assert [r for r, _ in got] == want
        assert [k for _, k in got] == [min(8192, n - i) for i in range(0, n, 8192)]


def test_a_checked_pid_is_checked_again_once_the_owners_change():
    """A connection's ALLOCs of the PID it had checked skip the peer check in later chunks only while the
    owners are unchanged (Ownership.version): after a cleanup forgot the PID, its next ALLOC is checked
    (and its owner recorded) again."""
    cfg = {"layout": 144, "quiet": True, "log_format": "hex", "max_buffers": 0, "grow_inventory": False,
           "dedupe_warnings": False, "peers": "one user", "subscriber": False, "named": False}
    for path in PATHS.values():
        _check_pid_again(cfg, path)


def _check_pid_again(cfg: dict, path) -> None:
    srv, _out, _err, _sub, conns = _server(cfg, path)
    checks = []
    real = srv._permitted
    srv._permitted = lambda conn, m, ts, events: checks.append(m.buffer_id) or real(conn, m, ts, events)

    def chunk(*bids):
        data = b"".join(encode(AllocMessage(type=1, size=64, process_id=100, buffer_id=b), 144) for b in bids)
        srv._ingest(conns[0], conns[0].reader.feed(data))

    chunk(0x1000, 0x2000)
    chunk(0x3000)
    assert checks == [0x1000] and 100 in srv.ownership.owners()
    srv.ownership.forget(100)
    chunk(0x4000, 0x5000)
    assert checks == [0x1000, 0x4000] and 100 in srv.ownership.owners()
    assert len(srv.registry) == 5


@pytest.mark.skipif(NATIVE is None or registry_mod.Registry(False).native is False, reason="no compiled ingest/table")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([1, 1, 1, 2, 2]), st.sampled_from([0, 1, 3]),
                          st.sampled_from([64, 4096, 1 << 20, 1 << 40]), st.sampled_from([0, 1, 2, 3, 4]),
                          st.sampled_from([100, 101]), st.integers(0, 12)), min_size=1, max_size=120),
       st.sampled_from([0, 5]), st.integers(0, 2))
def test_compiled_ingest_is_the_same_on_either_table(ops, cap, lines):
    """The compiled apply_wire reaches the compiled Table through its C API (table_api.h) and any other table
    through its methods: on the same messages both registries end the same, with the same events and lines."""
    from tt_memtop.core.protocol import decode_frames

    msgs = [AllocMessage(type=t, device_id=d, size=sz, buffer_type=bt, process_id=pid, buffer_id=0x1000 + 64 * b)
            for t, d, sz, bt, pid, b in ops]
    wire = decode_frames(b"".join(encode(m, 144) for m in msgs), 144, len(msgs))
    out = []
    for pure_table in (True, False):
        reg = registry_mod.Registry(pure_table)
        got, start = [], 0
        while start < len(wire):
            nxt, evs, lns, n = NATIVE(reg, wire, start, 5_000 + start, False, cap, None, True, -1, True, lines)
            got.append((nxt, evs, lns, n))
            if nxt == start:
                reg.apply(msgs[start], ts_ns=5_000 + start)  # the caller's general rules take it
                nxt += 1
            start = nxt
        reg.check_invariants()
        out.append((got, sorted(map(repr, reg.snapshot())), reg.seq, reg.messages, reg.unknown_frees, len(reg),
                    [(d, reg.device_totals(d), reg.device_count(d)) for d in reg.devices()],
                    [(p, reg.pid_totals(p), reg.pid_device_totals(p), reg.pid_count(p)) for p in reg.pids()]))
    assert out[0] == out[1]
