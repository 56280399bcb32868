"""tt-memtop: an htop-style monitor for Tenstorrent accelerator memory.

Layers (data flows one way): ``core`` (pure: protocol codec, registry, events, phases) →
``server`` (anyio allocation server) → ``sources`` (subscribe / poll / log / replay / demo) → ``ui``.
"""

__version__ = "0.1.0"
