"""A process's live map in phase inference (``tt_memtop._native.phases.LiveTable``) behaves as a dict,
its recent allocation times (``Stamps``) as a deque.

The compact table holds keys ``(device, buffer_id, space)`` and values ``(ts, size, type)`` that pack
into its 16-byte slots (the shape as an index into the table's shapes); anything else (a device beyond
255, an id of 2^32 or more, a huge size, a bool, a float, not a 3-tuple) goes to the dict beside it. Hypothesis runs arbitrary operations against a plain dict, with
enough keys to make the table grow and shrink, and values on both sides of every packing limit.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop.core.phases import process as process_mod
from tt_memtop.core.table import LiveMap

LiveTable = process_mod.LiveTable
compiled = pytest.mark.skipif(LiveTable is LiveMap, reason="the compiled phases module is not built")

_edge = st.sampled_from([0, 1, 255, 256, -1, (1 << 32) - 1, 1 << 32, (1 << 56) - 1, 1 << 56, (1 << 63) - 1,
                         -(1 << 63), 1 << 64, True, False])
_keys = st.one_of(
    st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 2)),  # the usual: packs
    st.tuples(_edge, _edge, st.sampled_from([0, 1, 2, 3, 4, -1, True])),
    # (a float equal to an int makes another key, as in LiveMap: the tracker's keys are ints from events)
    st.sampled_from([(1, 2), (1, 2, 0, 0), "x", 7, (0, 2.5, 0)]),
)
_values = st.one_of(
    st.tuples(st.integers(-(1 << 40), 1 << 40), st.integers(0, 1 << 30), st.integers(0, 7)),
    st.tuples(_edge, _edge, _edge),
    st.sampled_from([None, (1, 2), "v", (1.5, 2, 0), (1, 2, 0, 4)]),
)
_ops = st.lists(st.tuples(st.sampled_from(["set", "set", "get", "pop", "in", "del", "item"]), _keys, _values),
                max_size=300)


@compiled
@settings(max_examples=300, deadline=None)
@given(_ops)
def test_live_table_behaves_as_a_dict(ops):
    m, d = LiveTable(), {}
    for op, key, value in ops:
        if op == "set":
            m[key] = value
            d[key] = value
        elif op == "get":
            assert m.get(key) == d.get(key)
            assert m.get(key, "none") == d.get(key, "none")
        elif op == "pop":
            assert m.pop(key, "none") == d.pop(key, "none")
        elif op == "in":
            assert (key in m) == (key in d)
        elif op == "del":
            if key in d:
                del m[key]
                del d[key]
            else:
                with pytest.raises(KeyError):
                    del m[key]
        else:
            if key in d:
                assert m[key] == d[key]
            else:
                with pytest.raises(KeyError):
                    m[key]
        assert len(m) == len(d) and bool(m) == bool(d)
    for key in list(d):
        assert m.pop(key) == d[key]
    assert len(m) == 0 and not m


@compiled
def test_live_table_grows_and_shrinks_with_its_buffers():
    m, d = LiveTable(), {}
    empty = m.nbytes()
    for i in range(50_000):
        k, v = (i % 8, 0x1000 * i, i % 3), (i * 7, 4096 + i % 5, i % 7)
        m[k] = v
        d[k] = v
    full = m.nbytes()
    assert 50_000 * 16 <= full - empty <= 50_000 * 16 * 2  # 16-byte slots, over half of them used
    for i, k in enumerate(list(d)):
        if i % 10:
            assert m.pop(k) == d.pop(k)
    assert all(m[k] == v for k, v in d.items()) and len(m) == len(d) == 5_000
    assert m.nbytes() < full / 4  # given back as it emptied
    assert m.get((0, 0x1000 * 3, 0)) is None and m.pop((0, 1, 0), 5) == 5


Stamps = process_mod.Stamps


@pytest.mark.skipif(Stamps is deque, reason="the compiled phases module is not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("append"), st.one_of(st.integers(-(1 << 40), 1 << 40), _edge)),
                          st.tuples(st.sampled_from(["popleft", "first", "last", "len"]), st.none())), max_size=400),
       st.sampled_from([None, 0, 1, 8, 300]))
def test_stamps_behave_as_a_deque(ops, maxlen):
    s, d = Stamps(maxlen=maxlen), deque(maxlen=maxlen)
    for op, x in ops:
        if op == "append":
            s.append(x)
            d.append(x)
        elif op == "popleft" and d:
            assert s.popleft() == d.popleft()
        elif op == "popleft":
            with pytest.raises(IndexError):
                s.popleft()
        elif op in ("first", "last") and d:
            i = 0 if op == "first" else -1
            assert s[i] == d[i]
        elif op in ("first", "last"):
            with pytest.raises(IndexError):
                s[0]
        assert len(s) == len(d) and bool(s) == bool(d)
    assert list(s) == list(d)


@pytest.mark.skipif(Stamps is deque, reason="the compiled phases module is not built")
def test_stamps_hold_eight_bytes_a_time():
    s = Stamps()
    for i in range(100_000):
        s.append(i)
    assert s.nbytes() <= 100_000 * 8 * 1.4
    while len(s) > 100:
        s.popleft()
    assert s.nbytes() < 10_000 and list(s) == list(range(99_900, 100_000))


@compiled
def test_live_table_with_many_shapes():
    """Every entry a shape of its own (the shapes' index grows), replaced and popped."""
    m, d = LiveTable(), {}
    for i in range(60_000):
        k, v = (i % 4, i, 0), (i, 4096 + i, i % 3)
        m[k] = v
        d[k] = v
    for i in range(0, 60_000, 3):
        k, v = (i % 4, i, 0), (-i, 1 << 40, 7)
        m[k] = v
        d[k] = v
    assert len(m) == len(d) and all(m.get(k) == v for k, v in d.items())
    assert all(m.pop(k) == v for k, v in d.items()) and not m
