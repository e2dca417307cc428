"""The report model on real files, without a browser: the cases the Chromium test does not set up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mk8s.checks import criteria
from mk8s.promotion.report import build_model, collect, render
from tests.promotion.factory import conformance_run, make_keys, make_repo


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


def test_the_report_lists_every_registry_criterion_per_environment(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    root = make_repo(tmp_path / "repo", keys)
    conformance_run(root, "dev", keys.alice, {"phase1.tls": "fail", "phase2.rbac_matrix": "absent"})
    now = datetime.now(UTC)
    model = build_model(collect(root, now), now)
    assert [r.criterion.id for r in model.criteria] == [c.id for c in criteria.CRITERIA]
    state = {
        (r.criterion.id, cell.env): (cell.state, cell.required)
        for r in model.criteria
        for cell in r.cells
    }
    assert state["phase1.tls", "dev"] == ("failed", True)
    assert state["phase1.nodes_ready", "dev"] == ("passed", True)
    assert state["phase2.rbac_matrix", "dev"] == ("missing", True)
    assert state["phase3.backup_restore", "dev"] == ("n/a", True)
    assert state["phase4.production_certificate", "dev"][1] is False
    assert state["phase4.production_certificate", "prod"] == ("no run", True)
    assert state["loadtest.p95", "dev"] == ("no run", True)
    html = render(model)
    assert 'data-criterion="phase2.runbooks"' in html
    assert "checkout only, not the cluster" in html
