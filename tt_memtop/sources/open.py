"""Pick the best source for ``memtop``'s flags: what the user already runs decides what we can show.

Order: ``--follow LOG`` follows the log (and, if a server listens on ``--socket``, polls it too
for the device inventory); else a server that speaks our extension is subscribed to; else a
server that listens at all (an original ``allocation_server_poc``, or any server too busy to
answer the probe yet) is polled; else None, and the caller offers the demo (never when
``--socket`` was given explicitly). What a server is comes from :mod:`.probe`, which no
original logs anything for.
"""

from __future__ import annotations

import argparse
import os
import stat

import anyio

from .base import Emit, Source, TotalsSample
from .logfile import FollowLogSource
from .poll import PollSource
from .probe import BUSY_AFTER_S, ServerKind, probe_server

__all__ = ["FollowWithPolling", "listening", "open_source", "open_source_async"]


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


async def listening(path: str, layout: str, probe_timeout: float) -> tuple[bool, ServerKind | None]:
    """(does something accept connections at ``path``, what the probe found there).

    Forced ``--protocol``: only a connect (nothing is sent). A server that accepts but is slow to
    answer is still listening (busy); the source chosen for it waits and says so."""
    try:
        if layout != "auto":
            stream = await anyio.connect_unix(path)
            await stream.aclose()
            return True, None
        return True, await probe_server(path, timeout=probe_timeout, patience=probe_timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return False, None
    except OSError as exc:
        if os.path.exists(path) and not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(f"{path} is not a socket") from exc
        raise


async def open_source_async(args: argparse.Namespace, probe_timeout: float = BUSY_AFTER_S) -> Source | None:
    """The source ``memtop`` should use for ``args``, or None when nothing listens on the socket.

    Auto layout: the detected layout is *not* handed on as forced; every reconnect probes again."""
    from .subscribe import SubscribeSource

    path = args.socket
    interval = getattr(args, "interval", 0.5) or 0.5
    layout = _layout_arg(args)
    up, kind = await listening(path, layout, probe_timeout)
    follow = getattr(args, "follow", None)
    if follow:
        src = FollowLogSource(follow)
        if up:
            return FollowWithPolling(src, PollSource(path, interval, layout, known=kind, subscribe_ours=False))
        return src
    if not up:
        return None
    if kind is not None and kind.ours:
        return SubscribeSource(path, probed=True, interval=interval)
    return PollSource(path, interval, layout, known=kind)


def open_source(args: argparse.Namespace) -> Source | None:
    """Synchronous wrapper for callers outside an event loop (``memtop`` before the UI starts)."""
    return anyio.run(open_source_async, args)
