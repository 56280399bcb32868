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


async def open_source_async(args: argparse.Namespace, probe_timeout: float = 0.5) -> Source | None:
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


def open_source(args: argparse.Namespace) -> Source | None:
    """Synchronous wrapper for callers outside an event loop (``memtop`` before the UI starts)."""
    return anyio.run(open_source_async, args)

