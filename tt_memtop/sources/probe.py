"""What listens on an allocation-server socket, found without disturbing it.

The probe is one request that every version answers and none logs: a lone 72-byte QUERY for
device 0 on a fresh connection (PROTOCOL.md §1, §3). Each original reads it with one ``recv`` as
a message of its own compile-time size and sends back one RESPONSE of that size, so the length of
the reply names the server's layout (72: S1; 112: S2-S4; 144: S5). ``memtop serve`` answers the
same QUERY and, because the request's ``buffer_id`` is ``PROBE_REQUEST``, marks its reply
(``timestamp = PROBE_REPLY``, ``size`` = codec version; see docs/EXTENSION.md). An original
zeroes every field of a RESPONSE except device_id and the counters, so it can never look like ours.

Nothing else goes to a server before we know what it is: extension types (64-66) only to a
server that answered as ours, DEVICE_INFO_QUERY (6) never to a 72-byte one (S1 does not know it
and would log "Unknown message type: 6").

**A socket that accepts is a server.** One that accepts but does not answer within ``timeout``
is *busy* (``memtop serve`` taking a snapshot of a million buffers, a long cleanup): ``on_busy``
is told how long it has been, and we keep waiting, up to ``patience`` (``None``: for ever). At that
point the QUERY is also sent at full 144-, 128- and 112-byte size on fresh connections, for a
server that takes only whole frames of a forced layout; an original never gets that far, since
it answers the 72-byte QUERY at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ..core.protocol import PROBE_REPLY, PROBE_REQUEST, AllocMessage, Layout, MsgType, decode, encode

__all__ = ["BUSY_AFTER_S", "ServerKind", "probe_server", "probe_request"]

#: No reply after this long: the server is busy (not absent).
BUSY_AFTER_S = 0.5
#: After the first bytes of a reply, how long to wait for the rest.
SETTLE_S = 0.05
_FALLBACK_LAYOUTS = (Layout.V144, Layout.V128, Layout.V112)
_REPLY_LAYOUTS = {int(lay): lay for lay in (Layout.V72, Layout.V112, Layout.V128, Layout.V144)}


@dataclass(frozen=True, slots=True)
class ServerKind:
    """The answer to a probe: the layout the server speaks and whether it is ``memtop serve``."""

    layout: Layout
    ours: bool
    codec_version: int = 0

    def describe(self) -> str:
        who = "memtop serve" if self.ours else "an original allocation server"
        return f"{who} ({int(self.layout)}-byte protocol)"


def probe_request(layout: Layout = Layout.V72) -> bytes:
    return encode(AllocMessage(MsgType.QUERY, device_id=0, buffer_id=PROBE_REQUEST), layout)


def classify(reply: bytes) -> ServerKind | None:
    """The server that sent ``reply`` to the probe, or None if it is not a RESPONSE to it."""
    lay = _REPLY_LAYOUTS.get(len(reply))
    if lay is None:
        return None
    m = decode(reply, lay)
    if m.type != MsgType.RESPONSE or m.device_id != 0:
        return None
    ours = m.timestamp == PROBE_REPLY
    return ServerKind(lay, ours, m.size if ours else 0)


async def _read_reply(stream) -> bytes:
    got = b""
    while len(got) < max(_REPLY_LAYOUTS):
        with anyio.move_on_after(SETTLE_S if got else None) as scope:
            try:
                chunk = await stream.receive(4096)
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                break
        if scope.cancelled_caught:
            break
        got += chunk
    return got


async def probe_server(path: str, *, timeout: float = BUSY_AFTER_S, patience: float | None = 30.0,
                       on_busy: Callable[[float], None] | None = None) -> ServerKind | None:
    """Probe the server at ``path`` (see the module docstring).

    Raises OSError (FileNotFoundError, ConnectionRefusedError, ...) when nothing accepts a
    connection there. Returns None when something accepted but never answered the probe within
    ``patience`` seconds (or closed without answering: not an allocation server)."""
    first = await anyio.connect_unix(path)  # errors here mean "no server": the caller says so
    found: list[ServerKind | None] = []
    pending = [1]
    done = anyio.Event()

    async def ask(stream, layout: Layout) -> None:
        try:
            async with stream:
                await stream.send(probe_request(layout))
                kind = classify(await _read_reply(stream))
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            kind = None
        pending[0] -= 1
        if kind is not None or not pending[0]:
            found.append(kind)
            done.set()

    async def fallback(layout: Layout) -> None:
        try:
            stream = await anyio.connect_unix(path)
        except OSError:
            stream = None
        if stream is None:
            pending[0] -= 1
            if not pending[0]:
                done.set()
            return
        await ask(stream, layout)

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, first, Layout.V72)
        with anyio.move_on_after(timeout):
            await done.wait()
        if not done.is_set():
            pending[0] += len(_FALLBACK_LAYOUTS)
            for lay in _FALLBACK_LAYOUTS:
                tg.start_soon(fallback, lay)
        while not done.is_set():
            waited = anyio.current_time() - start
            if patience is not None and waited >= patience:
                break
            if on_busy is not None:
                on_busy(waited)
            step = 1.0 if patience is None else max(0.0, min(1.0, patience - waited))
            with anyio.move_on_after(step):
                await done.wait()
        tg.cancel_scope.cancel()
    return found[0] if found else None
