"""`invoke promote ENV`: refused, with a line naming the reason, for every way the previous
environment's evidence can fall short or be forged; a complete, signed, current run opens it
and the build steps run in order.

All evidence here is real: JUnit XML written by pytest through the suite's own `criterion`
fixture with the registry's ids, recorded by mk8s.promotion.evidence, load tests by Locust
through real nginx at the test environment's ingress address, signatures by ssh-keygen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mk8s.checks.loadtest import LoadProfile
from mk8s.errors import OperationFailedError, UserError
from mk8s.promotion.evidence import SUMMARY, env_reports
from mk8s.promotion.promote import PROMOTION, promote
from tests.promotion.factory import (
    REPO,
    SLOW_MS,
    TEST_P95_MS,
    Keys,
    conformance_run,
    loadtest_run,
    make_keys,
    make_repo,
)

STEPS = [
    "invoke provision --env stage",
    "invoke bootstrap --env stage",
    "invoke deploy --env stage",
    "nox -s conformance -- --env stage",
]

pytestmark = pytest.mark.slow  # real nginx / Locust / ssh-keygen processes


class RecordingRunner:
    """Stands in for the shell: records each command, fails the one it is told to."""

    def __init__(self, fail: str | None = None) -> None:
        self.ran: list[str] = []
        self.fail = fail

    def __call__(self, cmd: Sequence[str]) -> int:
        line = " ".join(cmd)
        self.ran.append(line)
        return 1 if line == self.fail else 0


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def green(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    """A repository whose dev has a complete signed conformance run and a signed load test."""
    root = make_repo(tmp_path_factory.mktemp("green") / "repo", keys)
    conformance = conformance_run(root, "dev", keys.alice)
    assert conformance.passed and conformance.complete, conformance.missing
    summary = loadtest_run(root, "dev", keys.alice)
    assert summary.passed, [c for c in summary.criteria if c.status == "failed"]
    return root


@pytest.fixture
def root(green: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(green, tmp_path / "repo"))


def refusal(root: Path, env: str = "stage", now: datetime | None = None) -> list[str]:
    runner = RecordingRunner()
    with pytest.raises(UserError) as refused:
        promote(env, root, runner=runner, now=now, echo=lambda _: None)
    assert runner.ran == [], "a refused promotion must not run anything"
    assert not isinstance(refused.value, OperationFailedError)
    return list(refused.value.lines)


def latest_dir(root: Path, kind: str, env: str = "dev") -> Path:
    runs = sorted(env_reports(env, root).iterdir())
    return next(
        r
        for r in reversed(runs)
        if (r / SUMMARY).is_file() and json.loads((r / SUMMARY).read_text())["kind"] == kind
    )


def test_complete_signed_current_evidence_promotes_and_runs_the_steps_in_order(
    root: Path,
) -> None:
    runner = RecordingRunner()
    lines: list[str] = []
    outcome = promote("stage", root, runner=runner, echo=lines.append)
    assert runner.ran == STEPS
    assert lines[0] == (
        "stage: evidence of dev is complete, signed (alice@example.com) and current; promoting"
    )
    record = json.loads(outcome.record.read_text())
    assert record["result"] == "promoted" and record["from"] == "dev"
    assert record["steps"] == STEPS
    assert record["evidence"]["signed_by"] == {
        "conformance": "alice@example.com",
        "loadtest": "alice@example.com",
    }
    dev_runs = sorted(p.name for p in env_reports("dev", root).iterdir())
    assert {record["evidence"]["conformance"], record["evidence"]["loadtest"]} == set(dev_runs)
    assert outcome.record.parent.parent == env_reports("stage", root)


def test_a_failing_step_stops_the_promotion_and_is_recorded(root: Path) -> None:
    runner = RecordingRunner(fail="invoke bootstrap --env stage")
    with pytest.raises(OperationFailedError) as failed:
        promote("stage", root, runner=runner, echo=lambda _: None)
    assert runner.ran == STEPS[:2]
    (line,) = failed.value.lines
    assert line.startswith(
        "promote stage: step 2/4 `invoke bootstrap --env stage` failed (exit 1); "
        "fix it and re-run `invoke promote stage`"
    )
    (record,) = env_reports("stage", root).glob(f"*/{PROMOTION}")
    assert json.loads(record.read_text())["result"] == "failed"


def test_refused_when_the_latest_conformance_run_has_a_failed_criterion(
    root: Path, keys: Keys
) -> None:
    failed = conformance_run(root, "dev", keys.alice, {"phase1.loadbalancer": "fail"})
    assert refusal(root) == [
        f"refusing to promote stage: dev's latest conformance run {failed.run_id} failed: "
        "phase1.loadbalancer (measured 127.0.10.90, target 127.0.10.50-127.0.10.69)"
    ]


def test_a_test_that_skips_itself_does_not_pass_for_a_criterion_that_applies(
    root: Path, keys: Keys
) -> None:
    skipped = conformance_run(root, "dev", keys.alice, {"phase1.tls": "skip"})
    assert refusal(root) == [
        f"refusing to promote stage: dev's latest conformance run {skipped.run_id} skipped "
        "phase1.tls (scripted skip without the registry's N/A reason), which applies to dev"
    ]


def test_not_applicable_criteria_are_recorded_with_the_registry_reason(green: Path) -> None:
    run = json.loads((latest_dir(green, "conformance") / SUMMARY).read_text())
    backup = next(c for c in run["criteria"] if c["id"] == "phase3.backup_restore")
    assert backup["status"] == "skipped"
    assert backup["measured"] == "not applicable"
    assert backup["message"] == "not applicable: backup - unset; PRD: dev may omit backup"


def test_a_test_that_errors_fails_its_criterion(root: Path, keys: Keys) -> None:
    broken = conformance_run(root, "dev", keys.alice, {"phase2.rbac_matrix": "error"})
    (line,) = refusal(root)
    assert line == (
        f"refusing to promote stage: dev's latest conformance run {broken.run_id} failed: "
        "phase2.rbac_matrix (measured not measured, target )"
    )


def test_refused_when_there_is_no_load_test_run(root: Path) -> None:
    shutil.rmtree(latest_dir(root, "loadtest"))
    assert refusal(root) == [
        "refusing to promote stage: dev has no load-test run in reports/dev/ "
        "(run: invoke loadtest --env dev)"
    ]


def test_refused_when_the_latest_load_test_failed_its_slo(root: Path, keys: Keys) -> None:
    slow = loadtest_run(root, "dev", keys.alice, latency_ms=SLOW_MS)
    (line,) = refusal(root)
    assert line.startswith(
        f"refusing to promote stage: dev's latest load-test run {slow.run_id} failed: loadtest.p95"
    )
    assert f"target {TEST_P95_MS} ms" in line


def test_refused_when_the_evidence_is_older_than_the_allowed_age(root: Path) -> None:
    later = datetime.now(UTC) + timedelta(hours=169)  # stage: promotion.max_age_hours 168
    lines = refusal(root, now=later)
    assert len(lines) == 2
    assert all(
        "is stale: 169 h old, promotion accepts evidence younger than 168 h" in line
        for line in lines
    )


def test_refused_when_the_previous_inventory_changed_since_the_runs(root: Path) -> None:
    inventory = root / "inventory" / "dev.yaml"
    inventory.write_text(inventory.read_text().replace("cores: 4", "cores: 8"))
    lines = refusal(root)
    assert len(lines) == 2  # conformance and load test were both produced from the old one
    assert all(
        line.endswith("changed since: inventory/dev.yaml, rendered plan (build/dev/)")
        for line in lines
    )


def test_refused_when_the_shared_manifests_changed_since_the_runs(root: Path) -> None:
    deployment = root / "manifests" / "sample-app" / "deployment.yaml"
    deployment.write_text(deployment.read_text() + "spec: {replicas: 3}\n")
    lines = refusal(root)
    assert [line.rsplit(": ", 1)[-1] for line in lines] == ["manifests/", "manifests/"]


def test_a_change_to_another_environment_does_not_block(root: Path) -> None:
    prod = root / "inventory" / "prod.yaml"
    prod.write_text(prod.read_text().replace("cores: 8", "cores: 12"))
    runner = RecordingRunner()
    promote("stage", root, runner=runner, echo=lambda _: None)
    assert runner.ran == STEPS


def test_prod_is_refused_without_stage_evidence_and_has_no_override(root: Path) -> None:
    assert refusal(root, "prod") == [
        "refusing to promote prod: stage has no conformance run in reports/stage/ "
        "(run: nox -s conformance -- --env stage)",
        "refusing to promote prod: stage has no load-test run in reports/stage/ "
        "(run: invoke loadtest --env stage)",
    ]
    help_text = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "--help", "promote"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--force" not in help_text


def test_prod_refuses_evidence_recorded_from_a_dirty_tree(root: Path, keys: Keys) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=root, check=True)
    (root / "README.md").write_text("not an input: a clean tree despite this\n")
    clean = conformance_run(root, "stage", keys.alice)
    assert not clean.dirty and len(clean.git_revision) == 40
    # A new verdict module git does not know yet: part of the hash, not of any commit.
    (root / "mk8s" / "checks" / "lenient.py").write_text("PASS = True\n")
    run = conformance_run(root, "stage", keys.alice)
    assert run.dirty and run.git_revision.endswith("+dirty")
    lines = refusal(root, "prod")
    assert (
        f"refusing to promote prod: stage's latest conformance run {run.run_id} was recorded "
        f"from a dirty tree ({run.git_revision}); prod accepts evidence from committed code only"
    ) in lines


def test_the_first_environment_is_not_promoted(root: Path) -> None:
    (line,) = refusal(root, "dev")
    assert "dev has no promotion.after: it is the first environment" in line


def test_evidence_dir_keeps_runs_in_a_shared_place(root: Path, keys: Keys, tmp_path: Path) -> None:
    shared = tmp_path / "shared-evidence"
    inventory = root / "inventory" / "dev.yaml"
    inventory.write_text(
        inventory.read_text().replace("promotion: {", f"promotion: {{evidence_dir: {shared}, ")
    )
    run = conformance_run(root, "dev", keys.alice)
    assert (shared / "dev" / run.run_id / SUMMARY).is_file()
    lines = refusal(root)  # the load test in reports/ is not where dev's evidence now lives
    assert lines == [
        f"refusing to promote stage: dev has no load-test run in {shared}/dev/ "
        "(run: invoke loadtest --env dev)"
    ]


# --- every forgery and shortcut, through the real `invoke promote` ---------------------------


def _hand_written(root: Path, keys: Keys) -> str:
    """A summary.json typed by hand into a new run directory: green, complete, unsigned."""
    source = latest_dir(root, "conformance")
    body = json.loads((source / SUMMARY).read_text())
    forged = source.parent / "29990101T000000Z"
    forged.mkdir()
    body["run_id"] = forged.name
    body["created_at"] = datetime.now(UTC).isoformat()
    (forged / SUMMARY).write_text(json.dumps(body))
    return f"dev's latest conformance run {forged.name} is unsigned (no summary.json.sig"


def _edited(root: Path, keys: Keys) -> str:
    """A failed run, signed, whose failure was then edited into a pass."""
    failed = conformance_run(root, "dev", keys.alice, {"phase2.network_policy": "fail"})
    path = latest_dir(root, "conformance") / SUMMARY
    body = json.loads(path.read_text())
    for c in body["criteria"]:
        if c["status"] == "failed":
            c["status"], c["message"] = "passed", ""
    body["passed"] = True
    path.write_text(json.dumps(body, indent=2) + "\n")
    return (
        f"dev's latest conformance run {failed.run_id} has a signature that does not match "
        "its content (tampered?)"
    )


def _truncated(root: Path, keys: Keys) -> str:
    run = conformance_run(root, "dev", keys.alice)
    path = latest_dir(root, "conformance") / SUMMARY
    path.write_bytes(path.read_bytes()[:200])
    return (
        f"dev's latest conformance run {run.run_id} is unreadable (summary.json: "
        "Invalid JSON: EOF while parsing"
    )


def _unsigned(root: Path, keys: Keys) -> str:
    run = conformance_run(root, "dev", None, cli=True)
    return f"dev's latest conformance run {run.run_id} is unsigned"


def _wrong_signer(root: Path, keys: Keys) -> str:
    run = conformance_run(root, "dev", keys.mallory, cli=True)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{keys.mallory}.pub"],
        capture_output=True,
        text=True,
        check=True,
    )
    fingerprint = listed.stdout.split()[1]
    return (
        f"dev's latest conformance run {run.run_id} is signed by key {fingerprint}, a key that "
        "is not among dev's promotion.signers"
    )


def _older_revision(root: Path, keys: Keys) -> str:
    """The suite changed after the run: the evidence is of another revision of it."""
    phase1 = root / "conformance" / "test_phase1.py"
    phase1.write_text(phase1.read_text().replace("LB_TIMEOUT_S = 120.0", "LB_TIMEOUT_S = 1.0"))
    return "changed since: conformance/"


def _weakened_verdict(root: Path, keys: Keys) -> str:
    verdicts = root / "mk8s" / "checks" / "verdict.py"
    verdicts.write_text(verdicts.read_text() + "\nall_of = lambda *a, **k: passed('', '', '')\n")
    return "changed since: mk8s/"


def _smoke_load_test(root: Path, keys: Keys) -> str:
    run = loadtest_run(root, "dev", keys.alice, profile=LoadProfile(5, 5, 3, 20))
    return f"dev's latest load-test run {run.run_id} is a smoke run (--duration 3); it never counts"


def _partial_run(root: Path, keys: Keys) -> str:
    run = conformance_run(
        root, "dev", keys.alice, {"phase2.rbac_matrix": "absent", "phase3.firewall": "absent"}
    )
    assert not run.complete and run.missing == ["phase2.rbac_matrix", "phase3.firewall"]
    return (
        f"dev's latest conformance run {run.run_id} is partial: it lacks phase2.rbac_matrix, "
        "phase3.firewall; a -k/-m selection never counts"
    )


def _elsewhere(root: Path, keys: Keys) -> str:
    run = loadtest_run(root, "dev", keys.alice, ip="127.0.0.9")
    return (
        f"dev's latest load-test run {run.run_id} connected to 127.0.0.9, not dev's ingress "
        "(network.metallb_range or a node IP)"
    )


def _other_host(root: Path, keys: Keys) -> str:
    run = loadtest_run(root, "dev", keys.alice, host="https://stub.dev.example.com")
    return (
        f"dev's latest load-test run {run.run_id} targeted host stub.dev.example.com, "
        "not dev's app app.dev.example.com"
    )


def _edited_junit(root: Path, keys: Keys) -> str:
    run = latest_dir(root, "conformance")
    (run / "junit.xml").write_text((run / "junit.xml").read_text() + "<!-- edited -->")
    return f"dev's latest conformance run {run.name} has artifacts changed since it was signed: junit.xml"


TAMPERING: dict[str, Callable[[Path, Keys], str]] = {
    "edited junit.xml": _edited_junit,
    "hand-written": _hand_written,
    "edited": _edited,
    "truncated": _truncated,
    "unsigned": _unsigned,
    "wrong signer": _wrong_signer,
    "older revision": _older_revision,
    "weakened verdict code": _weakened_verdict,
    "smoke load test": _smoke_load_test,
    "partial run": _partial_run,
    "load test elsewhere": _elsewhere,
    "load test of another host": _other_host,
}


@pytest.mark.parametrize("case", TAMPERING)
def test_invoke_promote_refuses_forged_or_short_evidence_naming_the_reason(
    root: Path, keys: Keys, case: str
) -> None:
    expected = TAMPERING[case](root, keys)
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "promote", "stage"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("error: refusing to promote stage: ") for line in lines), lines
    assert any(expected in line for line in lines), "\n".join(lines)
    assert "promoting" not in proc.stdout


def test_an_unreadable_latest_run_is_never_passed_over_for_an_older_green_one(
    root: Path, keys: Keys
) -> None:
    run = conformance_run(root, "dev", keys.alice)
    (latest_dir(root, "conformance") / SUMMARY).write_text("{")
    (line,) = refusal(root)
    assert line.startswith(f"refusing to promote stage: dev's latest conformance run {run.run_id} ")
    assert line.endswith(
        f"an older run never stands in for the latest (remove reports/dev/{run.run_id}/ or run "
        "again: nox -s conformance -- --env dev)"
    )


def test_a_run_that_died_before_its_summary_blocks_too(root: Path) -> None:
    died = env_reports("dev", root) / "29990101T000000Z"
    died.mkdir()
    (died / "junit.xml").write_text("<testsuites>")
    lines = refusal(root)
    assert lines == [
        "refusing to promote stage: dev's latest conformance run 29990101T000000Z is unreadable: "
        "it has no summary.json; an older run never stands in for the latest (remove "
        "reports/dev/29990101T000000Z/ or run again: nox -s conformance -- --env dev)"
    ]


def test_the_cli_runs_the_real_steps_and_stops_at_the_first_failure(root: Path) -> None:
    """With the default (subprocess) runner and no `invoke` on PATH, step 1 fails (127)."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "promote", "stage"],
        cwd=root, capture_output=True, text=True, check=False, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stage: evidence of dev is complete, signed" in proc.stdout
    assert "[1/4] invoke provision --env stage" in proc.stdout
    assert "[2/4]" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: promote stage: step 1/4 `invoke provision --env stage` failed (exit 127)"
    )


def test_an_unsigned_run_signed_afterwards_by_a_listed_signer_opens_the_gate(
    root: Path, keys: Keys
) -> None:
    run = conformance_run(root, "dev", None)
    assert refusal(root)[0].startswith(
        f"refusing to promote stage: dev's latest conformance run {run.run_id} is unsigned"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mk8s.promotion.evidence", "sign", "--env", "dev",
         "--run", run.run_id, "--root", str(root), "--key", str(keys.alice)],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runner = RecordingRunner()
    promote("stage", root, runner=runner, echo=lambda _: None)
    assert runner.ran == STEPS
