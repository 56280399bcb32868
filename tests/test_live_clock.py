"""The live view's clock: subscription heartbeats, the monitor clock mapped to the server's, /proc liveness."""

from __future__ import annotations

import struct

import anyio
from server_helpers import raw_connect, recv_exactly, running_server, short_socket

from tt_memtop.client import AllocationClient, subscribe
from tt_memtop.core import eventcodec as codec
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.model import MonitorState
from tt_memtop.core.phases import Phase, PhaseTracker
from tt_memtop.core.protocol import AllocMessage, BufferType, Layout, MsgType, encode
from tt_memtop.sources.base import EventBatch, Heartbeat
from tt_memtop.sources.liveness import ProcLiveness

NS = 1_000_000_000


def _records(sock, n: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(n):
        (length,) = struct.unpack("<I", recv_exactly(sock, 4))
        body = recv_exactly(sock, length)
        out.append((body[0], body[1:]))
    return out


async def test_a_quiet_subscription_carries_heartbeats_with_the_server_clock(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, heartbeat_s=0.05) as server:
        async with await AllocationClient.connect(path, Layout.V144) as c:
            await c.send(AllocMessage(type=MsgType.ALLOC, device_id=0, size=4096, buffer_type=0, process_id=9,
                                      buffer_id=1))
            await c.query(0)
        sock = raw_connect(path)
        try:
            sock.sendall(encode(AllocMessage(type=MsgType.SUBSCRIBE, process_id=1), Layout.V72))
            (hello, _), (snap, snap_body), *beats = await anyio.to_thread.run_sync(_records, sock, 4)
        finally:
            sock.close()
        assert (hello, snap) == (codec.RecordKind.HELLO, codec.RecordKind.SNAPSHOT)
        snap_ts = codec.decode_snapshot_body(snap_body).ts_ns
        assert [k for k, _ in beats] == [codec.RecordKind.HEARTBEAT] * 2
        (ts1, seq1), (ts2, seq2) = (codec.decode_heartbeat_body(b) for _, b in beats)
        assert snap_ts <= ts1 < ts2 and seq1 == seq2 == server.registry.seq == 1


async def test_the_client_yields_heartbeats_and_heartbeats_can_be_turned_off(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, heartbeat_s=0.05):
        got = []
        with anyio.move_on_after(2):
            async for item in subscribe(path):
                got.append(type(item).__name__)
                if got.count("Heartbeat") >= 2:
                    break
        assert got[0] == "Snapshot" and got.count("Heartbeat") >= 2
    path2 = short_socket(tmp_path, "t.sock")
    async with running_server(path2, heartbeat_s=0):
        got = []
        with anyio.move_on_after(0.4):
            async for item in subscribe(path2):
                got.append(type(item).__name__)
        assert got == ["Snapshot"]


def _state_with_a_load() -> MonitorState:
    st = MonitorState(phases=PhaseTracker())
    events = [Event(EventKind.ALLOC, seq=i + 1, ts_ns=i * 5_000_000, pid=7, device=0, buffer_type=int(BufferType.DRAM),
                    buffer_id=0x10000 + i * 0x1000, size=4 << 20) for i in range(20)]
    st.apply(EventBatch(events), local_ns=10 * NS)  # arrived at monitor time 10 s; last server ts 95 ms
    return st


def test_server_now_extrapolates_from_the_last_arrival_and_idle_shows_while_quiet():
    st = _state_with_a_load()
    assert st.server_now(10 * NS) == 95_000_000
    assert st.server_now(10 * NS + 400_000_000) == 495_000_000
    st.tick(st.server_now(10 * NS + 400_000_000))
    assert st.phases.phase(7) is Phase.IDLE  # no event came: the monitor's clock made it idle
    st.apply(Heartbeat(2 * NS, 20), local_ns=10 * NS + 500_000_000)  # the server's clock wins when it says so
    assert st.server_now(10 * NS + 600_000_000) == 2 * NS + 100_000_000


def test_without_a_clock_mapping_the_last_timestamp_is_now():
    st = MonitorState(phases=PhaseTracker())
    st.apply(EventBatch([Event(EventKind.ALLOC, seq=1, ts_ns=NS, pid=7, size=4 << 20)]))
    assert st.server_now(123 * NS) == NS


def test_liveness_exits_a_killed_process_before_the_server_cleans_up(tmp_path):
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    live = ProcLiveness(str(proc))
    st = _state_with_a_load()
    st.check_liveness(live.alive, NS)
    assert st.phases.phase(7) is Phase.LOADING and live.alive(8) is None  # never seen here: cannot tell
    (proc / "7").rmdir()
    st.check_liveness(live.alive, 2 * NS)
    assert st.phases.phase(7) is Phase.EXITED and st.phases.current(7).since_ns == 2 * NS
    assert "liveness" in st.phases.current(7).evidence
    st.apply(EventBatch([Event(EventKind.CLEANUP, seq=21, ts_ns=6 * NS, pid=7, device=0, buffer_id=0x10000,
                               size=4 << 20)]))
    assert st.phases.current(7).since_ns == 2 * NS  # the server's later cleanup changes nothing


def test_a_replay_is_not_judged_by_this_host_s_processes(tmp_path):
    from tt_memtop.sources.base import Capability

    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    live = ProcLiveness(str(proc))
    live.alive(7)
    (proc / "7").rmdir()
    st = _state_with_a_load()
    st.capabilities = frozenset({Capability.EVENTS, Capability.SEEK})
    st.check_liveness(live.alive, 2 * NS)
    assert st.phases.phase(7) is Phase.LOADING
    assert st.server_now(99 * NS) == st.last_ts_ns  # and its clock is the recording's
