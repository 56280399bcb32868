"""Fixtures captured from the REAL original allocation servers (see tests/data/oracle/README.md).

* Our server, fed the exact bytes the recording client sent to the original, writes the same stdout
  byte for byte (socket path aside) and sends the same reply bytes.
* Our log parser, run on the original's stdout, rebuilds a state that equals every DUMP_REMAINING
  report and statistics block in it, and the original's QUERY replies.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import anyio
import pytest
from server_helpers import replay_wire_steps, short_socket

from tt_memtop.core.devices import Inventory
from tt_memtop.core.logparse import LogParser
from tt_memtop.core.logrecords import DumpReport, ProcessCleanup, StatsReport
from tt_memtop.core.protocol import Layout, MsgType, decode
from tt_memtop.core.registry import Registry
from tt_memtop.core.report import dump_mismatches
from tt_memtop.server.server import AllocationServer, ServerConfig

DATA = Path(__file__).parent / "data" / "oracle"
#: The socket path the fixtures were captured on (it appears in the banner).
ORACLE_SOCKET = "/tmp/oracle/s.sock"
#: name -> (ServerConfig overrides that make our server that version)
SESSIONS = {
    "s1_72": dict(log_format="decimal", detection_banner=False, inventory=Inventory()),
    "s4_112": dict(log_format="hex", detection_banner=True, inventory=Inventory.uniform(2, "wormhole_b0")),
}
SIM_LOGS = ["s1_sim_leaky_72.stdout.gz", "s4_sim_llama-t3k_112.stdout.gz"]


def wire(name: str) -> dict:
    return json.loads((DATA / f"{name}.wire.json").read_text())


def original_stdout(name: str) -> str:
    return (DATA / f"{name}.stdout").read_text(encoding="utf-8")


async def _run_ours(name: str, tmp_path) -> tuple[str, str, list[bytes]]:
    rec = wire(name)
    path = short_socket(tmp_path)
    log, err = io.StringIO(), io.StringIO()
    dead = {rec["pid_b_dead"]}
    config = ServerConfig(socket_path=path, cleanup_interval_s=3600, stats_interval_s=3600, **SESSIONS[name])
    server = AllocationServer(config, log=log, err=err, is_alive=lambda pid: pid not in dead)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        replies = await anyio.to_thread.run_sync(replay_wire_steps, path, rec["steps"], server)
        with anyio.fail_after(10):
            while log.getvalue().count("📋 DUMP_REMAINING complete.") < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    return log.getvalue().replace(path, ORACLE_SOCKET), err.getvalue(), replies


@pytest.mark.parametrize("name", sorted(SESSIONS))
async def test_our_server_log_and_replies_equal_the_original(name, tmp_path):
    out, err, replies = await _run_ours(name, tmp_path)
    assert out == original_stdout(name)  # byte for byte, PIDs included (they travel in the messages)
    expected = [bytes.fromhex(s["recv"]) for s in wire(name)["steps"] if "recv" in s]
    assert replies == expected
    # stderr: the original's lines appear in the same order (ours logs each kind once, adds notes)
    ours = err.splitlines()
    it = iter(ours)
    for line in (DATA / f"{name}.stderr").read_text(encoding="utf-8").splitlines():
        assert any(line == o for o in it), (line, ours)


def _parse(text: bytes):
    parser = LogParser()
    events = parser.feed(text.splitlines())
    events += parser.finish()
    return parser, events, parser.take_records()


def _state_upto(events, seq: int) -> Registry:
    reg = Registry()
    for ev in events:
        if ev.seq <= seq:
            reg.apply_event(ev)
    reg.check_invariants()
    return reg


def _check_log(text: bytes) -> tuple[list, list, list]:
    parser, events, records = _parse(text)
    s = parser.stats
    assert s.unknown == 0 and s.malformed == 0 and s.orphans == 0
    dumps = [r for r in records if isinstance(r, DumpReport)]
    stats = [r for r in records if isinstance(r, StatsReport)]
    assert dumps and stats
    for d in dumps:
        assert d.complete and d.requested
        assert dump_mismatches(d, list(_state_upto(events, d.seq).buffers())) == []
    for sr in stats:
        reg = _state_upto(events, sr.seq)
        assert sr.active == reg.num_buffers
        for dev, fields in sr.devices.items():
            t = reg.device_totals(dev)
            assert fields == {"buffers": reg.device_count(dev), "dram": t[0], "l1": t[1], "total": sum(t[:5])}
    for pc in (r for r in records if isinstance(r, ProcessCleanup)):
        assert pc.consistent
    return events, records, dumps


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_parser_rebuilds_the_original_session(name):
    rec = wire(name)
    events, records, dumps = _check_log((DATA / f"{name}.stdout").read_bytes())
    assert len(dumps) == 2
    first, last = dumps
    assert first.total_tracked == 17 and last.total_tracked == 16
    cleanups = [r for r in records if isinstance(r, ProcessCleanup)]
    assert [(c.pid, c.removed) for c in cleanups] == [(rec["pid_b_dead"], 3)]
    # the QUERY replies the original sent (recorded before the first DUMP) equal the rebuilt totals
    reg = _state_upto(events, first.seq)
    layout = Layout(rec["layout"])
    queries = [s for s in rec["steps"] if "send" in s and bytes.fromhex(s["send"])[0] == MsgType.QUERY]
    answers = [s for s in rec["steps"] if "recv" in s][:len(queries)]
    assert len(queries) == len(answers) == 7
    for q, a in zip(queries, answers, strict=True):
        dev = decode(bytes.fromhex(q["send"]), layout).device_id
        r = decode(bytes.fromhex(a["recv"]), layout)
        assert r.type == MsgType.RESPONSE and r.device_id == dev
        # the first DUMP's cleanup removed the dead PID's buffers (devices 6, 7) after the QUERYs
        if dev in (6, 7):
            continue
        t = reg.wire_totals(dev)
        assert (r.dram_allocated, r.l1_allocated, r.l1_small_allocated, r.trace_allocated) == tuple(t[:4])


@pytest.mark.parametrize("name", SIM_LOGS)
def test_parser_on_original_server_logs_of_simulated_workloads(name):
    events, records, dumps = _check_log(gzip.decompress((DATA / name).read_bytes()))
    assert len(events) > 2000

