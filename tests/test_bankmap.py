"""The compact bank map (tt_memtop/core/bankmap.py, sorted columns) against the reference it replaced
(tests/bankmap_reference.py, dicts and sortedcontainers): the same answers to every query after
any sequence of allocs, frees, bulk bursts, loads and pool moves (hypothesis), with small blocks
so that splits and emptied blocks are exercised too."""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import bankmap_reference as ref_mod
from tt_memtop.core import bankmap, runs
from tt_memtop.core.bankmap import SpaceMap
from tt_memtop.core.geometry import DRAM, L1, TRACE, PoolRange, per_bank_size
from tt_memtop.core.runs import Runs

TOP = 8200


def pools(split: int = 5000, base: int = 0) -> dict:
    return {DRAM: PoolRange(DRAM, 4, base + 32, base + split, 32), TRACE: PoolRange(TRACE, 4, base + split, base + 8000, 32)}


#: address offsets: small addresses (4-byte columns), and a range across 2**32 (blocks widen to 8 bytes)
BASES = [0, (1 << 32) - 4096]


@pytest.fixture(params=[(4, 8), (1024, 256)], ids=["small-blocks", "default"])
def tuned(request, monkeypatch):
    """Block size and bulk threshold: tiny ones split blocks and take the bulk path within a short sequence
    (module settings, the same for every example: safe to share between hypothesis' inputs)."""
    load, bulk = request.param
    monkeypatch.setattr(runs, "LOAD", load)
    monkeypatch.setattr(bankmap, "BULK_MIN", bulk)
    monkeypatch.setattr(ref_mod, "BULK_MIN", bulk)
    return request.param


def same(new: SpaceMap, ref, window: tuple[int, int] = (100, 3000), base: int = 0, marks: bool = True) -> None:
    window = (window[0] + base, window[1] + base)
    assert len(new) == len(ref)
    for t in new.pools:
        assert new.stats(t) == ref.stats(t)
        assert new.lowest(t) == ref.lowest(t)
        assert new.highest_end(t) == ref.highest_end(t)
    assert new.lowest(L1) is None and ref.lowest(L1) is None
    assert new.intervals(base, base + TOP) == ref.intervals(base, base + TOP)
    assert new.intervals(*window) == ref.intervals(*window)
    assert new.cells(base, base + TOP, 7) == ref.cells(base, base + TOP, 7)
    assert new.cells(*window, 64) == ref.cells(*window, 64)
    assert new.outside == ref.outside
    # maxlen is a search bound: it must cover the longest live interval; its exact value, like the
    # overlap marks, depends on when the changes were applied (a rebuild makes it exact again)
    assert new.maxlen >= max((e - s for s, e, _t, _size in new.intervals(base, base + TOP)), default=0)
    if marks:  # which intervals are marked overlapping depends on when the changes were applied
        assert new.overlapping == ref.overlapping
        assert new.maxlen == ref.maxlen
    new.check()
    ref.check()


addr = st.integers(0, TOP)
op = st.one_of(
    st.tuples(st.just("alloc"), addr, st.integers(0, 3000), st.sampled_from([DRAM, TRACE, L1])),
    st.tuples(st.just("alloc"), addr, st.integers(1, 200), st.sampled_from([DRAM, TRACE])),
    st.tuples(st.just("free"), addr),
    st.tuples(st.just("query"), st.integers(0, TOP), st.integers(0, TOP)),
    st.tuples(st.just("pools"), st.integers(0, 8000)),
    st.tuples(st.just("burst"), st.integers(0, 400), st.integers(0, 2**32)),
    st.tuples(st.just("load"), st.lists(st.tuples(addr, st.integers(0, 3000), st.sampled_from([DRAM, TRACE, L1])),
                                        max_size=60)),
)


def _apply(m, o, base: int) -> None:
    kind = o[0]
    if kind == "alloc":
        m.alloc(base + o[1], o[2], o[3])
    elif kind == "free":
        m.free(base + o[1])
    elif kind == "pools":
        m.set_pools(pools(max(32, o[1]), base))
    elif kind == "burst":
        rnd = random.Random(o[2])
        for _ in range(o[1]):
            s = base + rnd.randrange(0, TOP)
            if rnd.random() < 0.4:
                m.free(s)
            else:
                m.alloc(s, rnd.randrange(0, 400), rnd.choice([DRAM, TRACE]))
    elif kind == "load":
        m.load([(base + s, size, t) for s, size, t in o[1]])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=40), base=st.sampled_from(BASES))
