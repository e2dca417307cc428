"""The exit-criteria suite's fixtures: inventory, cluster client, node hosts, evidence records.

Run through nox (`nox -s conformance -- --env dev [-m phase1]`), which adds `--junitxml` for
the evidence. Directly: `pytest conformance --env dev --junitxml=...`.

Inputs: the inventory (through mk8s.inventory.load), `build/ENV/kubeconfig` (written by bootstrap),
`build/ENV/known_hosts` (host keys pinned when the VMs came up), the SSH user and key from the
inventory's `ssh`, and the Proxmox token from the environment variables the inventory names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from mk8s.checks import Verdict, criteria
from mk8s.checks.node_facts import NodeShell, node_host
from mk8s.checks.record import CriterionRecord
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mk8s conformance")
    group.addoption("--env", required=True, help="environment name or inventory YAML path")
    group.addoption("--build-dir", default="build", help="where build/ENV/ lives (default build)")
    group.addoption("--kubeconfig", default=None, help="kubeconfig (default build/ENV/kubeconfig)")
    group.addoption(
        "--tls-ca",
        default=None,
        help="CA bundle the served certificate must verify to (Let's Encrypt staging's roots "
        "for a staging issuer; default: the system trust store)",
    )
    group.addoption(
        "--known-hosts", default=None, help="pinned host keys (default build/ENV/known_hosts)"
    )


@pytest.fixture(scope="session")
def env(pytestconfig: pytest.Config) -> Environment:
    return load_environment(str(pytestconfig.getoption("--env")))


@pytest.fixture(scope="session")
def tls_ca(pytestconfig: pytest.Config) -> Path | None:
    value = pytestconfig.getoption("--tls-ca")
    if value is None:
        return None
    path = Path(str(value))
    if not path.is_file():
        pytest.fail(f"--tls-ca {path}: no such file", False)
    return path


@pytest.fixture(scope="session")
def build_dir(pytestconfig: pytest.Config, env: Environment) -> Path:
    return Path(str(pytestconfig.getoption("--build-dir"))) / env.name


@pytest.fixture(scope="session")
def kube(pytestconfig: pytest.Config, build_dir: Path) -> Iterator[Any]:
    """An ApiClient from the admin kubeconfig bootstrap wrote."""
    path = Path(str(pytestconfig.getoption("--kubeconfig") or build_dir / "kubeconfig"))
    if not path.is_file():
        pytest.fail(f"{path}: no kubeconfig; run `invoke bootstrap --env ...` first", False)
    configuration = client.Configuration()
    config.load_kube_config(str(path), client_configuration=configuration)
    api = client.ApiClient(configuration)
    yield api
    api.close()


@pytest.fixture(scope="session")
def nodes(pytestconfig: pytest.Config, env: Environment, build_dir: Path) -> list[NodeShell]:
    """One testinfra host per inventory node, over SSH with pinned host keys."""
    known_hosts = Path(str(pytestconfig.getoption("--known-hosts") or build_dir / "known_hosts"))
    if not known_hosts.is_file():
        pytest.fail(f"{known_hosts}: no pinned host keys; run `invoke provision` first", False)
    key = Path(env.ssh.private_key_file).expanduser()
    return [
        NodeShell(
            n.name,
            str(n.ip),
            node_host(str(n.ip), env.ssh.port, env.ssh.user, known_hosts, key),
        )
        for n in env.nodes
    ]


class Criterion:
    """Handle a test uses to judge its exit criterion: records and asserts the verdict."""

    def __init__(self, record: CriterionRecord) -> None:
        self.record = record

    def check(self, verdict: Verdict) -> None:
        self.record.judge(verdict)
        print(verdict)  # every check says what it measured, pass or fail
        assert verdict.passed, str(verdict)


@pytest.fixture
def criterion(
    record_property: Callable[[str, object], None],
    env: Environment,
) -> Iterator[Callable[..., Criterion]]:
    """`criterion("phase1.loadbalancer", target=..., unit=...)` -> Criterion; its JUnit
    properties (criterion, phase, measured, target, unit) are recorded when the test ends.

    The id must be in the registry (mk8s.checks.criteria). When the registry says the criterion
    does not apply to this inventory, the test is skipped here with the registry's reason,
    which the evidence records and the gate compares."""
    records: list[CriterionRecord] = []

    def start(criterion_id: str, target: str | None = None, unit: str | None = None) -> Criterion:
        record = CriterionRecord(criterion_id, target, unit)
        records.append(record)
        reason = criteria.by_id(criterion_id).na_reason(env)
        if reason is not None:
            record.not_applicable = reason
            pytest.skip(reason)
        return Criterion(record)

    yield start
    for record in records:
        for name, value in record.properties():
            record_property(name, value)
