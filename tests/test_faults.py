"""Fault suite (issue 8): a real `memtop serve` under load while everything that may go wrong does.

Producer processes send ALLOC/FREE in small send()s, each timed; meanwhile monitor processes
subscribe and are SIGKILLed at every stage (before SUBSCRIBE, right after it, mid-snapshot,
mid-stream, stalled with a full socket), connection floods run into the fd limit (RLIMIT_NOFILE
set low for the server), the log goes into a pipe nobody reads until the end, and the recording
is on a file system that fills up (when we can mount one). Asserted: events lost 0 (QUERY totals
= what the producers left live), a healthy subscriber's mirror equals the server with no sequence
gap, the server exits 0 with no traceback. The worst producer send() block is printed.

Reduced size by default (about 30 s); ``MEMTOP_FAULTS_FULL=1`` runs the full size (1 M live
buffers, 8 producers, ~2 min). The machinery is benchmarks/bench_stall.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_stall  # noqa: E402

FULL = os.environ.get("MEMTOP_FAULTS_FULL") == "1"


@pytest.fixture
def full_disk(tmp_path):
    """A small tmpfs for the recording (fills up during the run), or None when we cannot mount one."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        yield None
        return
    yield str(where)
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_fault_suite(full_disk, capsys):
    size = (dict(preload_n=1_000_000, producers=8, messages=800_000, rate=10_000, seconds=20.0) if FULL else
            dict(preload_n=60_000, producers=3, messages=45_000, rate=6_000, seconds=6.0))
    fig = bench_stall.run(**size, fd_limit=96, log="stalled", record_dir=full_disk, monitors=5, seed=8)
    summary = fig.line()
    with capsys.disabled():
        print(f"\n[fault suite{' (full)' if FULL else ''}] {summary}"
              f"{'' if full_disk else ' (no tmpfs: disk-full not exercised)'}")
        print(f"[fault suite] server status at exit: {json.dumps(fig.server_status, sort_keys=True)}")
    report = os.environ.get("MEMTOP_FAULTS_REPORT")
    if report:
        Path(report).write_text(json.dumps({"summary": summary, **fig.__dict__}, default=str, indent=1))
    assert fig.lost_events == 0, (fig.expected, fig.actual, fig.stderr_tail)
    assert fig.mirror_equal, fig.stderr_tail
    assert fig.server_exit == 0 and fig.tracebacks == 0, fig.stderr_tail
    assert fig.monkeys >= 5 and fig.floods >= 1
    st = fig.server_status
    assert st.get("refused_connections", 0) > 0  # the floods did run into the fd limit
    if full_disk:
        assert st.get("recording") == "stopped" and "No space left" in st.get("recording_error", "")
    # Not asserted (a shared, loaded CI box deschedules processes for longer than that): the worst
    # send() block; the figure is printed, and docs/ROBUSTNESS.md gives the measured values.
