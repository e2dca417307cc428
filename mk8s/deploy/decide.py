"""What `invoke deploy` will change: pure decisions from the built overlay and the facts.

Facts are each object's live state, the API server's own server-side dry-run answer and the
live objects carrying mk8s' labels (read by `mk8s.deploy.flow`); `plan_changes` turns them into
an ordered `DeployPlan` (create / update with the differing paths / unchanged / prune / keep).

- Server-side apply owns exactly the fields mk8s sets, so add-on defaults and controllers'
  fields are never reverted; `force` takes over fields a human `kubectl edit`-ed (drift).
- Prune deletes only objects that carry BOTH mk8s labels for this environment and that the
  overlay no longer contains; objects an add-on created and mk8s co-owns carry
  `mk8s.io/prune: disabled` and are never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mk8s.edges.kube import Obj, Ref
from mk8s.errors import OperationFailedError

MANAGED_BY = "app.kubernetes.io/managed-by"
ENV_LABEL = "mk8s.io/environment"
PRUNE_ANNOTATION = "mk8s.io/prune"

Action = Literal["create", "update", "unchanged", "prune", "keep"]
# A namespace that left the overlay still holds whatever teams deployed into it: deleting it
# would destroy workloads and volumes, which only `destroy` may do. Deploy reports it instead.
NEVER_PRUNED = frozenset({"Namespace"})

# Server-managed or volatile fields: never part of "what changed".
VOLATILE_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionGracePeriodSeconds",
)
# Annotations written by other tools that say nothing about the desired state.
VOLATILE_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)

# Apply order: what others depend on first (namespaces, CRDs, RBAC, config), custom resources
# last (their CRDs and controllers come from add-ons). Prune runs in reverse.
KIND_ORDER = (
    "Namespace",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "Secret",
    "ConfigMap",
    "Service",
    "PodDisruptionBudget",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "Ingress",
)

# Every kind mk8s may have applied: prune must find the last object of a kind that left the
# overlay too, so it lists these and not only the kinds still in the overlay.
PRUNABLE = (
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("metallb.io/v1beta1", "IPAddressPool"),
    ("metallb.io/v1beta1", "L2Advertisement"),
    ("cert-manager.io/v1", "ClusterIssuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("velero.io/v1", "BackupStorageLocation"),
    ("velero.io/v1", "Schedule"),
    ("argoproj.io/v1alpha1", "Application"),
    ("traefik.io/v1alpha1", "Middleware"),
    ("traefik.io/v1alpha1", "TLSOption"),
)
ROLLOUT_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


@dataclass(frozen=True)
class Change:
    ref: Ref
    action: Action
    paths: tuple[str, ...] = ()  # fields that differ, for updates


@dataclass(frozen=True)
class DeployPlan:
    """What deploy will do, in order: applies (create/update/unchanged), then prunes."""

    changes: tuple[Change, ...]

    def by_action(self, action: Action) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def empty(self) -> bool:
        return all(c.action in ("unchanged", "keep") for c in self.changes)


# --- pure: facts -> changes ------------------------------------------------------------


def normalize(obj: Mapping[str, Any]) -> Obj:
    """The object without server bookkeeping and status: what a diff should compare."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in dict(obj.get("metadata", {})).items() if k not in VOLATILE_METADATA}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in VOLATILE_ANNOTATIONS
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def changed_paths(live: Any, predicted: Any, prefix: str = "") -> list[str]:
    """Dotted paths where the predicted object differs from the live one (sorted, leaf-most)."""
    if isinstance(live, Mapping) and isinstance(predicted, Mapping):
        out: list[str] = []
        for key in sorted(set(live) | set(predicted)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in live or key not in predicted:
                out.append(path)
            else:
                out.extend(changed_paths(live[key], predicted[key], path))
        return out
    return [] if live == predicted else [prefix or "."]


def apply_rank(ref: Ref) -> tuple[int, str, str, str]:
    try:
        rank = KIND_ORDER.index(ref.kind)
    except ValueError:
        rank = len(KIND_ORDER)  # custom resources last
    return (rank, ref.kind, ref.namespace or "", ref.name)


def is_mk8s_owned(obj: Mapping[str, Any], env: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(MANAGED_BY) == "mk8s" and labels.get(ENV_LABEL) == env


def prune_protected(obj: Mapping[str, Any]) -> bool:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(PRUNE_ANNOTATION) == "disabled"


def plan_changes(
    desired: Sequence[Obj],
    live: Mapping[Ref, Obj | None],
    predicted: Mapping[Ref, Obj],
    labelled: Iterable[Obj],
    env: str,
) -> DeployPlan:
    """Pure: classify every desired object and find what to prune.

    `live` maps each desired object to its current state (None: absent); `predicted` is the API
    server's dry-run answer for the apply (absent when it could not run, e.g. the namespace is
    created in the same deploy); `labelled` are live objects listed by mk8s' labels.
    """
    changes: list[Change] = []
    wanted = {Ref.of(o) for o in desired}
    for obj in sorted(desired, key=lambda o: apply_rank(Ref.of(o))):
        ref = Ref.of(obj)
        current = live.get(ref)
        if current is None:
            changes.append(Change(ref, "create"))
            continue
        after = predicted.get(ref, obj)
        paths = changed_paths(normalize(current), normalize(after))
        changes.append(Change(ref, "update", tuple(paths)) if paths else Change(ref, "unchanged"))
    stale = [
        Ref.of(o)
        for o in labelled
        if is_mk8s_owned(o, env) and not prune_protected(o) and Ref.of(o) not in wanted
    ]
    for ref in sorted(set(stale), key=apply_rank, reverse=True):
        changes.append(Change(ref, "keep" if ref.kind in NEVER_PRUNED else "prune"))
    return DeployPlan(tuple(changes))


def rollout_status(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a workload finished rolling out, as `kubectl rollout status` decides it."""
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    meta = obj.get("metadata", {})
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "waiting for the controller to see the new spec"
    kind = obj["kind"]
    if kind == "Deployment":
        for cond in status.get("conditions", []):
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                raise OperationFailedError(f"{Ref.of(obj)}: rollout exceeded its progress deadline")
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        if updated < want:
            return False, f"{updated}/{want} replicas updated"
        if status.get("replicas", 0) > updated:
            return False, f"{status.get('replicas', 0) - updated} old replicas terminating"
        available = status.get("availableReplicas", 0)
        if available < updated:
            return False, f"{available}/{updated} updated replicas available"
        return True, f"{available}/{want} available"
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        updated = status.get("updatedNumberScheduled", 0)
        if updated < want:
            return False, f"{updated}/{want} pods updated"
        available = status.get("numberAvailable", 0)
        if available < want:
            return False, f"{available}/{want} pods available"
        return True, f"{available}/{want} available"
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        ready = status.get("readyReplicas", 0)
        if ready < want:
            return False, f"{ready}/{want} replicas ready"
        if status.get("updateRevision") != status.get("currentRevision"):
            return False, "partitioned roll out in progress"
        return True, f"{ready}/{want} ready"
    return True, "no rollout"


def redact(obj: Mapping[str, Any]) -> Obj:
    """A Secret as it may be shown: keys only."""
    out = dict(obj)
    for key in ("data", "stringData"):
        if key in out:
            out[key] = {k: "(redacted)" for k in out[key]}
    return out
