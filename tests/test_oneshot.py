"""``memtop --once / --json / --ndjson`` as real subprocesses against real servers and files."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
from server_helpers import running_server, short_socket
from session_72byte import SESSION_LOG

from tt_memtop.client import AllocationClient
from tt_memtop.core.logparse import LogParser
from tt_memtop.core.model import MonitorState
from tt_memtop.output.oneshot import SCHEMA_VERSION, build_document, render_table, stdout_is_tty
from tt_memtop.sources.base import EventBatch
from tt_memtop.ui.filters import ViewFilter

MEMTOP = [sys.executable, "-m", "tt_memtop"]


async def memtop(*args: str) -> subprocess.CompletedProcess:
    with anyio.fail_after(60):
        return await anyio.run_process([*MEMTOP, *args], check=False)


async def populate(path: str, layout: int = 144) -> None:
    async with await AllocationClient.connect(path, layout) as c:
        await c.alloc(0, 12503040, 4, 0x3E363C80, pid=4242)
        await c.alloc(1, 1 << 20, 0, 0x1B233EE0, pid=4242)
        await c.alloc(1, 65536, 1, 0x19000, pid=4343)


def session_state() -> MonitorState:
    parser = LogParser()
    state = MonitorState()
    state.apply(EventBatch(parser.feed(SESSION_LOG.read_bytes().splitlines())))
    return state


# ---------------------------------------------------------------------------------------- pure parts
def test_document_and_table_from_the_session_log():
    doc = build_document(session_state())
    assert doc["schema_version"] == SCHEMA_VERSION and doc["source"]["per_buffer"]
    dev0 = next(d for d in doc["devices"] if d["device"] == 0)
    assert dev0["buffers"] == 4 and dev0["total"] == 13641728 and dev0["bytes"]["TRACE"] == 12503040
    assert [p["pid"] for p in doc["processes"]] == [8174] and doc["processes"][0]["buffers"] == 16
    table = render_table(doc)
    assert "L1_SMALL MB" in table and "   13.01" in table and "8174" in table


def test_filters_apply_to_totals_and_processes():
    state = session_state()
    doc = build_document(state, filt=ViewFilter.from_args("0-1", "TRACE,DRAM", "8174"))
    assert [d["device"] for d in doc["devices"]] == [0, 1]
    assert doc["devices"][0]["bytes"] == {"DRAM": 1 << 20, "TRACE": 12503040}
    assert doc["devices"][1]["total"] == 1 << 20
    assert doc["filters"] == {"devices": [0, 1], "types": ["DRAM", "TRACE"], "pids": [8174]}
    assert build_document(state, filt=ViewFilter.from_args(None, None, "1"))["processes"] == []


def test_stdout_is_tty_false_for_pipes(tmp_path):
    with open(tmp_path / "out.txt", "w") as f:
        assert not stdout_is_tty(f)


# ---------------------------------------------------------------------------------------- subprocesses
async def test_once_against_an_original_style_server(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, extensions=False, layout=144):
        await populate(path)
        res = await memtop("--socket", path, "--once")
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "totals only" in out and "Wormhole_B0" in out and "DRAM used" in out
    row1 = next(ln for ln in out.splitlines() if ln.strip().startswith("1 "))
    assert "1.00" in row1 and "0.06" in row1


async def test_json_against_our_server_subscribes(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path):
        await populate(path)
        res = await memtop("--socket", path, "--json", "--pid", "4242")
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 2 and doc["source"]["kind"] == "subscribe"
    assert [p["pid"] for p in doc["processes"]] == [4242]
    devs = {d["device"]: d for d in doc["devices"]}
    assert devs[0]["bytes"]["TRACE"] == 12503040 and devs[1]["bytes"]["L1"] == 0  # PID 4343 filtered out
    assert devs[0]["capacity"] == {"DRAM": 12 << 30, "L1": 179_896_320}


async def test_json_follow_log_without_server(tmp_path):
    res = await memtop("--socket", short_socket(tmp_path), "--follow", str(SESSION_LOG), "--json",
                       "--device", "0", "--type", "TRACE")
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert doc["source"]["kind"] == "log"
    assert [(d["device"], d["bytes"]) for d in doc["devices"]] == [(0, {"TRACE": 12503040})]


async def test_non_tty_stdout_gets_the_table_not_the_tui(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, extensions=False, layout=112):
        await populate(path, 112)
        res = await memtop("--socket", path)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().splitlines()[1].startswith("note:")  # polled: says what is missing
    assert b"\x1b[" not in res.stdout  # no terminal control sequences


async def test_no_server_is_an_error(tmp_path):
    res = await memtop("--socket", short_socket(tmp_path), "--json")
    assert res.returncode == 1 and b"no allocation server" in res.stderr


async def test_ndjson_emits_one_line_per_interval(tmp_path):
    path = short_socket(tmp_path)
    async with running_server(path, extensions=False, layout=72):
        await populate(path, 72)
        docs = []
        async with await anyio.open_process([*MEMTOP, "--socket", path, "--ndjson", "--interval", "0.05"]) as proc:
            buf = b""
            with anyio.fail_after(60):
                async for chunk in proc.stdout:
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        docs.append(json.loads(line))
                    if len(docs) >= 3:
                        break
            proc.terminate()
    assert all(d["schema_version"] == 2 and d["source"]["kind"] == "poll" for d in docs)
    assert {d["device"]: d["bytes"]["DRAM"] for d in docs[-1]["devices"]}[1] == 1 << 20


async def test_replay_json_prints_the_final_state():
    res = await memtop("replay", str(SESSION_LOG), "--json")
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert doc["source"]["kind"] == "replay" and doc["source"]["status"] == "ended"
    assert sum(d["buffers"] for d in doc["devices"]) == 16
