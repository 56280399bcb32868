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


def test_workers_run_this_package_whatever_the_working_directory(tmp_path, monkeypatch):
    """`python -m` puts the working directory first on sys.path: run from a directory holding another
    tt_memtop (a checkout of another version), the demo's children imported that one (and failed on
    an argument it did not know). They run in this package's root instead."""
    import os

    fake = tmp_path / "tt_memtop" / "sim"
    fake.mkdir(parents=True)
    for d in (tmp_path / "tt_memtop", fake):
        (d / "__init__.py").write_text("")
    (fake / "worker.py").write_text("import sys\nprint('the wrong tt_memtop', file=sys.stderr)\nsys.exit(9)\n")
    monkeypatch.chdir(tmp_path)
    errors = tmp_path / "err.txt"
    with open(errors, "w") as err:
        result = anyio.run(lambda: driver.run_scenario(str(tmp_path / "shm"), "cnn", speed=50.0,
                                                       shm_dir="shm", stderr=err))
    assert result.returncodes == {0: 0}, errors.read_text()
    assert any(n.startswith("tt_device_") for n in os.listdir(tmp_path / "shm"))  # the relative dir, made absolute
