"""docs/inventory.md is generated from the models and must not drift from them."""

from __future__ import annotations

from mk8s.inventory.reference import render
from tests.conftest import ROOT


def test_inventory_reference_is_current() -> None:
    assert (ROOT / "docs" / "inventory.md").read_text() == render(), (
        "docs/inventory.md is stale: run `python -m mk8s.inventory.reference > docs/inventory.md`"
    )


def test_reference_lists_every_section() -> None:
    text = render()
    for field in (
        "`network.metallb_range`",
        "`nodes[].vmid`",
        "`backup.schedules[].ttl_days`",
        "`tls.dns01_token_env`",
    ):
        assert field in text
