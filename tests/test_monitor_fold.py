"""The monitor's batch fold gives the state the event-by-event fold gives, and the feed stays bounded at any rate.

* ``MonitorState.apply_events`` (one pass per consumer, ``PhaseTracker.observe_batch``) against
  ``MonitorState._apply_one_by_one`` (the event-by-event path) on recorded Llama / Galaxy sessions
  folded in arbitrary batch sizes: feed, phases of the feed, histories, registry, peaks, leaks;
* ``observe_batch`` returns what ``phase()`` says after each ``observe``;
* the event feed of a live source past the model's ring keeps at most ``FOLLOW_ROWS`` rows, the
  newest, in both views, and a filter still rebuilds from the model's ring.
"""

from __future__ import annotations

import importlib

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recordings import recorded_events
from ui_fakes import FakeSource

from tt_memtop.core import insight as insight_mod
from tt_memtop.core import leaks as leaks_mod
from tt_memtop.core import model as model_mod
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.geometry import DRAM, L1, L1_SMALL, TRACE
from tt_memtop.core.model import MonitorState, new_state
from tt_memtop.core.phases import Phase, PhaseTracker
from tt_memtop.sim.scenarios import build
from tt_memtop.sim.score import reference_events
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.filters import ViewFilter
from tt_memtop.ui.widgets.event_feed import FOLLOW_ROWS, EventFeed


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    out = {}
    for name in ("llama_8dev", "galaxy_32dev", "cnn_1dev"):
        out[name] = recorded_events(name, tmp_path_factory.mktemp("rec"))
    for name in ("two-traces", "killed"):  # a release (the live view's hold) and a dead-PID cleanup
        out[name] = reference_events(build(name, 0), 144)
    return out


def _fold(events, batch: int, one_by_one: bool) -> MonitorState:
    st = new_state()
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        if one_by_one:
            st._apply_one_by_one(chunk)
        else:
            st.apply_events(chunk)
    return st


def _summary(st: MonitorState) -> dict:
    ins = st.insight
    return {
        "feed": [(e.seq, e.kind, e.buffer_id) for e in st.feed], "feed_phases": list(st.feed_phases),
        "history": {k: [(e.seq if isinstance(e, Event) else e) for e in v] for k, v in st.history.items()},
        "history_order": list(st.history), "gaps": st.gaps, "events": st.events_total, "exited": st.exited,
        "bad": st.bad_frames, "registry": sorted((b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid,
                                                  b.ref_count) for b in st.registry.buffers()),
        "peaks": (ins.peaks.peak, ins.peaks.peak_at, ins.peaks.pid_peak, ins.peaks.pid_peak_at, ins.peaks.current),
        "leaks": (ins.leaks.rows(), sorted(ins.leaks.warm.items(), key=repr)),
        "segments": [(s.pid, s.phase, s.start_ns, s.end_ns) for s in st.phases.segments()],
        "maps": {d: [ins.pool_stats(d, t).as_dict() for t in (DRAM, L1, L1_SMALL, TRACE)] for d in ins.devices()},
    }


@pytest.mark.parametrize("name", ["llama_8dev", "galaxy_32dev", "cnn_1dev", "two-traces", "killed"])
@pytest.mark.parametrize("batch", [1, 7, 512])
def test_batch_fold_equals_event_by_event_fold(sessions, name, batch):
    events = sessions[name]
    if batch == 1:
        events = events[:3000]  # one call per event: enough of the session to go through its phases
    assert len(events) > 500
    assert _summary(_fold(events, batch, one_by_one=False)) == _summary(_fold(events, batch, one_by_one=True))


@pytest.mark.parametrize("scenario", ["llama-t3k", "two-traces", "killed"])
def test_observe_batch_is_observe_then_phase(scenario):
    events = reference_events(build(scenario, 0), 144)
    a, b = PhaseTracker(), PhaseTracker()
    got = []
    for i in range(0, len(events), 300):
        got += a.observe_batch(events[i:i + 300])
    want = []
    for ev in events:
        b.observe(ev)
        want.append(b.phase(ev.pid))
    assert got == want
    assert len(set(got)) >= 3  # the session goes through several phases
    assert a.segments() == b.segments()


