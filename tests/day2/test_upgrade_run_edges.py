"""The upgrade's real Kubernetes side (mk8s.day2.upgrade_edges.LiveEdges) against the real
kube-apiserver (envtest): cordon ownership per run, eviction with a PDB's real 429 (never
forced), the wait until evicted pods are gone, and the DNS check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kubernetes import client

from mk8s.day2.upgrade_edges import LiveEdges
from mk8s.edges import proxmox
from mk8s.edges.kube import KubeApi
from mk8s.errors import OperationFailedError
from mk8s.inventory.load import load_environment
from tests.support import workloads
from tests.support.envtest import KubeApiServer, kube_apiserver

__all__ = ["kube_apiserver"]
pytestmark = pytest.mark.slow
OWNER = "upgrade 0123456789ab"


@dataclass
class KubeletClock:
    """A clock whose sleep lets the (absent) kubelet finish the node's terminating pods."""

    admin: Any
    node: str
    t: float = 1e9

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        workloads.Kubelet(self.admin).finish(self.node)


@pytest.fixture
def world(kube_apiserver: KubeApiServer) -> tuple[LiveEdges, Any, str, str]:
    suffix = secrets.token_hex(3)
    ns = kube_apiserver.create_namespace(f"up-{suffix}")
    admin = kube_apiserver.api_client()
    node = f"up-{suffix}"
    workloads.register_node(admin, node)
    edges = LiveEdges(
        load_environment("dev"), kube_apiserver.kubeconfig.parent,
        cast(proxmox.Pve, None),  # not used by the Kubernetes side
        KubeApi(kube_apiserver.kubeconfig), clock=KubeletClock(admin, node),
    )  # fmt: skip
    return edges, admin, ns, node


def test_only_this_runs_cordon_is_lifted(world: tuple[LiveEdges, Any, str, str]) -> None:
    edges, _, _, node = world
    edges.cordon(node, OWNER)
    edges.cordon(node, OWNER)  # a resumed run adopts its own cordon
    with pytest.raises(OperationFailedError, match="already cordoned by mk8s"):
        edges.cordon(node, "drain dev 2026-12-02T05:40:00Z")  # another mk8s run's: not ours
    assert edges.uncordon(node, "upgrade ffffffffffff") is False  # not this run's: stays
    seen = edges.kube.node(node)
    assert seen is not None and seen["spec"]["unschedulable"] is True
    assert edges.uncordon(node, OWNER) is True
    seen = edges.kube.node(node)
    assert seen is not None and not seen["spec"].get("unschedulable")


def test_a_foreign_cordon_is_refused_and_never_lifted(
    world: tuple[LiveEdges, Any, str, str],
) -> None:
    edges, admin, _, node = world
    workloads.cordon_by_hand(admin, node)
    with pytest.raises(OperationFailedError, match="cordoned by someone else"):
        edges.cordon(node, OWNER)
    assert edges.uncordon(node, OWNER) is False
    seen = edges.kube.node(node)
    assert seen is not None and seen["spec"]["unschedulable"] is True


def test_evict_names_a_blocking_pdb_never_forces_then_waits_pods_gone(
    world: tuple[LiveEdges, Any, str, str],
) -> None:
    edges, admin, ns, node = world
    pod = workloads.run_pod(admin, ns, node)
    workloads.pdb(admin, ns, "web", allowed=0)
    assert edges.evictable(node) == (f"{ns}/{pod}",)
    blockers = edges.evict(node)
    assert [(b.namespace, b.pod, b.pdb) for b in blockers] == [(ns, pod, "web")]
    assert "Cannot evict pod as it would violate the pod's disruption budget." in (
        blockers[0].message
    )
    assert edges.evictable(node) == (f"{ns}/{pod}",)  # still there: nothing forced
    workloads.set_pdb_allowed(admin, ns, "web", 1)
    assert edges.evict(node) == ()
    assert edges.evictable(node) == ()  # gone: the wait let the kubelet finish it


def test_dns_needs_an_available_coredns_and_endpoints(
    world: tuple[LiveEdges, Any, str, str],
) -> None:
    edges, admin, _, _ = world
    apps: Any = client.AppsV1Api(admin)
    core: Any = client.CoreV1Api(admin)
    existing = [d.metadata.name for d in apps.list_namespaced_deployment("kube-system").items]
    if "coredns" in existing:
        apps.delete_namespaced_deployment("coredns", "kube-system")
    assert edges.dns() == "CoreDNS (kube-system/coredns) has no available replica"
    labels = {"k8s-app": "kube-dns"}
    apps.create_namespaced_deployment(
        "kube-system",
        {"metadata": {"name": "coredns"},
         "spec": {"selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "c", "image": "coredns"}]}}}},
    )  # fmt: skip
    apps.patch_namespaced_deployment_status(
        "coredns",
        "kube-system",
        {"status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1}},
    )
    try:
        assert edges.dns() == "the kube-dns Service has no ready endpoint"
        core.create_namespaced_endpoints(
            "kube-system",
            {"metadata": {"name": "kube-dns"},
             "subsets": [{"addresses": [{"ip": "10.1.0.10"}], "ports": [{"port": 53}]}]},
        )  # fmt: skip
        assert edges.dns() is None
    finally:
        apps.delete_namespaced_deployment("coredns", "kube-system")
        core.delete_namespaced_endpoints("kube-dns", "kube-system")


class _NoMetrics:
    def raw(self, path: str) -> str:
        raise OperationFailedError(f"GET {path}: HTTP 403")


def test_api_use_is_the_deprecated_api_gauge_and_unknown_when_unreadable(
    world: tuple[LiveEdges, Any, str, str],
) -> None:
    edges, admin, _, _ = world
    core: Any = client.CoreV1Api(admin)
    core.list_namespaced_endpoints("default")  # v1 Endpoints is deprecated in 1.33 (KEP-4974)
    used = edges.api_use()
    assert used is not None
    assert any(u.api_version == "v1" and u.resource == "endpoints" for u in used), used
    assert all("/" in u.api_version or u.api_version.startswith("v") for u in used)
    edges.kube = cast(KubeApi, _NoMetrics())  # no RBAC for /metrics: unknown, not "none used"
    assert edges.api_use() is None
