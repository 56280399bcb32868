"""Source: poll an original allocation server (no subscription extension) for per-device totals.

Why: ``allocation_server_poc`` only answers QUERY / DEVICE_INFO_QUERY; it never pushes events.
Polling gives the bars and their deltas; panes that need per-buffer events stay empty and the
Status says how to fill them (run ``memtop serve``, or add ``--follow LOG``).

Layout detection (``layout="auto"``). The wire has no length or version field, and an original
server only understands requests of its own compile-time size. First, on a fresh connection, a
lone 72-byte QUERY(0): every original (S1–S5) reads it with a single ``recv`` as one message of
its own size and answers with a RESPONSE of its own size, so the reply's *length* names the
layout, and no version logs anything for it. (``memtop serve`` in ``auto`` answers in 72 bytes,
which is right for that connection; ``memtop serve --protocol N`` waits for a full N-byte frame
and times out.) If that gets no well-formed reply, DEVICE_INFO_QUERY(-1) is sent as a 144-, 128-
then 112-byte struct, each on a fresh connection, and the first well-formed reply wins. A
mismatched request is not simply ignored: a 112-byte server reads a 144-byte request as one
112-byte message plus a 32-byte stray, which is why every probe gets its own connection. Costs:
at most four short timeouts before giving up; the fallback probes can leave "Unknown message
type" lines in an old server's log.
"""

from __future__ import annotations

import time

import anyio

from ..client import AllocationClient
from ..core.devices import Inventory
from ..core.protocol import LAYOUT_SIZES, AllocMessage, Layout, MsgType, decode, encode
from .base import Capability, Emit, Source, Status, TotalsSample

__all__ = ["PROBE_ORDER", "PollSource", "detect_layout", "totals_only_message"]

PROBE_ORDER = (Layout.V144, Layout.V128, Layout.V112)
#: Devices queried when the server cannot say how many it has (S1, or no hardware detected).
FALLBACK_DEVICES = range(8)
CAPS = frozenset({Capability.TOTALS})


def totals_only_message(path: str, layout: Layout, interval: float) -> str:
    return (f"polling the original allocation server at {path} ({int(layout)}-byte protocol) every {interval:g} s: "
            f"totals only. The event feed, buffer and process panes need per-buffer events: run `memtop serve` "
            f"in place of allocation_server_poc, or add `--follow LOG` with the server's log file")


async def _exchange(path: str, request: bytes, timeout: float, settle: float = 0.05) -> bytes:
    """Send ``request`` on a fresh connection; return whatever comes back before the peer goes quiet."""
    got = b""
    with anyio.move_on_after(timeout):
        async with await anyio.connect_unix(path) as stream:
            await stream.send(request)
            while len(got) < max(LAYOUT_SIZES):
                with anyio.move_on_after(settle if got else timeout) as scope:
                    try:
                        got += await stream.receive(4096)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                        break
                if scope.cancelled_caught:
                    break
    return got


def _reply_layout(reply: bytes, want_type: int, want_device: int) -> Layout | None:
    if len(reply) not in LAYOUT_SIZES or len(reply) == Layout.V648:
        return None
    lay = Layout(len(reply))
    m = decode(reply, lay)
    return lay if m.type == want_type and m.device_id == want_device else None


async def detect_layout(path: str, timeout: float = 0.3) -> Layout | None:
    """The layout the server at ``path`` speaks, or None if nothing answers. Raises OSError if unreachable."""
    reply = await _exchange(path, encode(AllocMessage(MsgType.QUERY, device_id=0), Layout.V72), timeout)
    found = _reply_layout(reply, MsgType.RESPONSE, 0)
    if found is not None:
        return found
    for lay in PROBE_ORDER:
        reply = await _exchange(path, encode(AllocMessage(MsgType.DEVICE_INFO_QUERY, device_id=-1), lay), timeout)
        found = _reply_layout(reply, MsgType.DEVICE_INFO_RESPONSE, -1)
        if found is not None:
            return found
    return None


class PollSource(Source):
    """Poll QUERY per device every ``interval`` seconds; reconnect (and re-detect) when the server restarts."""

    def __init__(self, socket_path: str, interval: float = 0.5, layout: Layout | int | str = "auto", *,
                 probe_timeout: float = 0.3, reply_timeout: float = 2.0, backoff_max: float = 5.0,
                 clock=time.time_ns) -> None:
        self.socket_path = socket_path
        self.interval = interval
        self.forced = None if str(layout).lower() == "auto" else Layout(int(layout))
        self.probe_timeout = probe_timeout
        self.reply_timeout = reply_timeout
        self.backoff_max = backoff_max
        self.clock = clock
        self.layout: Layout | None = None
        self.inventory: Inventory | None = None
        self.description = f"poll of {socket_path}"
        self._seen: set[int] = {0}

    async def _inventory(self, client: AllocationClient) -> Inventory | None:
        if client.layout == Layout.V72:
            # S1 (72 bytes) knows no DEVICE_INFO and never answers (one "Unknown message type: 6" in its
            # log); `memtop serve` answers on any layout. Ask once, briefly.
            try:
                inv = await client.inventory(self.probe_timeout)
            except TimeoutError:
                return None
        else:
            inv = await client.inventory(self.reply_timeout)
        return inv if len(inv) else None

    async def sample(self, client: AllocationClient) -> TotalsSample:
        """One round of QUERYs."""
        # An original server's device count can be short of what TT-Metal uses (S2 counts only PCIe
        # chips: 4 on a T3K that allocates on 0-7), so always ask at least the fallback range.
        known = len(self.inventory) if self.inventory else 0
        devices = range(max(known, len(FALLBACK_DEVICES)))
        totals = {}
        for d in devices:
            r = await client.query(d, self.reply_timeout)
            t = (r.dram_allocated, r.l1_allocated, r.l1_small_allocated, r.trace_allocated, r.cb_allocated,
                 r.kernel_allocated)
            if any(t):
                self._seen.add(d)
            if d < known or d in self._seen:
                totals[d] = t
        return TotalsSample(self.clock(), totals, self.inventory)

    async def run(self, emit: Emit) -> None:
        path = self.socket_path
        delay = 0.25
        emit(Status("connecting", f"connecting to {path}"))
        while True:
            try:
                layout = self.forced or await detect_layout(path, self.probe_timeout)
                if layout is None:
                    why = f"the server at {path} answers no request of 144, 128, 112 or 72 bytes"
                else:
                    self.layout = layout
                    async with await AllocationClient.connect(path, layout) as client:
                        self.inventory = await self._inventory(client)
                        emit(Status("connected", totals_only_message(path, layout, self.interval), CAPS))
                        delay = 0.25
                        while True:
                            emit(await self.sample(client))
                            await anyio.sleep(self.interval)
            except FileNotFoundError:
                why = f"no server at {path}"
            except ConnectionRefusedError:
                why = f"nothing is listening on {path}"
            except TimeoutError:
                why = f"the server at {path} stopped answering"
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream,
                    anyio.IncompleteRead) as exc:
                why = f"lost the connection to {path} ({exc or type(exc).__name__})"
            emit(Status("disconnected", f"{why}; retrying in {delay:g} s", CAPS))
            await anyio.sleep(delay)
            delay = min(self.backoff_max, delay * 2)
