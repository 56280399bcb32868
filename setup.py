"""Build the optional compiled accelerators in ``tt_memtop/_native/*.c``.

Every C file there becomes the extension module ``tt_memtop._native.<name>``. They are optional: when
there is no compiler, no Python headers, or ``MEMTOP_NO_NATIVE=1`` is set at install time, the build
says so in one line and the package installs without them; memtop then runs its pure-Python path
(same behaviour, slower). All metadata lives in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def _extensions() -> list[Extension]:
    if os.environ.get("MEMTOP_NO_NATIVE"):
        return []
    headers = [str(h.relative_to(HERE)) for h in sorted((HERE / "tt_memtop" / "_native").glob("*.h"))]
    return [Extension(f"tt_memtop._native.{c.stem}", [str(c.relative_to(HERE))], depends=headers,
                      extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-unused-function"])
            for c in sorted((HERE / "tt_memtop" / "_native").glob("*.c"))]


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install: the pure-Python path takes over."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "no accelerator"
            print(f"tt-memtop: compiled accelerators not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"tt-memtop: {ext.name} not built ({exc}); using pure Python", file=sys.stderr)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
