"""Source: poll an original allocation server (no subscription extension) for per-device totals.

Why: ``allocation_server_poc`` only answers QUERY / DEVICE_INFO_QUERY; it never pushes events.
Polling gives the bars and their deltas; panes that need per-buffer events stay empty and the
Status says how to fill them (run ``memtop serve``, or add ``--follow LOG``).

What the server is (its layout; ours or an original) is found by :mod:`.probe`, silently for
every original version, on the first connection and **again on every reconnect** (the server
may have been restarted as another version, or as ``memtop serve``, which is then subscribed to)
unless ``--protocol`` forced a layout. A server that accepts but is slow to answer is *busy*: the
header says so and we wait; it is never taken for "no server". DEVICE_INFO_QUERY is sent only to
servers that know it (112 bytes and up, or ours): S1 would log "Unknown message type: 6".
"""

from __future__ import annotations

import time

import anyio

from ..client import AllocationClient
from ..core.devices import Inventory
from ..core.protocol import AllocMessage, Layout, MsgType
from .base import Capability, Emit, Source, Status, TotalsSample
from .probe import BUSY_AFTER_S, ServerKind, probe_server

__all__ = ["PollSource", "busy_message", "detect_layout", "totals_only_message"]

#: Devices queried when the server cannot say how many it has (S1, or no hardware detected).
FALLBACK_DEVICES = range(8)
CAPS = frozenset({Capability.TOTALS})


def totals_only_message(path: str, layout: Layout, interval: float) -> str:
    return (f"polling the original allocation server at {path} ({int(layout)}-byte protocol) every {interval:g} s: "
            f"totals only. The event feed, buffer and process panes need per-buffer events: run `memtop serve` "
            f"in place of allocation_server_poc, or add `--follow LOG` with the server's log file")


def busy_message(path: str, waited: float) -> str:
    return (f"server busy: {path} accepted the connection but has not answered for {waited:.1f} s "
            f"(a snapshot or cleanup?); waiting")


async def detect_layout(path: str, timeout: float = BUSY_AFTER_S, patience: float = 2.0) -> Layout | None:
    """The layout the server at ``path`` speaks, or None if it does not answer within ``patience``.
    Raises OSError if nothing listens there."""
    kind = await probe_server(path, timeout=timeout, patience=max(timeout, patience))
    return kind.layout if kind is not None else None


class PollSource(Source):
    """Poll QUERY per device every ``interval`` seconds; reconnect (and re-detect) when the server restarts.

    ``layout``: "auto" (probe on every connection) or a forced layout (``--protocol``: never probed).
    ``known``: what a probe just found, so the first connection need not probe again.
    ``subscribe_ours``: when the server turns out to be ``memtop serve``, subscribe to it instead of
    polling (off when only the totals are wanted, as with ``--follow``)."""

    def __init__(self, socket_path: str, interval: float = 0.5, layout: Layout | int | str = "auto", *,
                 known: ServerKind | None = None, subscribe_ours: bool = True, probe_timeout: float = BUSY_AFTER_S,
                 reply_timeout: float = 2.0, backoff_max: float = 5.0, clock=time.monotonic_ns,
                 arch: str | None = None) -> None:
        self.socket_path = socket_path
        # capacities for a server that cannot say (S1: no DEVICE_INFO): --arch, else "capacity unknown"
        self.assumed = Inventory.uniform(1, arch) if arch else None
        self.interval = interval
        self.forced = None if str(layout).lower() == "auto" else Layout(int(layout))
        self.known = known
        self.subscribe_ours = subscribe_ours
        self.probe_timeout = probe_timeout
        self.reply_timeout = reply_timeout
        self.backoff_max = backoff_max
        self.clock = clock
        self.layout: Layout | None = None
        self.kind: ServerKind | None = None
        self.inventory: Inventory | None = None
        self.description = f"poll of {socket_path}"
        self._seen: set[int] = {0}
        self._emit: Emit | None = None

    async def _inventory(self, client: AllocationClient) -> Inventory | None:
        if client.layout == Layout.V72 and not (self.kind and self.kind.ours):
            return None  # S1 has no DEVICE_INFO: asking would put "Unknown message type: 6" in its log
        inv = await client.inventory(self.reply_timeout)
        return inv if len(inv) else None

    async def _query(self, client: AllocationClient, device: int):
        """QUERY ``device``; a reply slower than ``reply_timeout`` makes the server *busy*, not gone."""
        await client.send(AllocMessage(type=MsgType.QUERY, device_id=device))
        waited = 0.0
        while True:
            try:
                reply = await client.reply(self.reply_timeout)
            except TimeoutError:
                waited += self.reply_timeout
                if self._emit is not None:
                    self._emit(Status("busy", busy_message(self.socket_path, waited), CAPS))
                continue
            if waited and self._emit is not None:
                self._emit(Status("connected", totals_only_message(self.socket_path, client.layout, self.interval),
                                  CAPS))
            return reply

    async def sample(self, client: AllocationClient) -> TotalsSample:
        """One round of QUERYs."""
        # An original server's device count can be short of what TT-Metal uses (S2 counts only PCIe
        # chips: 4 on a T3K that allocates on 0-7), so always ask at least the fallback range.
        known = len(self.inventory) if self.inventory else 0
        devices = range(max(known, len(FALLBACK_DEVICES)))
        totals = {}
        for d in devices:
            r = await self._query(client, d)
            t = (r.dram_allocated, r.l1_allocated, r.l1_small_allocated, r.trace_allocated, r.cb_allocated,
                 r.kernel_allocated)
            if any(t):
                self._seen.add(d)
            if d < known or d in self._seen:
                totals[d] = t
        return TotalsSample(self.clock(), totals, self.inventory or self.assumed)

    async def _probe(self, emit: Emit) -> ServerKind | None:
        if self.forced is not None:
            stream = await anyio.connect_unix(self.socket_path)  # only check that something listens
            await stream.aclose()
            return ServerKind(self.forced, False)
        if self.known is not None:
            kind, self.known = self.known, None
            return kind

        def busy(waited: float) -> None:
            emit(Status("busy", busy_message(self.socket_path, waited), CAPS))

        return await probe_server(self.socket_path, timeout=self.probe_timeout, patience=None, on_busy=busy)

    async def run(self, emit: Emit) -> None:
        path = self.socket_path
        delay = 0.25
        emit(Status("connecting", f"connecting to {path}"))
        while True:
            try:
                kind = await self._probe(emit)
                if kind is None:
                    why = f"the server at {path} closed the connection without answering a QUERY"
                elif kind.ours and self.subscribe_ours:
                    from .subscribe import SubscribeSource

                    # memtop serve (perhaps restarted in place of the original): the full feed, until it closes
                    self.kind = kind
                    sub = SubscribeSource(path, reconnect=False, probed=True)
                    self.description = sub.description
                    await sub.run(emit)
                    self.description = f"poll of {path}"
                    delay = 0.25
                    await anyio.sleep(delay)
                    continue
                else:
                    self.kind = kind
                    self.layout = kind.layout
                    async with await AllocationClient.connect(path, kind.layout) as client:
                        self.inventory = await self._inventory(client)
                        emit(Status("connected", totals_only_message(path, kind.layout, self.interval), CAPS))
                        delay = 0.25
                        self._emit = emit
                        try:
                            while True:
                                emit(await self.sample(client))
                                await anyio.sleep(self.interval)
                        finally:
                            self._emit = None
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
