"""The pure gate on summaries built from the registry's real ids: the edge cases the
file-based promotion tests (test_promotion.py) do not reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mk8s.checks import criteria as registry
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import CriterionResult, Latest, LoadRecord, Summary, summarise
from mk8s.promotion.gate import decide
from tests.promotion.factory import REPO

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
INPUTS = {"inventory": "a", "manifests": "b", "mk8s": "c", "conformance": "d", "plan": "e"}


def env(name: str) -> Environment:
    return load_environment(name, REPO)


def results(of: Environment, kind: registry.Run, **status: str) -> list[CriterionResult]:
    """Every registry criterion of `kind`: passed, or skipped with the registry's N/A reason."""
    out = []
    for c in registry.of_run(kind):
        na = c.na_reason(of)
        state = status.get(c.id.replace(".", "__"), "skipped" if na else "passed")
        out.append(CriterionResult(id=c.id, phase=c.phase, status=state,  # type: ignore[arg-type]
                                   measured="1", target="1", message=na or ""))  # fmt: skip
    return out


def run(
    of: Environment,
    kind: registry.Run,
    criteria: list[CriterionResult],
    *,
    at: datetime = NOW,
    others: tuple[str, ...] = (),
    revision: str = "abc",
    load: LoadRecord | None = None,
) -> Latest:
    summary: Summary = summarise(
        env=of.name, run="20261125T110000Z", kind=kind, created_at=at, criteria=criteria,
        inputs=INPUTS, git_revision=revision, other_failures=others, load=load,
    )  # fmt: skip
    return Latest(summary.run_id, summary, "alice@example.com", None)


def load_of(of: Environment, **change: object) -> LoadRecord:
    lt = of.loadtest
    fields: dict[str, object] = {
        "url": f"https://{of.network.metallb_range.start}", "host": f"app.{of.ingress.domain}",
        "address": str(of.network.metallb_range.start), "users": lt.users,
        "spawn_rate": lt.spawn_rate, "duration_s": lt.duration_s, "target_rps": lt.target_rps,
        "smoke": False,
    }  # fmt: skip
    return LoadRecord.model_validate(fields | change)


def gate(target: str, conf: Latest, load: Latest, now: datetime = NOW) -> tuple[str, ...]:
    t = env(target)
    prev = env(t.promotion.after or "")
    return decide(t, prev, conformance=conf, loadtest=load, inputs_now=INPUTS, now=now).reasons


DEV = env("dev")
GREEN = run(DEV, "conformance", results(DEV, "conformance"))
LOAD = run(DEV, "loadtest", results(DEV, "loadtest"), load=load_of(DEV))


def test_complete_green_fresh_and_unchanged_is_allowed() -> None:
    assert gate("stage", GREEN, LOAD) == ()


def test_three_passed_criteria_are_not_enough() -> None:
    few = [c for c in results(DEV, "conformance") if c.id in
           ("phase1.nodes_ready", "phase2.rbac_matrix", "phase3.firewall")]  # fmt: skip
    (line,) = gate("stage", run(DEV, "conformance", few), LOAD)
    assert line.startswith("dev's latest conformance run 20261125T110000Z is partial: it lacks ")
    assert "phase1.loadbalancer" in line and "phase2.runbooks" in line


def test_the_doc_only_check_never_stands_in_for_cluster_criteria() -> None:
    only_docs = [c for c in results(DEV, "conformance") if c.id == "phase2.runbooks"]
    (line,) = gate("stage", run(DEV, "conformance", only_docs), LOAD)
    assert "is partial" in line and "phase2.storage_default_class" in line


def test_a_failing_test_that_is_not_a_criterion_closes_the_gate() -> None:
    broken = run(DEV, "conformance", results(DEV, "conformance"),
                 others=("conftest::kube: connection refused",))  # fmt: skip
    assert gate("stage", broken, LOAD) == (
        "dev's latest conformance run 20261125T110000Z did not pass: "
        "conftest::kube: connection refused",
    )


def test_evidence_dated_in_the_future_is_refused() -> None:
    future = run(DEV, "loadtest", results(DEV, "loadtest"), at=NOW + timedelta(hours=2),
                 load=load_of(DEV))  # fmt: skip
    assert gate("stage", GREEN, future) == (
        "dev's latest load-test run 20261125T110000Z is dated in the future "
        "(2026-11-25T14:00:00+00:00); check clocks",
    )


def test_evidence_exactly_at_the_age_limit_still_counts() -> None:
    later = NOW + timedelta(hours=env("stage").promotion.max_age_hours)
    assert gate("stage", GREEN, LOAD, now=later) == ()


