"""``memtop report``: the lifecycle report of logs and recordings."""

from __future__ import annotations

import json
import subprocess
import sys

from session_72byte import SESSION_LOG

from tt_memtop.commands.report import build_report
from tt_memtop.core import logformat as lf
from tt_memtop.core.devices import Inventory
from tt_memtop.core.protocol import AllocMessage, MsgType
from tt_memtop.core.registry import Registry
from tt_memtop.core.report import (
    STATUS_CLEANED,
    STATUS_FULLY_FREED,
    STATUS_LIVE,
    STATUS_NEVER_ALLOCATED,
    STATUS_OVER_FREED,
    render_text,
)


def test_session_report():
    rep = build_report(str(SESSION_LOG))
    assert rep.remaining_total == 16
    assert rep.remaining[0]["TRACE"] == {"buffers": 1, "bytes": 12503040, "ids": [0x3E363C80]}
    assert rep.remaining[5] == {"SYSTEM_MEMORY": {"buffers": 1, "bytes": 256, "ids": [0x100]}}
    assert rep.allocations["DRAM"] == {"count": 5, "bytes": 4 * (1 << 20) + 8192, "ref_increments": 0}
    assert rep.allocations["L1"]["ref_increments"] == 1
    assert rep.buffer_status == {STATUS_NEVER_ALLOCATED: 1, STATUS_FULLY_FREED: 1, STATUS_CLEANED: 2, STATUS_LIVE: 16}
    assert rep.unknown_frees == 1 and rep.unknown_free_addresses == 1
    trace = {t["device"]: t for t in rep.trace_buffers}
    assert trace[1]["end"] == "freed" and trace[1]["allocated_at"] == 12 and trace[1]["freed_at"] == 23
    assert trace[0]["lifetime"] is None
    # live at the end, then what the dead-PID cleanup reclaimed (a log has no clock for phases: "reclaimed")
    assert [(lk["pid"], lk["kind"], lk["buffers"]) for lk in rep.leaks_by_pid] == [
        (8174, "live_at_end", 16), (8216, "reclaimed", 2)]
    assert [(c["pid"], c["buffers"], c["consistent"]) for c in rep.cleanups] == [(8216, 2, True)]
    assert [d["agrees_with_rebuilt_state"] for d in rep.dumps] == [True, True]
    assert rep.parse["lines"] == 167 and rep.parse["unknown"] == 0
    text = render_text(rep)
    assert "DRAM                  5 allocations (4.01 MB cumulative)" in text
    assert "matches the rebuilt state" in text


def test_over_freed_address_like_the_llama_note(tmp_path):
    # one address allocated twice and freed five times on device 4 (the server logs the extra frees as unknown)
    reg = Registry()
    lines = []
    for _ in range(2):
        lines.append(lf.event_line(reg.apply(AllocMessage(MsgType.ALLOC, device_id=4, size=512, buffer_type=1,
                                                          process_id=9, buffer_id=694960736), 0), "decimal"))
        for _ in range(2):
            lines.append(lf.event_line(reg.apply(AllocMessage(MsgType.FREE, device_id=4, buffer_id=694960736,
                                                              process_id=9), 0), "decimal"))
    lines.append(lf.event_line(reg.apply(AllocMessage(MsgType.FREE, device_id=4, buffer_id=694960736,
                                                      process_id=9), 0), "decimal"))
    p = tmp_path / "x.log"
    p.write_text("\n".join(lines) + "\n")
    rep = build_report(str(p))
    (worst,) = rep.problem_ids
    assert (worst["buffer_id"], worst["device"], worst["allocs"], worst["frees"], worst["status"]) == (
        694960736, 4, 2, 5, STATUS_OVER_FREED)
    assert worst["allocated_on"] == worst["freed_on"] == [4]
    assert rep.unknown_frees == 3 and rep.remaining_total == 0


def test_recording_report(tmp_path):
    from tt_memtop.recording import RecordingWriter

    path = str(tmp_path / "r.rec")
    reg = Registry()
    with RecordingWriter(path, Inventory.uniform(1)) as w:
        w.write_events([reg.apply(AllocMessage(MsgType.ALLOC, device_id=0, size=12503040, buffer_type=4,
                                               process_id=3, buffer_id=0x3E363C80), 1_000_000_000)])
        w.write_events([reg.apply(AllocMessage(MsgType.FREE, device_id=0, buffer_id=0x3E363C80, process_id=3),
                                  3_500_000_000)])
    rep = build_report(path)
    assert rep.position_unit == "ns" and rep.remaining_total == 0
    (t,) = rep.trace_buffers
    assert t["lifetime"] == 2_500_000_000 and "2.500 s" in render_text(rep)


def test_report_subprocess_json():
    res = subprocess.run([sys.executable, "-m", "tt_memtop", "report", str(SESSION_LOG), "--json"],
                         capture_output=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 2 and doc["remaining_total"] == 16
    assert doc["remaining"]["1"]["L1"]["ids"] == [0x19040]


def test_report_of_a_log_with_a_detection_block(tmp_path):
    """`memtop serve` (and S2+) print a device-detection block first: the report must take it in."""
    lines = lf.start_banner("/tmp/tt_allocation_server.sock", Inventory.uniform(2))
    lines.append(lf.alloc_line(42, 12_503_040, 4, 1, 0x3E363C80))
    log = tmp_path / "server.log"
    log.write_text("\n".join(lines) + "\n")
    rep = build_report(str(log))
    assert rep.remaining_total == 1
    assert rep.remaining[1]["TRACE"]["ids"] == [0x3E363C80]
