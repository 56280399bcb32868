"""The ingest hot path: whole-chunk framing and decode, per-chunk log lines; compiled and pure twins agree.

The reference for framing is FrameReader's frame-by-frame path (``_run``), which the whole-chunk
path (``_run_whole``, pure or tt_memtop/_native/wire.c) must match exactly on every stream: same
messages (every field), same sizes, same bad frames, same close. The reference for log lines is
logformat.event_line, one event at a time.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tt_memtop import _native
from tt_memtop.core import logformat as lf
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import (
    LAYOUT_SIZES,
    WIRE_CLASSES,
    AllocMessage,
    Layout,
    MsgType,
    decode,
    decode_frames,
    encode,
)
from tt_memtop.server import framing
from tt_memtop.server.framing import FrameReader

WIRE = _native.load("wire")
INGEST = _native.load("ingest")
needs_native = pytest.mark.skipif(WIRE is None, reason="tt_memtop._native.wire is not built (or MEMTOP_PURE_PYTHON)")


class _FrameByFrame(FrameReader):
    """The reference: FrameReader without its whole-chunk path."""

    def feed(self, data):
        if self._closed:
            return framing.FrameResult(close=self._closed)
        self._buf += data
        return self._run(None)


def _reader(kind: str, layout, monkeypatch) -> FrameReader:
    if kind == "reference":
        return _FrameByFrame(layout, max_bad_bytes=600)
    monkeypatch.setattr(framing, "WIRE", WIRE if kind == "native" else None)
    return FrameReader(layout, max_bad_bytes=600)


def _fields(m) -> tuple:
    return tuple(getattr(m, f.name) for f in AllocMessage.__dataclass_fields__.values() if f.name != "pads")


def _outcome(res) -> tuple:
    return ([_fields(m) for m in res.messages], [int(x) for x in res.layouts],
            [(b.reason, b.nbytes, b.offset) for b in res.bad], res.close)


requests = st.builds(AllocMessage, type=st.sampled_from([1, 1, 1, 2, 2, 3, 5, 6, 8, 9, 10, 11, 12, 64, 66]),
                     device_id=st.integers(-2**31, 2**31 - 1), size=st.integers(0, 2**64 - 1),
                     buffer_type=st.integers(0, 255), process_id=st.integers(-2**31, 2**31 - 1),
                     buffer_id=st.integers(0, 2**64 - 1), timestamp=st.integers(0, 2**64 - 1),
                     dram_allocated=st.sampled_from([0, 0, 0, 1, 3, 2**64 - 1]),
                     total_dram_size=st.sampled_from([0, 0, 7]), num_devices=st.sampled_from([0, 0, 2**32 - 1]),
                     ringbuffer_num_programs=st.sampled_from([0, 5]))


@st.composite
def streams(draw):
    """Frames of one or two layouts, some damaged (a pad byte, a type byte, a stray byte), cut anywhere."""
    sizes = draw(st.lists(st.sampled_from([72, 112, 128, 144]), min_size=1, max_size=2))
    parts = []
    for m in draw(st.lists(requests, min_size=1, max_size=30)):
        raw = bytearray(encode(m, draw(st.sampled_from(sizes))))
        damage = draw(st.sampled_from(["none"] * 6 + ["pad", "type", "stray", "cut"]))
        if damage == "pad":
            raw[draw(st.sampled_from([1, 2, 3, 17, 18, 19, len(raw) - 1]))] = draw(st.integers(1, 255))
        elif damage == "type":
            raw[0] = draw(st.integers(0, 255))
        elif damage == "stray":
            raw.insert(draw(st.integers(0, len(raw))), draw(st.integers(0, 255)))
        elif damage == "cut":
            del raw[draw(st.integers(0, len(raw) - 1)):]
        parts.append(bytes(raw))
    data = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    layout = draw(st.sampled_from([None, None, *sizes]))
    events = [("feed", p) if p else ("idle", b"") for p in pieces] + [("eof", b"")]
    return layout, events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=streams())
def test_whole_chunk_framing_matches_frame_by_frame(case, monkeypatch):
    layout, events = case
    kinds = ["reference", "pure"] + (["native"] if WIRE is not None else [])
    readers = {k: _reader(k, layout, monkeypatch) for k in kinds}
    for what, data in events:
        outs = {}
        for k, r in readers.items():
            res = r.feed(data) if what == "feed" else r.on_idle() if what == "idle" else r.on_eof()
            outs[k] = _outcome(res)
        for k in kinds[1:]:
            assert outs[k] == outs["reference"], (k, what)
        assert len({(r.layout, r.pending, r.frames, r.bad_bytes) for r in readers.values()}) == 1


def test_a_whole_chunk_of_plain_frames_is_decoded_at_once(monkeypatch):
    """The fast path is really taken for ordinary traffic (the tuples say so), in both implementations."""
    for kind in ["pure"] + (["native"] if WIRE is not None else []):
        msgs = [AllocMessage(type=1, device_id=i % 4, size=4096, buffer_type=i % 5, process_id=7, buffer_id=i)
                for i in range(300)]
        for size in (72, 112, 128, 144):
            fr = _reader(kind, size, monkeypatch)
            data = b"".join(encode(m, size) for m in msgs)
            res = fr.feed(data + data[:10])
            assert all(isinstance(m, WIRE_CLASSES[size]) for m in res.messages), (kind, size)
            assert res.messages == msgs and fr.pending == 10 and not res.bad


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=1200), size=st.sampled_from([72, 112, 128, 144]))
def test_native_decode_whole_never_crashes_and_agrees_with_decode(data, size):
    if WIRE is None:
        pytest.skip("tt_memtop._native.wire is not built")
    out = WIRE.decode_whole(data, size, WIRE_CLASSES[size])
    n = len(data) // size
    if out is None:
        return
    assert len(out) == n
    for k, m in enumerate(out):
        ref = decode(data, size, k * size)
        assert m == ref and not any(p.strip(b"\0") for p in ref.pads)
    assert out == decode_frames(data, size, n)


@needs_native
def test_native_decode_whole_checks_its_arguments():
    with pytest.raises(ValueError):
        WIRE.decode_whole(b"\0" * 200, 100, WIRE_CLASSES[Layout.V112])
    with pytest.raises(TypeError):
        WIRE.decode_whole(b"\0" * 200, 72, dict)
    assert WIRE.decode_whole(b"", 72, WIRE_CLASSES[Layout.V72]) == []
    assert WIRE.decode_whole(b"\x01" + b"\0" * 70, 72, WIRE_CLASSES[Layout.V72]) == []  # no whole frame


def test_wire_message_reads_and_compares_like_an_alloc_message():
    m = AllocMessage(type=MsgType.ALLOC, device_id=3, size=4096, buffer_type=1, process_id=9, buffer_id=0x10,
                     total_l1_size=5)
    w = decode_frames(encode(m, 112), 112, 1)[0]
    assert w == m and m == w and not (w != m) and w.to_message() == m
    assert w.buffer_name == "" and w.stack_trace == "" and w.cb_allocated == 0 and w.pads == ()
    assert w.with_(size=1) == m.with_(size=1)
    assert w != m.with_(size=1) and repr(w) == repr(decode(encode(m, 112), 112))
    assert decode_frames(encode(m, 72), 72, 1)[0] != m  # 72 bytes carry no total_l1_size


event_kinds = st.sampled_from([EventKind.ALLOC, EventKind.REF_INC, EventKind.REF_DEC, EventKind.FREE,
                               EventKind.FREE_UNKNOWN, EventKind.BAD_FRAME, EventKind.DUMP])
big = st.one_of(st.integers(0, 2**64 - 1), st.integers(-2**70, 2**70), st.integers(0, 9))
events = st.builds(Event, event_kinds, pid=big, device=big, buffer_type=st.integers(-1, 6), buffer_id=big,
                   size=big, ref_count=st.integers(-3, 2**40))
items = st.lists(st.one_of(events, st.text(max_size=20), st.just("caf\udce9")), max_size=12)


def _reference_lines(items: list, hex_ids: bool) -> tuple[bytes, int]:
    out = []
    for it in items:
        line = it if isinstance(it, str) else lf.event_line(it, "hex" if hex_ids else "decimal")
        if line is not None:
            out.append(line)
    return "".join(f"{line}\n" for line in out).encode("utf-8", "replace"), len(out)


@settings(max_examples=300, deadline=None)
@given(items=items, hex_ids=st.booleans())
def test_chunk_line_rendering_matches_event_line(items, hex_ids):
    items = [it for it in items if isinstance(it, str) or it.buffer_type < 5]  # CB/KERNEL lines: formatted apart
    want = _reference_lines(items, hex_ids)
    assert lf.render_lines(items, hex_ids) == want
    assert lf.line_renderer()(items, hex_ids) == want
    if INGEST is not None:
        got = INGEST.render_lines(items, hex_ids)
        assert got is None or got == want


@needs_native
def test_native_rendering_of_ordinary_events_is_exact():
    evs = [Event(EventKind.ALLOC, pid=42, device=1, buffer_type=1, buffer_id=0x1000, size=4096),
           Event(EventKind.REF_INC, pid=42, device=1, buffer_type=4, buffer_id=0x1000, size=4096, ref_count=2),
           Event(EventKind.REF_DEC, pid=42, device=1, buffer_type=1, buffer_id=0x1000, size=4096, ref_count=1),
           Event(EventKind.FREE, pid=42, device=1, buffer_type=1, buffer_id=0x1000, size=4096),
           Event(EventKind.FREE_UNKNOWN, pid=-7, device=0, buffer_id=2**64 - 1), "a line", "ünïcode ✓"]
    for hex_ids in (True, False):
        assert INGEST.render_lines(evs, hex_ids) == _reference_lines(evs, hex_ids)
    assert INGEST.render_lines([], True) == (b"", 0)
    assert INGEST.render_lines([Event(EventKind.ALLOC, pid=True)], True) is None  # a bool prints as True: not ours
    with pytest.raises(AttributeError):
        INGEST.render_lines([object()], True)
    assert LAYOUT_SIZES  # (imported for symmetry with test_framing)


# --- end to end: `memtop serve` with and without the accelerator writes the same log ---------------------------


def _serve_session(tmp_path, pure: bool) -> tuple[str, str, bytes]:
    """Run `memtop serve` (a real process), play one session on a real socket; (stdout, stderr, QUERY reply)."""
    import os
    import signal
    import socket

    from server_helpers import recv_exactly, serve_process, short_socket

    sock_path = short_socket(tmp_path)
    out, err = tmp_path / f"out{pure}.txt", tmp_path / f"err{pure}.txt"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        # "" is "not pure" (tt_memtop._native.pure_python); serve_process returns once the socket answers
        proc = serve_process(sock_path, "--devices", "2", stdout=fo, stderr=fe,
                             env={_native.PURE_ENV: "1" if pure else ""}, timeout=30)
        try:
            pid = os.getpid()

            def req(t, dev=0, size=0, bt=0, bid=0):
                return encode(AllocMessage(type=t, device_id=dev, size=size, buffer_type=bt, process_id=pid,
                                           buffer_id=bid), 112)

            bad = bytearray(req(1, 0, 64, 0, 0x777))
            bad[18] = 5  # a pad byte: one bad frame
            first = [req(1, 0, 4096, 0, 0x100), req(1, 0, 4096, 0, 0x100), req(2, 0, 0, 0, 0x100),
                     req(2, 0, 0, 0, 0x100), req(2, 1, 0, 0, 0x999), req(3, 0)]
            bulk = b"".join(req(1, i % 2, 4096 * (1 + i % 3), i % 5, 0x10000 + i) for i in range(600))
            bulk += b"".join(req(2, i % 2, 0, 0, 0x10000 + i) for i in range(0, 600, 2))
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock_path)
                for frame in first:  # one send() per frame, as TT-Metal
                    s.sendall(frame)
                recv_exactly(s, 112)  # the layout is known now (a bad frame in the very first read would hide it)
                s.sendall(req(1, 0, 64, 7, 0x200) + bytes(bad))
                s.sendall(bulk)
                s.sendall(req(3, 1))
                reply = recv_exactly(s, 112)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    return out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8"), reply


def test_serve_log_and_replies_are_the_same_pure_and_compiled(tmp_path):
    import os

    pid = os.getpid()
    out_pure, err_pure, reply_pure = _serve_session(tmp_path, pure=True)
    want = [lf.alloc_line(pid, 4096, 0, 0, 0x100), lf.alloc_line(pid, 4096, 0, 0, 0x100, ref_count=2),
            lf.free_line(pid, 0x100, 0, 4096, 1), lf.free_line(pid, 0x100, 0, 4096, 0),
            lf.unknown_free_line(pid, 0x999, 1)]
    want += [lf.alloc_line(pid, 4096 * (1 + i % 3), i % 5, i % 2, 0x10000 + i) for i in range(600)]
    want += [lf.free_line(pid, 0x10000 + i, i % 2, 4096 * (1 + i % 3), 0) for i in range(0, 600, 2)]
    lines = [line for line in out_pure.splitlines() if "[PID " in line]
    assert lines == want
    assert lf.invalid_buffer_type_line(7, 0x200, 0, pid) in err_pure  # the 112-byte original's wording
    assert "padding" in err_pure
    dev1 = sum(4096 * (1 + i % 3) for i in range(1, 600, 2) if i % 5 in (1,) and i % 2 == 1)
    assert decode(reply_pure, 112).l1_allocated == dev1
    if WIRE is None:
        return
    out_native, err_native, reply_native = _serve_session(tmp_path, pure=False)
    assert out_native == out_pure
    assert err_native == err_pure
    assert reply_native == reply_pure


async def test_a_sender_that_does_not_read_its_replies_holds_up_only_itself(tmp_path):
    """QUERYs whose replies are not read: that connection waits (its replies all arrive later), others go on."""
    import threading

    import anyio
    from server_helpers import query, raw_connect, recv_exactly, running_server, short_socket

    path = short_socket(tmp_path)
    n = 6000  # 6000 replies of 144 B: far more than the socket buffers hold
    async with running_server(path) as server:
        greedy = raw_connect(path, timeout=30)
        sent = threading.Event()

        def flood():
            greedy.sendall(encode(AllocMessage(type=MsgType.QUERY, device_id=0), 144) * n)
            sent.set()

        writer = threading.Thread(target=flood, daemon=True)
        writer.start()
        await anyio.sleep(0.5)  # the server has filled greedy's receive side and stopped reading it
        other = raw_connect(path)
        other.sendall(encode(AllocMessage(type=MsgType.ALLOC, device_id=1, size=4096, buffer_type=1, process_id=7,
                                          buffer_id=0x10), 144))
        assert await anyio.to_thread.run_sync(query, other, 1) == (0, 4096, 0, 0)
        other.close()
        replies = await anyio.to_thread.run_sync(recv_exactly, greedy, n * 144)
        await anyio.to_thread.run_sync(writer.join, 30)
        assert sent.is_set()
        assert all(decode(replies, 144, k * 144).type == MsgType.RESPONSE for k in range(n))
        greedy.close()
        assert server.stats.connection_errors == 0


def test_log_lines_reach_the_file_while_the_writer_runs_and_after_a_quiet_spell(tmp_path):
    """The log thread collects lines by itself while they come, and is woken by the first after a pause."""
    import time

    from tt_memtop.server.logwriter import FLUSH_INTERVAL_S, LogWriter

    path = tmp_path / "log.txt"

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 10
        while text not in path.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, f"{text!r} never reached the log"
            time.sleep(0.005)

    with open(path, "w", encoding="utf-8") as out:
        w = LogWriter(out)
        for i in range(50):  # a burst: collected in a few writes
            w.write([f"line {i}"])
            w.write_bytes(f"bytes {i}\n".encode(), 1)
        wait_for("bytes 49\n")
        time.sleep(FLUSH_INTERVAL_S * 5)  # quiet: the thread goes to sleep
        w.write(["after the pause"])
        wait_for("after the pause\n")
        assert w.close(5)
    text = path.read_text(encoding="utf-8")
    assert text == "".join(f"line {i}\nbytes {i}\n" for i in range(50)) + "after the pause\n"
