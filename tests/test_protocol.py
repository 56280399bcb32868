"""The wire codec against offsets written out independently from PROTOCOL.md §2."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tt_memtop.core.protocol import (
    AllocMessage,
    BufferType,
    DecodeError,
    Layout,
    MsgType,
    decode,
    encode,
    header_plausible,
    validate,
)

# Independent formats, straight from the tables in PROTOCOL.md §2 (not from our module).
FORMATS = {
    72: "<B3xiQB3xiQQ4Q",
    112: "<B3xiQB3xiQQ4Q2Q6I",
    128: "<B3xiQB3xiQQ6Q2Q6I",
    144: "<B3xiQB3xiQQ6Q2Q6I4I",
    648: "<B3xiQB3xiQQ4Q64s512s",
}


@pytest.mark.parametrize("size,fmt", FORMATS.items())
def test_layout_sizes(size, fmt):
    assert struct.calcsize(fmt) == size
    assert len(encode(AllocMessage(type=1), size)) == size


def test_header_offsets_v72():
    msg = AllocMessage(type=MsgType.ALLOC, device_id=3, size=12_503_040, buffer_type=BufferType.TRACE,
                       process_id=919068, buffer_id=0x3E363C80, timestamp=123456789)
    raw = encode(msg, 72)
    assert raw[0] == 1
    assert raw[1:4] == b"\0\0\0"
    assert struct.unpack_from("<i", raw, 4)[0] == 3
    assert struct.unpack_from("<Q", raw, 8)[0] == 12_503_040
    assert raw[16] == 4
    assert struct.unpack_from("<i", raw, 20)[0] == 919068
    assert struct.unpack_from("<Q", raw, 24)[0] == 1043741824
    assert struct.unpack_from("<Q", raw, 32)[0] == 123456789


def test_v144_offsets():
    msg = AllocMessage(type=MsgType.RESPONSE, device_id=7, dram_allocated=1, l1_allocated=2, l1_small_allocated=3,
                       trace_allocated=4, cb_allocated=5, kernel_allocated=6, total_dram_size=7, total_l1_size=8,
                       arch_type=2, num_dram_channels=12, dram_size_per_channel=1 << 30, l1_size_per_core=1_499_136,
                       is_available=1, num_devices=8)
    raw = encode(msg, 144)
    q = lambda off: struct.unpack_from("<Q", raw, off)[0]  # noqa: E731
    i = lambda off: struct.unpack_from("<I", raw, off)[0]  # noqa: E731
    assert [q(o) for o in (40, 48, 56, 64, 72, 80, 88, 96)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [i(o) for o in (104, 108, 112, 116, 120, 124, 128, 132, 136, 140)] == [
        2, 12, 1 << 30, 1_499_136, 1, 8, 0, 0, 0, 0]


def test_v112_and_v128_device_info_offsets():
    msg = AllocMessage(type=MsgType.DEVICE_INFO_RESPONSE, total_dram_size=12 << 30, total_l1_size=179_896_320,
                       arch_type=2, num_dram_channels=12, dram_size_per_channel=1 << 30, l1_size_per_core=1_499_136,
                       is_available=1, num_devices=32, cb_allocated=99, kernel_allocated=98)
    r112 = encode(msg, 112)
    assert struct.unpack_from("<QQ6I", r112, 72) == (12 << 30, 179_896_320, 2, 12, 1 << 30, 1_499_136, 1, 32)
    r128 = encode(msg, 128)
    assert struct.unpack_from("<QQ", r128, 72) == (99, 98)
    assert struct.unpack_from("<QQ6I", r128, 88) == (12 << 30, 179_896_320, 2, 12, 1 << 30, 1_499_136, 1, 32)


def test_v648_strings():
    msg = AllocMessage(type=1, size=10, buffer_name="model_weights_shard_0", stack_trace="a\nb")
    raw = encode(msg, 648)
    assert raw[72:72 + 21] == b"model_weights_shard_0" and raw[72 + 21] == 0
    assert raw[136:139] == b"a\nb"
    back = decode(raw, 648)
    assert back.buffer_name == "model_weights_shard_0" and back.stack_trace == "a\nb"


@pytest.mark.parametrize("size", list(FORMATS))
def test_decode_independent_bytes(size):
    vals = [1, 2, 4096, 1, 77, 0xABC, 5] + [0] * (len(struct.unpack(FORMATS[size], bytes(size))) - 7)
    if size == 648:
        vals[-2:] = [b"name", b"trace"]
    raw = struct.pack(FORMATS[size], *vals)
    m = decode(raw, size)
    assert (m.type, m.device_id, m.size, m.buffer_type, m.process_id, m.buffer_id, m.timestamp) == tuple(vals[:7])
    assert validate(m) is None


def test_decode_short_raises():
    with pytest.raises(DecodeError):
        decode(b"\x01" * 71, 72)


@given(st.binary(min_size=144, max_size=144))
def test_decode_never_crashes_on_garbage(raw):
    for lay in (72, 112, 128, 144):
        m = decode(raw, lay)
        validate(m)  # returns a reason or None, never raises


@pytest.mark.parametrize("msg,reason", [
    (AllocMessage(type=99), "unknown message type 99"),
    (AllocMessage(type=1, device_id=-2, size=1), "device_id -2 out of range"),
    (AllocMessage(type=1, device_id=300, size=1), "device_id 300 out of range"),
    (AllocMessage(type=1, size=0), "absurd size 0"),
    (AllocMessage(type=1, size=1 << 50), "absurd size"),
    (AllocMessage(type=1, size=1, buffer_type=96), "bad buffer_type 96"),
])
def test_validate_names_the_problem(msg, reason):
    assert reason in validate(msg)


def test_validate_nonzero_pad():
    raw = bytearray(encode(AllocMessage(type=1, size=1), 72))
    raw[2] = 7
    assert "padding" in validate(decode(raw, 72))


def test_galaxy_devices_are_valid():
    assert validate(AllocMessage(type=1, device_id=31, size=1)) is None
    assert validate(AllocMessage(type=1, device_id=63, size=1)) is None


def test_header_plausible():
    good = encode(AllocMessage(type=2), 72)
    assert header_plausible(good)
    assert not header_plausible(b"\0" + good[1:])
    assert not header_plausible(b"\x01\x01\0\0" + good[4:])


def test_buffer_type_parse():
    assert BufferType.parse("trace") is BufferType.TRACE
    assert BufferType.parse("l1-small") is BufferType.L1_SMALL
    with pytest.raises(ValueError, match="unknown buffer type"):
        BufferType.parse("HBM")


def test_layout_enum():
    assert [int(x) for x in Layout] == [72, 112, 128, 144, 648]
