"""Follow and replay sources on real files: truncation, rotation, partial lines, pause/step/seek, recordings."""

from __future__ import annotations

import os

import anyio
import pytest
from session_72byte import SESSION_LOG

from tt_memtop.core import logformat as lf
from tt_memtop.core.devices import Inventory
from tt_memtop.core.model import MonitorState
from tt_memtop.core.protocol import AllocMessage, MsgType
from tt_memtop.core.registry import Registry
from tt_memtop.sources.base import Capability, Snapshot, Status
from tt_memtop.sources.follow import FollowLogSource
from tt_memtop.sources.logfile import read_line_chunks
from tt_memtop.sources.replay import ReplaySource
from tt_memtop.sources.timeline import Checkpoints as _Checkpoints

WAIT = 10.0  # generous upper bound; the conditions are normally met in milliseconds


async def until(cond, what: str) -> None:
    with anyio.fail_after(WAIT):
        while not cond():
            await anyio.sleep(0.01)


def alloc(pid: int, dev: int, bid: int, size: int = 4096, bt: int = 1) -> str:
    return lf.alloc_line(pid, size, bt, dev, bid)


def ids(state: MonitorState) -> set[tuple[int, int]]:
    return {(b.device, b.buffer_id) for b in state.registry.buffers()}


def test_read_line_chunks_splits_and_keeps_offsets(tmp_path):
    p = tmp_path / "x.log"
    p.write_bytes(b"a\r\nbb\n" + b"c" * 10 + b"\nlast")
    with open(p, "rb") as f:
        chunks = list(read_line_chunks(f, chunk_size=4))
    assert [ln for lines, _ in chunks for ln in lines] == [b"a", b"bb", b"c" * 10, b"last"]
    assert chunks[-1][1] == p.stat().st_size


# ---------------------------------------------------------------------------------------- follow
async def test_follow_rebuilds_then_follows_with_partial_lines(tmp_path):
    p = tmp_path / "server.log"
    p.write_text(SESSION_LOG.read_text())
    state = MonitorState()
    src = FollowLogSource(str(p), poll_interval=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, state.apply)
        await until(lambda: state.status.state == "connected", "caught up")
        assert len(state.registry) == 16 and Capability.EVENTS in state.capabilities
        with open(p, "a") as f:
            f.write(alloc(8174, 7, 0x77) + "\n" + alloc(8174, 7, 0x78)[:20])  # the second line is unfinished
            f.flush()
            await until(lambda: (7, 0x77) in ids(state), "appended line")
            assert (7, 0x78) not in ids(state)
            f.write(alloc(8174, 7, 0x78)[20:] + "\n")
        await until(lambda: (7, 0x78) in ids(state), "completed line")
        assert state.gaps == 0
        tg.cancel_scope.cancel()


async def test_follow_truncation_and_rotation(tmp_path):
    p = tmp_path / "server.log"
    p.write_text("\n".join([*lf.start_banner("/tmp/s"), alloc(1, 0, 0x10), alloc(1, 0, 0x20)]) + "\n")
    state = MonitorState()
    statuses: list[str] = []

    def emit(u):
        state.apply(u)
        if isinstance(u, Status):
            statuses.append(u.message)

    src = FollowLogSource(str(p), poll_interval=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, emit)
        await until(lambda: ids(state) == {(0, 0x10), (0, 0x20)}, "initial")
        # truncation: a restarted server rewrites the file (its banner resets the state)
        p.write_text("\n".join([*lf.start_banner("/tmp/s"), alloc(2, 1, 0x30)]) + "\n")
        await until(lambda: ids(state) == {(1, 0x30)}, "after truncation")
        assert any("truncated" in m for m in statuses)
        # rotation: the old file is renamed (a last line lands in it), a new file takes the path
        with open(p, "a") as f:
            f.write(alloc(2, 1, 0x31) + "\n")
        os.rename(p, tmp_path / "server.log.1")
        p.write_text(alloc(2, 1, 0x40) + "\n")
        await until(lambda: ids(state) == {(1, 0x30), (1, 0x31), (1, 0x40)}, "after rotation")
        assert any("rotated" in m for m in statuses)
        state.registry.check_invariants()
        tg.cancel_scope.cancel()


