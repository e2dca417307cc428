"""`invoke promote ENV`: refused for every way the previous environment's evidence can fall short,
accepted on fresh green evidence from unchanged inputs, then the build steps run in order.

All evidence here is real: JUnit XML from pytest recorded by mk8s.promotion.evidence, load-test runs from
Locust through real nginx.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mk8s.errors import OperationFailedError, UserError
from mk8s.promotion.evidence import env_reports
from mk8s.promotion.promote import PROMOTION, promote
from tests.promotion.factory import (
    REPO,
    SLOW_MS,
    TEST_P95_MS,
    conformance_run,
    loadtest_run,
    make_repo,
)

STEPS = [
    "invoke provision --env stage",
    "invoke bootstrap --env stage",
    "invoke deploy --env stage",
    "nox -s conformance -- --env stage",
]

pytestmark = pytest.mark.slow  # real nginx / Locust / Chromium processes


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
def green(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose dev has a green conformance run and a green load-test run."""
    root = make_repo(tmp_path_factory.mktemp("green") / "repo")
    conformance_run(root, "dev")
    summary = loadtest_run(root, "dev")
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


def test_fresh_green_evidence_promotes_and_runs_the_steps_in_order(root: Path) -> None:
    runner = RecordingRunner()
    outcome = promote("stage", root, runner=runner, echo=lambda _: None)
    assert runner.ran == STEPS
    record = json.loads(outcome.record.read_text())
    assert record["result"] == "promoted" and record["from"] == "dev"
    assert record["steps"] == STEPS
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


def test_refused_when_the_latest_conformance_run_has_a_failed_criterion(root: Path) -> None:
    failed = conformance_run(root, "dev", {"phase1.loadbalancer": "fail"})
    assert refusal(root) == [
        f"refusing to promote stage: dev's latest conformance run {failed.run_id} failed: "
        "phase1.loadbalancer (measured 192.168.10.50, target 192.168.10.50-192.168.10.69)"
    ]


def test_refused_when_a_required_phase_was_not_proven(root: Path) -> None:
    partial = conformance_run(root, "dev", {"phase3.backup_restore_rto": "skip"})
    assert refusal(root) == [
        f"refusing to promote stage: dev's latest conformance run {partial.run_id} proved "
        "nothing for phase3 (required: phase1, phase2, phase3)"
    ]


def test_refused_when_there_is_no_load_test_run(root: Path) -> None:
    for run in env_reports("dev", root).iterdir():
        if json.loads((run / "summary.json").read_text())["kind"] == "loadtest":
            shutil.rmtree(run)
    assert refusal(root) == [
        "refusing to promote stage: dev has no load-test run in reports/dev/ "
        "(run: invoke loadtest --env dev)"
    ]


def test_refused_when_the_latest_load_test_failed_its_slo(root: Path) -> None:
    slow = loadtest_run(root, "dev", latency_ms=SLOW_MS)
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
        line.endswith(
            "was produced from other inputs; changed since: inventory/dev.yaml, "
            "rendered plan (build/dev/)"
        )
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


def test_the_first_environment_is_not_promoted(root: Path) -> None:
    (line,) = refusal(root, "dev")
    assert "dev has no promotion.after: it is the first environment" in line


def test_the_cli_refuses_with_exit_code_2_and_no_traceback(root: Path) -> None:
    conformance_run(root, "dev", {"phase2.network_policy": "fail"})
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "promote", "stage"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: refusing to promote stage: dev's latest conformance run")
    assert "phase2.network_policy (measured denied, target denied)" in line


def test_the_cli_runs_the_real_steps_and_stops_at_the_first_failure(root: Path) -> None:
    """With the default (subprocess) runner: this directory has no tasks.py, so step 1 fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "promote", "stage"],
        cwd=root, capture_output=True, text=True, check=False, timeout=120,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stage: evidence of dev is green and fresh; promoting" in proc.stdout
    assert "[1/4] invoke provision --env stage" in proc.stdout
    assert "[2/4]" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: promote stage: step 1/4 `invoke provision --env stage` failed (exit 1)"
    )
