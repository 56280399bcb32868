"""Source: our server's subscription (snapshot + every event), with reconnection.

This is the full-fidelity source: per-buffer events with gap-free sequence numbers. When the
server goes away we say so in a Status and retry with exponential backoff; every reconnect is
probed first (:mod:`.probe`, silent for any server), so a server restarted as an original
``allocation_server_poc`` is polled from then on, never sent SUBSCRIBE (it would log it). When
ours comes back, the new snapshot replaces the old state.
"""

from __future__ import annotations

import anyio

from ..client import EXTENSION_LAYOUT, ExtensionUnsupported, Resync, ServerInfo, ServerStatus, subscribe
from ..core.eventcodec import CodecError
from ..core.protocol import Layout
from .base import Capability, Emit, Source, Status
from .probe import BUSY_AFTER_S, probe_server

__all__ = ["SubscribeSource", "probe_extension"]

CAPABILITIES = frozenset({Capability.EVENTS, Capability.TOTALS})


async def probe_extension(path: str, timeout: float = 1.0) -> bool:
    """Is the server at ``path`` ``memtop serve`` with its extension? False (never an exception) if not or absent."""
    try:
        kind = await probe_server(path, timeout=min(timeout, BUSY_AFTER_S), patience=timeout)
    except OSError:
        return False
    return kind is not None and kind.ours


class SubscribeSource(Source):
    """Subscribe to the server at ``socket_path``; reconnect with backoff when it goes away.

    ``probed``: the caller has just probed the server and found ours (skip the first probe)."""

    def __init__(self, socket_path: str, *, layout: Layout | int = EXTENSION_LAYOUT, backoff_initial: float = 0.25,
                 backoff_max: float = 5.0, reconnect: bool = True, probed: bool = False,
                 interval: float = 0.5) -> None:
        self.socket_path = socket_path
        self.layout = Layout(layout)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.reconnect = reconnect
        self.probed = probed
        self.interval = interval  # for polling, should the server turn out to be an original
        self.description = f"memtop serve at {socket_path}"
        #: the server's INFO record (docs/EXTENSION.md), once connected
        self.server_info: dict | None = None
        #: the server's last STATUS (recording stopped, refused allocations...), {} if none came
        self.server_status: dict = {}

    async def _is_ours(self, emit: Emit):
        """None if ours; else the probe's finding (a ServerKind of an original, or None)."""
        from .poll import busy_message

        if self.probed:
            self.probed = False
            return None

        def busy(waited: float) -> None:
            emit(Status("busy", busy_message(self.socket_path, waited)))

        kind = await probe_server(self.socket_path, patience=None, on_busy=busy)
        return None if kind is not None and kind.ours else (kind or False)

    async def run(self, emit: Emit) -> None:
        path = self.socket_path
        delay = self.backoff_initial
        emit(Status("connecting", f"connecting to {path}"))
        while True:
            try:
                other = await self._is_ours(emit)
                if other is not None:
                    if other is False:
                        raise ExtensionUnsupported("no answer to the probe")
                    if not self.reconnect:
                        emit(Status("disconnected", f"the server at {path} is now {other.describe()}"))
                        return
                    from .poll import PollSource

                    # restarted as an original: poll it (PollSource subscribes again if ours comes back)
                    poll = PollSource(path, self.interval, known=other)
                    self.description = poll.description
                    await poll.run(emit)
                    return
                connected = False
                info: list[ServerInfo] = []
                note = ""
                async for item in subscribe(path, layout=self.layout, on_info=info.append):
                    if not connected:
                        connected = True
                        delay = self.backoff_initial
                        self.server_info = info[-1].info if info else None
                        note = "; ".join(info[-1].notes()) if info else ""
                        emit(Status("connected", note, CAPABILITIES))  # the description already names the path
                    if isinstance(item, ServerStatus):
                        self.server_status = item.fields
                        emit(Status("connected", "; ".join(x for x in (item.describe(), note) if x), CAPABILITIES))
                    elif isinstance(item, Resync):
                        emit(Status("connected", f"monitor fell behind: {item.dropped} events skipped, "
                                                 f"state reloaded from a fresh snapshot", CAPABILITIES))
                    else:
                        emit(item)
                why = f"the server at {path} closed the connection"
            except ExtensionUnsupported:
                why = f"the server at {path} did not answer the subscription"
            except FileNotFoundError:
                why = f"no server at {path}"
            except ConnectionRefusedError:
                why = f"nothing is listening on {path}"
            except (OSError, anyio.BrokenResourceError, anyio.IncompleteRead, CodecError) as exc:
                why = f"lost the connection to {path} ({exc or type(exc).__name__})"
            if not self.reconnect:
                emit(Status("disconnected", why))
                return
            emit(Status("disconnected", f"{why}; retrying in {delay:g} s"))
            await anyio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
