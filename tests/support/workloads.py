"""Pods, Nodes and PodDisruptionBudgets on the test kube-apiserver, with the statuses their
controllers would write (there is no kubelet, scheduler or disruption controller in envtest).

- a pod is bound to a node by `spec.nodeName` and its status set as the kubelet would
  (phase Running, Ready condition);
- a PDB's status is set as the disruption controller would (kubernetes/kubernetes
  pkg/controller/disruption): `observedGeneration` = `metadata.generation`, else the eviction
  handler answers 429 "still being processed" (eviction.go checkAndDecrement), and
  `disruptionsAllowed` is whatever the test says;
- an evicted pod on a node is only marked for deletion (deletionTimestamp): measured on this
  apiserver, the object stays until someone deletes it with grace period 0, which is the
  kubelet's last word once the containers stopped. `Kubelet.finish` plays that part.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

Obj = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_node(api: Any, name: str, *, ready: bool = True, unschedulable: bool = False) -> None:
    core: Any = client.CoreV1Api(api)
    body: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    if unschedulable:
        body["spec"] = {"unschedulable": True}
    core.create_node(body)
    set_node_ready(api, name, ready)


def set_node_ready(api: Any, name: str, ready: bool) -> None:
    now = _now()
    client.CoreV1Api(api).patch_node_status(
        name,
        {"status": {"conditions": [{
            "type": "Ready", "status": "True" if ready else "Unknown",
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "lastHeartbeatTime": now, "lastTransitionTime": now}]}},
    )  # fmt: skip


def run_pod(
    api: Any,
    namespace: str,
    node: str,
    *,
    labels: dict[str, str] | None = None,
    controller: tuple[str, str, str] | None = ("apps/v1", "ReplicaSet", "web-5d8f"),
    annotations: dict[str, str] | None = None,
    name: str = "",
    phase: str = "Running",
) -> str:
    """A pod bound to `node`, owned by `controller` (apiVersion, kind, name) or by nobody."""
    name = name or f"web-{secrets.token_hex(3)}"
    meta: Obj = {"name": name, "labels": labels or {"app": "web"}}
    if annotations:
        meta["annotations"] = annotations
    if controller is not None:
        api_version, kind, owner = controller
        meta["ownerReferences"] = [{
            "apiVersion": api_version, "kind": kind, "name": owner,
            "uid": "00000000-0000-0000-0000-000000000001", "controller": True}]  # fmt: skip
    core: Any = client.CoreV1Api(api)
    core.create_namespaced_pod(
        namespace,
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
         "spec": {"nodeName": node, "containers": [{"name": "app", "image": "agnhost"}]}},
    )  # fmt: skip
    status: Obj = {"phase": phase}
    if phase == "Running":
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]
    core.patch_namespaced_pod_status(name, namespace, {"status": status})
    return name


def pdb(
    api: Any,
    namespace: str,
    name: str,
    *,
    allowed: int,
    labels: dict[str, str] | None = None,
    healthy: int = 1,
) -> None:
    """A PDB over `labels` (minAvailable healthy-allowed) whose status allows `allowed`."""
    policy: Any = client.PolicyV1Api(api)
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
         "spec": {"minAvailable": max(healthy - allowed, 0),
                  "selector": {"matchLabels": labels or {"app": "web"}}}},
    )  # fmt: skip
    set_pdb_allowed(api, namespace, name, allowed, healthy=healthy)


def set_pdb_allowed(api: Any, namespace: str, name: str, allowed: int, *, healthy: int = 1) -> None:
    policy: Any = client.PolicyV1Api(api)
    current = policy.read_namespaced_pod_disruption_budget(name, namespace)
    policy.patch_namespaced_pod_disruption_budget_status(
        name, namespace,
        {"status": {"observedGeneration": current.metadata.generation,
                    "disruptionsAllowed": allowed, "currentHealthy": healthy,
                    "desiredHealthy": max(healthy - allowed, 0), "expectedPods": healthy}},
    )  # fmt: skip


class Kubelet:
    """The one thing a kubelet does that eviction needs: delete a pod marked for deletion,
    with grace period 0, once its containers are (pretend) stopped."""

    def __init__(self, api: Any) -> None:
        self.core: Any = client.CoreV1Api(api)

    def finish(self, node: str) -> list[str]:
        done = []
        for pod in self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}"
        ).items:
            if pod.metadata.deletion_timestamp is not None:
                self.core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                )
                done.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
        return done


def cordon_by_hand(api: Any, node: str) -> None:
    """`kubectl cordon NODE`: spec.unschedulable, no annotation."""
    core: Any = client.CoreV1Api(api)
    core.patch_node(node, {"spec": {"unschedulable": True}})
