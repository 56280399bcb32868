"""tt-memtop: an htop-style monitor for Tenstorrent accelerator memory.

Layers (data flows one way): ``core`` (pure: protocol codec, registry, events, phases) →
``server`` (anyio allocation server) → ``sources`` (subscribe / poll / log / replay / demo) → ``ui``.

For scripts: ``from tt_memtop import Client`` (see :mod:`tt_memtop.api`).
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Client", "DeviceTotals", "__version__"]

if TYPE_CHECKING:
    from .api import Client, DeviceTotals


def __getattr__(name: str):
    # Lazy: `memtop` itself imports this package first and must not pay for the client's imports.
    if name in ("Client", "DeviceTotals"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
