"""The demo owns the terminal (the monitor draws there): a simulated process that fails must not
scribble over the screen; the demo stops and says why in its status instead."""

from __future__ import annotations

import sys

import anyio

from tt_memtop.sim import driver
from tt_memtop.sources.base import Status
from tt_memtop.sources.demo import DemoSource


def _failing(socket_path, name, slot, **kw):
    return [sys.executable, "-c", "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline();"
            " print('worker: cannot connect to the socket', file=sys.stderr); sys.exit(3)"]


async def test_a_failing_demo_worker_is_reported_not_printed(monkeypatch, capfd):
    monkeypatch.setattr(driver, "worker_command", _failing)
    seen: list = []
    src = DemoSource("llama-t3k", speed=50.0, loop=True)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            async def watch():
                await src.run(seen.append)
            tg.start_soon(watch)
            while not any(isinstance(u, Status) and u.state == "ended" for u in seen):
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    ended = [u for u in seen if isinstance(u, Status) and u.state == "ended"]
    assert "failed: worker: cannot connect to the socket" in ended[-1].message
    assert src.runs == 1  # a failing scenario is not looped
    assert "cannot connect" not in capfd.readouterr().err  # nothing reached the terminal
