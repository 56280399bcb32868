"""Byte-level replies of the server, checked with struct formats written here from PROTOCOL.md §2."""

from __future__ import annotations

import io
import struct

import anyio
import pytest
from server_helpers import raw_connect, recv_exactly, running_server, short_socket

from tt_memtop.core.devices import Inventory

# Independent of tt_memtop.core.protocol on purpose.
FMT = {72: "<B3xiQB3xiQQ4Q", 112: "<B3xiQB3xiQQ4Q2Q6I", 128: "<B3xiQB3xiQQ6Q2Q6I", 144: "<B3xiQB3xiQQ6Q2Q6I4I",
       648: "<B3xiQB3xiQQ4Q64s512s"}
ALLOC, FREE, QUERY, RESPONSE, DUMP, DINFO, DINFO_RESP, CB_ALLOC, KERNEL_LOAD = 1, 2, 3, 4, 5, 6, 7, 8, 10


def req(layout: int, type_: int, dev: int = 0, size: int = 0, btype: int = 0, pid: int = 1234, bid: int = 0) -> bytes:
    st = struct.Struct(FMT[layout])
    tail = (0,) * (len(st.unpack(bytes(st.size))) - 7)
    if layout == 648:
        tail = (0, 0, 0, 0, b"", b"")
    return st.pack(type_, dev, size, btype, pid, bid, 0, *tail)


def u64(buf: bytes, off: int) -> int:
    return struct.unpack_from("<Q", buf, off)[0]


def u32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<I", buf, off)[0]


def i32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<i", buf, off)[0]


def _populate(layout: int) -> bytes:
    out = b"".join(req(layout, ALLOC, 0, size, bt, bid=0x1000 + bt) for bt, size in
                   ((0, 1000), (1, 2000), (2, 300), (3, 400), (4, 500)))
    out += req(layout, ALLOC, 1, 77, 0, bid=1)
    if layout in (128, 144):
        out += req(layout, CB_ALLOC, 0, 64, 0, bid=5) + req(layout, KERNEL_LOAD, 0, 128, 1, bid=6)
    return out


@pytest.mark.parametrize("layout", [72, 112, 128, 144, 648])
async def test_query_response_bytes(tmp_path, layout):
    path = short_socket(tmp_path)
    async with running_server(path):
        def client() -> bytes:
            with raw_connect(path) as s:
                s.sendall(_populate(layout) + req(layout, QUERY, 0))
                reply = recv_exactly(s, layout)
                s.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    s.recv(1)  # exactly one struct, nothing more
                return reply
        r = await anyio.to_thread.run_sync(client)
    assert len(r) == layout
    assert r[0] == RESPONSE and r[1:4] == b"\0\0\0" and i32(r, 4) == 0
    assert (u64(r, 40), u64(r, 48), u64(r, 56), u64(r, 64)) == (1000, 2000, 700, 500)  # SYSTEM_MEMORY in l1_small
    if layout in (128, 144):
        assert (u64(r, 72), u64(r, 80)) == (64, 128)
    assert r[8:40] == bytes(32)  # header fields other than type/device are zero
    rest = r[88:] if layout in (128, 144) else r[72:]
    assert rest == bytes(len(rest))


@pytest.mark.parametrize("layout", [72, 112])
async def test_query_totals_wrap_as_the_originals_uint64(tmp_path, layout):
    """The 72/112-byte originals take any size; their uint64 totals wrap. Ours answer the same, every time
    (a total past 2**64 used to make every QUERY of that device fail)."""
    path = short_socket(tmp_path)
    big = 2**64 - 4096
    async with running_server(path):
        def client() -> list[int]:
            with raw_connect(path) as s:
                s.sendall(req(layout, ALLOC, 0, big, 0, bid=1) + req(layout, ALLOC, 0, 8192, 0, bid=2)
                          + req(layout, QUERY, 0))
                first = u64(recv_exactly(s, layout), 40)
                s.sendall(req(layout, QUERY, 0))
                return [first, u64(recv_exactly(s, layout), 40)]
        got = await anyio.to_thread.run_sync(client)
    assert got == [4096, 4096]


@pytest.mark.parametrize("layout", [72, 112, 128, 144])
async def test_device_info_response_bytes(tmp_path, layout):
    path = short_socket(tmp_path)
    inv = Inventory.uniform(3, "blackhole")
    async with running_server(path, inventory=inv):
        def client() -> list[bytes]:
            with raw_connect(path) as s:
                out = []
                for dev in (-1, 2, 3, 1000):
                    s.sendall(req(layout, DINFO, dev))
                    out.append(recv_exactly(s, layout))
                return out
        head, dev2, dev3, far = await anyio.to_thread.run_sync(client)
    for r in (head, dev2, dev3, far):
        assert len(r) == layout and r[0] == DINFO_RESP
    assert [i32(r, 4) for r in (head, dev2, dev3, far)] == [-1, 2, 3, 1000]
    if layout == 72:
        assert head[8:] == bytes(64)
        return
    base = 88 if layout in (128, 144) else 72  # device-info block
    d = inv.devices[2]
    assert u32(head, base + 36) == 3 and u32(head, base + 32) == 1  # num_devices, is_available
    assert head[base:base + 32] == bytes(32)
    assert (u64(dev2, base), u64(dev2, base + 8)) == (d.total_dram, d.total_l1)
    assert [u32(dev2, base + 16 + 4 * i) for i in range(6)] == [3, d.num_dram_channels,
                                                                 d.dram_size_per_channel & 0xFFFFFFFF,
                                                                 d.l1_size_per_core, 1, 0]
    assert dev3[8:] == bytes(layout - 8) and far[8:] == bytes(layout - 8)
    if layout == 144:
        assert dev2[128:144] == bytes(16)  # ring-buffer fields and pad3


