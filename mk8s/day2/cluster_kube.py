"""The Kubernetes part of `ClusterFacts`, read-only: Nodes, the CNI pods, what a drain would
evict and which PDB keeps it, the newest Velero backup, and the API through each node.

Only list/get/version requests go out, so status works with get/list-only credentials. A pod
counts as blocked when a PodDisruptionBudget of its namespace selects it and either its status
lags its spec (`observedGeneration < generation`) or `status.disruptionsAllowed` is 0: the two
conditions under which the eviction subresource answers 429 "Cannot evict pod as it would
violate the pod's disruption budget." (kubernetes/kubernetes pkg/registry/core/pod/storage/
eviction.go `checkAndDecrement`, read in an older release's copy; the order of the checks is
the same). The tasks that disrupt nodes (drain, maintenance, upgrade) overlay the server's own
answer, a dry-run eviction per pod (mk8s.day2.drain_flow.with_disruption), on these facts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client

from mk8s.checks.velero_facts import read_backups
from mk8s.day2.facts import CORDON_ANNOTATION, Blocker, Disruption

TIMEOUT = (3.0, 10.0)  # (connect, read) seconds: status must answer even when a node does not
# MicroK8s' CNI: the calico-node DaemonSet in kube-system, label k8s-app=calico-node
# (canonical/microk8s@12204cfd upgrade-scripts/000-switch-to-calico/resources/calico.yaml).
CNI_NAMESPACE = "kube-system"
CNI_SELECTOR = "k8s-app=calico-node"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"  # static pods: a drain cannot evict them


@dataclass(frozen=True)
class KubeNode:
    ready: bool | None
    kubelet_version: str | None
    unschedulable: bool
    cordoned_by: str | None


@dataclass
class KubeRead:
    nodes: dict[str, KubeNode] = field(default_factory=dict)
    cni_ready: dict[str, bool] = field(default_factory=dict)
    disruption: tuple[Disruption, ...] = ()
    newest_backup: datetime | None = None
    problems: list[str] = field(default_factory=list)


def _ready(conditions: Iterable[Any] | None) -> bool | None:
    for c in conditions or ():
        if c.type == "Ready":
            return bool(c.status == "True")
    return None


def read_nodes(api: client.ApiClient) -> dict[str, KubeNode]:
    out: dict[str, KubeNode] = {}
    listed: list[Any] = client.CoreV1Api(api).list_node(_request_timeout=TIMEOUT).items
    for n in listed:
        status = n.status
        out[n.metadata.name] = KubeNode(
            ready=_ready(status.conditions if status else None),
            kubelet_version=status.node_info.kubelet_version
            if status and status.node_info
            else None,
            unschedulable=bool(n.spec and n.spec.unschedulable),
            cordoned_by=(n.metadata.annotations or {}).get(CORDON_ANNOTATION),
        )
    return out


def read_cni(api: client.ApiClient) -> dict[str, bool]:
    """node name -> whether the calico-node pod bound to it is Ready."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        CNI_NAMESPACE, label_selector=CNI_SELECTOR, _request_timeout=TIMEOUT
    )
    return {
        p.spec.node_name: _ready(p.status.conditions if p.status else None) is True
        for p in pods.items
        if p.spec and p.spec.node_name
    }


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) against a pod's labels; policy/v1: an
    empty selector selects every pod of the namespace."""
    sel = selector or {}
    for k, v in (sel.get("matchLabels") or sel.get("match_labels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or sel.get("match_expressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        has = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and has and labels[key] in values)
            or (op == "Exists" and not has)
            or (op == "DoesNotExist" and has)
        ):
            return False
    return True


def _evictable(pod: Any) -> bool:
    """The pods `kubectl drain` evicts: not DaemonSet-owned, not mirror pods, not finished."""
    owners = pod.metadata.owner_references or []
    if any(o.kind == "DaemonSet" for o in owners):
        return False
    if MIRROR_ANNOTATION in (pod.metadata.annotations or {}):
        return False
    return not (pod.status and pod.status.phase in ("Succeeded", "Failed"))


def _plain(api: client.ApiClient, obj: Any) -> Any:
    return api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def _refusal(pdb: Any) -> str | None:
    status = pdb.status
    if status is None or (status.observed_generation or 0) < (pdb.metadata.generation or 0):
        return "its status is still being processed by the server"
    if status.disruptions_allowed == 0:
        return "allows 0 disruptions"
    return None


def read_disruption(api: client.ApiClient, names: Iterable[str]) -> tuple[Disruption, ...]:
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    listed = policy.list_pod_disruption_budget_for_all_namespaces(_request_timeout=TIMEOUT)
    pdbs: list[Any] = listed.items
    pods: list[Any] = core.list_pod_for_all_namespaces(_request_timeout=TIMEOUT).items
    out = []
    for name in names:
        evictable, blockers = [], []
        for pod in pods:
            if pod.spec.node_name != name or not _evictable(pod):
                continue
            ns, labels = pod.metadata.namespace, pod.metadata.labels or {}
            ref = f"{ns}/{pod.metadata.name}"
            why = next(
                (
                    (p.metadata.name, reason)
                    for p in pdbs
                    if p.metadata.namespace == ns
                    and _matches(_plain(api, p.spec.selector), labels)
                    and (reason := _refusal(p)) is not None
                ),
                None,
            )
            if why is None:
                evictable.append(ref)
            else:
                blockers.append(Blocker(ns, pod.metadata.name, why[0], why[1]))
        out.append(Disruption(name, tuple(evictable), tuple(blockers)))
    return tuple(out)


def newest_backup(api: client.ApiClient) -> datetime | None:
    done = [b.completed for b in read_backups(api) if b.phase == "Completed" and b.completed]
    return max(done) if done else None


def _short(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        return f"{status} {reason}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"


def read(api: client.ApiClient, names: Iterable[str], server: str) -> KubeRead:
    """Each part on its own: one that fails is a problem line, the others still count."""
    names = list(names)
    out = KubeRead()
    parts: list[tuple[str, Any]] = [
        ("Nodes", lambda: setattr(out, "nodes", read_nodes(api))),
        ("CNI pods", lambda: setattr(out, "cni_ready", read_cni(api))),
        ("pods and PDBs", lambda: setattr(out, "disruption", read_disruption(api, names))),
        ("Velero backups", lambda: setattr(out, "newest_backup", newest_backup(api))),
    ]
    for what, do in parts:
        try:
            do()
        except Exception as exc:  # the client raises transport, HTTP and parse errors alike
            out.problems.append(f"kube API {server}: {what} not read ({_short(exc)})")
    return out


def api_answers(base: client.Configuration, url: str) -> bool:
    """GET /version on `url` with the kubeconfig's credentials (the server's certificate names
    every node IP: mk8s.day2.certs, render.launchconfig.sans)."""
    conf = copy.copy(base)
    conf.host = url
    # load_kube_config leaves a hook that re-reads the kubeconfig before every request and
    # sets its `host` again (kubernetes 37 config/kube_config.py `_set_config`,
    # `_refresh_api_key`): keep the credentials it refreshes, put this node's address back.
    refresh = base.refresh_api_key_hook

    def keep_host(c: client.Configuration) -> None:
        if refresh is not None:
            refresh(c)
        c.host = url

    conf.refresh_api_key_hook = keep_host  # type: ignore[assignment]  # the stub says None
    try:
        with client.ApiClient(conf) as api:
            client.VersionApi(api).get_code(_request_timeout=TIMEOUT)
    except Exception:  # refused, timed out, TLS, 5xx: the API does not answer here
        return False
    return True