async def test_follow_waits_for_the_file(tmp_path):
    p = tmp_path / "later.log"
    state = MonitorState()
    async with anyio.create_task_group() as tg:
        tg.start_soon(FollowLogSource(str(p), poll_interval=0.01).run, state.apply)
        await until(lambda: state.status.state == "connecting", "waiting")
        p.write_text(alloc(3, 0, 0x1) + "\n")
        await until(lambda: ids(state) == {(0, 0x1)}, "file appeared")
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------- replay of logs
async def test_replay_to_the_end():
    state = MonitorState()
    src = ReplaySource(str(SESSION_LOG), rate=1e6, hold_at_end=False)
    await src.run(state.apply)
    assert state.status.state == "ended" and len(state.registry) == 16 and state.gaps == 0
    assert Capability.SEEK in state.capabilities


async def test_replay_controls_pause_step_seek_speed():
    state = MonitorState()
    snaps: list[Snapshot] = []

    def emit(u):
        state.apply(u)
        if isinstance(u, Snapshot):
            snaps.append(u)

    src = ReplaySource(str(SESSION_LOG), rate=10.0, paused=True, tick=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, emit)
        await until(lambda: state.status.state == "paused", "paused")
        src.step(5)  # the 4 banner lines and the first allocation
        await until(lambda: src.timeline.pos == 5, "stepped")
        assert ids(state) == {(0, 455294688)}
        src.seek(1.0)
        await until(lambda: state.status.state == "ended", "seek to end")
        assert len(snaps[-1].buffers) == 16 and len(state.registry) == 16
        src.seek(seconds=0.0)
        await until(lambda: src.timeline.pos == 0 and len(state.registry) == 0, "seek back to start")
        src.set_speed(1000.0)
        src.resume()
        await until(lambda: state.status.state == "ended", "played at high speed")
        assert len(state.registry) == 16 and src.paused is False
        tg.cancel_scope.cancel()


def test_checkpoints_stay_bounded():
    ck = _Checkpoints(interval=10, limit=8)
    for pos in range(0, 10_000, 10):
        if ck.due(pos):
            ck.add(pos, pos)
    assert len(ck.items) <= 8 and ck.interval > 10
    assert ck.best(5000)[0] <= 5000 and ck.best(-1) is None


