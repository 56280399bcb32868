"""A connection's very first read holding good frames and then garbage (before its layout is known):
the good frames are applied, the garbage is reported once (it used to cost every frame before it)."""

from __future__ import annotations

import io
import struct
import time

import anyio
import pytest
from server_helpers import raw_connect, recv_exactly, running_server, short_socket

from tt_memtop.core.protocol import LAYOUT_SIZES, AllocMessage, MsgType, encode
from tt_memtop.server.framing import FrameReader

ALLOCS = [AllocMessage(type=MsgType.ALLOC, device_id=0, size=4096, buffer_type=0, process_id=7, buffer_id=0x100 + i)
          for i in range(3)]


@pytest.mark.parametrize("junk", [200, 900])
@pytest.mark.parametrize("size", LAYOUT_SIZES)
def test_good_frames_then_garbage_in_the_first_read(size, junk):
    fr = FrameReader()
    res = fr.feed(b"".join(encode(m, size) for m in ALLOCS) + b"\xee" * junk)
    idle = fr.on_idle()  # a short tail waits for the peer to go quiet; a long one is decided at once
    msgs, bad = res.messages + idle.messages, res.bad + idle.bad
    assert fr.layout == size and msgs == ALLOCS
    assert [(b.nbytes, b.offset) for b in bad] == [(junk, 3 * size)] and "unknown message type 238" in bad[0].reason
    assert fr.on_eof().bad == []


def test_one_frame_then_garbage_is_still_garbage():
    """One frame cannot tell its size: as before, the bytes are reported (a guess could misframe them)."""
    fr = FrameReader()
    res = fr.feed(encode(ALLOCS[0], 144) + b"\xee" * 900)
    assert res.messages == [] and sum(b.nbytes for b in res.bad) == 144 + 900


def test_a_wrong_size_is_never_taken_from_a_clean_stream():
    for size in LAYOUT_SIZES:
        fr = FrameReader()
        res = fr.feed(b"".join(encode(m, size) for m in ALLOCS * 3))
        res2 = fr.on_idle()
        assert fr.layout == size and res.messages + res2.messages == ALLOCS * 3 and not res.bad + res2.bad


QUERY = struct.Struct("<B3xiQB3xiQQ6Q2Q6I4I")


async def test_first_read_with_garbage_over_a_real_socket(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log) as server:
        def client():
            with raw_connect(path) as s:
                s.sendall(b"".join(encode(m, 144) for m in ALLOCS) + b"\xee" * 200)  # one send, one read
                time.sleep(0.5)  # longer than the layout-detection pause
                s.sendall(QUERY.pack(3, 0, 0, 0, 1, 0, 0, *(0,) * 18))
                return recv_exactly(s, 144)
        reply = await anyio.to_thread.run_sync(client)
        assert struct.unpack_from("<Q", reply, 40)[0] == 3 * 4096  # DRAM total: all three applied
        assert len(server.registry) == 3
        assert server.stats.bad_frames == 1 and server.stats.bad_bytes == 200
    assert log.getvalue().count("Bad frame") == 1, log.getvalue()
