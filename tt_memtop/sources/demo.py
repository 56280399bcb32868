"""Source: the built-in demo — our server in-process on a private socket, driven by simulated processes.

Why: ``memtop`` with no TT-Metal at hand should still show something true to life. Everything
goes through the real machinery: the worker children speak the wire protocol to an
:class:`~tt_memtop.server.server.AllocationServer` on a temporary socket, and what the monitor
sees is that server's subscription (a :class:`~tt_memtop.sources.subscribe.SubscribeSource`).
Dead-PID cleanup is checked every half second so a leaking process is cleaned up promptly.
Cancelling the source kills the children and removes the socket and its directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import anyio

from ..core.devices import Inventory
from ..core.protocol import Layout
from ..sim.scenarios import build
from .base import Emit, Source, Status, Update
from .subscribe import SubscribeSource

__all__ = ["DEMO_SPEED", "DemoSource"]

#: The scenarios' timelines are compressed (a Llama lifecycle in ~7.5 s, so tests run fast); the demo
#: plays them at a quarter of that pace by default, which gives a ~30 s cycle a person can follow.
DEMO_SPEED = 0.25


class DemoSource(Source):
    """Play ``scenario`` at ``speed`` against an in-process server; repeat it while ``loop``."""

    #: simulated data: the header shows a DEMO badge that no terminal width drops
    demo = True

    def __init__(self, scenario: str = "llama-t3k", speed: float = DEMO_SPEED, loop: bool = True, devices: int | None = None,
                 *, arch: str = "wormhole_b0", seed: int = 0, layout: Layout | int = Layout.V144,
                 cleanup_interval_s: float = 0.5, reason: str = "", hint: str = "") -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.scenario = scenario
        self.speed = speed
        self.loop = loop
        self.devices = devices if devices is not None else build(scenario, seed).num_devices
        self.arch = arch
        self.seed = seed
        self.layout = Layout(layout)
        self.cleanup_interval_s = cleanup_interval_s
        # no "DEMO" here: the header's badge says it (once); one-shot output prefixes it from ``demo``
        self.description = f"{scenario} at {speed:g}x" + (f" ({reason})" if reason else "")
        self.runs = 0  # completed plays of the scenario
        self.hint = hint  # what to do to see real data (the header's message once connected)

    async def run(self, emit: Emit) -> None:
        from ..server.server import AllocationServer, ServerConfig
        from ..sim.driver import first_failure, run_scenario

        tmpdir = tempfile.mkdtemp(prefix="memtop-demo-")
        path = os.path.join(tmpdir, "alloc.sock")
        config = ServerConfig(socket_path=path, inventory=Inventory.uniform(self.devices, self.arch), quiet=True,
                              cleanup_interval_s=self.cleanup_interval_s, stats_interval_s=3600.0)
        devnull = open(os.devnull, "w")  # noqa: SIM115 - the server's log, closed below

        def relay(update: Update) -> None:
            if isinstance(update, Status) and update.state == "connected":
                update = Status("connected", self.hint or f"in-process server on {path}", update.capabilities)
            emit(update)

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(AllocationServer(config, log=devnull).serve)
                tg.start_soon(SubscribeSource(path, reconnect=False).run, relay)
                errors = os.path.join(tmpdir, "workers.stderr")  # not the terminal: the monitor draws there
                why = None
                while True:
                    with open(errors, "w") as err:
                        result = await run_scenario(path, self.scenario, seed=self.seed, layout=self.layout,
                                                    speed=self.speed, stderr=err)
                    self.runs += 1
                    why = first_failure(result, errors)
                    if why or not self.loop:
                        break
                    await anyio.sleep(1.0)
                await anyio.sleep(max(0.3, 2 * self.cleanup_interval_s))  # let the last events reach the monitor
                emit(Status("ended", f"{self.description}: {why or 'scenario finished'}"))
                tg.cancel_scope.cancel()
        finally:
            devnull.close()
            shutil.rmtree(tmpdir, ignore_errors=True)
