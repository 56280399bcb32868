"""Seeking a replay: read in slices off the UI's path, folded by each record's net effect.

A real Textual pilot over a recording that takes hundreds of slices to seek through: frames are
drawn and keys handled while it seeks, further seeks retarget it, Esc takes the player back to
where it was, and the state it lands on is the one a straight read gives (rows, totals, phases).
The net fold is checked against applying every event, on random event streams, for both tables.
"""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_streaming import straight_state, write_sessions

from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import new_state
from tt_memtop.core.registry import Registry
from tt_memtop.recording import RecordingReader
from tt_memtop.sources.base import Snapshot
from tt_memtop.sources.replay import ReplaySource
from tt_memtop.sources.timeline import RecordingTimeline as _RecordingTimeline
from tt_memtop.sources.timeline import fold_net
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.header_bar import HeaderBar

SIZE = (160, 45)
K = EventKind


# ------------------------------------------------------------------------------------------ the net fold
def _rows(reg: Registry) -> list[tuple]:
    return [(b.device, b.buffer_id, b.buffer_type, b.size, b.owner_pid, b.ref_count, b.alloc_ts_ns, b.alloc_seq,
             b.name) for b in reg.buffers()]


def _summary(reg: Registry) -> tuple:
    return (_rows(reg), {d: reg.device_totals(d) for d in reg.devices() if any(reg.device_totals(d))},
            {p: reg.pid_totals(p) for p in reg.pids()}, reg.seq, reg.unknown_frees, len(reg))


_event = st.tuples(st.sampled_from([K.ALLOC, K.ALLOC, K.FREE, K.FREE, K.REF_INC, K.REF_DEC, K.CLEANUP,
                                    K.FREE_UNKNOWN, K.TOTALS, K.PROCESS_EXIT]),
                   st.integers(0, 2),  # device
                   st.sampled_from([0, 1, 4, 5, 6]),  # buffer type (CB / KERNEL: their own id space)
                   st.integers(0, 5),  # buffer id: few, so that keys repeat within a batch
                   st.integers(1, 3),  # size (KiB)
                   st.integers(0, 4),  # ref count
                   st.sampled_from(["", "", "w"]))


@pytest.mark.parametrize("pure", [True, False])
@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(_event, max_size=40), max_size=8), data=st.data())
def test_the_net_fold_of_a_batch_gives_what_every_event_gives(pure, batches, data):
    straight, net = Registry(pure=pure), Registry(pure=pure)
    seq = 0
    sample_a: list[Event] = []
    sample_b: list[Event] = []
    for raw in batches:
        batch = []
        for kind, dev, bt, bid, kib, refs, name in raw:
            seq += data.draw(st.integers(0, 1))  # some events without a seq of their own (0)
            batch.append(Event(kind, seq=seq if seq else 0, ts_ns=seq * 10, pid=100 + dev, device=dev,
                               buffer_type=bt, buffer_id=bid, size=kib << 10, ref_count=refs, name=name))
        for ev in batch:
            straight.apply_event(ev)
            if ev.kind == K.TOTALS:
                sample_a = [ev] if ev.device == -1 else sample_a + [ev]
        out = fold_net(net, batch, None, sample_b)
        assert out is not None
        sample_b = out
        assert _summary(net) == _summary(straight)
        assert sample_b == sample_a


def test_the_net_fold_applies_nothing_past_its_time_limit():
    reg = Registry()
    batch = [Event(K.ALLOC, seq=1, ts_ns=10, pid=1, device=0, buffer_type=0, buffer_id=1, size=4, ref_count=1),
             Event(K.ALLOC, seq=2, ts_ns=30, pid=1, device=0, buffer_type=0, buffer_id=2, size=4, ref_count=1)]
    assert fold_net(reg, batch, 20, []) is None
    assert len(reg) == 0 and reg.seq == 0


# ------------------------------------------------------------------------------------------ timeline steps
@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("seek") / "run.ttrec")
    write_sessions(path, 40_000, sessions=3, weights=400)
    return path


