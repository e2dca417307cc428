"""Real evidence for tests: a repository-shaped directory, JUnit XML from the suite's own
`criterion` fixture, Locust runs through real nginx, signatures by real SSH keys.

Conformance evidence is produced the way `nox -s conformance` produces it: pytest with the
conformance suite's conftest (its `criterion` fixture, CriterionRecord, the registry's ids and
not-applicable rules), written with `--junitxml`, then `python -m mk8s.promotion.evidence
record-conformance`, signed with `ssh-keygen -Y sign`. The verdicts themselves are scripted
here (one per registry criterion): what these tests prove is the evidence and the gate, the
verdicts are proven on broken clusters in tests/checks/ and tests/conformance/.
Load-test evidence comes from `mk8s.checks.loadtest.run` against real nginx on an address
inside the test environment's MetalLB range, with the app's Host header.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mk8s.checks import criteria
from mk8s.checks.loadtest import LoadProfile
from mk8s.checks.loadtest import run as run_loadtest
from mk8s.promotion.evidence import Summary, read_summary, record_conformance
from tests.loadtests.stack import backend, nginx

REPO = Path(__file__).resolve().parents[2]
# The shipped inventories' p95 SLO is 200 ms. Test repositories use 500 ms and the slow backend
# answers after 1000 ms, so that a busy 2-core CI machine stays far from the target on the
# healthy path while the slow path stays far above it.
TEST_P95_MS = 500
SLOW_MS = 1000.0
# Test environments live on loopback: dev's 192.168.10.0/24 becomes 127.0.10.0/24, so nginx can
# stand at a MetalLB address (dev's ingress) without leaving the machine.
SUBNETS = {"dev": "10", "stage": "20", "prod": "30"}
# A short load profile, written into the test inventories, so a full (not smoke) run takes 5 s.
TEST_LOAD = "loadtest: {users: 5, spawn_rate: 5, duration_s: 5, target_rps: 20}"
CODE = ("mk8s", "conformance", "loadtests", "tasks.py", "noxfile.py", "pyproject.toml")
SIGNER = "alice@example.com"

# Facts some tests assert on: (measured, target, unit); every other criterion gets "ok".
FACTS: dict[str, tuple[str, str, str]] = {
    "phase1.loadbalancer": ("127.0.10.90", "127.0.10.50-127.0.10.69", ""),
    "phase1.tls": ("89", "30", "days"),
    "phase1.pod_start": ("7.5", "20", "s"),
    "phase2.network_policy": ("open", "blocked", ""),
}

_SUITE = """
import json, pytest
from mk8s.checks.verdict import Verdict
CASES = json.loads({cases!r})

@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_exit_criterion(case, criterion):
    c = criterion(case["id"], unit=case["unit"] or None)
    if case["outcome"] == "skip":
        pytest.skip("scripted skip without the registry's N/A reason")
    if case["outcome"] == "error":
        raise ConnectionError("could not reach the cluster")
    ok = case["outcome"] == "pass"
    c.check(Verdict(ok, case["measured"], case["target"], "scripted " + case["outcome"]))
