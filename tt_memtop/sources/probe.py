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
is told how long it has been, and we keep waiting, up to ``patience`` (``None``: for ever).

**A QUERY is never abandoned.** The originals ``send`` their reply without ``MSG_NOSIGNAL`` and do
not ignore SIGPIPE: a client that closes its connection before the reply arrives *kills the
server*. So the probe runs on a plain socket in a daemon thread that, when the caller stops
waiting, still waits (up to ``LINGER_S``) for the reply before it closes the socket.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ..core.protocol import PROBE_REPLY, PROBE_REQUEST, AllocMessage, Layout, MsgType, decode, encode

__all__ = ["BUSY_AFTER_S", "ServerKind", "probe_server", "probe_request"]

#: No reply after this long: the server is busy (not absent).
BUSY_AFTER_S = 0.5
#: After the first bytes of a reply, how long to wait for the rest.
SETTLE_S = 0.05
#: How long an abandoned probe still waits for its reply before closing (see the module docstring).
LINGER_S = 600.0
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


class _Probe(threading.Thread):
    """Send the probe on ``sock`` and read the reply; closes the socket only after the reply (or EOF)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(name="memtop-probe", daemon=True)
        self.sock = sock
        self.reply = b""
        self.done = threading.Event()

    def run(self) -> None:
        sock = self.sock
        try:
            sock.settimeout(LINGER_S)
            sock.sendall(probe_request())
            got = sock.recv(4096)
            sock.settimeout(SETTLE_S)
            while got and len(got) < max(_REPLY_LAYOUTS):
                try:
                    more = sock.recv(4096)
                except TimeoutError:
                    break
                if not more:
                    break
                got += more
            self.reply = got
        except OSError:
            pass
        finally:
            sock.close()
            self.done.set()


async def probe_server(path: str, *, timeout: float = BUSY_AFTER_S, patience: float | None = 30.0,
                       on_busy: Callable[[float], None] | None = None) -> ServerKind | None:
    """Probe the server at ``path`` (see the module docstring).

    Raises OSError (FileNotFoundError, ConnectionRefusedError, ...) when nothing accepts a
    connection there. Returns None when something accepted but did not answer the probe within
    ``patience`` seconds, or closed without answering (not an allocation server)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(path)  # errors here mean "no server": the caller says so
    except BaseException:
        sock.close()
        raise
    worker = _Probe(sock)
    worker.start()
    start = anyio.current_time()
    told = start + timeout
    while not worker.done.is_set():
        now = anyio.current_time()
        waited = now - start
        if patience is not None and waited >= patience:
            return None  # the thread still waits for the reply before closing
        if on_busy is not None and now >= told:
            on_busy(waited)
            told = now + 1.0
        await anyio.sleep(0.005 if waited < 0.1 else 0.02)
    return classify(worker.reply)
