"""Recording file and event codec: round trips, torn tails, `memtop serve --record`."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import running_server, short_socket

from tt_memtop.client import AllocationClient
from tt_memtop.core import eventcodec as codec
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.registry import Buffer
from tt_memtop.recording import RecordingError, RecordingReader, RecordingWriter, read_header, read_recording

events = st.builds(Event, st.sampled_from(list(EventKind)), seq=st.integers(0, 2**63), ts_ns=st.integers(0, 2**62),
                   pid=st.integers(-2**31, 2**31 - 1), device=st.integers(-1, 255), buffer_type=st.integers(0, 6),
                   buffer_id=st.integers(0, 2**64 - 1), size=st.integers(0, 2**64 - 1),
                   ref_count=st.integers(0, 2**32 - 1), name=st.text(max_size=20), stack_trace=st.text(max_size=30),
                   text=st.text(max_size=30))


@settings(max_examples=100, deadline=None)
@given(st.lists(events, max_size=20))
def test_event_codec_round_trip(evs):
    rec = codec.encode_events(evs)
    assert rec[0] == codec.RecordKind.EVENTS
    assert codec.decode_events_body(memoryview(rec)[1:]) == evs


def test_snapshot_codec_round_trip():
    bufs = [Buffer(0, 0x10, 1, 4096, 7, 2, 123, 5, "w", "trace"), Buffer(3, 2**64 - 1, 6, 1, 8, 1, 0, 9)]
    snap = codec.SnapshotRecord(9, 1234, Inventory.uniform(2, "grayskull"), {0: (1, [0, 4096, 0, 0, 0, 0, 0])}, bufs)
    rec = codec.encode_snapshot(snap)
    assert codec.decode_snapshot_body(memoryview(rec)[1:]) == snap
    with pytest.raises(codec.CodecError):
        codec.decode_snapshot_body(memoryview(rec)[1:-3])


def _evs(n: int, start: int = 1) -> list[Event]:
    return [Event(EventKind.ALLOC, seq=start + i, ts_ns=1000 + start + i, pid=1, buffer_id=start + i, size=64)
            for i in range(n)]


def test_recording_round_trip_and_torn_tail(tmp_path):
    path = str(tmp_path / "r.rec")
    with RecordingWriter(path, Inventory.uniform(3), socket_path="/s") as w:
        w.write_events(_evs(5))
        w.write_events(_evs(3, 6))
    hdr = read_header(path)
    assert hdr.socket_path == "/s" and len(hdr.inventory) == 3
    assert list(read_recording(path)) == _evs(8)
    full = open(path, "rb").read()
    for cut in (1, 7, 20):  # a crash in the middle of the last record
        open(path, "wb").write(full[:-cut])
        r = RecordingReader(path)
        assert list(r) == _evs(5) and r.torn_bytes > 0
    bad = bytearray(full)
    bad[-5] ^= 0xFF  # a flipped bit in the last record: its CRC fails, it is skipped
    open(path, "wb").write(bytes(bad))
    assert list(read_recording(path)) == _evs(5)
    open(path, "wb").write(b"not a recording")
    with pytest.raises(RecordingError):
        read_recording(path)


async def test_server_records_every_event(tmp_path):
    path = short_socket(tmp_path)
    rec = str(tmp_path / "s.rec")
    async with running_server(path, log=io.StringIO(), record=rec) as server:
        async with await AllocationClient.connect(path) as c:
            for i in range(20):
                await c.alloc(0, 100 + i, 0, i)
            await c.free(0, 3)
            await c.free(0, 999)
            await c.query(0)
        seq = server.registry.seq
    evs = list(read_recording(rec))
    assert [e.seq for e in evs] == list(range(1, seq + 1))
    assert evs[-1].kind == EventKind.FREE_UNKNOWN and all(e.ts_ns > 0 for e in evs)


def test_reader_streams_in_bounded_memory(tmp_path):
    """A big recording is read record by record: neither the first event nor the whole iteration holds
    the file in memory; a torn tail is still skipped."""
    import tracemalloc

    path = str(tmp_path / "big.rec")
    batch = [Event(EventKind.ALLOC, seq=i + 1, ts_ns=1000 + i, pid=1, buffer_id=i, size=64, name="w" * 100,
                   stack_trace="s" * 200) for i in range(500)]
    with RecordingWriter(path, Inventory.uniform(1)) as w:
        for _ in range(60):
            w.write_events(batch)
    size = len(open(path, "rb").read())
    assert size > 8 * 1024 * 1024
    with open(path, "ab") as f:
        f.write(b"\x10\x00\x00\x00torn")  # a record header whose body never made it to disk
    tracemalloc.start()
    try:
        reader = RecordingReader(path, chunk_size=64 * 1024)
        it = iter(reader)
        assert next(it) == batch[0]
        first_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        n = 1 + sum(1 for _ in it)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 60 * 500 and reader.torn_bytes == 8
    assert first_peak < size // 8, f"first event cost {first_peak:,} B of a {size:,} B file"
    assert peak < size // 8, f"iteration peaked at {peak:,} B for a {size:,} B file"
    assert list(RecordingReader(path))[-1] == batch[-1]  # a reader can be iterated again
