"""Following a log from its beginning reads it in 1 MiB chunks: every line of a chunk was stamped with the
same time, so a run's loading and its warm-up overlapped in time, and the model weights (loaded, freed at
teardown) were reported as "kept from warm-up" leaks of a process that freed everything. Events of one
read are now one nanosecond apart, in order. The log is the real S4 server's, driven by llama-t3k."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anyio

from tt_memtop.sources.follow import FollowLogSource
from tt_memtop.ui.app import MemtopApp, new_state

LOG = Path(__file__).resolve().parent / "data" / "oracle" / "s4_sim_llama-t3k_112.stdout.gz"


def test_events_of_one_read_are_stamped_in_order(tmp_path):
    log = tmp_path / "server.log"
    with gzip.open(LOG, "rb") as src, log.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    got = []
    src = FollowLogSource(str(log), clock=lambda: 5)
    src._emit_lines(lambda u: got.append(u), log.read_bytes().split(b"\n")[:2000])
    src._emit_lines(lambda u: got.append(u), log.read_bytes().split(b"\n")[2000:2100])
    ts = [ev.ts_ns for u in got if hasattr(u, "events") for ev in u.events]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)  # distinct, increasing, across reads


async def test_a_clean_run_followed_from_its_start_leaks_nothing(tmp_path):
    log = tmp_path / "server.log"
    with gzip.open(LOG, "rb") as src, log.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    state = new_state()
    app = MemtopApp(FollowLogSource(str(log), poll_interval=0.05), clock=lambda: 0.0, state=state)
    async with app.run_test(size=(200, 50)) as pilot:
        with anyio.fail_after(60):
            while state.status.state != "connected" or state.events_total < 20_000:
                await pilot.pause(0.1)
        await pilot.pause(1.0)
        assert len(state.registry) == 0  # the run freed everything
        assert [r for r in state.insight.leaks.rows() if r["kind"] == "outlived_warmup"] == []
