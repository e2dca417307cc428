"""The pure gate on summaries as mk8s.promotion.evidence writes them: the edge cases the file-based
promotion tests do not reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import CriterionResult, Summary, summarise
from mk8s.promotion.gate import decide
from tests.promotion.factory import REPO

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
INPUTS = {"inventory": "a", "manifests": "b", "bootstrap": "c", "terraform": "d", "plan": "e"}


def stage() -> Environment:
    return load_environment("stage", REPO)


def run(
    kind: str, *criteria: CriterionResult, at: datetime = NOW, others: tuple[str, ...] = ()
) -> Summary:
    return summarise(
        env="dev", run="20261125T110000Z", kind=kind,  # type: ignore[arg-type]
        created_at=at, criteria=list(criteria), inputs=INPUTS, git_revision="abc",
        other_failures=others,
    )  # fmt: skip


def ok(cid: str, phase: str) -> CriterionResult:
    return CriterionResult(id=cid, phase=phase, status="passed", measured="1", target="1")


GREEN = run(
    "conformance", ok("phase1.a", "phase1"), ok("phase2.b", "phase2"), ok("phase3.c", "phase3")
)
LOAD = run("loadtest", ok("loadtest.p95", "phase3"))


def test_green_fresh_and_unchanged_is_allowed() -> None:
    decision = decide(stage(), conformance=GREEN, loadtest=LOAD, inputs_now=INPUTS, now=NOW)
    assert decision.allowed and decision.previous == "dev"


def test_a_failing_test_that_is_not_a_criterion_closes_the_gate() -> None:
    broken = run("conformance", *GREEN.criteria, others=("conftest::kube: connection refused",))
    decision = decide(stage(), conformance=broken, loadtest=LOAD, inputs_now=INPUTS, now=NOW)
    assert decision.reasons == (
        "dev's latest conformance run 20261125T110000Z did not pass: "
        "conftest::kube: connection refused",
    )


def test_evidence_dated_in_the_future_is_refused() -> None:
    future = run("loadtest", *LOAD.criteria, at=NOW + timedelta(hours=2))
    decision = decide(stage(), conformance=GREEN, loadtest=future, inputs_now=INPUTS, now=NOW)
    assert decision.reasons == (
        "dev's latest load-test run 20261125T110000Z is dated in the future "
        "(2026-11-25T14:00:00+00:00); check clocks",
    )


def test_evidence_exactly_at_the_age_limit_still_counts() -> None:
    later = NOW + timedelta(hours=stage().promotion.max_age_hours)
    assert decide(stage(), conformance=GREEN, loadtest=LOAD, inputs_now=INPUTS, now=later).allowed


def test_a_summary_with_only_the_combined_hash_is_compared_on_it() -> None:
    legacy = GREEN.model_copy(update={"inputs": {}})
    changed = INPUTS | {"terraform": "z"}
    decision = decide(stage(), conformance=legacy, loadtest=LOAD, inputs_now=changed, now=NOW)
    assert decision.reasons[0].endswith("was produced from other inputs; changed since: inputs")


def test_a_failed_production_only_criterion_does_not_block() -> None:
    """stage uses LE staging, so phase4.production_certificate fails there by design."""
    prod_cert = CriterionResult(
        id="phase4.production_certificate", phase="phase4", status="failed", measured="staging"
    )
    stage_run = run("conformance", *GREEN.criteria, prod_cert)
    prod = load_environment("prod", REPO)
    decision = decide(prod, conformance=stage_run, loadtest=LOAD, inputs_now=INPUTS, now=NOW)
    assert decision.allowed, decision.reasons


def test_a_failed_criterion_of_a_required_phase_blocks_even_among_passes() -> None:
    bad = CriterionResult(id="phase2.rbac_matrix", phase="phase2", status="failed", measured="3")
    decision = decide(
        stage(), conformance=run("conformance", *GREEN.criteria, bad), loadtest=LOAD,
        inputs_now=INPUTS, now=NOW,
    )  # fmt: skip
    assert decision.reasons == (
        "dev's latest conformance run 20261125T110000Z failed: phase2.rbac_matrix (measured 3)",
    )
