"""The inventories mk8s ships are valid and carry the PRD checklist's values."""

from __future__ import annotations

import pytest

from mk8s.inventory.load import load_environment
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["dev", "stage", "prod"])
def test_shipped_inventory_is_valid(name: str) -> None:
    env = load_environment(name, ROOT)
    assert env.name == name
    assert len(env.nodes) == 3
