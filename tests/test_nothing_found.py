"""A fresh machine: no allocation server, no TT-Metal shared memory, no socket. What memtop says must
name both places it looked and what to do (mainline TT-Metal users only need to run their program)."""

from __future__ import annotations

import os
import subprocess
import sys

from ui_fakes import FakeSource, llama_events

from tt_memtop.sources.open import NOTHING_HINT
from tt_memtop.ui.app import MemtopApp
from tt_memtop.ui.widgets.header_bar import HeaderBar

MEMTOP = [sys.executable, "-m", "tt_memtop"]


def _fresh_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TT_MEMTOP")}
    return {**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "TT_MEMTOP_SHM_DIR": str(tmp_path / "shm"), "TT_MEMTOP_SOCKET": str(tmp_path / "none.sock")}


def test_once_and_no_demo_say_where_they_looked_and_what_to_do(tmp_path):
    env = _fresh_env(tmp_path)
    for args in (["--once"], ["--json"], ["--no-demo"]):
        p = subprocess.run([*MEMTOP, *args], capture_output=True, text=True, timeout=60, env=env,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 1, (args, p.stderr)
        assert "Traceback" not in p.stderr
        err = " ".join(p.stderr.split())
        assert f"no TT-Metal shared-memory regions in {tmp_path / 'shm'}" in err, err
        assert "no allocation server at" in err and "Run a TT-Metal program" in err, err
        assert "memtop serve" in err and "TT_ALLOC_TRACKING_ENABLED=1" in err and "memtop demo" in err, err


class DemoFallback(FakeSource):
    demo = True
    description = "llama-t3k at 0.25x (no regions in /dev/shm, no server at /tmp/tt_allocation_server.sock)"


async def test_the_fallback_demo_says_what_to_do_even_at_80_columns():
    from tt_memtop.core.devices import Inventory
    from tt_memtop.sources.base import Capability, EventBatch, Snapshot, Status

    class Src(DemoFallback):
        async def run(self, emit) -> None:  # what DemoSource relays once its server is up
            import anyio

            emit(Status("connected", NOTHING_HINT, frozenset({Capability.EVENTS, Capability.TOTALS})))
            emit(Snapshot([], 0, 1_000_000_000, Inventory.uniform(self.devices)))
            emit(EventBatch(self.batches[0]))
            await anyio.sleep_forever()

    app = MemtopApp(Src(8, [llama_events()]), clock=lambda: 0.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        text = app.query_one(HeaderBar).render().plain
    assert "DEMO" in text and NOTHING_HINT in text, text


async def test_demo_source_relays_the_hint_not_its_private_socket():
    import anyio

    from tt_memtop.sources.base import Status
    from tt_memtop.sources.demo import DemoSource

    seen: list = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(DemoSource(speed=50.0, hint=NOTHING_HINT).run, seen.append)
            while not any(isinstance(u, Status) and u.state == "connected" for u in seen):
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    connected = next(u for u in seen if isinstance(u, Status) and u.state == "connected")
    assert connected.message == NOTHING_HINT