"""


@dataclass(frozen=True)
class Keys:
    alice: Path  # named in the test inventories' promotion.signers
    mallory: Path  # a valid key nobody allowed


def make_keys(dst: Path) -> Keys:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("alice", "mallory"):
        if not (dst / name).is_file():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(dst / name)],
                check=True,
            )
    return Keys(dst / "alice", dst / "mallory")


def make_repo(dst: Path, keys: Keys) -> Path:
    """Inventories, the code, and small manifests/, bootstrap/ and terraform/ trees."""
    (dst / "inventory").mkdir(parents=True)
    public = (keys.alice.with_suffix(".pub")).read_text().split()
    signer = f'{{name: {SIGNER}, key: "{public[0]} {public[1]}"}}'
    for name, octet in SUBNETS.items():
        text = (REPO / "inventory" / f"{name}.yaml").read_text()
        text = _sub(text, r"p95_ms: 200\b", f"p95_ms: {TEST_P95_MS}")
        text = _sub(text, r"^loadtest: \{[^}]*\}", TEST_LOAD)
        text = _sub(text, r"^promotion: \{([^}]*)\}", rf"promotion: {{\1, signers: [{signer}]}}")
        text = text.replace(f"192.168.{octet}.", f"127.0.{octet}.")
        (dst / "inventory" / f"{name}.yaml").write_text(text)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")
    for rel in CODE:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, dst / rel, ignore=ignore)
        else:
            shutil.copy2(src, dst / rel)
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


def _sub(text: str, pattern: str, repl: str) -> str:
    out, found = re.subn(pattern, repl, text, flags=re.M)
    assert found == 1, f"the factory expects one {pattern!r} in a shipped inventory"
    return out


# pytest's XML for a set of outcomes does not depend on the repository: run it once.
_JUNIT_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}


def junit(root: Path, env: str, workdir: Path, outcomes: dict[str, str] | None = None) -> Path:
    """The suite's fixtures judging one scripted verdict per registry criterion.

    `outcomes` maps id -> pass | fail | skip (the test skips itself) | error | absent (not
    selected, as with -k); default pass. Not-applicable criteria skip through the fixture.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    xml = workdir / "junit.xml"
    chosen = outcomes or {}
    key = (env, tuple(sorted(chosen.items())))
    if key in _JUNIT_CACHE:
        xml.write_text(_JUNIT_CACHE[key])
        return xml
    cases = []
    for c in criteria.of_run("conformance"):
        outcome = chosen.get(c.id, "pass")
        if outcome == "absent":
            continue
        measured, target, unit = FACTS.get(c.id, ("ok", "ok", ""))
        cases.append({"id": c.id, "outcome": outcome, "measured": measured, "target": target,
                      "unit": unit})  # fmt: skip
    (workdir / "test_conformance.py").write_text(_SUITE.format(cases=json.dumps(cases)))
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
            "-p", "conformance.conftest", "--env", str(root / "inventory" / f"{env}.yaml"),
            f"--junitxml={xml}", "-o", "junit_family=xunit2", "test_conformance.py",
        ],
        cwd=workdir, capture_output=True, text=True, check=False, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(workdir)},
    )  # fmt: skip
    assert xml.is_file(), proc.stdout + proc.stderr
    _JUNIT_CACHE[key] = xml.read_text()
    return xml


def record_conformance_cli(root: Path, env: str, xml: Path, key: Path | None) -> Summary:
    """The real CLI, as the conformance nox session calls it."""
    proc = subprocess.run(
        [sys.executable, "-m", "mk8s.promotion.evidence", "record-conformance", "--env", env,
         "--junit", str(xml), "--root", str(root), *(["--key", str(key)] if key else [])],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().rsplit(" ", 1)[-1])
    summary = read_summary(path if path.is_absolute() else REPO / path)
    assert summary is not None, proc.stdout
    return summary


def conformance_run(
    root: Path,
    env: str,
    key: Path | None,
    outcomes: dict[str, str] | None = None,
    *,
    cli: bool = False,
) -> Summary:
    xml = junit(root, env, root.parent / f"suite-{env}", outcomes)
    if cli:
        return record_conformance_cli(root, env, xml, key)
    return record_conformance(env, xml, root, key=key)[1]


def loadtest_run(
    root: Path,
    env: str,
    key: Path | None,
    *,
    latency_ms: float = 0.0,
    profile: LoadProfile | None = None,
    ip: str | None = None,
    host: str | None = None,
) -> Summary:
    """A real load test (Locust through nginx) of `env`, at its ingress address by default."""
    ip = ip or f"127.0.{SUBNETS[env]}.50"
    with (
        backend(latency_ms=latency_ms) as upstream,
        nginx(upstream, None, root.parent / f"nginx-{env}", ip=ip) as n,
    ):
        _, summary = run_loadtest(
            env, host=host, connect=n.url, root=root, profile=profile, key=key
        )
    return summary