async def test_replay_seek_uses_checkpoints_on_a_long_log(tmp_path):
    p = tmp_path / "long.log"
    lines = []
    for i in range(30_000):
        lines.append(alloc(1, i % 4, 0x1000 + i))
        if i % 3:
            lines.append(lf.free_line(1, 0x1000 + i, i % 4, 4096, 0))
    p.write_text("\n".join(lines) + "\n")
    src = ReplaySource(str(p), rate=1000.0, checkpoint_every=1000)
    tl = src.timeline
    tl.seek(tl.total)
    end_state = {(b.device, b.buffer_id) for b in tl.parser.live_buffers()}
    assert len(end_state) == 10_000 and len(tl.ckpt.items) <= tl.ckpt.limit
    tl.seek(tl.total // 2)
    half = {(b.device, b.buffer_id) for b in tl.parser.live_buffers()}
    tl.seek(tl.total)
    assert {(b.device, b.buffer_id) for b in tl.parser.live_buffers()} == end_state
    fresh = ReplaySource(str(p), rate=1000.0).timeline
    fresh.seek(tl.total // 2)
    assert {(b.device, b.buffer_id) for b in fresh.parser.live_buffers()} == half
    tl.close()
    fresh.close()


# ---------------------------------------------------------------------------------------- replay of recordings
@pytest.fixture
def recording(tmp_path):
    from tt_memtop.recording import RecordingWriter

    path = str(tmp_path / "run.rec")
    reg = Registry()
    with RecordingWriter(path, Inventory.uniform(2)) as w:
        t = 1_000_000_000
        for i in range(50):
            t += 10_000_000
            w.write_events([reg.apply(AllocMessage(MsgType.ALLOC, device_id=i % 2, size=4096, buffer_type=1,
                                                   process_id=5, buffer_id=0x100 + i), t)])
        for i in range(0, 50, 2):
            t += 10_000_000
            w.write_events([reg.apply(AllocMessage(MsgType.FREE, device_id=i % 2, buffer_id=0x100 + i,
                                                   process_id=5), t)])
    return path, reg


async def test_replay_recording_with_timestamps(recording):
    path, server = recording
    state = MonitorState()
    src = ReplaySource(path, speed=100.0, tick=0.01, hold_at_end=False)
    assert src.recording and abs(src.duration_s - 0.74) < 1e-9
    await src.run(state.apply)
    assert {(b.device, b.buffer_id) for b in state.registry.buffers()} == \
        {(b.device, b.buffer_id) for b in server.buffers()}
    assert len(state.inventory) == 2 and state.gaps == 0


async def test_replay_recording_seek_back(recording):
    path, server = recording
    state = MonitorState()
    src = ReplaySource(path, paused=True, tick=0.01, checkpoint_every=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, state.apply)
        src.seek(1.0)
        await until(lambda: len(state.registry) == 25, "end")
        src.seek(seconds=0.1)  # the allocations at 0, 10, ..., 100 ms
        await until(lambda: len(state.registry) == 11, "seek back")
        src.step(3)
        await until(lambda: len(state.registry) == 14, "stepped")
        tg.cancel_scope.cancel()


async def test_replay_seeks_send_reset_snapshots_skips_add_up_and_steps_count_events(recording):
    state = MonitorState()
    snaps: list[Snapshot] = []
    batches: list[int] = []

    def emit(u):
        state.apply(u)
        if isinstance(u, Snapshot):
            snaps.append(u)
        elif hasattr(u, "events"):
            batches.append(len(u.events))

    src = ReplaySource(str(SESSION_LOG), rate=10.0, paused=True, tick=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, emit)
        await until(lambda: state.status.state == "paused", "paused")
        src.skip(2.0)
        src.skip(1.0)  # queued together: 3 s = 30 lines
        await until(lambda: src.position == 30, "skipped")
        assert snaps[-1].reset and src.position_s == 3.0
        src.step_events(2)  # line 31 ("Removed 2 buffers") brings 2 cleanups and the process exit: 2 now
        await until(lambda: sum(batches) == 2, "stepped")
        assert src.paused and batches == [2] and src.position == 31
        src.step_events(1)  # the exit, from the same line
        await until(lambda: sum(batches) == 3, "stepped again")
        assert src.position == 31 and 8216 in state.exited
        src.step_events(1)  # 50+ lines without events (the dump's table) are passed over, up to its DUMP
        await until(lambda: sum(batches) == 4, "stepped over lines without events")
        assert batches == [2, 1, 1] and src.position == 85
        src.seek(1.0)
        await until(lambda: src.at_end, "end")
        src.toggle()  # at the end: play again from the start
        await until(lambda: not src.paused and snaps[-1].reset and snaps[-1].buffers == [], "restarted")
        tg.cancel_scope.cancel()

    path, _ = recording
    state = MonitorState()
    src = ReplaySource(path, paused=True, tick=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, state.apply)
        src.seek(1.0)
        await until(lambda: len(state.registry) == 25, "end")
        src.seek(0.0)  # the very start, before the first event
        await until(lambda: src.position == 0 and len(state.registry) == 0, "start")
        tg.cancel_scope.cancel()
