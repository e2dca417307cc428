"""Shared fixtures for the toolkit's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent

# The suite runs in parallel workers on a 2-core machine: a wall-clock deadline per example
# would measure the machine's load, not the code (a formation property once failed so).
settings.register_profile("mk8s", deadline=None)
settings.load_profile("mk8s")


@pytest.fixture
def repo_root() -> Path:
    return ROOT
