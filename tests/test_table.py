"""The registry's column table: the compiled one (tt_memtop/_native/table.c) behaves exactly as PyTable.

Differential: the same operations on both, every answer compared (including errors on values no
column holds), plus the things a small hypothesis run does not reach (compaction of holes, encode).
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


def _state(t):
    rows, slots, nxt = t.rows(0, 1 << 30, -1)
    return (len(t), t.nslots, rows, slots, nxt, sorted(t.owners()), {p: t.owned(p) for p in t.owners()},
            t.encode(0, 1 << 30))


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
), max_size=80)


def _view(v):
    return (len(v), v.nslots, v.rows(0, 1 << 30, -1), v.encode(0, 1 << 30), _call(v, "row", 0))


@needs_native
@settings(max_examples=300, deadline=None)
@given(_ops)
def test_native_table_answers_as_the_pure_one(ops):
    a, b = Native(), PyTable()
    views = []  # (native view, pure view, what both showed when frozen)
    for op in ops:
        if op[0] == "freeze":
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
