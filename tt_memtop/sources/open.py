"""Pick the best source for ``memtop``'s flags: what the user already runs decides what we can show.

Order: ``--follow LOG`` follows the log (and, if a server answers on ``--socket``, polls it too
for the device inventory); else a server that speaks our extension is subscribed to; else a
server that answers at all (an original ``allocation_server_poc``) is polled; else None, and the
caller offers the demo.
"""

from __future__ import annotations

import argparse
import os

import anyio

from .base import Emit, Source, TotalsSample
from .logfile import FollowLogSource
from .poll import PollSource, detect_layout

__all__ = ["FollowWithPolling", "open_source", "open_source_async"]


class FollowWithPolling(Source):
    """A followed log for the events, plus polling for the server's device inventory and totals.

    Only the poll's samples are forwarded: its Status would tell the UI that events are missing.
    """

    def __init__(self, follow: FollowLogSource, poll: PollSource) -> None:
        self.follow = follow
        self.poll = poll
        self.description = f"{follow.description} + {poll.description}"
        self.ready_on_connect = True

    async def run(self, emit: Emit) -> None:
        def from_poll(update) -> None:
            if isinstance(update, TotalsSample):
                emit(update)

        async with anyio.create_task_group() as tg:
            tg.start_soon(self.poll.run, from_poll)
            await self.follow.run(emit)
            tg.cancel_scope.cancel()


def _layout_arg(args: argparse.Namespace) -> str:
    return str(getattr(args, "protocol", "auto") or "auto")


async def _server_source_async(args: argparse.Namespace, probe_timeout: float = 0.5) -> Source | None:
    """The source ``memtop`` should use for ``args``, or None when nothing answers."""
    from .subscribe import probe_extension

    path = args.socket
    interval = getattr(args, "interval", 0.5) or 0.5
    layout = _layout_arg(args)
    answers = None
    if os.path.exists(path):
        try:
            if layout == "auto":
                answers = await detect_layout(path, probe_timeout)
            else:  # forced --protocol: only check that something listens
                stream = await anyio.connect_unix(path)
                await stream.aclose()
                answers = layout
        except OSError:
            answers = None
    follow = getattr(args, "follow", None)
    if follow:
        src = FollowLogSource(follow)
        if answers is not None:
            return FollowWithPolling(src, PollSource(path, interval, answers))
        return src
    if answers is None:
        return None
    if await probe_extension(path, probe_timeout):
        from .subscribe import SubscribeSource

        return SubscribeSource(path)
    return PollSource(path, interval, answers)


# ---------------------------------------------------------------------- TT-Metal's shared memory
# The server-side choice above is untouched; this layer adds ``--source`` and the shared-memory
# regions of mainline TT-Metal. Order: our server's subscription (with the shared-memory totals
# beside it as a cross-check when regions are there) > shared-memory regions > the original server,
# polled > None (the caller offers the demo). ``--follow LOG`` keeps its own order.


def _shm_source(args: argparse.Namespace, force: bool = False):
    """TT-Metal's shared-memory statistics, when regions are there, or the machine has Tenstorrent
    cards (a TT-Metal run will create them), or ``force``; else None."""
    from .shm import DEFAULT_INTERVAL, ShmSource, default_shm_dir, hardware_present, has_regions

    shm_dir = getattr(args, "shm_dir", None) or default_shm_dir()
    if not force and not has_regions(shm_dir) and not (os.path.isdir(shm_dir) and hardware_present()):
        return None
    return ShmSource(shm_dir, getattr(args, "shm_interval", None) or DEFAULT_INTERVAL, getattr(args, "arch", None))


def _forced_source(args: argparse.Namespace) -> Source | None:
    """``--source NAME``: that source, whatever else is there (``--source follow`` needs ``--follow LOG``)."""
    kind = getattr(args, "source", None) or "auto"
    if kind == "shm":
        return _shm_source(args, force=True)
    if kind == "demo":
        from .demo import DemoSource

        return DemoSource(reason="--source demo")
    if kind == "subscribe":
        from .subscribe import SubscribeSource

        return SubscribeSource(args.socket)
    if kind == "poll":
        return PollSource(args.socket, getattr(args, "interval", 0.5) or 0.5, _layout_arg(args))
    if kind == "follow":
        if not getattr(args, "follow", None):
            raise ValueError("--source follow needs --follow LOG")
        return FollowLogSource(args.follow)
    return None


async def open_source_async(args: argparse.Namespace, probe_timeout: float = 0.5) -> Source | None:
    """The source ``memtop`` should use for ``args`` (see the order above), or None when there is
    nothing to monitor."""
    from .subscribe import SubscribeSource

    forced = _forced_source(args)
    if forced is not None:
        return forced
    server = await _server_source_async(args, probe_timeout)
    if getattr(args, "follow", None):
        return server
    if server is None:
        return _shm_source(args)
    if isinstance(server, SubscribeSource):
        shm = _shm_source(args)
        if shm is None:
            return server
        from .shm import WithShmCrossCheck

        return WithShmCrossCheck(server, shm)
    if isinstance(server, PollSource):
        return _shm_source(args) or server
    return server


def open_source(args: argparse.Namespace) -> Source | None:
    """Synchronous wrapper for callers outside an event loop (``memtop`` before the UI starts)."""
    return anyio.run(open_source_async, args)