def _churn(n: int, start: int = 0) -> list[Event]:
    out = []
    for i in range(start, start + n):
        kind = EventKind.ALLOC if i % 2 == 0 else EventKind.FREE
        out.append(Event(kind, seq=i + 1, ts_ns=1_000_000_000 + i * 1000, pid=4242, device=i % 8, buffer_type=1,
                         buffer_id=0x40000 + (i // 2 % 500) * 0x400, size=4096, ref_count=1 if i % 2 == 0 else 0))
    return out


async def test_feed_of_a_fast_live_source_keeps_only_the_newest_rows():
    src = FakeSource(8, [])
    state = MonitorState(feed_limit=5_000)
    app = MemtopApp(src, clock=lambda: 0.0, state=state, pane="feed")
    async with app.run_test(headless=True, size=(160, 40)) as pilot:
        feed = app.query_one(EventFeed)
        with anyio.fail_after(20):
            while src.emit is None:
                await pilot.pause(0.02)
        app.paused = True  # draw nothing until the burst is folded: one frame then brings all of it
        src.push(_churn(20_000))
        with anyio.fail_after(30):
            while state.events_total < 20_000:
                await pilot.pause(0.05)
        app.paused = False
        with anyio.fail_after(20):
            while feed._seen < 20_000:
                await pilot.pause(0.05)
        assert len(feed.rows) == FOLLOW_ROWS  # raw rows: the newest only, not the ring's 5,000 nor all 20,000
        assert feed.rows[-1][0].seq == 20_000 and feed.rows[0][0].seq == 20_000 - FOLLOW_ROWS + 1
        assert 0 < len(feed.grouped_rows) <= FOLLOW_ROWS
        assert feed.skipped == 5_000 - FOLLOW_ROWS  # the ring's older events were never made rows
        # a slow trickle afterwards is appended as before
        src.push(_churn(10, 20_000))
        with anyio.fail_after(20):
            while feed._seen < 20_010:
                await pilot.pause(0.05)
        assert feed.rows[-1][0].seq == 20_010 and len(feed.rows) == FOLLOW_ROWS + 10
        # a filter rebuilds from the model's ring (every event of device 3 it still holds)
        app.set_filter(ViewFilter(devices=frozenset({3})))
        with anyio.fail_after(20):
            while not feed.rows or any(ev.device != 3 for ev, _ in feed.rows):
                await pilot.pause(0.05)
        assert len(feed.rows) == sum(1 for e in state.feed if e.device == 3)


NATIVE_PASS = insight_mod._load_native_pass()


@pytest.mark.skipif(NATIVE_PASS is None, reason="the compiled insight pass is not built")
@pytest.mark.parametrize("name", ["llama_8dev", "galaxy_32dev", "cnn_1dev", "two-traces", "killed"])
def test_native_insight_pass_equals_the_pure_one(sessions, name, monkeypatch):
    events = sessions[name]
    monkeypatch.setattr(insight_mod, "_native_pass", None)
    monkeypatch.setattr(insight_mod, "_native_end", None)
    pure = _summary(_fold(events, 512, one_by_one=False))
    monkeypatch.setattr(insight_mod, "_native_pass", NATIVE_PASS)
    monkeypatch.setattr(insight_mod, "_native_end", NATIVE_END)
    native = _fold(events, 512, one_by_one=False)
    assert _summary(native) == pure
    assert native.insight.captures.keys() == _fold(events, 512, one_by_one=True).insight.captures.keys()


@pytest.mark.skipif(NATIVE_PASS is None, reason="the compiled insight pass is not built")
def test_native_insight_pass_edge_values():
    """Huge sizes and ids (past 64 bits once shifted), zero sizes, odd devices and types, CBs: same state."""
    from tt_memtop.core.peaks import PeakTracker

    big = 2**64 - 1
    evs = [Event(EventKind.ALLOC, seq=1, ts_ns=5, pid=1, device=0, buffer_type=0, buffer_id=big, size=big),
           Event(EventKind.ALLOC, seq=2, ts_ns=6, pid=1, device=255, buffer_type=3, buffer_id=1 << 40, size=1),
           Event(EventKind.ALLOC, seq=3, ts_ns=7, pid=2, device=-1, buffer_type=1, buffer_id=9, size=64),
           Event(EventKind.ALLOC, seq=4, ts_ns=8, pid=2, device=3, buffer_type=2, buffer_id=0, size=0),
           Event(EventKind.FREE, seq=5, ts_ns=9, pid=1, device=0, buffer_type=0, buffer_id=big, size=big),
           Event(EventKind.ALLOC, seq=6, ts_ns=10, pid=3, device=300, buffer_type=5, buffer_id=77, size=4096),
           Event(EventKind.ALLOC, seq=7, ts_ns=11, pid=3, device=1, buffer_type=5, buffer_id=0x20000, size=4096),
           Event(EventKind.CLEANUP, seq=8, ts_ns=12, pid=3, device=1, buffer_type=5, buffer_id=0x20000, size=4096),
           Event(EventKind.ALLOC, seq=9, ts_ns=13, pid=4, device=2, buffer_type=9, buffer_id=1, size=1),
           Event(EventKind.REF_INC, seq=10, ts_ns=14, pid=4, device=2, buffer_type=1, buffer_id=1, size=1),
           Event(EventKind.ALLOC, seq=11, ts_ns=15, pid=4, device=2, buffer_type=6, buffer_id=1, size=2)]

    def run(fn):
        peaks = PeakTracker()
        out = ({}, {}, {}, {}, [], [])
        fn(evs, peaks, *out)
        return out, peaks.current, peaks.peak, peaks.peak_at, peaks.pid_current, peaks.pid_peak, peaks.rose

    pure = run(insight_mod._observe_pass)
    assert run(NATIVE_PASS) == pure
    assert pure[0][2][(big << 8) | 0] == -1 and pure[0][5]  # the freed huge id, a CB queued
    assert NATIVE_PASS([object()], PeakTracker(), {}, {}, {}, {}, [], []) is False  # not Events: pure pass


def _pass_state(fn, batches, mask: int, fast: bool | None = None, pending=dict):
    """Every batch through one insight pass (``fast``: the compiled pass's C-integer path on / off), as the
    state it leaves, dict and set orders included."""
    from tt_memtop.core.peaks import PeakTracker

    if fast is not None:
        NATIVE_PASS_MOD.set_fast(fast)
    try:
        peaks = PeakTracker()
        peaks.set_bar_mask(mask, 0)
        out = ({}, {}, pending(), {}, [], [])
        seen = []
        for evs in batches:
            dev_rows, pid_rows = {}, {}
            fn(evs, peaks, dev_rows, pid_rows, *out[2:])
            seen.append((list(dev_rows.items()), list(pid_rows.items()), list(peaks.rose)))
        return (seen, [list(d.items()) if hasattr(d, "items") else list(d) for d in out[2:]], len(out[2]),
                list(peaks.current.items()), list(peaks.peak.items()), list(peaks.peak_at.items()),
                list(peaks.pid_current.items()), list(peaks.pid_peak.items()), list(peaks.pid_peak_at.items()),
                list(peaks.bars.items()), list(peaks.bars_at.items()))
    finally:
        if fast is not None:
            NATIVE_PASS_MOD.set_fast(True)


NATIVE_PASS_MOD = importlib.import_module("tt_memtop._native.insight") if NATIVE_PASS is not None else None
_sizes = st.one_of(st.integers(0, 1 << 20), st.sampled_from([0, 1 << 58, 1 << 61, 1 << 62, (1 << 62) + 1, 1 << 63,
                                                               (1 << 64) - 1, -5]))
_pass_events = st.builds(
    lambda kind, ts, pid, dev, bt, bid, size: Event(kind, seq=1, ts_ns=ts, pid=pid, device=dev, buffer_type=bt,
                                                     buffer_id=bid, size=size),
    st.sampled_from([EventKind.ALLOC] * 5 + [EventKind.FREE] * 3 + [EventKind.CLEANUP, EventKind.REF_INC]),
    st.one_of(st.integers(0, 10**12), st.sampled_from([1 << 63, -(1 << 63) - 1])),
    st.one_of(st.integers(1, 3), st.integers(0, 90), st.sampled_from([1 << 62, 1 << 70])),
    st.one_of(st.integers(0, 3), st.integers(-2, 80), st.sampled_from([255, 256, 1 << 70])),
    st.integers(-1, 8), st.one_of(st.integers(0, 5), st.sampled_from([1 << 54, 1 << 56, (1 << 64) - 1])), _sizes)


@pytest.mark.skipif(NATIVE_PASS is None, reason="the compiled insight pass is not built")
@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(_pass_events, max_size=40), max_size=5),
       mask=st.sampled_from([(1 << 7) - 1, 0b0011001, 0b1100110, 0]))
def test_native_insight_pass_paths_equal_the_pure_one(batches, mask):
    """The compiled pass's C-integer path and its object path leave the pure pass's state, orders included:
    values past 62 bits, negative sizes, odd types and devices, more than 64 devices or PIDs in a batch."""
    pure = _pass_state(insight_mod._observe_pass, batches, mask)
    assert _pass_state(NATIVE_PASS, batches, mask, fast=True) == pure
    assert _pass_state(NATIVE_PASS, batches, mask, fast=False) == pure
    # into insight.c's Pending (C integers, a dict inside once a value needs more) instead of a dict
    assert _pass_state(NATIVE_PASS, batches, mask, fast=True, pending=NATIVE_PASS_MOD.Pending) == pure
    assert _pass_state(NATIVE_PASS, batches, mask, fast=False, pending=NATIVE_PASS_MOD.Pending) == pure
    assert _pass_state(insight_mod._observe_pass, batches, mask, pending=NATIVE_PASS_MOD.Pending) == pure


@pytest.mark.skipif(NATIVE_PASS is None, reason="the compiled insight pass is not built")
def test_native_insight_pass_with_more_devices_and_pids_than_its_c_rows():
    """A batch over 100 devices and 100 PIDs (past the C-integer path's rows: the object pass takes it)."""
    evs = [Event(EventKind.ALLOC if i % 3 else EventKind.FREE, seq=i + 1, ts_ns=i, pid=1000 + i % 100, device=i % 100,
                 buffer_type=i % 7, buffer_id=i + 1, size=64 * (1 + i % 5)) for i in range(300)]
    batches = [evs[:10], evs, evs[10:]]
    pure = _pass_state(insight_mod._observe_pass, batches, (1 << 7) - 1)
    assert _pass_state(NATIVE_PASS, batches, (1 << 7) - 1, fast=True) == pure


@pytest.mark.skipif(NATIVE_PASS is None, reason="the compiled insight pass is not built")
@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.one_of(st.integers(0, 40), st.sampled_from([(1 << 64) - 1, 1 << 64, -1, True])),
                              st.one_of(st.integers(-8, 8), st.sampled_from([(1 << 63) - 1, 1 << 63, -(1 << 63)]))),
                    max_size=60))