def test_a_stepped_seek_is_consistent_between_steps_and_lands_where_a_straight_read_does(recording):
    tl = _RecordingTimeline(recording, checkpoint_every=2_000)
    target = tl.total * 2 // 3
    steps = list(tl.seek_steps(target, step=1_000))
    assert len(steps) > 50 and steps == sorted(steps) and steps[-1] == 1.0
    assert tl.pos == target
    assert (_state(tl), tl.registry.seq) == straight_state(recording, target)
    # a time seek: the quick scan's index estimates how far it has got
    seconds = 0.4 * tl.duration_s
    progress = list(tl.seek_time_steps(seconds, step=1_000))
    assert progress and all(0 <= p <= 0.99 for p in progress) and progress == sorted(progress)
    limit = tl.t0 + int(seconds * 1e9)
    upto = sum(1 for ev in RecordingReader(recording) if ev.ts_ns <= limit)
    assert tl.pos == upto and _state(tl) == straight_state(recording, upto)[0]
    assert abs(tl.events_until(seconds) - upto) < 0.05 * tl.total


def _state(tl) -> dict:
    return {(b.device, b.buffer_id, b.buffer_type): (b.size, b.owner_pid, b.ref_count) for b in tl.registry.buffers()}


def test_a_headless_replay_takes_no_checkpoints(recording):
    src = ReplaySource(recording, hold_at_end=False)
    src.no_seeking()
    src.seek(1.0)
    sent = []
    anyio.run(src.run, sent.append)
    assert src.timeline.ckpt.items == []
    resets = [u for u in sent if isinstance(u, Snapshot) and u.reset]
    assert len(resets) == 1
    assert {(b.device, b.buffer_id, b.buffer_type): (b.size, b.owner_pid, b.ref_count)
            for b in resets[0].buffers} == straight_state(recording)[0]
    # a player keeps them
    tl = _RecordingTimeline(recording, checkpoint_every=2_000)
    tl.seek(tl.total)
    assert len(tl.ckpt.items) > 3


# ------------------------------------------------------------------------------------------ the TUI
def _header(app: MemtopApp) -> str:
    return str(app.query_one(HeaderBar).render())


