"""Shared fixtures of the experiments tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch):
    """The commands print a user error as one line unless RECTIFIERS_DEBUG is set; a value
    leaked from another test (or the shell) would turn those lines into tracebacks."""
    monkeypatch.delenv("RECTIFIERS_DEBUG", raising=False)