def test_same_answers_as_the_reference(tuned, ops, base):
    new, ref = SpaceMap(pools(base=base)), ref_mod.SpaceMap(pools(base=base))
    for o in ops:
        _apply(new, o, base)
        _apply(ref, o, base)
        if o[0] == "query":
            lo, hi = sorted(o[1:])
            same(new, ref, (lo, hi + 1), base)
    same(new, ref, base=base)


@pytest.mark.parametrize("seed,base", [(1, 0), (2, BASES[1])])
def test_long_random_run_matches_the_reference(tuned, seed, base):
    """Thousands of changes, mostly without overlaps (the incremental neighbour path), a query now and then."""
    rnd = random.Random(seed)
    new, ref = SpaceMap(pools(base=base)), ref_mod.SpaceMap(pools(base=base))
    live: list[int] = []
    for step in range(3000):
        if live and rnd.random() < 0.48:
            s = live.pop(rnd.randrange(len(live)))
            new.free(s)
            ref.free(s)
        else:
            s = base + rnd.randrange(0, 8000 // 32) * 32
            if s not in live:
                live.append(s)
                size, t = rnd.choice([128, 256, 1024]), DRAM if s < base + 5000 else TRACE
                new.alloc(s, size, t)
                ref.alloc(s, size, t)
        if step % 97 == 0:
            same(new, ref, base=base)
    same(new, ref, base=base)
    if base:  # blocks holding addresses past 2**32 widened to 8 bytes
        assert "Q" in {b.typecode for b in new.iv.ks}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=40))
@example(ops=[("load", [(1023, 513, 0)]), ("burst", 261, 4_294_967_295)])  # maxlen: a bound, set by timing
def test_queued_changes_are_bounded_and_change_no_answer(monkeypatch, ops):
    """Past PENDING_MAX queued changes a map applies them without waiting for a query (a report folding a
    long recording queries only at the end): the same answers, and the queue never holds more."""
    monkeypatch.setattr(bankmap, "PENDING_MAX", 8)
    monkeypatch.setattr(runs, "LOAD", 4)
    new, ref = SpaceMap(pools()), ref_mod.SpaceMap(pools())
    for o in ops:
        _apply(new, o, 0)
        _apply(ref, o, 0)
        assert len(new.pending) <= 8
    same(new, ref, marks=False)


def test_load_keeps_the_last_of_equal_starts_and_sorts():
    new, ref = SpaceMap(pools()), ref_mod.SpaceMap(pools())
    items = [(4000, 64, DRAM), (64, 128, DRAM), (4000, 256, DRAM), (6000, 32, TRACE), (64, 0, TRACE), (9000, 1, L1)]
    new.load(items)
    ref.load(items)
    same(new, ref)
    assert [(s, t, size) for s, _e, t, size in new.intervals(0, TOP)] == [(64, TRACE, 0), (4000, DRAM, 256),
                                                                           (6000, TRACE, 32)]


def test_runs_split_and_empty_blocks(monkeypatch):
    monkeypatch.setattr(runs, "LOAD", 2)
    r = Runs(track=True)
    keys = list(range(0, 400, 10))
    random.Random(3).shuffle(keys)
    for k in keys:
        r.put(k, k + 1 + k % 7)
        r.check()
    assert len(r.ks) > 5 and [k for k, _ in r] == sorted(keys)
    assert r.largest() == (7, 20)  # size 7 where k % 7 == 6: 20, 90, 160, ...; the lowest key wins
    assert r.floor(65) == (60, 65) and r.lower(60) == (50, 52) and r.ceil(61) == (70, 71) and r.ceil(391) is None
    assert r.floor(-1) is None and r.lower(0) is None and r.ceil(-5) == (0, 1)
    assert list(r.iter_from(375)) == [(380, 383), (390, 396)]
    for k in sorted(keys)[:-1]:
        r.pop(k)
        r.check()
    assert list(r) == [(390, 396)] and r.largest() == (6, 390) and len(r.ks) == 1
    with pytest.raises(KeyError):
        r.pop(5)


