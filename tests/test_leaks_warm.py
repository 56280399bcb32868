"""The leak tracker's warm-up set: the compiled ``WarmSet`` behaves as a dict, and the compiled pass
(``tt_memtop/_native/leaks.c``) leaves the set and the reclaimed table the pure pass leaves, on
arbitrary event streams (odd devices and ids, bools, FREEs of other id spaces, re-ALLOCs of a key).
Outlived warm-up rows are the same whether the holder comes from the registry's rows or from the
tracker's own table (a caller that passes no registry).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop.core import leaks as leaks_mod
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.leaks import LeakTracker
from tt_memtop.core.model import new_state
from tt_memtop.core.phases import Phase
from tt_memtop.sim.scenarios import build
from tt_memtop.sim.score import reference_events

WarmSet = leaks_mod.WarmSet
NATIVE_PASS = leaks_mod._native_pass
compiled = pytest.mark.skipif(WarmSet is None or NATIVE_PASS is None, reason="the compiled leaks module is not built")

# the pass's keys: ints (buffer_id << 8 | device, any size) and (device, buffer_id) tuples; a bool or a
# float equal to an int key would be another key here (as in the phase tracker's LiveTable)
_keys = st.one_of(st.integers(0, 50), st.sampled_from([-1, (1 << 63) - 1, 1 << 63, (1 << 64) - 2, (1 << 64) - 1,
                                                       1 << 64, (300, 5), (-1, 7), "x"]))
_values = st.one_of(st.integers(-(1 << 40), 1 << 40),
                    st.sampled_from([(1 << 63) - 1, -(1 << 63), 1 << 63, True, None, 1.5, (1, 2)]))


@compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "set", "get", "pop", "in", "del", "item"]), _keys, _values),
                max_size=300))
def test_warm_set_behaves_as_a_dict(ops):
    m, d = WarmSet(), {}
    for op, key, value in ops:
        if op == "set":
            m[key] = value
            d[key] = value
        elif op == "get":
            assert m.get(key) == d.get(key) and m.get(key, "none") == d.get(key, "none")
        elif op == "pop":
            assert m.pop(key, "none") == d.pop(key, "none")
        elif op == "in":
            assert (key in m) == (key in d)
        elif op == "del" and key in d:
            del m[key]
            del d[key]
        elif op == "del":
            with pytest.raises(KeyError):
                del m[key]
        elif key in d:
            assert m[key] == d[key]
        else:
            with pytest.raises(KeyError):
                m[key]
        assert len(m) == len(d) and bool(m) == bool(d)
    assert sorted(m.items(), key=repr) == sorted(d.items(), key=repr)
    assert sorted(m.keys(), key=repr) == sorted(d, key=repr) == sorted(m, key=repr)
    spans = [(0, 10), (20, 30)]
    got = m.within(spans)
    if got is not None:  # None: a value no slot holds (the caller's loop then)
        assert sorted(got) == sorted((k, v) for k, v in d.items() if any(a <= v < b for a, b in spans))


@compiled
def test_warm_set_grows_and_gives_memory_back():
    m = WarmSet()
    for i in range(100_000):
        m[i << 8 | i % 8] = i
    full = m.nbytes()
    assert 100_000 * 16 <= full <= 100_000 * 16 * 2  # 16-byte slots, over half of them used
    assert m.within([(10, 13), (99_998, 1 << 40)]) is not None
    assert sorted(t for _k, t in m.within([(10, 13), (99_998, 1 << 40)])) == [10, 11, 12, 99_998, 99_999]
    for i in range(99_000):
        assert m.pop(i << 8 | i % 8) == i
    assert len(m) == 1000 and m.nbytes() < full / 8


_KINDS = [EventKind.ALLOC] * 5 + [EventKind.FREE] * 3 + [EventKind.CLEANUP, EventKind.REF_INC, EventKind.REF_DEC]
_PHASES = [Phase.LOADING, Phase.WARMUP, Phase.IDLE, Phase.REPLAY, Phase.CAPTURE]


@st.composite
def _streams(draw):
    out = []
    for seq in range(draw(st.integers(1, 200))):
        out.append(Event(draw(st.sampled_from(_KINDS)), seq=seq + 1, ts_ns=seq * 1000, pid=draw(st.sampled_from([1, 2])),
                         device=draw(st.sampled_from([0, 1, 255, 256, -1])),
                         buffer_type=draw(st.sampled_from([0, 1, 2, 4, 5, 6, True])),
                         buffer_id=draw(st.sampled_from([0, 0x1000, 0x2000, 1 << 55, 1 << 60, (1 << 64) + 5, -3])),
                         size=4096))
    return out


def _pass(events, warm, phases: dict, native: bool) -> list:
    cleaned = []
    phase_of = phases.get
    if native:
        NATIVE_PASS(events, warm, phase_of, leaks_mod._EARLY, cleaned.append, leaks_mod._ALLOC, leaks_mod._FREE,
                    leaks_mod._CLEANUP, leaks_mod._CB, leaks_mod._TRACE)
    else:
        leaks_mod._warm_pass(events, warm, phase_of, cleaned.append)
    return cleaned


@compiled
@settings(max_examples=200, deadline=None)
@given(_streams(), st.lists(st.sampled_from(_PHASES), min_size=2, max_size=2), st.integers(1, 50))
def test_compiled_warm_pass_equals_the_pure_one(events, phases, batch):
    ph = {1: phases[0], 2: phases[1]}
    ref, ref_cleaned = {}, []
    got, got_cleaned = WarmSet(), []
    mixed, mixed_cleaned = WarmSet(), []  # the pure pass on the compiled set
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        ref_cleaned += _pass(chunk, ref, ph, native=False)
        got_cleaned += _pass(chunk, got, ph, native=True)
        mixed_cleaned += _pass(chunk, mixed, ph, native=False)
    assert sorted(got.items(), key=repr) == sorted(ref.items(), key=repr) == sorted(mixed.items(), key=repr)
    assert got_cleaned == ref_cleaned == mixed_cleaned


@pytest.mark.parametrize("scenario", ["killed", "diffusion", "galaxy-32"])
def test_outlived_rows_without_a_registry_are_the_same(scenario):
    """The registry's rows, or (pid, size) kept by the tracker when the caller passes no registry."""
    events = reference_events(build(scenario, 0), 144)
    state = new_state()
    alone = LeakTracker()
    for i in range(0, len(events), 512):
        chunk = events[i:i + 512]
        state.apply_events(chunk)
        ph = state.phases
        alone.observe(chunk, ph.phase, None, ph.segments)
    rows = [r for r in state.insight.leaks.rows() if r["kind"] == "outlived_warmup"]
    assert rows  # the scenario has warm-up buffers alive in replay
    assert [r for r in alone.rows() if r["kind"] == "outlived_warmup"] == rows
    assert sorted(alone.warm.items(), key=repr) == sorted(state.insight.leaks.warm.items(), key=repr)
