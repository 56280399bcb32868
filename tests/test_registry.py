"""Registry semantics (PROTOCOL.md §4) and the never-drift invariant."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop.core.events import EventKind
from tt_memtop.core.protocol import AllocMessage, BufferType, MsgType
from tt_memtop.core.registry import Registry
from tt_memtop.core.table import PyTable, table_class

#: Every test runs against both tables: the compiled one (skipped when it is not built) and pure Python.
IMPLS = [pytest.param(False, id="native", marks=pytest.mark.skipif(table_class() is PyTable,
                                                                    reason="compiled table not built")),
         pytest.param(True, id="pure")]
pure_and_native = pytest.mark.parametrize("pure", IMPLS)


def alloc(dev, bid, size, btype=BufferType.DRAM, pid=100):
    return AllocMessage(type=MsgType.ALLOC, device_id=dev, buffer_id=bid, size=size, buffer_type=btype, process_id=pid)


def free(dev, bid, pid=100):
    return AllocMessage(type=MsgType.FREE, device_id=dev, buffer_id=bid, process_id=pid)


@pure_and_native
def test_alloc_free_refcount(pure):
    r = Registry(pure)
    e = r.apply(alloc(0, 0x19000, 65536, BufferType.L1), 1)
    assert e.kind == EventKind.ALLOC and e.seq == 1
    e = r.apply(alloc(0, 0x19000, 65536, BufferType.L1, pid=200), 2)
    assert e.kind == EventKind.REF_INC and e.ref_count == 2 and e.pid == 200
    assert r.wire_totals(0)[1] == 65536  # unchanged by the repeat
    assert r.get(0, 0x19000).owner_pid == 100  # owner = first ALLOC
    e = r.apply(free(0, 0x19000, pid=300), 3)
    assert e.kind == EventKind.REF_DEC and e.ref_count == 1 and e.pid == 100  # stored owner
    e = r.apply(free(0, 0x19000), 4)
    assert e.kind == EventKind.FREE and e.size == 65536
    assert r.wire_totals(0) == (0, 0, 0, 0, 0, 0)
    assert len(r) == 0


@pure_and_native
def test_unknown_free_changes_nothing(pure):
    r = Registry(pure)
    r.apply(alloc(2, 1, 10), 1)
    e = r.apply(free(2, 0xDEAD000), 2)
    assert e.kind == EventKind.FREE_UNKNOWN and e.buffer_id == 0xDEAD000
    assert r.unknown_frees == 1
    assert r.wire_totals(2)[0] == 10


@pure_and_native
def test_system_memory_lumped_on_wire_but_kept_apart(pure):
    r = Registry(pure)
    r.apply(alloc(5, 256, 256, BufferType.SYSTEM_MEMORY), 1)
    r.apply(alloc(5, 0x8000, 24576, BufferType.L1_SMALL), 2)
    assert r.wire_totals(5) == (0, 0, 256 + 24576, 0, 0, 0)
    t = r.device_totals(5)
    assert t[BufferType.SYSTEM_MEMORY] == 256 and t[BufferType.L1_SMALL] == 24576


@pure_and_native
def test_same_id_on_each_device_is_distinct(pure):
    r = Registry(pure)
    for d in range(32):
        r.apply(alloc(d, 0x3E363C80, 12_503_040, BufferType.TRACE), d)
    assert r.num_buffers == 32
    assert all(r.wire_totals(d)[3] == 12_503_040 for d in range(32))


@pure_and_native
def test_cleanup_removes_everything_a_dead_pid_owns(pure):
    r = Registry(pure)
    r.apply(alloc(0, 1, 100, pid=1), 1)
    r.apply(alloc(0, 1, 100, pid=2), 2)  # ref 2, owner still 1
    r.apply(alloc(6, 2, 4096, BufferType.L1, pid=2), 3)
    r.apply(AllocMessage(type=MsgType.CB_ALLOC, device_id=6, buffer_id=1, size=65536, process_id=2), 4)
    evs = r.cleanup([2], 10)
    assert [e.kind for e in evs] == [EventKind.CLEANUP, EventKind.CLEANUP, EventKind.PROCESS_EXIT]
    assert evs[-1].size == 4096 + 65536 and evs[-1].ref_count == 2
    assert r.get(0, 1).ref_count == 2  # owned by pid 1: untouched
    assert r.pids() == [1]
    evs = r.cleanup([1], 11)
    assert len(r) == 0 and evs[0].ref_count == 2
    r.check_invariants()


@pure_and_native
def test_cb_and_kernel_accounting_uses_stored_size(pure):
    r = Registry(pure)
    cb = AllocMessage(type=MsgType.CB_ALLOC, device_id=0, buffer_id=3, size=65536, process_id=7)
    r.apply(cb, 1)
    r.apply(cb, 2)  # overwrite: replaces, does not double count
    assert r.wire_totals(0)[4] == 65536
    e = r.apply(AllocMessage(type=MsgType.CB_FREE, device_id=0, buffer_id=3, size=1, process_id=7), 3)
    assert e.kind == EventKind.FREE and r.wire_totals(0)[4] == 0
    e = r.apply(AllocMessage(type=MsgType.CB_FREE, device_id=0, buffer_id=3, size=65536, process_id=7), 4)
    assert e.kind == EventKind.FREE_UNKNOWN and r.wire_totals(0)[4] == 0  # never negative
    k = AllocMessage(type=MsgType.KERNEL_LOAD, device_id=1, buffer_id=9, size=57344, buffer_type=1, process_id=7)
    e = r.apply(k, 5)
    assert e.name == "Fabric" and r.wire_totals(1)[5] == 57344
    # a buffer and a CB with the same id live in different spaces
    r.apply(alloc(1, 9, 100), 6)
    assert r.wire_totals(1)[0] == 100 and r.wire_totals(1)[5] == 57344
    r.check_invariants()


# ---------------------------------------------------------------- property: totals never drift
_types = st.sampled_from([MsgType.ALLOC, MsgType.FREE, MsgType.CB_ALLOC, MsgType.CB_FREE, MsgType.KERNEL_LOAD,
                          MsgType.KERNEL_UNLOAD])
_msgs = st.builds(
    lambda t, dev, bid, size, btype, pid: AllocMessage(type=t, device_id=dev, buffer_id=bid, size=size,
                                                       buffer_type=btype if t == MsgType.ALLOC else btype % 3,
                                                       process_id=pid),
    _types, st.integers(0, 63), st.integers(0, 6), st.integers(1, 1 << 34), st.integers(0, 4), st.integers(1, 4),
)
_steps = st.lists(st.one_of(_msgs, st.tuples(st.just("cleanup"), st.sets(st.integers(1, 4), max_size=2))),
                  max_size=120)


@pure_and_native
@settings(max_examples=300, deadline=None)
@given(_steps)
def test_totals_equal_live_sum_and_mirror_agrees(pure, steps):
    server = Registry(pure)
    mirror = Registry(pure)
    events = []
    for i, step in enumerate(steps):
        if isinstance(step, tuple):
            events += server.cleanup(step[1], i)
        else:
            ev = server.apply(step, i)
            if ev is not None:
                events.append(ev)
        server.check_invariants()
    for ev in events:
        mirror.apply_event(ev)
    mirror.check_invariants()
    assert sorted(map(repr, mirror.buffers())) == sorted(map(repr, server.buffers()))
    for d in range(64):
        assert mirror.wire_totals(d) == server.wire_totals(d)
        assert all(x >= 0 for x in server.wire_totals(d))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    # a snapshot reproduces the state too
    snap = Registry(pure)
    snap.load_snapshot(server.snapshot(), server.seq)
    snap.check_invariants()
    assert snap.seq == server.seq and snap.pids() == server.pids()


@pure_and_native
def test_cleanup_in_slices_gives_the_same_events_as_one_call(pure):
    def fill(r):
        for i in range(50):
            r.apply(alloc(i % 3, 0x1000 + i, 100 + i, pid=1 + i % 2), i)
            if i % 7 == 0:
                r.apply(AllocMessage(type=MsgType.CB_ALLOC, device_id=0, buffer_id=i, size=64, process_id=2), i)
    whole, sliced = Registry(pure), Registry(pure)
    fill(whole)
    fill(sliced)
    want = whole.cleanup([1, 2, 9], 99)
    got, calls = [], 0
    while True:
        part = sliced.cleanup([1, 2, 9], 99, limit=7)
        if not part:
            break
        assert sum(e.kind == EventKind.CLEANUP for e in part) <= 7
        got += part
        calls += 1
    assert calls > 5 and len(sliced) == len(whole) == 0
    key = lambda e: (e.kind, e.pid, e.device, e.buffer_type, e.buffer_id, e.size, e.ref_count)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    assert [key(e) for e in got if e.kind == EventKind.PROCESS_EXIT] == \
        [key(e) for e in want if e.kind == EventKind.PROCESS_EXIT]  # each PID's total, once, at its end
    assert [e.seq for e in got] == list(range(got[0].seq, got[0].seq + len(got)))
    sliced.check_invariants()


@pure_and_native
def test_a_process_exit_past_two_to_the_64_saturates_and_still_encodes(pure):
    """72/112-byte clients may send any u64 size: the sum reclaimed from a dead PID can pass 2**64."""
    from tt_memtop.core import eventcodec

    r = Registry(pure)
    big = (1 << 64) - 1
    r.apply(alloc(0, 1, big, pid=9), 1)
    r.apply(alloc(1, 1, big, pid=9), 2)
    evs = r.cleanup([9], 10)
    assert evs[-1].kind is EventKind.PROCESS_EXIT and evs[-1].size == big and evs[-1].ref_count == 2
    assert eventcodec.decode_events_body(eventcodec.encode_events(evs)[1:])[-1].size == big
    assert len(r) == 0