def test_pending_behaves_as_a_dict(ops):
    """insight.c's Pending against a dict: stores, len, items() in first-store order, get, [] (KeyError)."""
    p, d = NATIVE_PASS_MOD.Pending(), {}
    for k, v in ops:
        p[k] = v
        d[k] = v
        assert len(p) == len(d) and list(p.items()) == list(d.items())
    for k in (0, 1, True, 7, 40, 1 << 64, -1):
        assert p.get(k) == d.get(k) and p.get(k, "x") == d.get(k, "x")
        if k in d:
            assert p[k] == d[k]
        else:
            with pytest.raises(KeyError):
                p[k]
    assert bool(p) == bool(d)


NATIVE_END = insight_mod._load_native_end()
_fold_events = st.builds(
    lambda alloc, ts, pid, dev, bt, bid, size: Event(EventKind.ALLOC if alloc else EventKind.FREE, seq=0, ts_ns=ts,
                                                      pid=pid, device=dev, buffer_type=bt, buffer_id=bid, size=size,
                                                      ref_count=1 if alloc else 0),
    st.booleans(), st.integers(1, 10**6), st.integers(1, 3), st.integers(0, 3), st.integers(0, 6),
    st.integers(0, 12), st.sampled_from([0, 64, 4096, 1 << 20, 1 << 40, 1 << 63]))


