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

from mk8s.checks import criteria as registry
from mk8s.errors import UserError
from mk8s.inventory.load import load_environment
from mk8s.promotion.evidence import (
    JUNIT,
    SUMMARY,
    env_reports,
    latest_run,
    parse_junit,
    read_summary,
    record_conformance,
)
from mk8s.promotion.inputs import combine, current_inputs
from mk8s.promotion.signing import signature_path
from tests.promotion.factory import (
    FACTS,
    REPO,
    SIGNER,
    Keys,
    conformance_run,
    junit,
    make_keys,
    make_repo,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def root(tmp_path: Path, keys: Keys) -> Path:
    return make_repo(tmp_path / "repo", keys)


def test_a_green_conformance_run_records_every_criterion_with_its_measurement(
    root: Path, keys: Keys
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    summary = conformance_run(root, "dev", keys.alice, cli=True)

    assert summary.kind == "conformance" and summary.env == "dev" and summary.passed
    assert summary.complete and summary.missing == []
    assert [c.id for c in summary.criteria] == [c.id for c in registry.of_run("conformance")]
    lb = summary.criterion("phase1.loadbalancer")
    assert lb is not None and lb.status == "passed" and lb.phase == "phase1"
    assert (lb.measured, lb.target) == FACTS["phase1.loadbalancer"][:2]
    # Durations become timings; counts and addresses do not.
    assert {k: (t.value, t.unit) for k, t in summary.timings.items()} == {
        "phase1.pod_start": (7.5, "s")
    }
    assert re.fullmatch(r"\d{8}T\d{6}Z", summary.run_id)
    assert summary.created_at >= before
    run_dir = root / "reports" / "dev" / summary.run_id
    assert (run_dir / JUNIT).is_file() and (run_dir / SUMMARY).is_file()
    assert signature_path(run_dir / SUMMARY).is_file()
    assert set(summary.artifacts) == {JUNIT}
    assert summary.inputs == current_inputs("dev", root)
    assert summary.inputs_hash == combine(summary.inputs)
    assert summary.git_revision == "unknown" and not summary.dirty  # the test repo is no git tree


def test_the_inputs_cover_the_code_that_measured() -> None:
    parts = current_inputs("dev", REPO)
    assert {"mk8s", "conformance", "loadtests", "tasks.py", "noxfile.py", "pyproject.toml"} <= set(
        parts
    )


def test_a_failed_criterion_fails_the_run_and_keeps_what_was_found(root: Path, keys: Keys) -> None:
    summary = conformance_run(root, "dev", keys.alice, {"phase1.tls": "fail"})
    assert not summary.passed
    tls = summary.criterion("phase1.tls")
    assert tls is not None and tls.status == "failed"
    assert tls.message == "AssertionError: FAIL: scripted fail (measured 89; expected 30)"


def test_a_not_applicable_criterion_is_skipped_with_the_registry_reason(
    root: Path, keys: Keys
) -> None:
    summary = conformance_run(root, "dev", keys.alice)
    skipped = summary.criterion("phase3.backup_restore")
    assert skipped is not None and skipped.status == "skipped"
    na = registry.by_id("phase3.backup_restore").na_reason(load_environment("dev", root))
    assert skipped.message == na
    assert summary.passed


def test_a_selection_is_recorded_as_partial_and_does_not_pass(root: Path, keys: Keys) -> None:
    summary = conformance_run(root, "dev", keys.alice, {"phase1.ingress": "absent"})
    assert not summary.complete and summary.missing == ["phase1.ingress"]
    assert not summary.passed


def test_junit_written_into_a_run_directory_is_recorded_in_place(root: Path) -> None:
    run_dir = root / "reports" / "stage" / "20261125T101500Z"
    run_dir.mkdir(parents=True)
    shutil.copy(junit(root, "stage", root.parent / "suite"), run_dir / JUNIT)
    recorded_dir, summary = record_conformance("stage", run_dir / JUNIT, root)
    assert recorded_dir == run_dir
    assert summary.run_id == "20261125T101500Z"
    assert sorted(p.name for p in (root / "reports" / "stage").iterdir()) == [run_dir.name]
    assert read_summary(run_dir / SUMMARY) == summary
    assert not signature_path(run_dir / SUMMARY).exists()  # no key: unsigned


def test_the_latest_run_of_a_kind_is_the_newest_and_says_who_signed(root: Path, keys: Keys) -> None:
    conformance_run(root, "dev", keys.alice, {"phase1.tls": "fail"})
    newest = conformance_run(root, "dev", keys.alice)
    signers = load_environment("dev", root).promotion.signers
    base = env_reports("dev", root)
    found = latest_run("dev", "conformance", base, signers, "signers")
    assert (found.summary, found.signer, found.problem) == (newest, SIGNER, None)
    assert latest_run("dev", "loadtest", base, signers, "signers").run_id is None


def test_junit_with_an_invented_criterion_is_refused(root: Path, tmp_path: Path) -> None:
    xml = tmp_path / "invented.xml"
    xml.write_text(
        '<testsuite><testcase classname="t" name="test_x"><properties>'
        '<property name="criterion" value="phase1.a"/></properties></testcase></testsuite>'
    )
    with pytest.raises(UserError) as refused:
        record_conformance("dev", xml, root)
    assert refused.value.lines == (
        f"{xml}: criteria not in the registry (mk8s.checks.criteria): phase1.a",
    )


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
        '<property name="criterion" value="phase1.tls"/><property name="phase" value="phase1"/>'
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
        ("mk8s", lambda r: _append(r / "mk8s/checks/cluster.py")),
        ("conformance", lambda r: _append(r / "conformance/test_phase2.py")),
        ("loadtests", lambda r: _append(r / "loadtests/locustfile.py")),
        ("noxfile.py", lambda r: _append(r / "noxfile.py")),
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
