"""The drain vocabulary of the Kubernetes edge: cordon ownership, which pods a drain evicts,
what an eviction answer means. Pure readings of the server's objects and answers; `KubeApi`
(mk8s.edges.kube) does the requests. A module beside kube.py because kube.py would pass 500
lines; both talk to the same outside system.

`kubectl drain` semantics, read from kubernetes/kubectl@dee3483:pkg/drain/filters.go, and the
eviction answers from kubernetes/kubernetes@01aa0f3:pkg/registry/core/pod/storage/eviction.go.
This edge names what the server said; mk8s.day2.drain turns it into facts (Blocker), because
an edge imports no capability.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

Obj = dict[str, Any]

# Set by the kubelet on the API copy of a static pod (kubernetes/api core/v1
# annotation_key_constants.go `MirrorPodAnnotationKey`); deleting it does not stop the pod.
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED = ("Succeeded", "Failed")
NODE_WRITE_RETRIES = 5  # read-modify-write attempts on a Node before giving up


class CordonState(StrEnum):
    CORDONED = "cordoned"  # this call cordoned it and marked the cordon
    OURS = "ours"  # it was cordoned already, with the mk8s mark (adopted: resume)
    FOREIGN = "foreign"  # cordoned by someone else: left alone
    UNCORDONED = "uncordoned"  # this call lifted an mk8s cordon
    NOT_CORDONED = "not-cordoned"  # schedulable already: nothing to lift


@dataclass(frozen=True)
class Cordon:
    node: str
    state: CordonState
    owner: str | None  # the annotation's value, when the node carries it

    def describe(self) -> str:
        by = f" (by {self.owner})" if self.owner else ""
        return {
            CordonState.CORDONED: f"node {self.node} cordoned{by}",
            CordonState.OURS: f"node {self.node} already cordoned by mk8s{by}",
            CordonState.FOREIGN: f"node {self.node} is cordoned by someone else (not mk8s): "
            "left alone",
            CordonState.UNCORDONED: f"node {self.node} uncordoned (its mk8s cordon{by})",
            CordonState.NOT_CORDONED: f"node {self.node} is not cordoned",
        }[self.state]


def cordon_of(node: Obj, annotation: str) -> Cordon:
    """Pure: who cordoned `node`, read from spec.unschedulable and the ownership annotation."""
    meta = node.get("metadata") or {}
    owner = (meta.get("annotations") or {}).get(annotation)
    name = str(meta.get("name"))
    if not (node.get("spec") or {}).get("unschedulable"):
        return Cordon(name, CordonState.NOT_CORDONED, owner)
    return Cordon(name, CordonState.OURS if owner else CordonState.FOREIGN, owner)


@dataclass(frozen=True, order=True)
class PodRef:
    namespace: str
    name: str
    uid: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodRef:
        meta = pod["metadata"]
        return cls(meta["namespace"], meta["name"], meta.get("uid") or "")


@dataclass(frozen=True)
class PodSelection:
    """What a drain does with each pod on a node (kubectl drain --ignore-daemonsets
    --delete-emptydir-data, without --force)."""

    evict: tuple[PodRef, ...] = ()
    skipped: tuple[tuple[PodRef, str], ...] = ()  # (pod, why): mirror and DaemonSet pods
    unmanaged: tuple[PodRef, ...] = ()  # no controller: eviction would lose it (needs --force)


def _controller(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def select_pods(pods: Sequence[Mapping[str, Any]]) -> PodSelection:
    """Pure, after kubectl's filters (pkg/drain/filters.go makeFilters): a mirror pod is
    skipped; a DaemonSet's pod (controller apps/v1 DaemonSet) that has not finished is skipped
    (its controller would recreate it on the cordoned node); a pod without a controller that has
    not finished is refused (kubectl needs --force; mk8s never forces). emptyDir pods are
    evicted, as with --delete-emptydir-data: their data is scratch by definition. A finished
    (Succeeded/Failed) pod is evicted: the server deletes it without asking its PDB."""
    evict: list[PodRef] = []
    skipped: list[tuple[PodRef, str]] = []
    unmanaged: list[PodRef] = []
    for pod in pods:
        ref = PodRef.of(pod)
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        finished = (pod.get("status") or {}).get("phase") in FINISHED
        controller = _controller(pod)
        if MIRROR_ANNOTATION in annotations:
            skipped.append((ref, "mirror pod (static, the kubelet owns it)"))
        elif (
            controller is not None
            and (controller.get("apiVersion"), controller.get("kind")) == ("apps/v1", "DaemonSet")
            and not finished
        ):
            skipped.append((ref, f"DaemonSet {controller.get('name')}"))
        elif controller is None and not finished:
            unmanaged.append(ref)
        else:
            evict.append(ref)
    return PodSelection(tuple(sorted(evict)), tuple(sorted(skipped)), tuple(sorted(unmanaged)))


@dataclass(frozen=True)
class Eviction:
    """The server's answer to one eviction. `refused` is False for 201 (evicted, or would be
    on a dry run) and 404 (gone already: converged)."""

    pod: PodRef
    status: int
    refused: bool
    pdb: str | None = None  # the PodDisruptionBudget the refusal names
    message: str = ""


# eviction.go checkAndDecrement / createTooManyRequestsError put the PDB's name in a
# StatusCause of type policyv1.DisruptionBudgetCause ("DisruptionBudget"; JSON field "reason").
_PDB_CAUSE = re.compile(r"^The disruption budget (\S+) ")


def eviction_of(pod: PodRef, status: int, body: str) -> Eviction:
    """Pure: read an eviction answer. 429: a PDB allows no disruption now (or its status is
    older than its spec); 403 on a poddisruptionbudget: disruptionsAllowed is negative or too
    many evictions are unconfirmed; 500: the pod has more than one PDB, which eviction does not
    support. All three are refusals to report, never to force past."""
    if status in (200, 201, 404):
        return Eviction(pod, status, refused=False)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    details = answer.get("details") or {}
    pdb = None
    for cause in details.get("causes") or []:
        found = _PDB_CAUSE.match(str(cause.get("message", "")))
        if cause.get("reason") == "DisruptionBudget" and found:
            pdb = found.group(1)
    if pdb is None and details.get("kind") == "poddisruptionbudget":
        pdb = details.get("name")
    reasons = [str(answer.get("message") or body or f"HTTP {status}")]
    reasons += [str(c["message"]) for c in details.get("causes") or [] if c.get("message")]
    return Eviction(pod, status, refused=True, pdb=pdb, message=" ".join(reasons))


def gone(before: PodRef, now: Mapping[str, Any] | None) -> bool:
    """A pod is gone when it is not found or a new pod took its name (kubectl waitForDelete
    compares UIDs: a StatefulSet recreates the same name)."""
    return now is None or (bool(before.uid) and PodRef.of(now).uid != before.uid)


class DrainApi(Protocol):
    """What drain needs from the API server (KubeApi; tests use the real kube-apiserver)."""

    def node(self, name: str) -> Obj | None: ...
    def cordon(self, node: str, annotation: str, owner: str) -> Cordon: ...
    def uncordon(self, node: str, annotation: str) -> Cordon: ...
    def node_pods(self, node: str) -> list[Obj]: ...
    def pod(self, ref: PodRef) -> Obj | None: ...
    def evict(self, ref: PodRef, *, dry_run: bool) -> Eviction: ...
    def pdbs(self) -> list[Obj]: ...