def _insight_state(events, batch: int, mask: int) -> tuple:
    st_ = new_state()
    st_.insight.peaks.set_bar_mask(mask, 0)
    for i in range(0, len(events), batch):
        st_.apply_events(events[i:i + batch])
    p, ins = st_.insight.peaks, st_.insight
    return ((p.current, p.peak, p.peak_at, p.pid_current, p.pid_peak, p.pid_peak_at, p.bars, p.bars_at),
            {k: ins.history.series(k, st_.last_ts_ns) for k in sorted(ins.history._series)},
            list(ins.captures), ins._recorded, list(ins._pending.items()))


@pytest.mark.skipif(NATIVE_END is None, reason="the compiled insight pass is not built")
@settings(max_examples=100, deadline=None)
@given(events=st.lists(_fold_events, max_size=120), batch=st.sampled_from([1, 7, 64]),
       mask=st.sampled_from([(1 << 7) - 1, 0b0011001, 0b1100000]))
def test_native_end_of_batch_equals_the_pure_one(events, batch, mask):
    """The compiled end of Insight.observe's batch (CB / KERNEL peaks from the registry's totals, the bars,
    the usage history's points) leaves the state the pure one does."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(insight_mod, "_native_end", None)
        pure = _insight_state(events, batch, mask)
    assert _insight_state(events, batch, mask) == pure


NATIVE_HISTORY = model_mod._load_native_history()


@pytest.mark.skipif(NATIVE_HISTORY is None, reason="the compiled history pass is not built")
@pytest.mark.parametrize("name", ["llama_8dev", "galaxy_32dev", "killed"])
def test_native_history_pass_equals_the_pure_one(sessions, name, monkeypatch):
    extra = [Event(EventKind.BAD_FRAME, seq=0, ts_ns=1, pid=9, text="garbage"),
             Event(EventKind.PROCESS_EXIT, seq=0, ts_ns=2, pid=77, size=10, ref_count=1)]
    events = sessions[name][:4000] + extra + sessions[name][4000:]
    monkeypatch.setattr(model_mod, "_native_history", None)
    pure = _fold(events, 512, one_by_one=False)
    monkeypatch.setattr(model_mod, "_native_history", NATIVE_HISTORY)
    native = _fold(events, 512, one_by_one=False)
    assert _summary(native) == _summary(pure)
    assert native.bad_frames == 1 and 77 in native.exited
    small = MonitorState(history_per_id=2)
    small.apply_events([Event(EventKind.ALLOC, seq=i + 1, ts_ns=i, pid=1, device=i % 3, buffer_type=0, buffer_id=5,
                              size=8) for i in range(5)])
    assert [e.seq for e in small.history[5][::2]] == [4, 5]  # bounded per id, newest last


NATIVE_LEAKS = leaks_mod._load_native_pass()
NATIVE_WARMSET = leaks_mod.WarmSet


@pytest.mark.skipif(NATIVE_LEAKS is None, reason="the compiled leaks pass is not built")
@pytest.mark.parametrize("scenario", ["killed", "leaky", "llama-t3k"])
def test_native_leaks_pass_equals_the_pure_one(scenario, monkeypatch):
    events = reference_events(build(scenario, 1), 144)
    # odd devices and ids take the tuple key and the big-int key
    events += [Event(EventKind.ALLOC, seq=0, ts_ns=events[-1].ts_ns + 1, pid=31337, device=dev, buffer_type=0,
                     buffer_id=bid, size=4096) for dev, bid in ((300, 5), (2, 1 << 60), (-1, 7))]
    monkeypatch.setattr(leaks_mod, "_native_pass", None)
    monkeypatch.setattr(leaks_mod, "WarmSet", None)  # the pure tracker's plain dict
    pure = _fold(events, 512, one_by_one=False)
    assert type(pure.insight.leaks.warm) is dict
    monkeypatch.setattr(leaks_mod, "_native_pass", NATIVE_LEAKS)
    monkeypatch.setattr(leaks_mod, "WarmSet", NATIVE_WARMSET)
    native = _fold(events, 512, one_by_one=False)
    assert _summary(native) == _summary(pure)
    assert set(native.insight.leaks.warm.keys()) == set(pure.insight.leaks.warm.keys())
    assert native.insight.leaks.warm  # what is left of the load (and the odd keys) is in the set
    if scenario != "llama-t3k":
        assert native.insight.leaks.rows()  # the scenario leaks: rows to compare


NATIVE_MOD = model_mod._native_mod
_PHASE_KEYS = [None, "", "x", 3, *list(Phase)[:3]]


@pytest.mark.skipif(NATIVE_MOD is None, reason="the compiled history module is not built")
@settings(max_examples=200, deadline=None)
@given(phs=st.lists(st.sampled_from(_PHASE_KEYS), max_size=30), named=st.sets(st.sampled_from(_PHASE_KEYS)))
def test_native_labels_equal_the_pure_ones(phs, named):
    """labels_of: the names of a batch's phases, or the KeyError the pure comprehension raises."""
    names = {ph: f"<{ph}>" for ph in named}

    def run(fn):
        try:
            return ("ok", fn(phs, names))
        except KeyError as exc:
            return ("KeyError", exc.args)

    assert run(NATIVE_MOD.labels_of) == run(model_mod._labels)


