"""Serving the metrics: prometheus-client's HTTP server and textfile writer, fed from the event loop.

The registry and the monitor state belong to the anyio loop; a scrape arrives on the HTTP
server's thread. :class:`LoopViews` makes the scrape thread ask the loop for a view
(``anyio.from_thread.run_sync``), so every scrape sees one consistent instant.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from prometheus_client import start_http_server, write_to_textfile

from ..core.model import MonitorState, new_state
from ..sources.base import Status, Update
from ..ui.procinfo import ProcInfo
from .collector import registry_for
from .view import LagTracker, MetricsView, view_from_state

__all__ = ["LoopViews", "MetricsHTTP", "run_exporter", "serve_ledger_metrics", "textfile_loop"]

def hostname() -> str:
    return socket.gethostname()


def comm_reader(local: bool = True) -> Callable[[int], str]:
    """PID -> /proc/PID/comm, cached (the name of a process that has just gone is kept a little);
    "" for a source whose PIDs are not this machine's (``local = False``: a replay)."""
    return ProcInfo(local, time.monotonic).name


class LoopViews:
    """``take()`` from any thread: builds the view on the event loop that owns the state."""

    def __init__(self, build: Callable[[], MetricsView]) -> None:
        self.build = build
        self.token = anyio.lowlevel.current_token()

    def take(self) -> MetricsView:
        return anyio.from_thread.run_sync(self.build, token=self.token)


class MetricsHTTP:
    """``/metrics`` on ``addr:port`` (port 0: any free port; ``port`` is then the one bound)."""

    def __init__(self, addr: str, port: int, take_view: Callable[[], MetricsView]) -> None:
        self.server, self.thread = start_http_server(port, addr, registry=registry_for(take_view))
        self.port = self.server.server_port
        self.url = f"http://{_host_for_url(addr)}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _host_for_url(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


async def serve_ledger_metrics(server, args: argparse.Namespace, *,
                               task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
    """``memtop serve --metrics-port``: ``/metrics`` straight from the server's ledger, until cancelled.

    Reads the registry's running totals on the event loop at each scrape (``server.ledger()``);
    nothing is added to the ingest path. Raises OSError, before reporting started, when the port
    cannot be had.
    """
    from .view import view_from_ledger

    comm, host = comm_reader(), hostname()

    def build() -> MetricsView:
        registry, stats, inventory = server.ledger()
        return view_from_ledger(registry, inventory, events_total=registry.seq, bad_frames_total=stats.bad_frames,
                                hostname=host, comm=comm)

    try:
        http = MetricsHTTP(args.metrics_addr, args.metrics_port, LoopViews(build).take)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: "
                      f"{exc.strerror or exc}") from exc
    print(f"memtop serve: metrics on {http.url}", file=sys.stderr, flush=True)
    try:
        task_status.started()
        await anyio.sleep_forever()
    finally:
        http.close()


async def textfile_loop(path: str, take_view: Callable[[], MetricsView], interval: float,
                        say: Callable[[str], None]) -> None:
    """Rewrite ``path`` every ``interval`` s (written beside it, then renamed: readers never see half a file)."""
    registry = registry_for(take_view)
    failing = False
    while True:
        try:
            write_to_textfile(path, registry)
            if failing:
                say(f"writing {path} works again")
            failing = False
        except OSError as exc:
            if not failing:
                say(f"cannot write {path}: {exc.strerror or exc}; retrying every {interval:g} s")
            failing = True
        await anyio.sleep(interval)


_KINDS = {"SubscribeSource": "subscribe", "PollSource": "poll", "FollowLogSource": "log",
          "FollowWithPolling": "log+poll", "ShmSource": "shm", "WithShmCrossCheck": "subscribe+shm"}


def _source_kind(source) -> str:
    """The ``source`` label: which of memtop's sources the figures come from."""
    name = type(source).__name__
    return _KINDS.get(name, name.removesuffix("Source").lower() or "unknown")


class _Exported:
    """What ``memtop exporter`` exports from: the current source's state, and how to label it."""

    def __init__(self) -> None:
        self.host = hostname()
        self.start("none", True)

    def start(self, kind: str, local: bool) -> None:
        """A new source: a fresh state (nothing of the previous source's figures lingers)."""
        self.state: MonitorState = new_state()
        self.lag = LagTracker()
        self.kind = kind
        self.comm = comm_reader(local)

    def emit(self, update: Update) -> None:
        self.state.apply(update)
        self.lag.saw(update, time.monotonic_ns())

    def view(self) -> MetricsView:
        st = self.state
        st.tick(st.last_ts_ns)
        return view_from_state(st, source=self.kind, hostname=self.host, comm=self.comm,
                               lag_s=self.lag.lag_s(st, time.monotonic_ns()))


async def run_exporter(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    """``memtop exporter``: follow the best source for ``args`` into a MonitorState and export it until cancelled.

    While no source answers, only ``tt_memtop_source_up 0`` (and the counters) are exported; a source
    that stops is replaced by whatever answers next, with a fresh state.
    """
    from ..sources.open import open_source_async

    out = _Exported()
    http = None
    if args.metrics_port is not None:
        http = MetricsHTTP(args.metrics_addr, args.metrics_port, LoopViews(out.view).take)
        say(f"metrics on {http.url}")
    try:
        async with anyio.create_task_group() as tg:
            if args.textfile:
                tg.start_soon(textfile_loop, args.textfile, out.view, args.textfile_interval, say)
            said = ""
            while True:
                source = await open_source_async(args)
                if source is None:
                    why = f"no allocation server answers at {args.follow or args.socket}; retrying"
                    if why != said:
                        say(why)
                        said = why
                    out.state.apply(Status("disconnected", why))
                    await anyio.sleep(args.retry)
                    continue
                said = ""
                out.start(_source_kind(source), bool(getattr(source, "local", True)))
                say(f"exporting {source.description}")
                await source.run(out.emit)
                why = out.state.status.message or f"{source.description} stopped"
                out.start("none", True)
                out.state.apply(Status("disconnected", why))
                await anyio.sleep(args.retry)
    finally:
        if http is not None:
            http.close()


def stderr_say(prog: str) -> Callable[[str], None]:
    def say(msg: str) -> None:
        print(f"{prog}: {msg}", file=sys.stderr, flush=True)

    return say


def ensure_textfile_dir(path: str) -> str | None:
    """A usage problem with ``--textfile PATH`` (its directory must exist), else None."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        return f"--textfile: directory {d} does not exist"
    return None
