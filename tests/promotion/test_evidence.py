"""Evidence: pytest JUnit XML becomes reports/ENV/RUN_ID/summary.json with what was proven, when,
from which inputs and at which git revision."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mk8s.promotion.evidence import (
    JUNIT,
    SUMMARY,
    combine,
    current_inputs,
    latest,
    parse_junit,
    read_summary,
    record_conformance,
)
from tests.promotion.factory import CRITERIA, REPO, conformance_run, junit, make_repo


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_a_green_conformance_run_records_every_criterion_with_its_measurement(root: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    summary = conformance_run(root, "dev", cli=True)

    assert summary.kind == "conformance" and summary.env == "dev" and summary.passed
    assert [c.id for c in summary.criteria] == [c[0] for c in CRITERIA]
    lb = summary.criterion("phase1.loadbalancer")
    assert lb is not None and lb.status == "passed" and lb.phase == "phase1"
    assert (lb.measured, lb.target) == ("192.168.10.50", "192.168.10.50-192.168.10.69")
    # Durations become timings; counts and addresses do not.
    assert {k: (t.value, t.unit) for k, t in summary.timings.items()} == {
        "phase2.pod_start": (7.5, "s"),
        "phase3.backup_restore_rto": (12.0, "min"),
    }
    assert re.fullmatch(r"\d{8}T\d{6}Z", summary.run_id)
    assert summary.created_at >= before
    run_dir = root / "reports" / "dev" / summary.run_id
    assert (run_dir / JUNIT).is_file() and (run_dir / SUMMARY).is_file()
    assert summary.inputs == current_inputs("dev", root)
    assert summary.inputs_hash == combine(summary.inputs)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert summary.git_revision.removesuffix("+dirty") in (head, "unknown")


def test_a_failed_criterion_fails_the_run_and_keeps_what_was_found(root: Path) -> None:
    summary = conformance_run(root, "dev", {"phase1.tls": "fail"})
    assert not summary.passed
    tls = summary.criterion("phase1.tls")
    assert tls is not None and tls.status == "failed"
    assert tls.message == "AssertionError: expected 30, found 89"


def test_a_skipped_criterion_is_recorded_as_not_applicable_and_does_not_fail_the_run(
    root: Path,
) -> None:
    summary = conformance_run(root, "dev", {"phase3.backup_restore_rto": "skip"})
    skipped = summary.criterion("phase3.backup_restore_rto")
    assert skipped is not None and skipped.status == "skipped"
    assert "not applicable" in skipped.message
    assert summary.passed


def test_junit_written_into_a_run_directory_is_recorded_in_place(root: Path) -> None:
    run_dir = root / "reports" / "stage" / "20261125T101500Z"
    run_dir.mkdir(parents=True)
    shutil.copy(junit(root.parent / "suite"), run_dir / JUNIT)
    recorded_dir, summary = record_conformance("stage", run_dir / JUNIT, root)
    assert recorded_dir == run_dir
    assert summary.run_id == "20261125T101500Z"
    assert sorted(p.name for p in (root / "reports" / "stage").iterdir()) == [run_dir.name]
    assert read_summary(run_dir / SUMMARY) == summary


def test_the_latest_run_of_a_kind_is_the_newest(root: Path) -> None:
    conformance_run(root, "dev", {"phase1.tls": "fail"})
    newest = conformance_run(root, "dev")
    assert latest("dev", "conformance", root) == newest
    assert latest("dev", "loadtest", root) is None


def test_junit_without_criteria_is_refused_with_one_line(root: Path, tmp_path: Path) -> None:
    xml = tmp_path / "plain.xml"
    xml.write_text('<testsuite><testcase classname="t" name="test_x"/></testsuite>')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mk8s.promotion.evidence",
            "record-conformance",
            "--env",
            "dev",
            "--junit",
            str(xml),
            "--root",
            str(root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {xml}: no testcase carries a `criterion` property; nothing to record"
    ]
    assert "Traceback" not in proc.stderr


def test_a_failing_test_without_a_criterion_still_fails_the_run() -> None:
    criteria, others = parse_junit(
        "<testsuites><testsuite>"
        '<testcase classname="c" name="test_ok"><properties>'
        '<property name="criterion" value="phase1.x"/><property name="phase" value="phase1"/>'
        "</properties></testcase>"
        '<testcase classname="c" name="test_fixture"><error message="kubeconfig missing"/>'
        "</testcase></testsuite></testsuites>"
    )
    assert [c.status for c in criteria] == ["passed"]
    assert others == ["c::test_fixture: kubeconfig missing"]


@pytest.mark.parametrize(
    ("part", "change"),
    [
        ("inventory", lambda r: _edit(r / "inventory/dev.yaml", "cores: 4", "cores: 6")),
        ("manifests", lambda r: _append(r / "manifests/sample-app/deployment.yaml")),
        ("bootstrap", lambda r: _append(r / "bootstrap/launch.yaml")),
        ("terraform", lambda r: (r / "terraform/extra.tf").write_text("# new\n")),
    ],
)
def test_the_inputs_hash_names_the_part_that_changed(root: Path, part: str, change) -> None:  # type: ignore[no-untyped-def]
    before = current_inputs("dev", root)
    change(root)
    after = current_inputs("dev", root)
    assert [p for p in before if before[p] != after[p]] == (
        ["inventory", "plan"] if part == "inventory" else [part]
    )


def test_the_inputs_hash_ignores_build_output_reports_and_caches(root: Path) -> None:
    before = current_inputs("dev", root)
    (root / "build" / "dev").mkdir(parents=True)
    (root / "build" / "dev" / "plan.json").write_text("{}")
    (root / "reports" / "dev").mkdir(parents=True)
    (root / "terraform" / ".terraform").mkdir()
    (root / "terraform" / ".terraform" / "provider").write_text("binary")
    (root / "terraform" / "terraform.tfstate").write_text("{}")
    (root / "inventory" / "stage.yaml").write_text("# another environment's inventory\n")
    assert current_inputs("dev", root) == before


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _append(path: Path) -> None:
    path.write_text(path.read_text() + "# changed\n")