def test_runs_widen_a_block_for_values_past_4_bytes(monkeypatch):
    monkeypatch.setattr(runs, "LOAD", 2)
    r = Runs(array("Q", [10, 20, 30, 40, 50, 60]), array("Q", [11, 21, 31, 41, 51, 61]), track=True)
    assert [b.typecode for b in r.ks] == ["I", "I", "I"]
    r.put(35, 1 << 33)  # a value past 2**32 in the second block
    r.put(1 << 40, (1 << 40) + 5)  # a key past 2**32 after the last
    r.put(20, 1 << 34)  # an existing key's value
    r.check()
    assert [b.typecode for b in r.ks] == ["I", "I", "Q"] and [b.typecode for b in r.vs] == ["Q", "Q", "Q"]
    assert r.largest() == ((1 << 34) - 20, 20) and r.get(35) == 1 << 33 and r.ceil(61) == (1 << 40, (1 << 40) + 5)
    ks, vs = r.columns()
    assert list(ks) == [10, 20, 30, 35, 40, 50, 60, 1 << 40] and vs.typecode == "Q" and vs[1] == 1 << 34


def test_columns_cost_8_bytes_an_interval():
    """The point of the columns: a map of many intervals costs about two 8-byte words each."""
    import sys

    m = SpaceMap({DRAM: PoolRange(DRAM, 12, 32, 1 << 30, 32)})
    n = 50_000
    m.load((32 + i * 4096, 12 * 4096, DRAM) for i in range(n))
    assert len(m) == n and m.stats(DRAM).free_segments == 1
    size = sum(sys.getsizeof(a) for a in m.iv.ks + m.iv.vs)
    assert size / n < 8.5  # addresses below 2**32, sizes below 2**29: 4-byte columns
    assert isinstance(m.iv.ks[0], array)


def test_a_big_snapshot_load_gives_the_free_heap_back(monkeypatch):
    """Insight.load of at least TRIM_MIN buffers ends with malloc_trim (core/heap.py); smaller ones do not."""
    from tt_memtop.core import heap, insight
    from tt_memtop.core.devices import Inventory
    from tt_memtop.core.registry import Buffer, Registry

    assert heap.give_back_free_heap() in (True, False)  # glibc: True; elsewhere a no-op
    calls = []
    monkeypatch.setattr(insight, "give_back_free_heap", lambda: calls.append(1))
    monkeypatch.setattr(insight, "TRIM_MIN", 3)
    reg = Registry()
    reg.load_snapshot([Buffer(0, 32 + 4096 * i, DRAM, 4096, 1, 1, i, i) for i in range(2)], 1)
    ins = insight.Insight()
    ins.load(reg, Inventory(), 10)
    assert calls == []
    reg.load_snapshot([Buffer(0, 32 + 4096 * i, DRAM, 4096, 1, 1, i, i) for i in range(3)], 2)
    ins.load(reg, Inventory(), 10)
    assert calls == [1] and ins.pool_stats(0, DRAM).used_per_bank == 3 * per_bank(4096)


def per_bank(size: int) -> int:
    return per_bank_size(size, 12, 32)  # Wormhole DRAM: 12 banks, 32 B alignment


def test_building_a_big_loaded_map_gives_the_free_heap_back(monkeypatch):
    calls = []
    monkeypatch.setattr(bankmap, "give_back_free_heap", lambda: calls.append(1))
    monkeypatch.setattr(bankmap, "TRIM_MIN", 3)
    m = SpaceMap(pools())
    m.load([(64, 32, DRAM), (128, 32, DRAM)])
    assert m.stats(DRAM).used_per_bank == 64 and calls == []  # built at the first query, below TRIM_MIN
    m.load([(64, 32, DRAM), (128, 32, DRAM), (6000, 32, TRACE)])
    assert calls == [] and len(m) == 3 and calls == [1]  # built (and trimmed) when asked, once
    m.stats(TRACE)
    assert calls == [1]
