"""Where the project's shared material is: `<repo root>/../shared`, or $MK8S_SHARED."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    path = Path(os.environ.get("MK8S_SHARED") or ROOT.parent / "shared")
    if not path.is_dir():
        pytest.fail(f"shared material not found at {path} (set MK8S_SHARED)", pytrace=False)
    return path
