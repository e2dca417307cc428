"""The `criterion` fixture's JUnit properties in the cases the suite run does not show:
a test that errors before it measured anything, and a test that checks twice."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conformance.conftest import ROOT

SUITE = """
from mk8s.checks import Verdict


def test_errors_before_measuring(criterion):
    criterion("phase2.pvc_persistence", target="Bound, data kept")
    raise RuntimeError("the API server went away")


def test_last_verdict_counts(criterion):
    c = criterion("phase1.pod_start", unit="s")
    c.check(Verdict(True, "3.0", "<= 20", "first pod"))
    c.check(Verdict(False, "25.0", "<= 20", "second pod too slow", "s"))
"""


def test_properties_are_recorded_even_when_a_test_errors(tmp_path: Path) -> None:
    suite = tmp_path / "test_contract.py"
    suite.write_text(SUITE)
    junit = tmp_path / "junit.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-p", "conformance.conftest",
         "-p", "no:cacheprovider", "--env", "dev", "-q", f"--junitxml={junit}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    cases = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    assert cases["test_errors_before_measuring"] == {
        "criterion": "phase2.pvc_persistence",
        "phase": "phase2",
        "measured": "not measured",
        "target": "Bound, data kept",
    }
    assert cases["test_last_verdict_counts"] == {
        "criterion": "phase1.pod_start",
        "phase": "phase1",
        "measured": "25.0",
        "target": "<= 20",
        "unit": "s",
    }
