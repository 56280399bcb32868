"""FrameReader: whole frames, layout detection, garbage resynchronisation, never raising.

Every test runs twice: with the compiled whole-chunk decoder (tt_memtop/_native/wire.c) and with
the pure-Python one (skipped where the extension is not built).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop import _native
from tt_memtop.core.protocol import LAYOUT_SIZES, AllocMessage, Layout, MsgType, encode, header_plausible
from tt_memtop.server import framing
from tt_memtop.server.framing import FrameReader


@pytest.fixture(autouse=True, params=["native", "pure"])
def wire_impl(request, monkeypatch):
    """framing.WIRE as each implementation (FrameReader reads it when it is made)."""
    mod = None
    if request.param == "native":
        mod = _native.load("wire")
        if mod is None:
            pytest.skip("tt_memtop._native.wire is not built (or MEMTOP_PURE_PYTHON is set)")
    monkeypatch.setattr(framing, "WIRE", mod)
    return request.param

ALLOC = AllocMessage(type=MsgType.ALLOC, device_id=1, size=4096, buffer_type=1, process_id=42, buffer_id=0x1000)


def test_auto_detects_every_layout_from_two_frames():
    for size in LAYOUT_SIZES:
        fr = FrameReader()
        res = fr.feed(encode(ALLOC, size) * 2)
        # the second frame is whole but the detection needs a byte past it... or idle
        assert fr.layout == size or res.messages == []
        res2 = fr.on_idle()
        assert fr.layout == size
        assert len(res.messages) + len(res2.messages) == 2
        assert (res.messages + res2.messages)[0] == ALLOC


def test_byte_by_byte_feeding_gives_the_same_messages():
    data = encode(ALLOC, 144) * 3
    fr = FrameReader()
    msgs = []
    for i in range(len(data)):
        msgs += fr.feed(data[i:i + 1]).messages
    msgs += fr.on_eof().messages
    assert msgs == [ALLOC] * 3 and fr.layout == Layout.V144


def test_never_processes_a_short_frame():
    fr = FrameReader(Layout.V144)
    data = encode(ALLOC, 144)
    assert fr.feed(data[:100]).messages == []
    assert fr.on_idle().messages == []
    assert fr.feed(data[100:]).messages == [ALLOC]


def test_lone_72_byte_dump_auto_and_forced():
    dump = encode(AllocMessage(type=MsgType.DUMP_REMAINING), 72)
    fr = FrameReader()
    assert fr.feed(dump).messages == []
    assert [m.type for m in fr.on_idle().messages] == [MsgType.DUMP_REMAINING]
    fr = FrameReader(Layout.V144)
    assert fr.feed(dump).messages == []
    assert [m.type for m in fr.on_idle().messages] == [MsgType.DUMP_REMAINING]  # as the original: alone in its read
    fr = FrameReader(Layout.V144)
    assert fr.feed(dump).messages == []
    assert [m.type for m in fr.on_eof().messages] == [MsgType.DUMP_REMAINING]


def test_lone_extension_frame_on_forced_layout_when_idle():
    fr = FrameReader(Layout.V144)
    fr.feed(encode(AllocMessage(type=MsgType.SUBSCRIBE), 72))
    assert [m.type for m in fr.on_idle().messages] == [MsgType.SUBSCRIBE]


def test_garbage_is_reported_with_a_reason_and_skipped():
    fr = FrameReader()
    res = fr.feed(b"\xc8" * 13 + encode(ALLOC, 72) * 2)
    more = fr.feed(b"\x01\x07\x07\x07" + encode(ALLOC, 72))  # after detection: garbage mid-stream
    res.messages += more.messages + fr.on_eof().messages
    res.bad += more.bad
    assert res.messages == [ALLOC] * 3
    assert res.bad[0].reason == "unknown message type 200" and res.bad[0].nbytes == 13 and res.bad[0].offset == 0
    assert res.bad[1].reason.startswith("non-zero padding") and res.bad[1].offset == 13 + 144


def test_too_much_garbage_closes_with_a_message():
    fr = FrameReader(Layout.V72, max_bad_bytes=100)
    res = fr.feed(bytes(range(200, 256)) * 4)
    assert res.close and "protocol mismatch" in res.close
    assert fr.feed(encode(ALLOC, 72)).close == res.close


def test_nonzero_pad3_in_v144_is_a_bad_frame():
    raw = bytearray(encode(ALLOC, 144))
    raw[141] = 9
    fr = FrameReader(Layout.V144)
    res = fr.feed(bytes(raw) + encode(ALLOC, 144))
    assert res.messages == [ALLOC]
    assert res.bad and "padding" in res.bad[0].reason


def test_truncated_tail_at_eof():
    fr = FrameReader(Layout.V112)
    fr.feed(encode(ALLOC, 112) + encode(ALLOC, 112)[:50])
    res = fr.on_eof()
    assert res.bad and res.bad[0].reason.startswith("truncated message: 50 bytes")


messages = st.builds(AllocMessage, type=st.sampled_from([1, 2, 3, 5, 6, 8, 9, 10, 11]),
                     device_id=st.integers(-1, 63), size=st.integers(0, 2**40), buffer_type=st.integers(0, 4),
                     process_id=st.integers(0, 2**31 - 1), buffer_id=st.integers(0, 2**64 - 1))


@settings(max_examples=150, deadline=None)
@given(layout=st.sampled_from([None, *LAYOUT_SIZES]), data=st.binary(max_size=3000),
       cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_fuzz_never_raises(layout, data, cuts):
    fr = FrameReader(layout, max_bad_bytes=1000)
    pieces = [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=False)]
    for p in pieces:
        res = fr.feed(p)
        for m in res.messages:
            assert m.type in {int(t) for t in MsgType}
        fr.on_idle()
    fr.on_eof()


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from(LAYOUT_SIZES), msgs=st.lists(messages, min_size=1, max_size=12),
       junk=st.binary(min_size=1, max_size=40), cut=st.integers(0, 5000))
def test_fuzz_valid_streams_survive_garbage_in_front(size, msgs, junk, cut):
    junk = bytes(b for b in junk if b not in {int(t) for t in MsgType}) or b"\xff"
    stream = junk + b"".join(encode(m, size) for m in msgs)
    fr = FrameReader(size)
    cut = min(cut, len(stream))
    got = fr.feed(stream[:cut]).messages + fr.feed(stream[cut:]).messages + fr.on_eof().messages
    assert got == msgs
    assert header_plausible(encode(msgs[0], size))


# --- issue 8.13: once the layout is known, a frame is a frame ------------------------------------------------


def _alloc(i: int) -> AllocMessage:
    return ALLOC.with_(buffer_id=0x1000 + i)


def test_layout_switch_mid_stream_loses_nothing():
    """144 -> 72 on one connection: every ALLOC arrives (it used to merge them in pairs: 5 of 10 lost)."""
    fr = FrameReader()
    first = b"".join(encode(_alloc(i), 144) for i in range(3))
    then = b"".join(encode(_alloc(i), 72) for i in range(3, 13))
    got = fr.feed(first).messages
    assert fr.layout == Layout.V144
    got += fr.feed(then).messages + fr.on_idle().messages + fr.on_eof().messages
    assert [m.buffer_id for m in got] == [0x1000 + i for i in range(13)]


def test_bad_padding_drops_one_frame_not_the_next():
    """A frame with non-zero pad1 on a known layout is one bad frame; the QUERY after it is still taken."""
    for size in (72, 112, 144):
        good = encode(_alloc(1), size)
        bad = bytearray(encode(_alloc(2).with_(device_id=3), size))
        bad[2] = 1  # a pad byte
        query = encode(AllocMessage(type=MsgType.QUERY, device_id=0), size)
        fr = FrameReader()
        res = fr.feed(good + good + good[:1])
        res = fr.feed(good[1:] + bytes(bad) + query)
        res.messages += fr.on_idle().messages
        assert [m.type for m in res.messages] == [MsgType.ALLOC, MsgType.QUERY], size
        assert len(res.bad) == 1 and res.bad[0].nbytes == size and res.bad[0].offset == 3 * size
        assert "padding" in res.bad[0].reason


def test_unknown_type_frame_on_known_layout_is_exactly_one_frame():
    fr = FrameReader(Layout.V112)
    weird = encode(_alloc(0), 112)
    weird = b"\x2a" + weird[1:]
    res = fr.feed(encode(_alloc(1), 112) + weird + encode(_alloc(2), 112))
    assert [m.buffer_id for m in res.messages] == [0x1001, 0x1002]
    assert [(b.reason, b.nbytes) for b in res.bad] == [("unknown message type 42", 112)]


def test_forced_layout_takes_smaller_clients_frames_whole():
    """--protocol 144 with a 72-byte and a 112-byte client: no merged pairs, lone QUERY answered (issue 9.5)."""
    for big, small in ((144, 72), (144, 112), (112, 72)):
        fr = FrameReader(big)
        stream = b"".join(encode(_alloc(i), small) for i in range(7))
        got = []
        for i in range(0, len(stream), 50):  # arbitrary read boundaries
            got += fr.feed(stream[i:i + 50]).messages
        got += fr.on_idle().messages
        assert [m.buffer_id for m in got] == [0x1000 + i for i in range(7)], (big, small)
        q = fr.feed(encode(AllocMessage(type=MsgType.QUERY, device_id=1), small))
        idle = fr.on_idle()
        assert q.messages == [] and [m.type for m in idle.messages] == [MsgType.QUERY] and idle.layouts == [small]
