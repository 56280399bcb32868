"""pyproject.toml lists packages explicitly (themes/ is mapped in): every package must be listed."""

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tt_memtop").rglob("__init__.py")}
    assert found | {"tt_memtop.themes"} == listed


def test_stylesheets_ship():
    from tt_memtop.ui.themes import STYLESHEETS, themes_dir

    assert all((themes_dir() / name).is_file() for name in STYLESHEETS)
