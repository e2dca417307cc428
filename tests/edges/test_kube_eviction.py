"""The drain primitives of the Kubernetes edge against the real kube-apiserver (envtest):
cordon ownership, which pods a drain takes, and eviction answers (real 429/201/500/404) from
PDB statuses the test sets as the disruption controller would (tests/support/workloads.py)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from kubernetes import client

from mk8s.edges.kube import KubeApi
from mk8s.edges.kube_drain import CordonState, PodRef, cordon_of, eviction_of, gone, select_pods
from tests.support import workloads
from tests.support.envtest import KubeApiServer, kube_apiserver

__all__ = ["kube_apiserver"]
pytestmark = pytest.mark.slow

MARK = "mk8s.io/cordoned-by"  # the value of mk8s.day2.facts.CORDON_ANNOTATION, as drain passes it


@pytest.fixture
def world(kube_apiserver: KubeApiServer) -> tuple[KubeApi, Any, str, str]:
    """A KubeApi, an admin ApiClient, a namespace of its own and a Ready node of its own."""
    suffix = secrets.token_hex(3)
    namespace = kube_apiserver.create_namespace(f"evict-{suffix}")
    admin = kube_apiserver.api_client()
    node = f"n-{suffix}"
    workloads.register_node(admin, node)
    return KubeApi(kube_apiserver.kubeconfig), admin, namespace, node


def _node(api: KubeApi, name: str) -> dict[str, Any]:
    seen = api.node(name)
    assert seen is not None
    return seen


def test_cordon_marks_it_and_uncordon_lifts_only_that(world: tuple[KubeApi, Any, str, str]) -> None:
    api, _, _, node = world
    first = api.cordon(node, MARK, "drain dev 2026-12-02T05:40:00Z")
    assert first.state is CordonState.CORDONED
    seen = _node(api, node)
    assert seen["spec"]["unschedulable"] is True
    assert seen["metadata"]["annotations"][MARK] == "drain dev 2026-12-02T05:40:00Z"
    again = api.cordon(node, MARK, "another run")  # a resumed run adopts its own cordon
    assert again.state is CordonState.OURS and again.owner == "drain dev 2026-12-02T05:40:00Z"
    lifted = api.uncordon(node, MARK)
    assert lifted.state is CordonState.UNCORDONED
    seen = _node(api, node)
    assert not seen["spec"].get("unschedulable")
    assert MARK not in (seen["metadata"].get("annotations") or {})
    assert api.uncordon(node, MARK).state is CordonState.NOT_CORDONED


def test_a_foreign_cordon_is_left_alone_and_reported(
    world: tuple[KubeApi, Any, str, str],
) -> None:
    api, admin, _, _ = world
    node = f"hand-{secrets.token_hex(3)}"
    workloads.register_node(admin, node, unschedulable=True)  # `kubectl cordon` by an operator
    assert api.cordon(node, MARK, "drain dev").state is CordonState.FOREIGN
    out = api.uncordon(node, MARK)
    assert out.state is CordonState.FOREIGN
    assert "cordoned by someone else" in out.describe()
    seen = _node(api, node)
    assert seen["spec"]["unschedulable"] is True  # still cordoned
    assert MARK not in (seen["metadata"].get("annotations") or {})  # and not claimed


def test_node_pods_and_the_kubectl_filters(world: tuple[KubeApi, Any, str, str]) -> None:
    api, admin, ns, node = world
    web = workloads.run_pod(admin, ns, node)
    ds = workloads.run_pod(admin, ns, node, controller=("apps/v1", "DaemonSet", "calico-node"))
    mirror = workloads.run_pod(
        admin, ns, node, controller=None, annotations={"kubernetes.io/config.mirror": "x"}
    )
    bare = workloads.run_pod(admin, ns, node, controller=None)
    done = workloads.run_pod(admin, ns, node, controller=None, phase="Succeeded")
    workloads.register_node(admin, other := f"o-{secrets.token_hex(3)}")
    workloads.run_pod(admin, ns, other)  # on another node: not listed
    pods = api.node_pods(node)
    picked = select_pods(pods)
    assert {p.name for p in picked.evict} == {web, done}
    assert {(p.name, why) for p, why in picked.skipped} == {
        (ds, "DaemonSet calico-node"),
        (mirror, "mirror pod (static, the kubelet owns it)"),
    }
    assert [p.name for p in picked.unmanaged] == [bare]


def test_eviction_answers_429_naming_the_pdb_then_201_when_it_allows_one(
    world: tuple[KubeApi, Any, str, str],
) -> None:
    api, admin, ns, node = world
    pod = PodRef(ns, workloads.run_pod(admin, ns, node))
    workloads.pdb(admin, ns, "web", allowed=0)
    refused = api.evict(pod, dry_run=True)
    assert refused.status == 429 and refused.refused and refused.pdb == "web"
    assert "Cannot evict pod as it would violate the pod's disruption budget." in refused.message
    assert "The disruption budget web needs 1 healthy pods and has 1 currently" in refused.message
    assert api.evict(pod, dry_run=False).refused  # the real one too: nothing forced
    assert api.pod(pod) is not None

    workloads.set_pdb_allowed(admin, ns, "web", 1)
    assert api.evict(pod, dry_run=True) == eviction_of(pod, 201, "")
    live = api.pod(pod)
    assert live is not None and live["metadata"].get("deletionTimestamp") is None  # dry run
    assert api.evict(pod, dry_run=False).status == 201
    live = api.pod(pod)
    assert live is not None and live["metadata"]["deletionTimestamp"]  # marked, not yet gone
    workloads.Kubelet(admin).finish(node)
    assert gone(PodRef.of(live), api.pod(pod))
    assert api.evict(pod, dry_run=False).status == 404  # already gone: not a refusal
    assert not api.evict(pod, dry_run=False).refused


def test_raw_answer_codes_of_the_eviction_subresource(world: tuple[KubeApi, Any, str, str]) -> None:
    """What the edge reads, measured on the server itself: 201 Created and 429 with the cause."""
    _, admin, ns, node = world
    core: Any = client.CoreV1Api(admin)
    name = workloads.run_pod(admin, ns, node)
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    }
    ok = core.create_namespaced_pod_eviction_with_http_info(name, ns, body, dry_run="All")
    assert ok[1] == 201
    workloads.pdb(admin, ns, "web", allowed=0)
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod_eviction(name, ns, body, dry_run="All")
    assert refused.value.status == 429
    assert '"reason":"DisruptionBudget"' in str(refused.value.body).replace(" ", "")


def test_a_pod_under_two_pdbs_is_refused_and_said_so(world: tuple[KubeApi, Any, str, str]) -> None:
    api, admin, ns, node = world
    pod = PodRef(ns, workloads.run_pod(admin, ns, node))
    workloads.pdb(admin, ns, "web-a", allowed=1)
    workloads.pdb(admin, ns, "web-b", allowed=1)
    out = api.evict(pod, dry_run=True)
    assert out.refused and out.status == 500 and out.pdb is None
    assert "more than one PodDisruptionBudget" in out.message


def test_a_pdb_whose_status_lags_its_spec_refuses_with_its_name(
    world: tuple[KubeApi, Any, str, str],
) -> None:
    api, admin, ns, node = world
    pod = PodRef(ns, workloads.run_pod(admin, ns, node))
    workloads.pdb(admin, ns, "web", allowed=1)
    policy: Any = client.PolicyV1Api(admin)
    policy.patch_namespaced_pod_disruption_budget("web", ns, {"spec": {"minAvailable": 1}})
    out = api.evict(pod, dry_run=True)  # generation moved on, observedGeneration did not
    assert out.status == 429 and out.pdb == "web"
    assert "still being processed" in out.message
    assert [p["metadata"]["name"] for p in api.pdbs() if p["metadata"]["namespace"] == ns] == [
        "web"
    ]


def test_cordon_of_reads_spec_and_mark() -> None:
    node: dict[str, Any] = {
        "metadata": {"name": "n1", "annotations": {MARK: "upgrade stage"}},
        "spec": {},
    }
    assert cordon_of(node, MARK).state is CordonState.NOT_CORDONED
    node["spec"] = {"unschedulable": True}
    assert cordon_of(node, MARK).state is CordonState.OURS
    node["metadata"] = {"name": "n1"}
    assert cordon_of(node, MARK).state is CordonState.FOREIGN


def test_gone_compares_uids() -> None:
    before = PodRef("ns", "db-0", "uid-1")
    again = {"metadata": {"namespace": "ns", "name": "db-0", "uid": "uid-2"}}
    same = {"metadata": {"namespace": "ns", "name": "db-0", "uid": "uid-1"}}
    assert gone(before, None) and gone(before, again) and not gone(before, same)
