"""Real evidence for tests: a repository-shaped directory, pytest-made JUnit XML, Locust runs.

Conformance evidence is produced the way `nox -s conformance` produces it: a pytest run whose
tests call `record_property` (criterion, phase, measured, target, unit), written with
`--junitxml`, then turned into summary.json by `python -m mk8s.promotion.evidence record-conformance`.
Load-test evidence comes from `mk8s.checks.loadtest.run` against real nginx and a local backend.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mk8s.checks.loadtest import LoadProfile
from mk8s.checks.loadtest import run as run_loadtest
from mk8s.inventory.model import RateLimit
from mk8s.promotion.evidence import Summary, read_summary, record_conformance
from tests.loadtests.stack import backend, nginx

REPO = Path(__file__).resolve().parents[2]
# The shipped inventories' p95 SLO is 200 ms. Test repositories use 500 ms and the slow backend
# answers after 1000 ms, so that a busy 2-core CI machine stays far from the target on the
# healthy path while the slow path stays far above it.
TEST_P95_MS = 500
SLOW_MS = 1000.0

# Exit criteria as the conformance suite names them: (id, phase, measured, target, unit).
CRITERIA: tuple[tuple[str, str, str, str, str], ...] = (
    ("phase1.nodes_ready", "phase1", "3", "3", "nodes"),
    ("phase1.loadbalancer", "phase1", "192.168.10.50", "192.168.10.50-192.168.10.69", ""),
    ("phase1.tls", "phase1", "89", "30", "days"),
    ("phase2.pod_start", "phase2", "7.5", "20", "s"),
    ("phase2.network_policy", "phase2", "denied", "denied", ""),
    ("phase3.backup_restore_rto", "phase3", "12", "60", "min"),
)

_SUITE = """
import json, pytest
CASES = json.loads({cases!r})

@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_exit_criterion(case, record_property):
    for key in ("id", "phase", "measured", "target", "unit"):
        if case[key]:
            record_property("criterion" if key == "id" else key, case[key])
    if case["outcome"] == "skip":
        pytest.skip("not applicable: " + case["id"])
    assert case["outcome"] == "pass", f"expected {{case['target']}}, found {{case['measured']}}"
"""


def make_repo(dst: Path) -> Path:
    """Inventories plus small manifests/, bootstrap/ and terraform/ trees: the inputs."""
    (dst / "inventory").mkdir(parents=True)
    # The promotion chain only: the lab inventory (fakepve) is no part of dev -> stage -> prod.
    for path in (REPO / "inventory" / f"{name}.yaml" for name in ("dev", "stage", "prod")):
        text, found = re.subn(r"p95_ms: 200\b", f"p95_ms: {TEST_P95_MS}", path.read_text())
        assert found == 1, f"{path}: the factory expects the shipped p95 target of 200 ms"
        (dst / "inventory" / path.name).write_text(text)
    files = {
        "manifests/sample-app/deployment.yaml": "kind: Deployment\nmetadata: {name: app}\n",
        "manifests/ingress/ingress.yaml": "kind: Ingress\nmetadata: {name: app}\n",
        "bootstrap/launch.yaml": "version: 0.2.0\n",
        "terraform/main.tf": 'resource "proxmox_virtual_environment_vm" "node" {}\n',
    }
    for rel, text in files.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_text(text)
    return dst


# pytest's XML for a set of outcomes does not depend on where it is recorded: run it once.
_JUNIT_CACHE: dict[tuple[tuple[str, str], ...], str] = {}


def junit(workdir: Path, outcomes: dict[str, str] | None = None) -> Path:
    """Run a pytest suite of exit criteria; `outcomes` maps id -> pass|fail|skip (default pass)."""
    workdir.mkdir(parents=True, exist_ok=True)
    xml = workdir / "junit.xml"
    key = tuple(sorted((outcomes or {}).items()))
    if key in _JUNIT_CACHE:
        xml.write_text(_JUNIT_CACHE[key])
        return xml
    cases = [
        dict(zip(("id", "phase", "measured", "target", "unit"), c, strict=True))
        | {"outcome": (outcomes or {}).get(c[0], "pass")}
        for c in CRITERIA
    ]
    (workdir / "test_conformance.py").write_text(_SUITE.format(cases=json.dumps(cases)))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore",
            f"--junitxml={xml}",
            "test_conformance.py",
        ],
        cwd=workdir,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert xml.is_file(), "pytest wrote no JUnit XML"
    _JUNIT_CACHE[key] = xml.read_text()
    return xml


def record_conformance_cli(root: Path, env: str, xml: Path) -> Summary:
    """The real CLI, as the conformance nox session calls it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mk8s.promotion.evidence",
            "record-conformance",
            "--env",
            env,
            "--junit",
            str(xml),
            "--root",
            str(root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().rsplit(" ", 1)[-1])
    summary = read_summary(path if path.is_absolute() else REPO / path)
    assert summary is not None, proc.stdout
    return summary


def conformance_run(
    root: Path, env: str, outcomes: dict[str, str] | None = None, *, cli: bool = False
) -> Summary:
    xml = junit(root.parent / f"suite-{env}", outcomes)
    if cli:
        return record_conformance_cli(root, env, xml)
    return record_conformance(env, xml, root)[1]


def loadtest_run(root: Path, env: str, latency_ms: float = 0.0) -> Summary:
    """A short real load test (Locust through nginx) of `env`; no rate limit configured."""
    limit: RateLimit | None = None
    with (
        backend(latency_ms=latency_ms) as upstream,
        nginx(upstream, limit, root.parent / "nginx") as n,
    ):
        _, summary = run_loadtest(env, host=n.url, root=root, profile=LoadProfile(5, 5, 3, 20))
    return summary
