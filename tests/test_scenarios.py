"""Scenario generators: deterministic, realistic (PROTOCOL.md §8), labelled, server-consistent."""

from __future__ import annotations

from collections import Counter

import pytest

from tt_memtop.core.phases import Phase
from tt_memtop.core.protocol import BufferType, Layout, MsgType
from tt_memtop.core.registry import Registry
from tt_memtop.sim.scenarios import SCENARIOS, build, reference_events, supports


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_deterministic_and_labelled(name):
    a, b = build(name, seed=5), build(name, seed=5)
    assert list(a.schedule()) == list(b.schedule())
    assert list(build(name, seed=6).schedule()) != list(a.schedule())
    times = [t for t, _slot, _m in a.schedule()]
    assert times == sorted(times)
    for proc in a.processes:
        labels = proc.labels
        assert labels[0].phase is Phase.LOADING and labels[-1].phase is Phase.EXITED
        assert all(x.end_s == y.start_s for x, y in zip(labels, labels[1:], strict=False))  # contiguous
        assert labels[-1].start_s == pytest.approx(proc.exit_s)
        assert all(m.process_id == proc.pid for _t, m in proc.messages)


def test_llama_trace_facts():
    sc = build("llama-t3k")
    traces = [m for _t, _s, m in sc.schedule() if m.type == MsgType.ALLOC and m.buffer_type == BufferType.TRACE]
    assert sorted(m.device_id for m in traces) == list(range(8))
    assert {(m.size, m.buffer_id) for m in traces} == {(12_503_040, 0x3E363C80)}
    assert traces[0].device_id == 4  # as in debug-llama.log
    assert [lab.phase for lab in sc.labels()] == [Phase.LOADING, Phase.WARMUP, Phase.CAPTURE, Phase.REPLAY,
                                                 Phase.RELEASED, Phase.TEARDOWN, Phase.EXITED]


def test_galaxy_uses_32_devices_and_cnn_one():
    assert {m.device_id for _t, _s, m in build("galaxy").schedule()} == set(range(32))
    assert {m.device_id for _t, _s, m in build("cnn").schedule()} == {0}


def test_bursts_and_reused_addresses():
    sc = build("llama-t3k")
    per_10ms = Counter(int(t * 100) for t, _s, m in sc.schedule() if m.type == MsgType.ALLOC)
    assert max(per_10ms.values()) >= 10  # >= 1,000 allocations per second in bursts
    allocs = Counter((m.device_id, m.buffer_id) for _t, _s, m in sc.schedule() if m.type == MsgType.ALLOC)
    assert max(allocs.values()) > 3  # warm-up runs reuse the same addresses


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_server_semantics_hold(name):
    sc = build(name)
    events = reference_events(sc)
    registry = Registry()
    for ev in events:
        registry.apply_event(ev)
    registry.check_invariants()
    assert not any(ev.kind.name == "FREE_UNKNOWN" for ev in events)  # every free matches an alloc
    leaky = {p.pid for p in sc.processes if p.leaks}
    exits = {ev.pid for ev in events if ev.kind.name == "PROCESS_EXIT"}
    assert exits == leaky
    assert len(registry) == 0  # clean processes free everything; the server cleans up after the rest


def test_two_process_overlap_and_a_process_that_never_traces():
    sc = build("two-process")
    traced, eager = sc.processes
    assert set(traced.devices).isdisjoint(eager.devices)
    assert eager.messages[0][0] < traced.exit_s
    assert Phase.CAPTURE not in {lab.phase for lab in eager.labels}
    assert Phase.IDLE in {lab.phase for lab in eager.labels}


def test_layout_filter():
    assert supports(MsgType.ALLOC, Layout.V72) and supports(MsgType.FREE, Layout.V112)
    assert not supports(MsgType.CB_ALLOC, Layout.V72) and not supports(MsgType.KERNEL_LOAD, Layout.V648)
    assert supports(MsgType.KERNEL_LOAD, Layout.V144) and supports(MsgType.CB_FREE, Layout.V128)
