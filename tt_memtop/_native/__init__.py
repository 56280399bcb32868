"""Optional compiled accelerators, and the one switch that turns them off.

Each accelerator is a C extension module in this package (``tt_memtop/_native/<name>.c``, built by
setup.py when a compiler is present). Code that has a fast path asks :func:`load` and falls back to
its pure-Python implementation when it gets None. ``MEMTOP_PURE_PYTHON=1`` forces the fallback at run
time, so the test suite can exercise both paths on one install.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE_ENV = "MEMTOP_PURE_PYTHON"


def pure_python() -> bool:
    """True when the environment asks for the pure-Python path."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The compiled module ``tt_memtop._native.<name>``, or None (not built, or pure Python asked for)."""
    if pure_python():
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return None


def load_set_up(name: str, *args) -> ModuleType | None:
    """:func:`load`, then the module's ``setup(*args)`` (the classes and constants it reads objects
    through); None when it is not there or refuses them (they changed shape: the pure reference runs)."""
    mod = load(name)
    if mod is None:
        return None
    try:
        mod.setup(*args)
    except (TypeError, ValueError, AttributeError):
        return None
    return mod
