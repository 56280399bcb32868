"""Log lines against the real output of the original server (byte for byte) and quoted excerpts."""

from __future__ import annotations

import re

from session_72byte import EXCERPTS, ORIGINAL_SOCKET, PID_B, phase_a, phase_b, session_lines

from tt_memtop.core import logformat as lf
from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.core.protocol import AllocMessage, BufferType, MsgType
from tt_memtop.core.registry import Registry


def _replay_session() -> list[str]:
    reg = Registry()
    lines = lf.start_banner(ORIGINAL_SOCKET) + [lf.CLEANUP_STARTED]
    for msg in phase_a() + phase_b():
        lines.append(lf.event_line(reg.apply(msg, 0), "decimal", reg))
    for dead in ([PID_B], []):
        lines.append(lf.DUMP_REQUEST)
        lines += lf.cleanup_block(reg.cleanup(dead, 0))
        lines += lf.dump_report(reg)
        lines.append(lf.DUMP_COMPLETE)
    lines += lf.stats_block(reg) + [lf.CLEANUP_STOPPED] + lf.stop_banner()
    return lines


def test_whole_session_log_byte_for_byte():
    expected = session_lines()
    got = _replay_session()
    for i, (a, b) in enumerate(zip(got, expected, strict=False)):
        assert a == b, f"line {i + 1}: {a!r} != {b!r}"
    assert len(got) == len(expected)
    assert "\n".join(got) + "\n" == "\n".join(expected) + "\n"


def _excerpt_blocks() -> dict[int, list[str]]:
    blocks: dict[int, list[str]] = {}
    cur = None
    for line in EXCERPTS.read_text(encoding="utf-8").split("\n"):
        m = re.match(r"=== (\d+)\. ", line)
        if m:
            cur = blocks.setdefault(int(m.group(1)), [])
        elif cur is not None and line and not line.startswith(("===", "#")):
            cur.append(re.sub(r"^Line \d+: ", "", line))
    return blocks


def test_excerpt_trace_allocations_and_dump_fragment():
    lines = _excerpt_blocks()[1]
    reg = Registry()
    got = [lf.event_line(reg.apply(AllocMessage(type=MsgType.ALLOC, device_id=d, size=12503040,
                                                buffer_type=BufferType.TRACE, process_id=919068,
                                                buffer_id=1043741824), 0), "decimal")
           for d in (4, 0, 3)]
    assert got == lines[:3]
    report = lf.dump_report(reg)
    i = report.index("Device 0:")
    assert report[i:i + 3] == lines[3:6]


def test_excerpt_final_frees_and_dump_banner():
    lines = _excerpt_blocks()[2]
    assert lf.free_line(1000131, 1043741824, 4, 12503040, 0, "decimal") == lines[0]
    assert lf.free_line(1000131, 1043741824, 0, 12503040, 0, "decimal") == lines[1]
    reg = Registry()
    for i in range(381):
        reg.apply(AllocMessage(type=MsgType.ALLOC, device_id=0, size=4096, buffer_type=0, process_id=1,
                               buffer_id=i + 1), 0)
    report = lf.dump_report(reg)
    assert report[1:5] == lines[2:6]  # the excerpt drops blank lines
    assert report[5:7] == ["", "Device 0:"] and lines[6] == "Device 0:"


def test_excerpt_cleanup_block_with_cbs_and_kernels():
    lines = _excerpt_blocks()[3]
    pid = 12345
    events = [Event(EventKind.CLEANUP, pid=pid, buffer_type=BufferType.DRAM, size=s)
              for s in (15938355 - 4 * 1000, 1000, 1000, 1000, 1000)]
    events += [Event(EventKind.CLEANUP, pid=pid, buffer_type=BufferType.CB, size=s) for s in [314572] * 7 + [314578]]
    events += [Event(EventKind.CLEANUP, pid=pid, buffer_type=BufferType.KERNEL, size=s) for s in (57344, 47104,
                                                                                               52224, 52224)]
    block = lf.cleanup_block(events)
    assert block[0] == "" and block[-1] == ""
    assert block[1:-1] == lines


