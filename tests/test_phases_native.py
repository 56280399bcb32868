"""The compiled twin of the phase tracker's per-event path (tt_memtop/_native/phases.c) against the Python reference.

Both fold the same events with :meth:`PhaseTracker.observe_batch`; everything the tracker can say must
be the same: the live phase after each event, every segment (with hindsight too), each process's
state and evidence text, and its internal per-process state (windows, deadlines, live maps). On
recorded Llama / Galaxy / CNN sessions, simulated ones (a release, a killed process), and arbitrary
event streams (hypothesis), including values beyond the compiled path's integer range.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recordings import recorded_events, unpack

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.phases import PhaseConfig, PhaseTracker, analyze
from tt_memtop.core.phases import machine as machine_mod
from tt_memtop.core.phases.process import Proc, live_key
from tt_memtop.sim.scenarios import build
from tt_memtop.sim.score import reference_events

native = pytest.mark.skipif(machine_mod._native is None, reason="the compiled phases module is not built")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    out = {}
    for name in ("llama_8dev", "galaxy_32dev", "cnn_1dev"):
        out[name] = recorded_events(name, tmp_path_factory.mktemp("rec"))
    for name in ("two-traces", "killed", "eager-server", "dynamic-region", "diffusion"):
        out[name] = reference_events(build(name, 1), 144)
    return out


def _proc_state(proc: Proc, keys: set) -> dict:
    out = {}
    for name in Proc.__slots__:
        v = getattr(proc, name)
        if name == "live":  # a LiveMap: every key the events could have stored
            v = (len(v), sorted(((k, v.get(k)) for k in keys if k in v), key=repr))
        elif name == "window":
            v = (list(v.entries), list(v.counts), dict(v.sigs), v.n)
        elif isinstance(v, set | frozenset):
            v = sorted(v, key=repr)
        elif hasattr(v, "__iter__") and not isinstance(v, str | tuple | dict):
            v = list(v)
        out[name] = v
    return out


def _everything(tr: PhaseTracker, labels: list, events: list[Event]) -> dict:
    keys = {live_key(e.device, e.buffer_id, e.buffer_type) for e in events}
    return {
        "labels": labels,
        "now": tr.now_ns,
        "segments": tr.segments(),
        "relabelled": tr.segments(relabel_capture=True),
        "processes": tr.processes(),
        "procs": {pid: _proc_state(p, keys) for pid, p in tr._procs.items()},
        "topdown": (tr._topdown.high, tr._topdown.largest),
    }


def _fold(events: list[Event], pure: bool, batch: int, ticks: bool = True) -> dict:
    tr = PhaseTracker(pure=pure)
    labels = []
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        labels += tr.observe_batch(chunk)
        if ticks:  # the monitor's frame timer between batches
            tr.tick(chunk[-1].ts_ns + 1_000_000)
    return _everything(tr, labels, events)


@native
@pytest.mark.parametrize("name", ["llama_8dev", "galaxy_32dev", "cnn_1dev", "two-traces", "killed", "eager-server",
                                  "dynamic-region", "diffusion"])
@pytest.mark.parametrize("batch", [1, 512])
def test_compiled_fold_equals_reference_on_sessions(sessions, name, batch):
    events = sessions[name]
    assert _fold(events, False, batch) == _fold(events, True, batch)


@native
@pytest.mark.parametrize("name", ["llama_8dev", "killed", "diffusion"])
def test_compact_process_state_equals_the_plain_one(sessions, name, monkeypatch):
    """The compiled LiveTable and Stamps (a process's live map and recent allocation times) against what a
    pure-Python install uses (LiveMap on the pure table, a deque), under the Python reference."""
    from collections import deque

    from tt_memtop.core.phases import process as process_mod
    from tt_memtop.core.table import LiveMap

    events = sessions[name]
    compact = _fold(events, False, 512)
    monkeypatch.setattr(process_mod, "LiveTable", lambda: LiveMap(True))
    monkeypatch.setattr(process_mod, "Stamps", deque)
    assert _fold(events, True, 512) == compact


@native
def test_analyze_is_the_same_compiled_and_pure(sessions, monkeypatch):
    events = sessions["llama_8dev"]
    compiled = analyze(events)
    monkeypatch.setattr(machine_mod, "_native", None)
    assert analyze(events) == compiled


_KINDS = [EventKind.ALLOC] * 6 + [EventKind.FREE] * 5 + [EventKind.CLEANUP, EventKind.PROCESS_EXIT,
                                                        EventKind.BAD_FRAME, EventKind.REF_INC]
_SIZES = [0, 512, 16 * 1024, 16 * 1024 + 1, 65536, 100_000, 1 << 20, 3 << 20, 1 << 30]


@st.composite
def streams(draw):
    n = draw(st.integers(1, 300))
    ts = draw(st.integers(0, 10**9))
    out = []
    for seq in range(1, n + 1):
        ts += draw(st.sampled_from([0, 1_000, 200_000, 3_000_000, 40_000_000, 200_000_000, 1_200_000_000,
                                    3_000_000_000]))
        kind = draw(st.sampled_from(_KINDS))
        btype = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 4, 5, 6]))
        dev = draw(st.integers(0, 3))
        bid = draw(st.sampled_from([0x1000, 0x2000, 0x3000, 0x10_0000, 0x4000_0000, 0x1_0000_0000]))
        size = draw(st.sampled_from(_SIZES))
        name = draw(st.sampled_from(["", "Application", "System", "x"]))
        out.append(Event(kind, seq=seq, ts_ns=ts, pid=draw(st.sampled_from([100, 200])), device=dev,
                         buffer_type=btype, buffer_id=bid, size=size, ref_count=1, name=name))
    return out


@native
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=streams(), batch=st.sampled_from([1, 3, 64]))
def test_compiled_fold_equals_reference_on_arbitrary_streams(events, batch):
    assert _fold(events, False, batch) == _fold(events, True, batch)


@native
@settings(max_examples=40, deadline=None)
@given(events=streams(), at=st.integers(0, 299), what=st.sampled_from(["ts", "size", "bid", "type", "kind"]))
def test_values_beyond_the_compiled_range_fall_back_to_python(events, at, what):
    ev = events[at % len(events)]
    if what == "ts":
        ev.ts_ns = 1 << 62
        for later in events[at % len(events):]:
            later.ts_ns = max(later.ts_ns, ev.ts_ns)
    elif what == "size":
        ev.size = 1 << 60
    elif what == "bid":
        ev.buffer_id = (1 << 64) - 4096
    elif what == "type":
        ev.buffer_type = True  # a bool is an int to Python, not to the compiled path
    else:
        ev.kind = 1  # a plain int kind: the reference handles it
    assert _fold(events, False, 5) == _fold(events, True, 5)


@native
def test_a_tracker_that_saw_out_of_range_values_stays_on_python():
    tr = PhaseTracker()
    tr.observe(Event(EventKind.ALLOC, ts_ns=5, pid=1, buffer_type=0, buffer_id=1, size=1 << 50))
    assert tr._python_only
    ok = PhaseTracker()
    ok.observe_batch([Event(EventKind.ALLOC, ts_ns=5, pid=1, buffer_type=0, buffer_id=1, size=1 << 20)])
    assert not ok._python_only


def test_pure_tracker_without_the_compiled_module(monkeypatch):
    monkeypatch.setattr(machine_mod, "_native", None)
    tr = PhaseTracker(PhaseConfig())
    assert tr._native is None
    evs = [Event(EventKind.ALLOC, seq=i, ts_ns=1000 * i, pid=7, device=i % 2, buffer_type=0, buffer_id=0x1000 * i,
                 size=1 << 21) for i in range(1, 20)]
    assert tr.observe_batch(evs)[-1].value == "loading"


def test_memtop_analyze_prints_the_same_timeline_compiled_and_pure(tmp_path):
    """End to end, real subprocesses: ``memtop analyze`` of a recorded Galaxy session, with and without
    the compiled accelerators (MEMTOP_PURE_PYTHON=1), prints the same timeline."""
    import os
    import subprocess
    import sys

    rec = unpack("galaxy_32dev", tmp_path)
    out = {}
    for pure in ("", "1"):
        env = dict(os.environ, MEMTOP_PURE_PYTHON=pure)
        res = subprocess.run([sys.executable, "-m", "tt_memtop", "analyze", "--json", str(rec)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        out[pure] = res.stdout
    assert out[""] == out["1"] and '"phase"' in out[""]
