"""Phase 2 (Core services) exit: storage defaulted and persistent, RBAC applied, monitoring
live, default-deny network policy enforced (PRD)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.conftest import Criterion
from conformance.test_phase1 import SAMPLE_APP, SAMPLE_NS, SAMPLE_PATH, app_host
from mk8s.checks import cluster
from mk8s.checks import kube_facts as kf
from mk8s.checks.rbac import rbac_expectations
from mk8s.inventory.model import Environment

pytestmark = pytest.mark.phase2

POD_TIMEOUT_S = 300.0


@pytest.fixture
def scratch_namespace(kube: Any) -> Iterator[str]:
    """A namespace of the suite's own, deleted afterwards (with everything in it)."""
    name = f"mk8s-conformance-{secrets.token_hex(3)}"
    kf.ensure_namespace(kube, name)
    yield name
    kf.delete_namespace(kube, name)


def test_default_storage_class(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase2.storage_default_class")
    c.check(cluster.default_storage_class(kf.read_storage_classes(kube), env.storage.default_class))


def test_pvc_binds_and_keeps_data(
    env: Environment, kube: Any, scratch_namespace: str, criterion: Any
) -> None:
    c: Criterion = criterion("phase2.pvc_persistence")
    pvc = "mk8s-pvc-probe"
    kf.create_pvc(kube, scratch_namespace, pvc)
    written, read_back = kf.pvc_round_trip(
        kube, scratch_namespace, pvc, secrets.token_hex(32), POD_TIMEOUT_S
    )
    fact = kf.read_pvc(kube, scratch_namespace, pvc)
    c.check(cluster.pvc_keeps_data(fact, env.storage.default_class, written, read_back))


def test_rbac_matrix(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase2.rbac_matrix", unit="decisions")
    cells = rbac_expectations(env)
    c.check(cluster.rbac_matrix([(cell, kf.review_access(kube, cell)) for cell in cells]))


def test_monitoring_stack_live(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase2.monitoring")
    namespace = cluster.MONITORING_NAMESPACES[env.monitoring.stack]
    workloads = kf.read_workloads(kube, [namespace])
    c.check(cluster.monitoring(namespace, workloads, kf.count_dashboards(kube, namespace)))


def test_runbooks_drafted(criterion: Any) -> None:
    """PRD phase 2 exit: runbooks drafted (DESIGN.md's list, in docs/ of this checkout)."""
    c: Criterion = criterion("phase2.runbooks", unit="topics")
    docs = Path(__file__).resolve().parent.parent / "docs"
    c.check(cluster.runbooks(sorted(p.name for p in docs.glob("*.md"))))


def test_default_deny_network_policy_enforced(
    env: Environment, kube: Any, scratch_namespace: str, criterion: Any
) -> None:
    """From another namespace the sample app is unreachable; through the ingress it answers."""
    c: Criterion = criterion("phase2.network_policy")
    url = f"http://{SAMPLE_APP}.{SAMPLE_NS}.svc:80/"
    connected, detail = kf.connect_probe(
        kube, scratch_namespace, "mk8s-np-probe", url, POD_TIMEOUT_S
    )
    denied = cluster.ConnectProbe(f"namespace {scratch_namespace}", url, connected, detail)
    via_ingress = kf.ingress_probe(str(env.first_node.ip), app_host(env), SAMPLE_PATH)
    allowed = cluster.ConnectProbe(
        "ingress controller",
        f"{SAMPLE_NS}/{SAMPLE_APP}",
        via_ingress.status == 200 if via_ingress.status is not None else None,
        f"HTTP {via_ingress.status}" if via_ingress.status else via_ingress.error,
    )
    c.check(cluster.network_policy(SAMPLE_NS, kf.read_policies(kube, SAMPLE_NS), denied, allowed))
