"""The report model on real files, without a browser: the cases the Chromium test does not set up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mk8s.promotion.report import build_model, collect, render
from tests.promotion.factory import make_keys, make_repo


def test_a_broken_inventory_is_shown_not_fatal(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", make_keys(tmp_path / "keys"))
    (root / "inventory" / "stage.yaml").write_text("name: stage\nnodes: []\n")
    now = datetime.now(UTC)
    model = build_model(collect(root, now), now)
    stage = next(e for e in model.envs if e.name == "stage")
    assert stage.gate == "error"
    assert stage.error is not None
    assert stage.error.startswith("inventory/stage.yaml: proxmox: required field is missing")
    prod = next(e for e in model.envs if e.name == "prod")
    assert prod.gate == "closed"
    assert prod.gate_reasons == (
        "prod: promotion.after names 'stage', but: proxmox: required field is missing",
    )
    assert "inventory error" in render(model)


def test_no_evidence_at_all_renders_an_empty_chart(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", make_keys(tmp_path / "keys"))
    now = datetime.now(UTC)
    html = render(build_model(collect(root, now), now))
    assert 'id="chart-empty"' in html
    assert html.count('data-gate="closed"') == 2  # stage and prod: nothing proven yet