def test_a_summary_without_per_part_hashes_matches_nothing() -> None:
    assert GREEN.summary is not None
    legacy = Latest(GREEN.run_id, GREEN.summary.model_copy(update={"inputs": {}}), "a", None)
    (line,) = gate("stage", legacy, LOAD)
    assert line.endswith(
        "changed since: conformance/, inventory/dev.yaml, manifests/, mk8s/, rendered plan "
        "(build/dev/)"
    )


def test_phase4_is_not_required_from_stage_but_everything_else_is() -> None:
    """stage uses LE staging, so phase4.production_certificate fails there by design."""
    stage = env("stage")
    fails = {"phase4__production_certificate": "failed", "phase4__dns": "failed"}
    conf = run(stage, "conformance", results(stage, "conformance", **fails))
    load = run(stage, "loadtest", results(stage, "loadtest"), load=load_of(stage))
    assert gate("prod", conf, load) == ()


def test_stage_must_prove_backup_and_rate_limits_which_dev_may_skip() -> None:
    stage = env("stage")
    dev_like = [c.model_copy(update={"status": "skipped", "message": "not applicable: backup"})
                if c.id == "phase3.backup_restore" else c
                for c in results(stage, "conformance")]  # fmt: skip
    (line,) = gate("prod", run(stage, "conformance", dev_like), run(
        stage, "loadtest", results(stage, "loadtest"), load=load_of(stage)))  # fmt: skip
    assert line == (
        "stage's latest conformance run 20261125T110000Z skipped phase3.backup_restore "
        "(not applicable: backup), which applies to stage"
    )


def test_prod_refuses_a_dirty_tree_stage_does_not() -> None:
    stage = env("stage")
    dirty_dev = run(DEV, "conformance", results(DEV, "conformance"), revision="abc+dirty")
    assert gate("stage", dirty_dev, LOAD) == ()
    dirty = run(stage, "conformance", results(stage, "conformance"), revision="abc+dirty")
    load = run(stage, "loadtest", results(stage, "loadtest"), load=load_of(stage))
    assert gate("prod", dirty, load) == (
        "stage's latest conformance run 20261125T110000Z was recorded from a dirty tree "
        "(abc+dirty); prod accepts evidence from committed code only",
    )


def test_a_load_test_under_the_inventory_profile_is_refused() -> None:
    short = run(DEV, "loadtest", results(DEV, "loadtest"),
                load=load_of(DEV, duration_s=30, target_rps=10))  # fmt: skip
    assert gate("stage", GREEN, short) == (
        "dev's latest load-test run 20261125T110000Z ran 30 s, under dev's loadtest.duration_s 60",
        "dev's latest load-test run 20261125T110000Z offered 10 req/s from 20 users, under "
        "dev's loadtest (target_rps 50, users 20)",
    )


def test_a_load_test_through_a_node_ip_counts_as_through_the_ingress() -> None:
    via_node = run(DEV, "loadtest", results(DEV, "loadtest"),
                   load=load_of(DEV, address=str(DEV.nodes[1].ip)))  # fmt: skip
    assert gate("stage", GREEN, via_node) == ()


def test_a_load_test_without_a_load_record_cannot_count() -> None:
    bare = run(DEV, "loadtest", results(DEV, "loadtest"))
    assert gate("stage", GREEN, bare) == (
        "dev's latest load-test run 20261125T110000Z records no load profile or target; "
        "it cannot count",
    )


def test_evidence_of_another_environment_is_not_this_ones() -> None:
    stage = env("stage")
    theirs = run(stage, "conformance", results(DEV, "conformance"))
    (line, *_) = gate("stage", theirs, LOAD)
    assert line == (
        "dev's latest conformance run 20261125T110000Z is stage's conformance run, not dev's "
        "conformance run"
    )


def test_a_run_recorded_as_partial_never_counts_even_if_it_holds_the_tier_s_set() -> None:
    """`-m "not phase4"` on dev selects every criterion dev needs, but it is still partial."""
    no_phase4 = [c for c in results(DEV, "conformance") if c.phase != "phase4"]
    partial = run(DEV, "conformance", no_phase4)
    assert partial.summary is not None and not partial.summary.complete
    (line,) = gate("stage", partial, LOAD)
    assert line.startswith(
        "dev's latest conformance run 20261125T110000Z is partial: it lacks "
        "phase4.production_certificate, phase4.served_certificate, phase4.dns, phase4.alerting"
    )


def test_prod_refuses_evidence_recorded_outside_git() -> None:
    stage = env("stage")
    nowhere = run(stage, "conformance", results(stage, "conformance"), revision="unknown")
    load = run(stage, "loadtest", results(stage, "loadtest"), load=load_of(stage))
    assert gate("prod", nowhere, load) == (
        "stage's latest conformance run 20261125T110000Z was recorded outside a git checkout "
        "(revision unknown); prod accepts evidence from committed code only",
    )