async def _until(pilot, cond, timeout: float = 60.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await pilot.pause(0.01)


def _slow_player(path: str) -> ReplaySource:
    """A player whose seeks take hundreds of slices of one record (256 events) each."""
    src = ReplaySource(path, paused=True, tick=0.01)
    src.seek_step, src.seek_slice_s, src.seek_pause_s = 200, 0.0, 0.01
    src.index_ahead = False  # no checkpoints ahead of the seek (see the indexer's own test)
    return src


async def test_the_screen_stays_live_while_a_seek_reads_and_the_state_is_the_straight_one(recording):
    app = MemtopApp(_slow_player(recording), clock=lambda: 0.0, state=new_state(), pane="processes")
    async with app.run_test(size=SIZE) as pilot:
        p = app.player
        await _until(pilot, lambda: p.length > 0 and app.frames > 0)
        for _ in range(9):  # 9 x +5 % at once (the key's action): the skips add up
            app.action_seek(1)
        await _until(pilot, lambda: p.seeking)
        frames = app.frames
        await _until(pilot, lambda: app.frames >= frames + 3)  # frames go on while it reads
        await _until(pilot, lambda: "seeking…" in _header(app))
        # keys are taken while it seeks (a pilot's press waits for the app to be idle: up to 1 s of it)
        handled: list[tuple[bool, float]] = []  # (seeking?, its target) when each key's action ran
        show_pane, seek = app.action_show_pane, app.action_seek
        app.action_show_pane = lambda pane: (handled.append((p.seeking, 0.0)), show_pane(pane))
        app.action_seek = lambda d: (handled.append((p.seeking, p.seek_target_s)), seek(d))
        await pilot.press("3")
        await _until(pilot, lambda: app.pane == "buffers")
        await pilot.press("right_square_bracket")  # another +5 %: the seek in progress goes on further
        await _until(pilot, lambda: len(handled) == 2)
        assert handled[0][0] and handled[1][0], f"the seek ended before the keys were handled: {handled}"
        assert abs(handled[1][1] - 0.45 * p.duration_s) < 1e-6  # then moved on by 5 %
        await _until(pilot, lambda: not p.seeking and not app._pending)
        await pilot.pause(0.05)
        assert abs(p.position_s - 0.5 * p.duration_s) < 1e-6
        limit = p.timeline.t0 + int(p.position_s * 1e9)
        upto = sum(1 for ev in RecordingReader(recording) if ev.ts_ns <= limit)
        assert p.position == upto
        expected, seq = straight_state(recording, upto)
        got = {(b.device, b.buffer_id, b.buffer_type): (b.size, b.owner_pid, b.ref_count)
               for b in app.state.registry.buffers()}
        assert got == expected and app.state.registry.seq == seq
        # totals and phases as a state built from the straight read
        ref = new_state()
        reg = Registry()
        for i, ev in enumerate(RecordingReader(recording)):
            if i >= upto:
                break
            reg.apply_event(ev)
        ref.apply(Snapshot(reg.snapshot(), reg.seq, p.timeline.t0 + int(p.position_s * 1e9),
                           p.timeline.inventory(), reset=True))
        for d in ref.registry.devices():
            assert app.state.registry.device_totals(d) == ref.registry.device_totals(d)
        assert ({pid: str(ps.phase) for pid, ps in app.state.phases.processes().items()}
                == {pid: str(ps.phase) for pid, ps in ref.phases.processes().items()})
        assert "seeking" not in _header(app)


async def test_esc_during_a_seek_goes_back_to_where_the_player_was(recording):
    app = MemtopApp(_slow_player(recording), clock=lambda: 0.0, state=new_state(), pane="feed")
    async with app.run_test(size=SIZE) as pilot:
        p = app.player
        await _until(pilot, lambda: p.length > 0)
        p.step_events(300)
        await _until(pilot, lambda: p.position >= 300 and not app._pending)
        before = (p.position, p.position_s, app.state.events_total, len(app.state.registry))
        await pilot.press("right_curly_bracket")  # to the end
        await _until(pilot, lambda: p.seeking and p.timeline.pos > before[0] + 2_000)
        assert p.position == before[0]  # the screen's position until the seek lands
        await pilot.press("escape")
        await _until(pilot, lambda: not p.seeking and not app._pending)
        await pilot.pause(0.05)
        assert (p.position, p.position_s, app.state.events_total, len(app.state.registry)) == before
        assert p.timeline.pos == before[0] and _state(p.timeline) == straight_state(recording, before[0])[0]
        p.step_events(5)  # and it plays on from there
        await _until(pilot, lambda: p.position == before[0] + 5 and not app._pending)
        assert app.state.events_total == before[2] + 5


async def test_an_idle_player_reads_ahead_so_a_first_seek_starts_near_its_target(recording):
    src = ReplaySource(recording, paused=True, tick=0.01)
    sent = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, sent.append)
        with anyio.fail_after(60):
            while src.indexed < 1.0:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert src.position == 0 and src.paused  # reading ahead moved nothing on screen
    tl = src.timeline
    assert len(tl.ckpt.items) > 3 and tl.ckpt.items[-1][0] > tl.total // 2
    fresh = _RecordingTimeline(recording)
    seconds = 0.7 * tl.duration_s
    cold = len(list(fresh.seek_time_steps(seconds, step=1_000)))
    warm = len(list(tl.seek_time_steps(seconds, step=1_000)))
    assert warm * 3 < cold, (warm, cold)
    assert tl.pos == fresh.pos and _state(tl) == _state(fresh) == straight_state(recording, tl.pos)[0]