async def test_sixty_four_plus_devices(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, inventory=Inventory.uniform(70)):
        def client():
            with raw_connect(path) as s:
                s.sendall(req(144, ALLOC, 69, 4096, 1, bid=9) + req(144, DINFO, -1) + req(144, QUERY, 69)
                          + req(144, DINFO, 69))
                return [recv_exactly(s, 144) for _ in range(3)]
        head, q, info = await anyio.to_thread.run_sync(client)
    assert u32(head, 124) == 70
    assert u64(q, 48) == 4096 and i32(q, 4) == 69
    assert u32(info, 120) == 1 and u32(info, 104) == 2


async def test_garbage_resync_and_invalid_messages_as_the_original(tmp_path):
    """Our own diagnostics once per kind; the original's warning lines every time (issue 9.6)."""
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, layout=72) as server:
        def client():
            with raw_connect(path) as s:
                s.sendall(b"\xee" * 30 + req(72, ALLOC, 0, 100, 0, bid=1) + b"\xf0" * 5 + req(72, ALLOC, 0, 50, 0, bid=2)
                          + req(72, ALLOC, 300, 1, 0, bid=3) + req(72, ALLOC, 301, 1, 0, bid=4)
                          + req(72, ALLOC, 0, 0, 0, bid=5) + req(72, QUERY, 0))
                return recv_exactly(s, 72)
        r = await anyio.to_thread.run_sync(client)
        assert u64(r, 40) == 150
        assert server.stats.bad_frames == 2 and server.stats.invalid_messages == 2  # size 0: S1 takes it
        assert server.registry.get(0, 5) is not None
        server.registry.check_invariants()
    text = log.getvalue()
    assert text.count("Bad frame on connection") == 1 and "unknown message type 238" in text
    assert text.count("⚠️  Invalid device_id 300 - ignoring message") == 1
    assert text.count("⚠️  Invalid device_id 301 - ignoring message") == 1
    assert "Invalid size" not in text


async def test_lone_72_byte_dump_on_forced_144_server(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, layout=144):
        def client():
            with raw_connect(path) as s:
                s.sendall(req(144, ALLOC, 0, 100, 0, bid=1) + req(144, QUERY, 0))
                recv_exactly(s, 144)
            with raw_connect(path) as s:  # dump_remaining_buffers.py: one 72-byte message, then close
                s.sendall(req(72, DUMP))
        await anyio.to_thread.run_sync(client)
        await anyio.sleep(0.3)
    assert "📋 DUMP_REMAINING complete." in log.getvalue()
    assert "    - Buffer 0x1: 0.0976562 KB (PID 1234, ref_count=1)" in log.getvalue()


async def test_lone_72_byte_dump_auto_without_closing(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log):
        def client():
            with raw_connect(path) as s:
                s.sendall(req(72, DUMP))
                s.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    s.recv(1)  # no reply to DUMP_REMAINING, ever
        await anyio.to_thread.run_sync(client)
    assert "📋 DUMP_REMAINING complete." in log.getvalue()


async def test_no_extensions_ignores_subscribe(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log, extensions=False):
        def client():
            with raw_connect(path) as s:
                s.sendall(req(72, 64))
                s.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    s.recv(1)
        await anyio.to_thread.run_sync(client)
    assert "Unknown message type: 64" in log.getvalue()


# --- issue 8.13: once a connection's layout is known, a frame is a frame -------------------------------------
async def test_layout_switch_mid_stream_loses_no_alloc(tmp_path):
    """144 -> 72 on one connection (one read each burst): all 10 ALLOCs count (5 of 10 were merged away)."""
    path = short_socket(tmp_path)
    async with running_server(path) as server:
        def client():
            with raw_connect(path) as s:
                s.sendall(b"".join(req(144, ALLOC, 0, 4096, 0, bid=i) for i in range(3)))
                s.sendall(req(144, QUERY, 0))
                recv_exactly(s, 144)
                s.sendall(b"".join(req(72, ALLOC, 0, 4096, 0, bid=0x100 + i) for i in range(10)) + req(72, QUERY, 0))
                return recv_exactly(s, 144)  # replies stay in the connection's layout
        r = await anyio.to_thread.run_sync(client)
        assert u64(r, 40) == 13 * 4096 and len(server.registry) == 13
        assert server.stats.bad_frames == 0


async def test_bad_padding_frame_is_reported_and_the_next_query_answered(tmp_path):
    path = short_socket(tmp_path)
    log = io.StringIO()
    async with running_server(path, log=log) as server:
        def client():
            with raw_connect(path) as s:
                s.sendall(req(144, ALLOC, 0, 4096, 0, bid=1) + req(144, ALLOC, 0, 4096, 0, bid=2))
                s.sendall(req(144, QUERY, 0))
                recv_exactly(s, 144)
                bad = bytearray(req(144, ALLOC, 3, 4096, 0, bid=3))
                bad[1] = 0x5A  # a non-zero pad byte
                s.sendall(bytes(bad) + req(144, QUERY, 0))
                return recv_exactly(s, 144)  # used to be swallowed: no reply, ever
        r = await anyio.to_thread.run_sync(client)
        assert u64(r, 40) == 2 * 4096
        assert server.stats.bad_frames == 1 and server.stats.bad_bytes == 144
    assert "Bad frame on connection 1: non-zero padding" in log.getvalue()
