"""pyproject.toml lists packages explicitly (themes/ is mapped in): every package must be listed."""

import os
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


def test_a_fresh_clone_builds_a_wheel_that_runs_with_its_themes(tmp_path):
    """`pip install .` from a clone: only committed files, themes and py.typed in the wheel, `python -m tt_memtop`."""
    import shutil
    import subprocess
    import zipfile

    import pytest

    try:  # built without isolation (no download during the test): the dev extra brings setuptools>=77
        from importlib.metadata import version

        if int(version("setuptools").split(".")[0]) < 77:
            pytest.skip("setuptools>=77 (from the dev extra) is not installed")
    except Exception:  # PackageNotFoundError
        pytest.skip("setuptools is not installed")
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(clone)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "w"), str(clone)], check=True, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "w").glob("tt_memtop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"tt_memtop/themes/{n}" for n in ("base.tcss", "dark.tcss", "light.tcss", "contrast.tcss")} <= names
    assert {"tt_memtop/py.typed", "tt_memtop/api.py", "tt_memtop/exporter/collector.py"} <= names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    code = ("import tt_memtop, tt_memtop.ui.themes as t; from tt_memtop import Client; "
            "print(tt_memtop.__file__); print(t.themes_dir())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(target)},
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert all(line.startswith(str(target)) for line in out), out
    ver = subprocess.run([sys.executable, "-m", "tt_memtop", "--version"], cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=60)
    assert ver.returncode == 0 and ver.stdout.startswith("memtop "), ver
