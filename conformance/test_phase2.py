"""Phase 2 (Core services) exit: storage defaulted and persistent, RBAC applied, monitoring
live, default-deny network policy enforced (PRD)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.conftest import Criterion
from conformance.test_phase1 import INGRESS_NS, SAMPLE_APP, SAMPLE_NS, SELECTOR
from mk8s.checks import Verdict, all_of, cluster, netpol
from mk8s.checks import kube_facts as kf
from mk8s.checks import observability as obs
from mk8s.checks.rbac import rbac_expectations
from mk8s.inventory.model import Environment

pytestmark = pytest.mark.phase2

POD_TIMEOUT_S = 300.0
# agnhost netexec's port (manifests/base/sample-app/deployment.yaml), which the policy opens.
APP_PORT = 8080
# The namespace allow-from-ingress admits (manifests/base/sample-app/networkpolicy.yaml).
ALLOWED_NS = INGRESS_NS


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
    # stage/prod: written on one node, read on another (node-local storage must not pass).
    across = env.effective_tier in cluster.SHARED_STORAGE_TIERS and len(env.nodes) > 1
    writer, reader = (env.nodes[0].name, env.nodes[1].name) if across else (None, None)
    trip = kf.pvc_round_trip(
        kube, scratch_namespace, pvc, secrets.token_hex(32), POD_TIMEOUT_S, writer, reader
    )
    fact = kf.read_pvc(kube, scratch_namespace, pvc)
    c.check(cluster.pvc_keeps_data(fact, env.storage.default_class, trip, env.effective_tier))


def test_rbac_matrix(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase2.rbac_matrix", unit="decisions")
    cells = rbac_expectations(env)
    c.check(cluster.rbac_matrix([(cell, kf.review_access(kube, cell)) for cell in cells]))


def test_monitoring_stack_live(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase2.monitoring")
    namespace = cluster.MONITORING_NAMESPACES[env.monitoring.stack]
    workloads = kf.read_workloads(kube, [namespace])
    prometheus = obs.service_proxy_json(kube, namespace, *obs.PROMETHEUS_SERVICE)
    nodes = [(n.name, str(n.ip)) for n in env.nodes]
    c.check(
        all_of(
            [
                cluster.monitoring(namespace, workloads, kf.count_dashboards(kube, namespace)),
                obs.scrape_verdict(prometheus, nodes),
            ],
            "stack ready, dashboards live, every node-exporter and kubelet target up",
        )
    )


def test_runbooks_drafted(criterion: Any) -> None:
    """PRD phase 2 exit: runbooks drafted (DESIGN.md's list). A document check of this
    checkout's docs/, named with its revision; it measures nothing on the cluster."""
    c: Criterion = criterion("phase2.runbooks", unit="topics")
    root = Path(__file__).resolve().parent.parent
    c.check(cluster.runbooks(sorted(p.name for p in (root / "docs").glob("*.md")), _docs_at(root)))


def _docs_at(root: Path) -> str:
    """`docs/ at <commit>` (+ `, modified` when docs/ differs from it), or of an unknown one."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False, timeout=10)  # fmt: skip

    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        return "docs/ of a checkout with no git revision"
    dirty = git("status", "--porcelain", "--", "docs").stdout.strip()
    return f"docs/ at {head.stdout.strip()}" + (", modified" if dirty else "")


def test_default_deny_network_policy_enforced(
    kube: Any, scratch_namespace: str, criterion: Any
) -> None:
    """From another namespace a sample-app pod's IP is unreachable, while the same probe from
    the ingress namespace (which the policy admits) reaches it in the same run."""
    c: Criterion = criterion("phase2.network_policy")
    target = netpol.app_target(kube, SAMPLE_NS, SELECTOR, APP_PORT)
    if target is None:
        c.check(Verdict(False, "no target", "a Ready sample-app pod with an IP",
                        f"no Ready pod of {SAMPLE_APP} in {SAMPLE_NS} to probe"))  # fmt: skip
        return
    tag = secrets.token_hex(3)
    denied = netpol.connect(kube, scratch_namespace, f"mk8s-np-deny-{tag}", target, POD_TIMEOUT_S)
    control = netpol.connect(kube, ALLOWED_NS, f"mk8s-np-control-{tag}", target, POD_TIMEOUT_S)
    c.check(netpol.network_policy(SAMPLE_NS, kf.read_policies(kube, SAMPLE_NS), denied, control))
