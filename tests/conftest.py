"""Shared fixtures: every test runs without the user's own memtop settings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory, monkeypatch):
    """A user's ~/.config/tt-memtop/config.toml must not change what a test sees."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
