"""The registry's column table: the compiled one (tt_memtop/_native/table.c) behaves exactly as PyTable.

Differential: the same operations on both, every answer compared (including errors on values no
column holds), plus the things a small hypothesis run does not reach (compaction of holes, encode).
Compaction and (in table.c) hash growth are incremental; ``tune()`` shrinks their thresholds so that
hypothesis reaches every step of them with a few rows, and ``stats()`` gives the most work one call
did, which the work-bound tests check instead of wall time.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop.core import eventcodec as codec
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import AllocMessage, MsgType
from tt_memtop.core.registry import Buffer, Registry
from tt_memtop.core.table import PyTable, table_class

Native = table_class()
needs_native = pytest.mark.skipif(Native is PyTable, reason="compiled table not built")
IMPLS = [pytest.param(False, id="native", marks=needs_native), pytest.param(True, id="pure")]


def _call(t, name, *args):
    try:
        return ("ok", getattr(t, name)(*args))
    except (OverflowError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        return ("err", type(exc).__name__)


_COMPACTION_STATS = ("compacting", "cursor", "compactions", "max_scanned", "max_moved")


def _state(t):
    rows, slots, nxt = t.rows(0, 1 << 30, -1)
    st = t.stats()
    return (len(t), t.nslots, rows, slots, nxt, sorted(t.owners()), {p: t.owned(p) for p in t.owners()},
            t.encode(0, 1 << 30), [st[k] for k in _COMPACTION_STATS])


_ints = st.one_of(st.integers(0, 5), st.integers(-3, 3), st.sampled_from([-(1 << 63), (1 << 64) - 1, 1 << 64,
                                                                         (1 << 31), -(1 << 31) - 1, 1 << 32]))
_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(-1, 3), st.integers(0, 8), st.integers(0, 6), _ints, st.integers(1, 3),
              _ints, _ints, _ints, st.booleans()),
    st.tuples(st.just("remove"), st.integers(-1, 12)),
    st.tuples(st.just("set_refs"), st.integers(-1, 12), _ints),
    st.tuples(st.just("find"), st.integers(-1, 3), st.integers(-1, 3), _ints),
    st.tuples(st.just("row"), st.integers(-1, 12)),
    st.tuples(st.just("lookup"), st.integers(-1, 3), st.integers(-1, 3), _ints),
    st.tuples(st.just("owned"), _ints),
    st.tuples(st.just("owned"), st.integers(0, 3), st.integers(-1, 3)),
    st.tuples(st.just("owned_count"), _ints),
    st.tuples(st.just("rows"), st.integers(-2, 12), st.integers(-1, 5), st.integers(-1, 3)),
    st.tuples(st.just("encode"), st.integers(-2, 12), st.integers(-1, 5)),
    st.tuples(st.just("freeze")),
    st.tuples(st.just("thaw"), st.integers(0, 3)),
    st.tuples(st.just("clear")),
    # many distinct rows at once, then every other one of a pid removed: holes, compaction, index growth
    st.tuples(st.just("churn"), st.integers(1, 40), st.integers(0, 3)),
    # remove everything of a pid one row at a time, looking its next slot up each time (Registry.cleanup)
    st.tuples(st.just("drop_owner"), st.integers(0, 3)),
    st.tuples(st.just("copy")),
    st.tuples(st.just("pools"), st.lists(st.tuples(st.integers(-1, 3), st.integers(-1, 7)), max_size=4),
              st.integers(0, 4)),
), max_size=80)
_tuning = st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 3)))


def _view(v):
    return (len(v), v.nslots, v.rows(0, 1 << 30, -1), v.encode(0, 1 << 30), _call(v, "row", 0))


def _churn(t, n, pid, base):
    for i in range(n):
        t.add(i % 3, base + i, (0, 1, 5, 6)[i % 4], 64 + i, pid, 1, i, base + i, i % 11 == 0)
    k = 0
    while k < t.owned_count(pid):
        t.remove(t.owned(pid, k + 1)[k])  # slots move as it goes: look the next one up each time
        k += 1


def _drop_owner(t, pid):
    while True:
        s = t.owned(pid, 1)
        if not s:
            return
        t.remove(s[0])


@needs_native
@settings(max_examples=300, deadline=None)
@given(_ops, _tuning)
def test_native_table_answers_as_the_pure_one(ops, tuning):
    a, b = Native(), PyTable()
    if tuning is not None:
        a.tune(*tuning)
        b.tune(*tuning)
    views = []  # (native view, pure view, what both showed when frozen)
    base = 1 << 40
    for op in ops:
        if op[0] == "churn":
            _churn(a, op[1], 50 + op[2], base)
            _churn(b, op[1], 50 + op[2], base)
            base += op[1]
        elif op[0] == "drop_owner":
            _drop_owner(a, op[1])
            _drop_owner(b, op[1])
        elif op[0] == "copy":  # mid-compaction too: the live rows, in order
            ca, cb = a.copy(), b.copy()
            assert ca.rows(0, 1 << 30, -1)[0] == cb.rows(0, 1 << 30, -1)[0] == a.rows(0, 1 << 30, -1)[0]
            assert ca.encode(0, 1 << 30)[0] == cb.encode(0, 1 << 30)[0]
        elif op[0] == "freeze":
            va, vb = a.freeze(), b.freeze()
            views.append((va, vb, _view(va)))
        elif op[0] == "thaw":
            if views:
                va, vb, _ = views.pop(op[1] % len(views))
                va.close()
                vb.close()
                assert _view(va) == _view(vb) == (0, 0, ([], [], 0), (b"", 0, -1), ("err", "IndexError"))
        elif op[0] == "clear":
            assert _call(a, "clear") == _call(b, "clear"), op
        else:
            assert _call(a, op[0], *op[1:]) == _call(b, op[0], *op[1:]), op
        assert _state(a) == _state(b), op
        for va, vb, seen in views:
            assert _view(va) == _view(vb) == seen, op  # a view never changes
        a.check()
        b.check()
    ca, cb = a.copy(), b.copy()
    assert len(ca) == len(cb) and ca.rows(0, 1 << 30, -1)[0] == cb.rows(0, 1 << 30, -1)[0]
    assert ca.encode(0, 1 << 30)[0] == cb.encode(0, 1 << 30)[0]
    assert _call(ca, "find", 0, 0, 0) == _call(cb, "find", 0, 0, 0) == ("err", "TypeError")


@needs_native
def test_compaction_keeps_order_and_owner_lists_in_both():
    rnd = random.Random(3)
    a, b = Native(), PyTable()
    keys = []
    for i in range(6000):
        args = (i % 4, 0x1000 + i * 64, rnd.choice((0, 1, 5, 6)), 4096, 100 + i % 7, 1, i, i + 1, i % 97 == 0)
        assert a.add(*args) == b.add(*args)
        keys.append(args)
    rnd.shuffle(keys)
    for n, (dev, bid, bt, *_rest) in enumerate(keys[:5500]):
        sp = 1 if bt == 5 else 2 if bt == 6 else 0
        sa, sb = a.find(sp, dev, bid), b.find(sp, dev, bid)
        assert sa == sb >= 0
        a.remove(sa)
        b.remove(sb)
        if n % 500 == 0:
            assert _state(a) == _state(b)
    assert a.nslots < 6000 and _state(a) == _state(b)  # holes were squeezed out
    a.check()
    b.check()
    rows = a.rows(0, 1 << 30, -1)[0]
    assert [r[7] for r in rows] == sorted(r[7] for r in rows)  # still in insertion order
    for p in a.owners():
        assert [a.row(s)[7] for s in a.owned(p)] == sorted(a.row(s)[7] for s in a.owned(p))


def _row_order(reg):
    return sorted(reg.buffers(), key=lambda b: b.alloc_seq)


@pytest.mark.parametrize("pure", IMPLS)
def test_encoded_rows_are_the_codecs_buffers(pure):
    reg = Registry(pure)
    for i in range(300):
        t = MsgType.KERNEL_LOAD if i % 50 == 0 else MsgType.ALLOC
        reg.apply(AllocMessage(type=t, device_id=i % 3, buffer_id=(1 << 40) + i, size=i + 1, buffer_type=i % 5,
                               process_id=-5 + i % 3, buffer_name="w" if i % 7 == 0 else ""), 10 ** 12 + i)
    fz = reg.freeze()
    want = b"".join(codec.encode_buffer(b) for b in fz.buffers())
    got, pos = [], 0
    while pos < fz.done_at:
        data, pos = fz.encode(pos, 17)
        got.append(data)
    body, off, decoded = b"".join(got), 0, []
    while off < len(body):
        b, off = codec.decode_buffer(body, off)
        decoded.append(codec.encode_buffer(b))
    assert decoded == [codec.encode_buffer(b) for b in _row_order(reg)]  # row order: allocation order
    assert sorted(decoded) == sorted(codec.encode_buffer(b) for b in reg.buffers()) and len(want) == len(body)
    reg.thaw(fz)


@pytest.mark.parametrize("pure", IMPLS)
def test_frozen_state_and_buffer_list_do_not_follow_later_changes(pure):
    reg = Registry(pure)
    for i in range(3000):
        reg.apply(AllocMessage(type=MsgType.ALLOC, size=10, process_id=1 + i % 3, buffer_id=i), 0)
    before = sorted((b.buffer_id, b.ref_count) for b in reg.buffers())
    fz, view = reg.freeze(), reg.buffer_list()
    for i in range(0, 3000, 2):
        reg.apply(AllocMessage(type=MsgType.FREE, process_id=1, buffer_id=i), 0)  # gone (and compacted)
    reg.apply(AllocMessage(type=MsgType.ALLOC, size=10, process_id=1, buffer_id=1), 0)  # ref 2
    reg.cleanup([2], 1)
    assert sorted((b.buffer_id, b.ref_count) for b in fz.buffers()) == before == \
        sorted((b.buffer_id, b.ref_count) for b in view)
    assert len(fz) == len(view) == 3000 and fz.seq == 3000 and fz.totals[0][0] == 3000
    reg.thaw(fz)
    reg.thaw(fz)  # idempotent
    reg.check_invariants()


@pytest.mark.parametrize("pure", IMPLS)
def test_values_no_column_holds_are_counted_not_crashed(pure):
    reg = Registry(pure)
    reg.apply_event(Event(EventKind.ALLOC, seq=1, device=0, buffer_id=1 << 70, size=1, pid=1))
    reg.apply_event(Event(EventKind.ALLOC, seq=2, device=0, buffer_id=5, size=-1, pid=1))
    reg.apply_event(Event(EventKind.REF_INC, seq=3, device=0, buffer_id=1 << 70, ref_count=1 << 40))
    reg.apply_event(Event(EventKind.FREE, seq=4, device=1 << 40, buffer_id=-1))
    reg.load_snapshot([Buffer(0, 7, 0, 10, 1 << 33, 1)], 9)
    assert reg.unstorable == 1 and len(reg) == 0
    assert reg.get(-(1 << 40), 1) is None and reg.owned_count(1 << 40) == 0 and reg.cleanup([1 << 40], 0) == []
    reg.check_invariants()


_live_ops = st.lists(st.tuples(st.sampled_from(["set", "get", "pop", "in"]),
                               st.tuples(st.integers(-1, 2), st.integers(-1, 4), st.integers(-1, 3)),
                               st.tuples(_ints, _ints, st.integers(0, 7))), max_size=60)


@pytest.mark.parametrize("pure", IMPLS)
@settings(max_examples=200, deadline=None)
@given(_live_ops)
def test_live_map_behaves_as_a_dict(pure, ops):
    from tt_memtop.core.table import LiveMap

    m, d = LiveMap(pure), {}
    for op, key, value in ops:
        if op == "set":
            m[key] = value
            d[key] = value
        elif op == "get":
            assert m.get(key) == d.get(key)
        elif op == "pop":
            assert m.pop(key, "none") == d.pop(key, "none")
        else:
            assert (key in m) == (key in d)
        assert len(m) == len(d) and bool(m) == bool(d)


@pytest.mark.parametrize("pure", IMPLS)
def test_no_call_does_more_than_a_step_of_housekeeping(pure):
    """Churn that compacts several times (and, compiled, doubles the index up to 2^17 buckets): the most
    work one add/remove did stays at one step, whatever the table's size (a work bound, not a wall time)."""
    from tt_memtop.core.table import COMPACT_STEP

    t, ref = table_class(pure)(), {}
    rnd = random.Random(7)
    seen_compacting = seen_migrating = 0
    nxt = 0
    for _round in range(4):
        for _ in range(15000):
            key = (nxt % 4, 0x10000 + nxt)
            ref[key] = t.add(key[0], key[1], 0, 4096, 7 + nxt % 5, 1, nxt, nxt + 1, False)
            nxt += 1
            st = t.stats()
            seen_compacting += st["compacting"]
            seen_migrating += st["migrating"]
        for key in rnd.sample(sorted(ref), len(ref) * 3 // 4):  # holes outnumber rows: compaction starts
            del ref[key]
            t.remove(t.find(0, *key))
            seen_compacting += t.stats()["compacting"]
        t.check()
    st = t.stats()
    assert st["compactions"] >= 3 and seen_compacting > 100, st
    assert 0 < st["max_scanned"] <= COMPACT_STEP and 0 < st["max_moved"] <= COMPACT_STEP, st
    if not pure:
        assert st["growths"] >= 12 and seen_migrating > 100, st
        assert 0 < st["max_migrated"] <= 32, st
    assert len(t) == len(ref) and all(t.find(0, *k) >= 0 for k in ref)
    rows = t.rows(0, 1 << 30, -1)[0]
    assert [r[7] for r in rows] == sorted(r[7] for r in rows)  # insertion order kept by every step


@pytest.mark.parametrize("pure", IMPLS)
def test_compaction_waits_for_an_open_view_and_then_finishes(pure):
    t = table_class(pure)()
    for i in range(5000):
        t.add(0, i, 0, 1, 1 + i % 3, 1, i, i, False)
    for i in range(0, 5000, 4):
        t.remove(t.find(0, 0, i))
    view = t.freeze()
    seen = view.rows(0, 1 << 30, -1)
    for i in range(5000):
        if i % 4:
            t.remove(t.find(0, 0, i))  # holes outnumber rows, but nothing may move under the view
        t.add(0, 10000 + i, 0, 1, 2, 1, i, 10000 + i, False)
    assert view.rows(0, 1 << 30, -1) == seen and t.stats()["compactions"] == 0
    t.check()
    view.close()
    for i in range(2000):  # ordinary traffic drives the cursor on
        t.remove(t.find(0, 0, 10000 + i))
        t.check() if i % 500 == 0 else None
    st = t.stats()
    assert st["compactions"] >= 1 and not st["compacting"] and t.nslots < 5000, st  # was 10000
    t.check()
    assert [r[1] for r in t.rows(0, 1 << 30, -1)[0]] == list(range(12000, 15000))


@pytest.mark.parametrize("pure", IMPLS)
def test_a_frozen_snapshot_streamed_in_slices_while_ingest_compacts(pure):
    """Registry-level: SUBSCRIBE's snapshot is encoded slice by slice while ingest goes on (and, between
    two snapshots, compacts): each snapshot is exactly the state at its freeze."""
    reg = Registry(pure)
    n = 0
    for i in range(6000):
        reg.apply(AllocMessage(type=MsgType.ALLOC, size=10, process_id=1 + i % 3, buffer_id=i), 0)
    for _round in range(3):
        want = sorted(codec.encode_buffer(b) for b in reg.buffers())
        fz = reg.freeze()
        pos, body = 0, []
        while pos < fz.done_at:
            data, pos = fz.encode(pos, 500)
            body.append(data)
            for _ in range(300):  # ingest between slices: frees and allocs
                reg.apply(AllocMessage(type=MsgType.FREE, process_id=1, buffer_id=n), 0)
                reg.apply(AllocMessage(type=MsgType.ALLOC, size=20, process_id=2, buffer_id=100000 + n), 0)
                n += 1
        raw, off, got = b"".join(body), 0, []
        while off < len(raw):
            b, off = codec.decode_buffer(raw, off)
            got.append(codec.encode_buffer(b))
        assert sorted(got) == want
        reg.thaw(fz)
        for _ in range(3000):  # no view open: these frees compact
            reg.apply(AllocMessage(type=MsgType.FREE, process_id=1, buffer_id=n), 0)
            n += 1
        reg.check_invariants()
    assert reg._t.stats()["compactions"] >= 1


def _pools_by_buffers(reg: Registry, keys, top_n: int) -> list:
    """What a peak capture computed from a Buffer per live entry (the specification of Registry.pools)."""
    import heapq

    out = []
    for d, t in keys:
        bufs = [b for b in reg.buffers() if (b.device, b.buffer_type) == (d, t)]
        by_pid: dict[int, int] = {}
        for b in bufs:
            by_pid[b.owner_pid] = by_pid.get(b.owner_pid, 0) + b.size
        out.append((sum(b.size for b in bufs), heapq.nlargest(top_n, bufs, key=lambda b: b.size), by_pid))
    return out


_pool_ops = st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 12), st.sampled_from([0, 1, 2, 5]),
                               st.sampled_from([1, 64, 64, 4096, (1 << 64) - 1]), st.integers(1, 4),
                               st.sampled_from(["", "", "w"])), max_size=120)


@pytest.mark.parametrize("pure", IMPLS)
@settings(max_examples=150, deadline=None)
@given(ops=_pool_ops, keys=st.lists(st.tuples(st.integers(-1, 2), st.sampled_from([0, 1, 2, 5, 6])), max_size=5),
       top_n=st.integers(0, 5))
def test_pools_are_what_a_buffer_per_entry_gives(pure, ops, keys, top_n):
    """Registry.pools (a peak capture's scan): bytes, top entries (ties in buffers() order), bytes by pid in
    first-entry order, on either table, with holes, re-allocations and names."""
    reg = Registry(pure)
    seq = 0
    for alloc, dev, bid, bt, size, pid, name in ops:
        seq += 1
        kind = EventKind.ALLOC if alloc else EventKind.FREE
        reg.apply_event(Event(kind, seq=seq, ts_ns=seq, pid=pid, device=dev, buffer_type=bt, buffer_id=bid,
                              size=size, ref_count=1, name=name))
    got = reg.pools(keys, top_n)
    want = _pools_by_buffers(reg, keys, top_n)
    assert [(n, top, list(bp.items())) for n, top, bp in got] == \
        [(n, top, list(bp.items())) for n, top, bp in want]

