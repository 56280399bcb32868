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
from .follow import FollowLogSource
from .poll import PollSource
from .probe import BUSY_AFTER_S, ServerKind, probe_server

__all__ = ["NOTHING_HINT", "FollowWithPolling", "listening", "nothing_found", "open_source", "open_source_async"]


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


#: What to do when nothing is there, short enough for an 80-column header beside the DEMO badge.
NOTHING_HINT = "no TT-Metal found: run a model or `memtop serve`"


def nothing_found(args: argparse.Namespace) -> str:
    """Why there is nothing to monitor, and what to do about it (first use on a fresh machine)."""
    from .shm import default_shm_dir

    shm_dir = getattr(args, "shm_dir", None) or default_shm_dir()
    where = getattr(args, "follow", None) or args.socket
    return (f"nothing to monitor: no TT-Metal shared-memory regions in {shm_dir} and no allocation server at "
            f"{where}. Run a TT-Metal program (mainline TT-Metal publishes its memory totals there, on by "
            f"default), or run `memtop serve` and start the program with TT_ALLOC_TRACKING_ENABLED=1 for every "
            f"allocation; `memtop demo` shows a simulated run")


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


async def _server_source_async(args: argparse.Namespace, probe_timeout: float = BUSY_AFTER_S) -> Source | None:
    """The server-side source for ``args``, or None when nothing listens on the socket.

    Auto layout: the detected layout is *not* handed on as forced; every reconnect probes again."""
    from .subscribe import SubscribeSource

    path = args.socket
    interval = getattr(args, "interval", 0.5) or 0.5
    layout = _layout_arg(args)
    arch = getattr(args, "arch", None)
    up, kind = await listening(path, layout, probe_timeout)
    follow = getattr(args, "follow", None)
    if follow:
        src = FollowLogSource(follow, arch=arch)
        if up:
            return FollowWithPolling(src, PollSource(path, interval, layout, known=kind, subscribe_ours=False,
                                                     arch=arch))
        return src
    if not up:
        return None
    if kind is not None and kind.ours:
        return SubscribeSource(path, probed=True, interval=interval)
    return PollSource(path, interval, layout, known=kind, arch=arch)


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
        return PollSource(args.socket, getattr(args, "interval", 0.5) or 0.5, _layout_arg(args),
                          arch=getattr(args, "arch", None))
    if kind == "follow":
        if not getattr(args, "follow", None):
            raise ValueError("--source follow needs --follow LOG")
        return FollowLogSource(args.follow, arch=getattr(args, "arch", None))
    return None


async def open_source_async(args: argparse.Namespace, probe_timeout: float = BUSY_AFTER_S) -> Source | None:
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
