"""The code stays ruff-clean (rules in pyproject.toml): part of the test run, so CI enforces it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    done = subprocess.run([ruff, "check", "tt_memtop", "tests", "benchmarks"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_runs_on_python_310():
    """TT-Metal's environment (Ubuntu 22.04) is Python 3.10: nothing newer may be needed, checked statically."""
    vermin = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (it comes with the dev extra)")
    done = subprocess.run([vermin, "--target=3.10-", "--violations", "--no-tips", "--eval-annotations",
                           "--backport", "enum", "--backport", "typing", "--exclude", "tomllib", "tt_memtop", "tests",
                           "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
