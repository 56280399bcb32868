"""EVENTS record bodies decoded all at once: the compiled decoder (tt_memtop/_native/events.c) and the
pure-Python one give the same events and the same errors, for well-formed and arbitrary bytes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tt_memtop._native import load
from tt_memtop.core import eventcodec as codec
from tt_memtop.core.events import Event, EventKind

NATIVE = codec._native_decoder()
DECODERS = [pytest.param(codec.pure_decode_events_body, id="pure")]
DECODERS.append(pytest.param(NATIVE, id="native", marks=pytest.mark.skipif(NATIVE is None, reason="not built")))


def _events() -> list[Event]:
    return [
        Event(EventKind.ALLOC, seq=1, ts_ns=-5, pid=123, device=7, buffer_type=6, buffer_id=2**64 - 1, size=2**63,
              ref_count=2**32 - 1),
        Event(EventKind.FREE, seq=2**64 - 1, ts_ns=2**63 - 1, pid=-1, device=-1, buffer_type=0, buffer_id=0, size=0),
        Event(EventKind.ALLOC, seq=3, ts_ns=9, pid=1, device=0, buffer_type=1, buffer_id=0x40000, size=4096,
              ref_count=1, name="weights.é", stack_trace="a\nb"),
        Event(EventKind.BAD_FRAME, seq=4, ts_ns=10, pid=2, device=999, buffer_type=200, text="bad \u2603 bytes"),
        Event(EventKind.PROCESS_EXIT, seq=5, ts_ns=11, pid=3, size=1 << 40, ref_count=256),
    ]


def _body(events: list[Event]) -> bytes:
    return codec.encode_events(events)[1:]


def _outcome(decode, body):
    try:
        return decode(body)
    except codec.CodecError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("decode", DECODERS)
def test_round_trip_every_field(decode):
    evs = _events()
    got = decode(memoryview(_body(evs)))
    assert got == evs
    assert [type(e) for e in got] == [Event] * len(evs)
    assert got[0].kind is EventKind.ALLOC and got[2].name == "weights.é" and got[3].text == "bad \u2603 bytes"
    assert decode(b"\x00" * 4) == []
    assert decode(b"pad" + _body(evs), 3) == evs  # an offset into the buffer


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("body, message", [
    (b"\x01\x00", "record truncated: need 4 bytes at offset 0, have 2"),
    (struct.pack("<I", 2) + codec.EVENT.pack(1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0),
     "record truncated: need 52 bytes at offset 56, have 0"),
    (struct.pack("<I", 1) + codec.EVENT.pack(1, 1, 99, 1, 0, 0, 1, 1, 1, 0, 0, 0), "unknown event kind 99"),
    (struct.pack("<I", 1) + codec.EVENT.pack(1, 1, 1, 1, 0, 7, 1, 1, 1, 0, 0, 0),
     "ALLOC event with buffer_type 7 on device 0 (expected buffer_type 0..6, device -1..255)"),
    (struct.pack("<I", 1) + codec.EVENT.pack(1, 1, 4, 1, 256, 0, 1, 1, 1, 0, 0, 0),
     "FREE event with buffer_type 0 on device 256 (expected buffer_type 0..6, device -1..255)"),
    (struct.pack("<I", 1) + codec.EVENT.pack(1, 1, 1, 1, 0, 0, 1, 1, 1, 3, 0, 0) + b"ab",
     "string runs past the end of the record"),
])
def test_malformed_bodies_are_one_codec_error(decode, body, message):
    with pytest.raises(codec.CodecError) as exc:
        decode(body)
    assert str(exc.value) == message


@pytest.mark.skipif(NATIVE is None, reason="the compiled decoder is not built")
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 5))
def test_native_matches_pure_on_any_bytes(data, n):
    body = struct.pack("<I", n) + data
    assert _outcome(NATIVE, body) == _outcome(codec.pure_decode_events_body, body)


@pytest.mark.skipif(NATIVE is None, reason="the compiled decoder is not built")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([int(k) for k in EventKind]), st.integers(-2, 300), st.integers(0, 9),
                          st.text(max_size=5), st.integers(0, 2**64 - 1)), max_size=8),
       st.integers(0, 60))
def test_native_matches_pure_on_mutated_records(rows, cut):
    evs = [Event(EventKind(k), seq=i, ts_ns=i * 7, pid=i, device=d, buffer_type=t, buffer_id=bid, size=i, name=nm)
           for i, (k, d, t, nm, bid) in enumerate(rows)]
    body = _body(evs)
    for b in (body, body[:max(0, len(body) - cut)], body[:4] + bytes([cut]) + body[5:] if len(body) > 5 else body):
        assert _outcome(NATIVE, b) == _outcome(codec.pure_decode_events_body, b)


def test_pure_python_switch_in_a_real_subprocess():
    """MEMTOP_PURE_PYTHON=1: the module-level decoder is the pure one, and it decodes the same events."""
    code = ("import sys; from tt_memtop.core import eventcodec as c; from tt_memtop._native import load;"
            "assert load('events') is None; assert c.decode_events_body is c.pure_decode_events_body;"
            "body = sys.stdin.buffer.read(); print(len(c.decode_events_body(body)))")
    env = {**os.environ, "MEMTOP_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], input=_body(_events()), capture_output=True, env=env,
                         timeout=60, check=True)
    assert out.stdout.strip() == b"5"
    if load("events") is not None:  # and without the switch the compiled one is used
        code2 = "from tt_memtop.core import eventcodec as c; print(c.decode_events_body is c.pure_decode_events_body)"
        env.pop("MEMTOP_PURE_PYTHON")
        out = subprocess.run([sys.executable, "-c", code2], capture_output=True, env=env, timeout=60, check=True)
        assert out.stdout.strip() == b"False"
