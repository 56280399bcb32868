"""Evidence extraction: what one event says about its process, independent of the current phase.

* **I/O trickle**: buffers up to ``io_max_bytes`` (replay inputs, read-backs) are never evidence.
* **program objects**: CBs and application kernels (144-byte clients) are compile signatures.
* **trace buffers**: a TRACE buffer, or — with ``trace_region_size = 0``, the default in current
  TT-Metal — a *DRAM* buffer allocated top-down by ``MeshTrace::populate_mesh_buffer``: far above
  every bottom-up DRAM buffer of its device (:class:`TopDown`). Whether it really was a trace is
  then confirmed by behaviour: it is held while the stream goes quiet.
* **entries**: what remains is evidence, kept per process in a :class:`Window` of the last N
  entries per device: allocations (big DRAM ones are load evidence), temporaries freed young
  (churn), long-lived buffers freed (teardown).
"""

from __future__ import annotations

from collections import deque

from ..protocol import BufferType
from .types import PhaseConfig

__all__ = ["ALLOC", "BIG", "CHURN", "COMPILE", "FREE", "LONG", "TopDown", "Window", "is_program_object"]

_DRAM, _CB, _KERNEL = int(BufferType.DRAM), int(BufferType.CB), int(BufferType.KERNEL)

#: Entry kinds.
ALLOC, BIG, CHURN, LONG, FREE, COMPILE = range(6)


def is_program_object(buffer_type: int) -> bool:
    return buffer_type == _CB or buffer_type == _KERNEL


def is_compile_signature(buffer_type: int, name: str) -> bool:
    """A CB, or an application kernel (system kernels load at device init, not when compiling)."""
    return buffer_type == _CB or (buffer_type == _KERNEL and name in ("Application", "APPLICATION", ""))


class TopDown:
    """Per device: the highest bottom-up DRAM address and the largest DRAM buffer seen.

    The DRAM allocator is bottom-up (lowest free address first), so a new bottom-up buffer starts at
    most one buffer above the highest one so far. A buffer far above that was allocated top-down.
    """

    __slots__ = ("gap", "high", "largest")

    def __init__(self, cfg: PhaseConfig) -> None:
        self.gap = cfg.top_down_gap_bytes
        self.high: dict[int, int] = {}
        self.largest: dict[int, int] = {}

    def classify(self, device: int, address: int, size: int) -> int:
        """Record a DRAM allocation: 2 if it was allocated top-down (a dynamic-region trace buffer),
        1 if it is the highest address seen on its device (a trace only if its behaviour says so), else 0."""
        high = self.high.get(device, 0)
        largest = self.largest.get(device, 0)
        if high and address > high + largest + self.gap:
            return 2
        if size > largest:
            self.largest[device] = size
        if address > high:
            self.high[device] = address
            return 1 if high else 0
        return 0


class Window:
    """The last ``n`` evidence entries of a process, with counts by kind: O(1) per entry.

    Each entry is ``(kind, ts, start, sig, key)``: ``start`` is where its evidence began (a
    temporary's allocation), ``sig`` the shape of an allocation (``size << 8 | type``), ``key`` its
    live-map key.
    """

    __slots__ = ("entries", "counts", "sigs", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.entries: deque[tuple[int, int, int, int | None, object]] = deque()
        self.counts = [0] * 6
        self.sigs: dict[int, int] = {}

    def resize(self, n: int) -> None:
        self.n = n
        while len(self.entries) > n:
            self._pop()

    def add(self, kind: int, ts: int, start: int, sig: int | None = None, key: object = None) -> None:
        entries = self.entries
        entries.append((kind, ts, start, sig, key))
        self.counts[kind] += 1
        if sig is not None:
            sigs = self.sigs
            sigs[sig] = sigs.get(sig, 0) + 1
        if len(entries) > self.n:
            self._pop()

    def _pop(self) -> None:
        kind, _ts, _start, sig, _key = self.entries.popleft()
        self.counts[kind] -= 1
        if sig is not None:
            n = self.sigs[sig] - 1  # noqa: SIM102
            if n:
                self.sigs[sig] = n
            else:
                del self.sigs[sig]

    def clear(self) -> None:
        self.entries.clear()
        self.counts = [0] * 6
        self.sigs.clear()

    def since(self, ts: int) -> list[tuple[int, int, int, int | None, object]]:
        """The entries at or after ``ts`` (O(entries): called only when a rule fires)."""
        return [e for e in self.entries if e[1] >= ts]

    def variety(self, exclude: set[int]) -> int:
        """Distinct allocation signatures in the window, not counting ``exclude``."""
        return sum(1 for s in self.sigs if s not in exclude)
