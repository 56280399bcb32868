"""The client API for scripts: ``async with Client() as c`` — per-device totals, devices, a live event stream.

A thin, typed layer over :mod:`tt_memtop.client` for people who want numbers, not a TUI::

    import anyio
    from tt_memtop import Client

    async def main():
        async with Client() as c:                  # $TT_MEMTOP_SOCKET or /tmp/tt_allocation_server.sock
            for dev, t in (await c.totals()).items():
                print(dev, t.dram, t.l1, t.trace)
            async for update in c.subscribe():     # memtop serve only: a Snapshot, then EventBatches
                ...

    anyio.run(main)

``totals`` works against any allocation server (ours or the original, whatever its layout: it is
detected); ``subscribe`` needs ``memtop serve`` and raises :class:`ExtensionUnsupported` otherwise.
Errors are ``OSError`` (no server, connection lost) and ``TimeoutError`` (no reply).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import NamedTuple

from .client import AllocationClient, ExtensionUnsupported, Resync, subscribe
from .core.devices import Inventory
from .core.protocol import Layout
from .sources.base import EventBatch, Snapshot

__all__ = ["Client", "DeviceTotals", "EventBatch", "ExtensionUnsupported", "Resync", "Snapshot"]

DEFAULT_SOCKET = "/tmp/tt_allocation_server.sock"
#: Devices asked when the server does not say how many it has (the original's v72 layout).
FALLBACK_DEVICES = 8


class DeviceTotals(NamedTuple):
    """Bytes allocated on one device, as the server's QUERY reply has them (system memory is in l1_small)."""

    dram: int
    l1: int
    l1_small: int
    trace: int
    cb: int
    kernel: int


class Client:
    """A connection to an allocation server at ``socket`` (default: ``$TT_MEMTOP_SOCKET`` or the standard path).

    ``protocol``: the message layout in bytes (72, 112, 128, 144) or ``"auto"`` to detect it.
    """

    def __init__(self, socket: str | None = None, *, protocol: int | str = "auto", timeout: float = 5.0) -> None:
        self.socket = socket or os.environ.get("TT_MEMTOP_SOCKET") or DEFAULT_SOCKET
        self.protocol = protocol
        self.timeout = timeout
        self.layout: Layout | None = None
        #: the server is ``memtop serve`` (known after entering, with ``protocol="auto"``)
        self.ours: bool | None = None
        self._client: AllocationClient | None = None
        self._inventory: Inventory | None = None

    async def __aenter__(self) -> Client:
        from .sources.probe import probe_server

        if str(self.protocol).lower() == "auto":
            # the silent probe (sources/probe.py): one QUERY every server answers and none logs
            kind = await probe_server(self.socket, timeout=min(self.timeout, 1.0), patience=self.timeout)
            if kind is None:
                raise ConnectionError(f"the server at {self.socket} did not answer a QUERY in {self.timeout:g} s")
            self.ours = kind.ours
            layout = Layout.V144 if kind.ours else kind.layout  # memtop serve answers every layout: take the widest
        else:
            layout = Layout(int(self.protocol))
        self.layout = layout
        self._client = await AllocationClient.connect(self.socket, layout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _conn(self) -> AllocationClient:
        if self._client is None:
            raise RuntimeError("use the Client inside `async with Client(...) as c:`")
        return self._client

    async def devices(self) -> Inventory:
        """The server's devices (DEVICE_INFO); empty for a 72-byte original, which has no such request
        (it is not asked: it would log "Unknown message type: 6")."""
        if self._inventory is None:
            client = self._conn()
            if client.layout == Layout.V72 and not self.ours:
                self._inventory = Inventory()
            else:
                self._inventory = await client.inventory(self.timeout)
        return self._inventory

    async def totals(self) -> dict[int, DeviceTotals]:
        """Bytes per device and pool right now (one QUERY per device)."""
        client = self._conn()
        count = len(await self.devices()) or FALLBACK_DEVICES
        out = {}
        for device in range(count):
            r = await client.query(device, self.timeout)
            out[device] = DeviceTotals(r.dram_allocated, r.l1_allocated, r.l1_small_allocated, r.trace_allocated,
                                       r.cb_allocated, r.kernel_allocated)
        return out

    async def subscribe(self) -> AsyncIterator[Snapshot | EventBatch | Resync]:
        """Every change as it happens (``memtop serve`` only): a :class:`Snapshot` of all live buffers, then
        :class:`EventBatch` es; after a :class:`Resync` (the script fell behind) a fresh Snapshot follows."""
        async for item in subscribe(self.socket, hello_timeout=self.timeout):
            yield item