class _Kindish:
    def __init__(self, kind):
        self.kind = kind


@pytest.mark.skipif(NATIVE_MOD is None, reason="the compiled history module is not built")
@settings(max_examples=200, deadline=None)
@given(kinds=st.lists(st.sampled_from([EventKind.ALLOC, EventKind.FREE, EventKind.TOTALS, 10, 1, "x", None]),
                      max_size=12),
       wrap=st.lists(st.booleans(), min_size=12, max_size=12))
def test_native_has_kind_equals_the_pure_scan(kinds, wrap):
    """has_kind: Events (slots read directly) and other objects with a ``kind``; a plain 10 equals TOTALS."""
    evs = [Event(k, seq=1) if wrap[i] and isinstance(k, EventKind) else _Kindish(k) for i, k in enumerate(kinds)]
    for target in (EventKind.TOTALS, EventKind.ALLOC, 10):
        assert NATIVE_MOD.has_kind(evs, target) == model_mod._has_kind(evs, target)


@pytest.mark.skipif(NATIVE_MOD is None, reason="the compiled history module is not built")
@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 50), max_size=40, unique=True), keep=st.integers(-2, 45))
def test_native_trim_oldest_equals_the_pure_one(keys, keep):
    a = {k: [k] for k in keys}
    b = dict(a)
    NATIVE_MOD.trim_oldest(a, keep)
    model_mod._trim_oldest(b, keep)
    assert list(a.items()) == list(b.items())
