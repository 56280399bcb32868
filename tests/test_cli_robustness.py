"""Bad input at the command line, as a user meets it: real ``memtop`` subprocesses, real sockets, real files.

Each case must end with a short message (no traceback) and a meaningful exit code (0 ok, 1 runtime
failure, 2 usage error), and must not lose what could be read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from server_helpers import short_socket

from tt_memtop.core.devices import Inventory
from tt_memtop.core.events import Event, EventKind
from tt_memtop.recording import RecordingWriter

MEMTOP = [sys.executable, "-m", "tt_memtop"]


def _memtop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*MEMTOP, *args], capture_output=True, text=True, timeout=timeout)


def _no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def _recording(path, n_batches: int = 5) -> str:
    with RecordingWriter(str(path), Inventory.uniform(2), socket_path="/tmp/x.sock") as w:
        for i in range(n_batches):
            w.write_events([Event(EventKind.ALLOC, ts_ns=1_000_000 * i, pid=4242, device=0, buffer_type=0,
                                  buffer_id=0x1000 + i, size=4096, ref_count=1, seq=i + 1)])
    return str(path)


# ---------------------------------------------------------------- recordings
@pytest.mark.parametrize("command", [["report"], ["report", "--json"], ["analyze"], ["replay", "--json"]])
@pytest.mark.parametrize("damage", ["header_cut", "bad_version"])
def test_unreadable_recording_is_a_one_line_error(tmp_path, command, damage):
    rec = _recording(tmp_path / "run.rec")
    data = bytearray(open(rec, "rb").read())
    if damage == "header_cut":
        data = data[:14]  # magic + version + part of the header record
    else:
        data[8] = 9  # format version 9
    open(rec, "wb").write(bytes(data))
    proc = _memtop(*command, rec)
    _no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"memtop {command[0]}: {rec}: ")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["report", "--json"], ["analyze", "--json"], ["replay", "--json"]])
def test_torn_recording_reads_back_with_a_note(tmp_path, command):
    rec = _recording(tmp_path / "run.rec", n_batches=5)
    size = os.path.getsize(rec)
    with open(rec, "r+b") as f:
        f.truncate(size - 3)  # the last record is torn
    proc = _memtop(*command, rec)
    _no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert "note:" in proc.stderr and "skipped the last" in proc.stderr
    doc = json.loads(proc.stdout)
    if command[0] == "analyze":
        assert isinstance(doc, list) and doc  # the timeline of the intact batches
    else:
        assert doc["schema_version"] == 2
    if command[0] == "report":
        assert doc["remaining_total"] == 4  # the four intact batches were read
    elif command[0] == "replay":
        assert sum(d["buffers"] for d in doc["devices"]) == 4


# ---------------------------------------------------------------- analyze --json
def test_analyze_json_is_the_specified_list_of_segments(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("✓ [PID 7] Allocated 4096 bytes of TRACE on device 0 (buffer_id=0x10)\r\n"
                   "Line 2: ✗ [PID 7] Freed buffer 0x10 on device 0 (4096 bytes, FINAL)\r\n", encoding="utf-8")
    for path in (str(log), _recording(tmp_path / "run.rec")):
        proc = _memtop("analyze", "--json", path)
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)
        assert rows and set(rows[0]) == {"pid", "devices", "phase", "start_s", "end_s"}
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    proc = _memtop("analyze", "--json", str(empty))
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


# ---------------------------------------------------------------- serve start-up errors
def test_serve_names_the_problem_with_its_socket_path(tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "s.sock"
    proc = _memtop("serve", "--socket", str(missing_dir))
    _no_traceback(proc)
    assert proc.returncode == 1
    assert f"cannot listen on {missing_dir}: the directory {missing_dir.parent} does not exist" in proc.stderr
    too_long = str(tmp_path / ("a" * 120 + ".sock"))
    proc = _memtop("serve", "--socket", too_long)
    assert proc.returncode == 1 and "Unix sockets allow at most 107" in proc.stderr, proc.stderr
    _no_traceback(proc)


def test_serve_with_an_unwritable_recording_fails_before_binding(tmp_path):
    sock = short_socket(tmp_path)
    proc = _memtop("serve", "--socket", sock, "--record", str(tmp_path))  # a directory
    _no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"memtop serve: cannot write the recording {tmp_path}: Is a directory"
    assert proc.stdout == ""  # no start banner, no stop block: it never started
    assert not os.path.exists(sock)


# ---------------------------------------------------------------- broken pipe
def test_ndjson_into_a_closed_pipe_exits_quietly(tmp_path):
    sock = short_socket(tmp_path)
    server = subprocess.Popen([*MEMTOP, "serve", "--socket", sock, "-q"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        mon = subprocess.Popen([*MEMTOP, "--ndjson", "--interval", "0.05", "--socket", sock],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = mon.stdout.readline()  # what `| head -1` does: read one line, then close the pipe
        mon.stdout.close()
        _, err = mon.communicate(timeout=30)
        assert json.loads(line)["schema_version"] == 2
        assert "Traceback" not in err, err
        assert mon.returncode == 0, err
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)


def test_dump_rejects_a_non_positive_timeout_before_connecting(tmp_path):
    proc = _memtop("dump", "--socket", short_socket(tmp_path), "--timeout", "-1")
    _no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "memtop dump: --timeout must be positive"


def test_simulate_without_a_server_says_so_without_tracebacks(tmp_path):
    sock = short_socket(tmp_path)
    proc = _memtop("simulate", "--socket", sock, "--scenario", "cnn", "--speed", "50")
    _no_traceback(proc)
    assert proc.returncode == 1
    assert f"cannot connect to {sock}" in proc.stderr


# ---------------------------------------------------------------- usage errors are usage errors
@pytest.mark.parametrize("argv,says", [
    (["--interval", "0", "--once"], "must be positive"),
    (["--interval", "-1", "--json"], "must be positive"),
    (["--device", "abc", "--once", "--socket", "/nonexistent/x.sock"], "'abc' is not a number"),
    (["serve", "--stats-interval", "0"], "must be positive"),
])
def test_bad_arguments_exit_2_with_a_readable_reason(argv, says):
    proc = _memtop(*argv)
    _no_traceback(proc)
    assert proc.returncode == 2 and says in proc.stderr