def test_excerpt_validation_and_s5_alloc_lines():
    lines = _excerpt_blocks()[4]
    assert lf.invalid_device_line(2657333) == lines[0]
    assert lf.too_many_errors_line(10) == lines[1]
    assert lf.alloc_line(2685613, 16384, 0, 0, 328467008, "decimal") == lines[2]
    assert lf.alloc_line(2685613, 4096, 1, 1, 328469056, "decimal") == lines[3]


def test_hex_ids_s4_style():
    assert lf.alloc_line(1, 16, 4, 0, 0x3E363C80, "hex", ref_count=2) == (
        "✓ [PID 1] Allocated 16 bytes of TRACE on device 0 (buffer_id=0x3e363c80, ref_count=2)")
    assert lf.free_line(7, 0x1A0000, 3, 99, 2) == "✗ [PID 7] Freed buffer 0x1a0000 on device 3 (99 bytes, ref_count=2 remaining)"
    assert lf.unknown_free_line(7, 0, 3) == (
        "⚠ [PID 7] Deallocation for unknown buffer 0x0 on device 3 (allocated before tracking started)")


def test_percent_g_formatting():
    assert [lf.g(x) for x in (11.923828125, 12210.0, 0.19921875, 1e6, 0.0, 1024.0)] == [
        "11.9238", "12210", "0.199219", "1e+06", "0", "1024"]


def test_dump_hides_per_buffer_lines_above_ten_and_empty_dump():
    reg = Registry()
    assert lf.dump_report(reg)[-1] == "✓ No buffers remaining - perfect cleanup!"
    for i in range(11):
        reg.apply(AllocMessage(type=MsgType.ALLOC, device_id=2, size=1024, buffer_type=1, process_id=1,
                               buffer_id=i + 1), 0)
    reg.apply(AllocMessage(type=MsgType.ALLOC, device_id=2, size=2048, buffer_type=0, process_id=1, buffer_id=100), 0)
    rep = lf.dump_report(reg)
    dev = rep.index("Device 2:")
    assert rep[dev + 1:dev + 4] == ["  DRAM: 1 buffers, 0.00195312 MB total",
                                    "    - Buffer 0x64: 2 KB (PID 1, ref_count=1)",
                                    "  L1: 11 buffers, 0.0107422 MB total"]
    assert rep[dev + 4] == ""


def test_cb_and_kernel_lines():
    reg = Registry()
    ev = reg.apply(AllocMessage(type=MsgType.CB_ALLOC, device_id=0, size=65536, process_id=1, buffer_id=3), 0)
    assert lf.event_line(ev, "hex", reg) == "✓ [CB_ALLOC] Device 0: +0.0625 MB (Total: 0.0625 MB)"
    ev = reg.apply(AllocMessage(type=MsgType.KERNEL_LOAD, device_id=0, size=57344, buffer_type=1, process_id=1,
                                buffer_id=9), 0)
    assert lf.event_line(ev, "hex", reg) == "✓ [KERNEL_LOAD] Fabric kernel on Device 0: +0.0546875 MB (Total: 0.0546875 MB)"
    ev = reg.apply(AllocMessage(type=MsgType.KERNEL_UNLOAD, device_id=0, size=57344, process_id=1, buffer_id=9), 0)
    assert lf.event_line(ev, "hex", reg) == "✗ [KERNEL_UNLOAD] Fabric kernel on Device 0: -0.0546875 MB (Total: 0 MB)"
    ev = reg.apply(AllocMessage(type=MsgType.CB_FREE, device_id=0, size=65536, process_id=1, buffer_id=3), 0)
    assert lf.event_line(ev, "hex", reg) == "✗ [CB_FREE] Device 0: -0.0625 MB (Total: 0 MB)"
    kernels = lf.dump_kernels(reg, 0)
    assert kernels[-1] == "📋 DUMP_KERNELS complete." and "Total kernel allocations: 0" in kernels


def test_detection_block():
    assert lf.start_banner("/s", Inventory.uniform(1)) == [
        "🔍 Device detection (using TT-Metal APIs):", "   Device 0: Wormhole_B0 (12GB DRAM, 171MB L1)",
        "   Total: 1 device(s) detected", "🚀 Allocation Server started", "   Listening on: /s",
        "   Press Ctrl+C to stop"]
    assert lf.detection_block(Inventory())[1:] == ["   No devices detected",
                                                   "   Server will track allocations anyway"]
