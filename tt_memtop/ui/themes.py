"""memtop's Textual themes and where their stylesheets live.

Palettes are Textual :class:`~textual.theme.Theme` objects (so ``--theme`` and the command
palette's theme switcher work); per-widget colours are in ``themes/*.tcss``. ``dark.tcss`` uses
only standard theme variables, so any Textual theme gives sensible colours; ``light.tcss`` and
``contrast.tcss`` refine memtop's own light and high-contrast themes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from textual.theme import Theme

THEMES = (
    Theme(name="memtop-dark", primary="#5fafff", secondary="#af87ff", accent="#ffaf5f", warning="#ffd75f",
          error="#ff5f5f", success="#87d787", foreground="#d0d0d0", background="#101418", surface="#161b22",
          panel="#1f2630", dark=True),
    Theme(name="memtop-light", primary="#005fd7", secondary="#8700af", accent="#d75f00", warning="#af8700",
          error="#d70000", success="#008700", foreground="#1c1c1c", background="#fafafa", surface="#f0f0f0",
          panel="#e4e4e4", dark=False),
    Theme(name="memtop-contrast", primary="#00ffff", secondary="#ff00ff", accent="#ffff00", warning="#ffff00",
          error="#ff0000", success="#00ff00", foreground="#ffffff", background="#000000", surface="#000000",
          panel="#1c1c1c", dark=True, luminosity_spread=0.0, text_alpha=1.0),
)
DEFAULT_THEME = "memtop-dark"
THEME_ALIASES = {"dark": "memtop-dark", "light": "memtop-light", "contrast": "memtop-contrast",
                 "high-contrast": "memtop-contrast"}
STYLESHEETS = ("base.tcss", "dark.tcss", "light.tcss", "contrast.tcss")


def themes_dir() -> Path:
    """The repo's top-level ``themes/``: installed as the ``tt_memtop.themes`` package (see
    pyproject.toml), or found beside the package when running from a source tree."""
    cands = []
    try:
        spec = importlib.util.find_spec("tt_memtop.themes")
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        cands += [Path(p) for p in spec.submodule_search_locations]
    cands.append(Path(__file__).resolve().parents[2] / "themes")
    for cand in cands:
        if (cand / "base.tcss").is_file():
            return cand
    raise FileNotFoundError("memtop stylesheets (themes/*.tcss) not found; reinstall tt-memtop")


def stylesheet_paths() -> list[Path]:
    d = themes_dir()
    return [d / name for name in STYLESHEETS]
