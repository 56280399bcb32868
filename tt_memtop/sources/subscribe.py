"""Source: our server's subscription (snapshot + every event), with reconnection.

This is the full-fidelity source: per-buffer events with gap-free sequence numbers. When the
server goes away we say so in a Status and retry with exponential backoff; when it comes back the
new snapshot replaces the old state.
"""

from __future__ import annotations

import anyio

from ..client import EXTENSION_LAYOUT, AllocationClient, ExtensionUnsupported, Resync, ServerInfo, subscribe
from ..core.eventcodec import CodecError
from ..core.protocol import Layout
from .base import Capability, Emit, Source, Status

__all__ = ["SubscribeSource", "probe_extension"]

CAPABILITIES = frozenset({Capability.EVENTS, Capability.TOTALS})


async def probe_extension(path: str, timeout: float = 1.0) -> bool:
    """Does the server at ``path`` speak the tt-memtop extension? False (never an exception) if not or absent."""
    try:
        with anyio.fail_after(timeout):
            client = await AllocationClient.connect(path, EXTENSION_LAYOUT)
    except (OSError, TimeoutError):
        return False
    try:
        return await client.hello(timeout)
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


class SubscribeSource(Source):
    """Subscribe to the server at ``socket_path``; reconnect with backoff when it goes away."""

    def __init__(self, socket_path: str, *, layout: Layout | int = EXTENSION_LAYOUT, backoff_initial: float = 0.25,
                 backoff_max: float = 5.0, reconnect: bool = True) -> None:
        self.socket_path = socket_path
        self.layout = Layout(layout)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.reconnect = reconnect
        self.description = f"memtop serve at {socket_path}"
        #: the server's INFO record (docs/EXTENSION.md), once connected
        self.server_info: dict | None = None

    async def run(self, emit: Emit) -> None:
        path = self.socket_path
        delay = self.backoff_initial
        emit(Status("connecting", f"connecting to {path}"))
        while True:
            try:
                connected = False
                info: list[ServerInfo] = []
                async for item in subscribe(path, layout=self.layout, on_info=info.append):
                    if not connected:
                        connected = True
                        delay = self.backoff_initial
                        self.server_info = info[-1].info if info else None
                        note = "; ".join(info[-1].notes()) if info else ""
                        emit(Status("connected", note, CAPABILITIES))  # the description already names the path
                    if isinstance(item, Resync):
                        emit(Status("connected", f"monitor fell behind: {item.dropped} events skipped, "
                                                 f"state reloaded from a fresh snapshot", CAPABILITIES))
                    else:
                        emit(item)
                why = f"the server at {path} closed the connection"
            except ExtensionUnsupported:
                emit(Status("error", f"the server at {path} does not speak the tt-memtop extension "
                                     f"(an original allocation server?); use polling instead"))
                return
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
