"""The criteria registry is the one list: the suite, the load test and the docs agree with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mk8s.checks import criteria
from mk8s.checks.loadtest import (
    LoadProfile,
    LocustStats,
    ProbeResult,
    rate_limit_criteria,
    slo_criteria,
)
from mk8s.checks.record import CriterionRecord
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import RateLimit

ROOT = Path(__file__).resolve().parents[2]


def suite_ids() -> dict[str, str]:
    """criterion id -> test function, for every `criterion("...")` call in conformance/."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "conformance").glob("test_*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "criterion"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    cid = str(call.args[0].value)
                    assert cid not in found, f"{cid} is judged by {found[cid]} and {fn.name}"
                    found[cid] = f"{path.name}::{fn.name}"
    return found


def test_ids_are_unique_and_well_formed() -> None:
    ids = [c.id for c in criteria.CRITERIA]
    assert len(ids) == len(set(ids))
    for c in criteria.CRITERIA:
        assert re.fullmatch(r"(phase[1-4]|loadtest)\.[a-z0-9_]+", c.id), c.id
        assert c.proves and c.tiers, c.id
        if c.run == "conformance":
            assert c.id.startswith(c.phase + "."), c.id


def test_every_conformance_criterion_has_exactly_one_test_and_no_test_invents_one() -> None:
    registered = {c.id for c in criteria.of_run("conformance")}
    assert set(suite_ids()) == registered


def test_the_load_test_records_exactly_the_registered_load_criteria() -> None:
    env = load_environment("stage", ROOT)
    stats = LocustStats(requests=100, failures=0, p95_ms=10.0, rps=50.0)
    produced = slo_criteria(stats, env.slo, LoadProfile.of(env))
    produced += rate_limit_criteria(RateLimit(rps=50, burst=100), ProbeResult(), ProbeResult())
    assert [c.id for c in produced] == [c.id for c in criteria.of_run("loadtest")]
    assert {c.phase for c in produced} == {c.phase for c in criteria.of_run("loadtest")}


def test_docs_conformance_md_is_generated_from_the_registry() -> None:
    doc = (ROOT / "docs" / "conformance.md").read_text()
    assert criteria.with_table(doc) == doc, (
        "docs/conformance.md drifted: run python -m mk8s.checks.criteria --write "
        "docs/conformance.md"
    )
    for c in criteria.CRITERIA:
        assert f"| `{c.id}` |" in doc


def test_the_doc_table_marks_the_checkout_only_check() -> None:
    (runbooks,) = [c for c in criteria.CRITERIA if c.measures == "checkout"]
    assert runbooks.id == "phase2.runbooks"
    line = next(x for x in criteria.markdown_table().splitlines() if "`phase2.runbooks`" in x)
    assert "checkout only, not the cluster" in line


@pytest.mark.parametrize(
    ("env", "na"),
    [
        ("dev", {"phase3.backup_restore": "backup", "loadtest.rate_limit_below": "ingress.rate_limit",
                 "loadtest.rate_limit_above": "ingress.rate_limit"}),
        ("stage", {}),
        ("prod", {}),
    ],
)  # fmt: skip
def test_not_applicable_follows_the_inventory_field(env: str, na: dict[str, str]) -> None:
    environment = load_environment(env, ROOT)
    found = {}
    for c in criteria.CRITERIA:
        reason = c.na_reason(environment)
        if reason is not None:
            assert c.not_applicable is not None
            assert reason.startswith(f"not applicable: {c.not_applicable.field} ")
            found[c.id] = c.not_applicable.field
    assert found == na


def test_phase4_is_required_in_prod_only() -> None:
    dev, prod = load_environment("dev", ROOT), load_environment("prod", ROOT)
    dev_ids = {c.id for c in criteria.required(dev, "conformance")}
    prod_ids = {c.id for c in criteria.required(prod, "conformance")}
    assert not any(i.startswith("phase4.") for i in dev_ids)
    assert {"phase4.production_certificate", "phase4.served_certificate"} <= prod_ids
    assert dev_ids < prod_ids


def test_a_record_with_an_invented_id_is_refused() -> None:
    with pytest.raises(ValueError, match=r"phase1\.invented"):
        CriterionRecord("phase1.invented")
