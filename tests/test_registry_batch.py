"""Registry.apply_batch — a monitor's mirror a batch at a time — compiled (tt_memtop/_native/mirror.c) and reference.

The compiled batch must leave the registry exactly as :meth:`Registry._apply_one` event by event does
(entries, names, per-device and per-PID totals, counts, seq, unknown frees, unstorable entries) and
count the same sequence gaps, over the compiled table and the pure one, for server-made event streams
and for arbitrary (also malformed) events.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop.core import registry as registry_mod
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import AllocMessage, MsgType
from tt_memtop.core.registry import Registry
from tt_memtop.core.table import PyTable, table_class

native = pytest.mark.skipif(registry_mod._native_mirror is None, reason="the compiled mirror is not built")
TABLES = [pytest.param(False, id="compiled-table", marks=pytest.mark.skipif(table_class() is PyTable,
                                                                            reason="compiled table not built")),
          pytest.param(True, id="pure-table")]


def _state(r: Registry) -> dict:
    return {
        "buffers": sorted(map(repr, r.buffers())),
        "names": sorted((b.device, b.buffer_id, b.buffer_type, b.name, b.stack_trace) for b in r.buffers()),
        "usage": [(d, u.totals, u.count, list(u.by_pid.items())) for d, u in r._usage.items()],  # orders too
        "counts": r._counts, "strings": r._strings, "seq": r.seq, "unknown": r.unknown_frees,
        "unstorable": r.unstorable, "len": len(r),
    }


def _both(events: list[Event], pure_table: bool, batch: int) -> None:
    ref, fast = Registry(pure_table), Registry(pure_table)
    # the compiled table is reached through its C API (table.c's capsule), the pure one through its methods
    assert registry_mod._native_mirror.uses_table_api(fast) is (fast.native and not pure_table)
    g_ref = g_fast = 0
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        g_ref += sum(map(ref._apply_one, chunk))
        g_fast += fast.apply_batch(chunk)
    assert g_fast == g_ref
    assert _state(fast) == _state(ref)


_kinds = st.sampled_from([EventKind.ALLOC] * 4 + [EventKind.FREE] * 3 + [
    EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE_UNKNOWN, EventKind.CLEANUP, EventKind.PROCESS_EXIT,
    EventKind.BAD_FRAME, 1, 4])  # plain ints equal to ALLOC / FREE: the reference takes them
_events = st.builds(
    lambda kind, seq, dev, bid, bt, size, pid, refs, name: Event(kind, seq=seq, ts_ns=seq * 10, pid=pid, device=dev,
                                                                buffer_type=bt, buffer_id=bid, size=size,
                                                                ref_count=refs, name=name),
    _kinds, st.integers(0, 40), st.sampled_from([0, 1, 2, 255, 300, -1, 1 << 31]),
    st.one_of(st.integers(0, 5), st.sampled_from([1 << 64, -1, (1 << 64) - 1])),
    st.sampled_from([0, 0, 1, 2, 3, 4, 5, 6]), st.sampled_from([0, 100, 1 << 20, 1 << 63, 1 << 70, -3]),
    st.one_of(st.integers(1, 3), st.sampled_from([1 << 31, -(1 << 31) - 1])), st.sampled_from([0, 1, 2, -5, 1 << 40, True]), st.sampled_from(["", "", "w", "Fabric"]))


@native
@pytest.mark.parametrize("pure_table", TABLES)
@settings(max_examples=120, deadline=None)
@given(events=st.lists(_events, max_size=80), batch=st.sampled_from([1, 5, 512]))
def test_compiled_batch_equals_reference_on_arbitrary_events(pure_table, events, batch):
    # a seq that goes back and forth, gaps, zeros: the gap count and seq follow the reference
    _both(events, pure_table, batch)


@native
@pytest.mark.parametrize("pure_table", TABLES)
def test_compiled_batch_equals_reference_on_a_server_stream(pure_table):
    server = Registry()
    events = []
    t = 0
    for i in range(3000):
        t += 1
        dev, bid = i % 8, 0x1000 * (i % 700)
        kind = (MsgType.ALLOC, MsgType.FREE, MsgType.CB_ALLOC, MsgType.KERNEL_LOAD, MsgType.ALLOC)[i % 5]
        ev = server.apply(AllocMessage(type=kind, device_id=dev, buffer_id=bid, size=4096 * (1 + i % 9),
                                       buffer_type=i % 3, process_id=100 + i % 3), t)
        if ev is not None:
            events.append(ev)
        if i % 1000 == 999:
            events += server.cleanup([101], t, limit=50)
    del events[500]  # a gap
    _both(events, pure_table, 512)
    mirror = Registry(pure_table)
    mirror.apply_batch(events)
    mirror.check_invariants()


def test_reference_without_the_compiled_mirror(monkeypatch):
    monkeypatch.setattr(registry_mod, "_native_mirror", None)
    r = Registry()
    evs = [Event(EventKind.ALLOC, seq=1, pid=5, buffer_id=1, size=10), Event(EventKind.ALLOC, seq=4, pid=5,
                                                                              buffer_id=2, size=20)]
    assert r.apply_batch(evs) == 1
    assert r.seq == 4 and r.wire_totals(0)[0] == 30


@native
@pytest.mark.parametrize("pure_table", TABLES)
def test_compiled_batch_over_more_devices_than_it_keeps_at_hand(pure_table):
    """40 devices and 3 PIDs interleaved in one batch (past the 16 devices account() keeps at hand), with the
    frees that empty a PID's entry on a device and the allocations that bring it back."""
    events = []
    seq = 0
    for rnd in range(3):
        for i in range(200):
            seq += 1
            dev, pid = (i * 7) % 40, 1 + (i + rnd) % 3
            events.append(Event(EventKind.ALLOC, seq=seq, ts_ns=seq, pid=pid, device=dev, buffer_type=i % 3,
                                buffer_id=1000 * rnd + i, size=64 + i))
        for i in range(0, 200, 2):
            seq += 1
            events.append(Event(EventKind.FREE, seq=seq, ts_ns=seq, pid=1 + (i + rnd) % 3, device=(i * 7) % 40,
                                buffer_type=i % 3, buffer_id=1000 * rnd + i, size=64 + i))
    _both(events, pure_table, 1000)
