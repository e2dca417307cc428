"""The Kubernetes edge of `invoke deploy`: apply the built overlay server-side, prune, wait.

Three moves, as every edge: read facts (each object's live state and the API server's own
server-side dry-run answer, and the live objects carrying mk8s' labels), compute the changes
(pure: `plan_changes`, unit-tested on recorded answers), then act (server-side apply with field
manager `mk8s`, delete what left the overlay, wait for rollouts) or print them for --dry-run.

- Server-side apply owns exactly the fields mk8s sets, so add-on defaults and controllers'
  fields are never reverted; `force` takes over fields a human `kubectl edit`-ed (drift).
- Prune deletes only objects that carry BOTH mk8s labels for this environment and that the
  overlay no longer contains; objects an add-on created and mk8s co-owns carry
  `mk8s.io/prune: disabled` and are never deleted.
- Secrets are built here from `secrets.json` references and the process environment: they are
  sent to the API server and nowhere else (never printed, never written to build/).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Literal, Protocol

from mk8s.errors import OperationFailedError, UserError
from mk8s.render.manifests import SecretRef

Obj = dict[str, Any]
FIELD_MANAGER = "mk8s"
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


@dataclass(frozen=True, order=True)
class Ref:
    """Identity of an object on the server."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Ref:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


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


# --- pure: secrets from references -----------------------------------------------------


def load_secret_refs(path: Path) -> list[SecretRef]:
    """The references `invoke plan` rendered (build/ENV/manifests/secrets.json)."""
    if not path.is_file():
        return []
    return [
        SecretRef(r["namespace"], r["name"], dict(r["data"])) for r in json.loads(path.read_text())
    ]


def env_vars_named(specs: Iterable[SecretRef]) -> list[str]:
    names: set[str] = set()
    for spec in specs:
        for template in spec.data.values():
            for match in Template.pattern.finditer(template):
                name = match.group("braced") or match.group("named")
                if name:
                    names.add(name)
    return sorted(names)


def build_secrets(specs: Sequence[SecretRef], environ: Mapping[str, str], env: str) -> list[Obj]:
    """Secret objects from references; every missing variable is reported at once."""
    missing = [n for n in env_vars_named(specs) if not environ.get(n)]
    if missing:
        raise UserError(
            *(
                f"environment variable {n} is not set (a secret deploy needs; see docs/deploy.md)"
                for n in missing
            )
        )
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": s.name,
                "namespace": s.namespace,
                "labels": {MANAGED_BY: "mk8s", ENV_LABEL: env},
            },
            "type": "Opaque",
            "stringData": {k: Template(v).substitute(environ) for k, v in s.data.items()},
        }
        for s in specs
    ]


def redact(obj: Mapping[str, Any]) -> Obj:
    """A Secret as it may be shown: keys only."""
    out = dict(obj)
    for key in ("data", "stringData"):
        if key in out:
            out[key] = {k: "(redacted)" for k in out[key]}
    return out


# --- the edge --------------------------------------------------------------------------


class Api(Protocol):
    """What deploy needs from a Kubernetes API server (KubeApi talks to a real one)."""

    def served(self, api_version: str, kind: str) -> bool: ...
    def get(self, ref: Ref) -> Obj | None: ...
    def apply(self, obj: Obj, dry_run: bool) -> Obj: ...
    def list_labelled(self, api_version: str, kind: str, selector: str) -> list[Obj]: ...
    def delete(self, ref: Ref) -> None: ...


class KubeApi:
    """The kubernetes client's dynamic API: server-side apply, field manager `mk8s`."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import config
        from kubernetes.dynamic import DynamicClient

        if not kubeconfig.is_file():
            raise UserError(
                f"kubeconfig {kubeconfig} not found: run `invoke bootstrap` first or pass --kubeconfig"
            )
        try:
            client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        except Exception as exc:  # the client raises plain exceptions for bad files
            raise UserError(f"kubeconfig {kubeconfig} is not usable: {exc}") from None
        self.server = str(client.configuration.host)
        with self.talking():  # discovery runs here: the first request to the server
            self._dyn = DynamicClient(client)  # type: ignore[no-untyped-call]

    @contextlib.contextmanager
    def talking(self) -> Iterator[None]:
        """Transport and authentication failures become one line, not a traceback."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except HTTPError as exc:
            raise OperationFailedError(
                f"cannot reach the API server at {self.server}: {type(exc).__name__}"
            ) from None
        except ApiException as exc:
            if exc.status in (401, 403):
                raise OperationFailedError(
                    f"the API server at {self.server} refused the kubeconfig's credentials "
                    f"({exc.status} {exc.reason})"
                ) from None
            raise

    def _resource(self, api_version: str, kind: str) -> Any:
        with self.talking():
            return self._dyn.resources.get(api_version=api_version, kind=kind)

    def served(self, api_version: str, kind: str) -> bool:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            self._resource(api_version, kind)
        except ResourceNotFoundError:
            return False
        return True

    def get(self, ref: Ref) -> Obj | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        with self.talking():
            try:
                obj = self._resource(ref.api_version, ref.kind).get(
                    name=ref.name, namespace=ref.namespace
                )
            except NotFoundError:
                return None
            return dict(obj.to_dict())

    def apply(self, obj: Obj, dry_run: bool) -> Obj:
        from kubernetes.dynamic.exceptions import DynamicApiError

        ref = Ref.of(obj)
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER}
        if dry_run:
            kwargs["dry_run"] = "All"
        with self.talking():
            try:
                out = self._resource(ref.api_version, ref.kind).server_side_apply(
                    body=obj, name=ref.name, namespace=ref.namespace, force_conflicts=True, **kwargs
                )
            except DynamicApiError as exc:
                if exc.status in (401, 403):
                    raise  # credentials, not this object: talking() words it
                raise ApplyError(ref, exc.status, _reason(exc)) from None
            return dict(out.to_dict())

    def list_labelled(self, api_version: str, kind: str, selector: str) -> list[Obj]:
        with self.talking():
            resource = self._resource(api_version, kind)
            items = resource.get(label_selector=selector).to_dict()["items"]
        for item in items:  # list items omit apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return [dict(i) for i in items]

    def delete(self, ref: Ref) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        with self.talking(), contextlib.suppress(NotFoundError):  # already gone: converged
            self._resource(ref.api_version, ref.kind).delete(
                name=ref.name, namespace=ref.namespace, body={"propagationPolicy": "Background"}
            )


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(getattr(exc, "summary", lambda: exc)())


class ApplyError(Exception):
    def __init__(self, ref: Ref, status: int | None, message: str) -> None:
        super().__init__(f"{ref}: {message}")
        self.ref, self.status, self.message = ref, status, message


NAMESPACE_MISSING = re.compile(r'namespaces? "([^"]+)" not found')


@dataclass(frozen=True)
class Facts:
    live: dict[Ref, Obj | None]
    predicted: dict[Ref, Obj]
    labelled: list[Obj]


def read_facts(api: Api, desired: Sequence[Obj], env: str) -> Facts:
    """Live state, the server's dry-run answers and mk8s-labelled objects. Reports every
    kind the server does not serve and every object it would reject, all at once."""
    kinds = sorted({(o["apiVersion"], o["kind"]) for o in desired})
    unserved = [f"{a} {k}" for a, k in kinds if not api.served(a, k)]
    if unserved:
        raise UserError(
            *(
                f"the cluster does not serve {u}: enable its add-on / install its CRDs (docs/deploy.md)"
                for u in unserved
            )
        )
    live = {Ref.of(o): api.get(Ref.of(o)) for o in desired}
    new_namespaces = {
        r.name for r, current in live.items() if r.kind == "Namespace" and current is None
    }
    predicted: dict[Ref, Obj] = {}
    rejected: list[str] = []
    for obj in desired:
        ref = Ref.of(obj)
        try:
            predicted[ref] = api.apply(obj, dry_run=True)
        except ApplyError as exc:
            missing = NAMESPACE_MISSING.search(exc.message)
            if exc.status == 404 and missing and missing.group(1) in new_namespaces:
                continue  # its namespace is created by this deploy: it will be a create
            rejected.append(f"{ref}: {exc.message}")
    if rejected:
        raise OperationFailedError("the API server rejected the dry run:", *rejected)
    selector = f"{MANAGED_BY}=mk8s,{ENV_LABEL}={env}"
    labelled = [
        item
        for api_version, kind in sorted(set(PRUNABLE) | set(kinds))
        if api.served(api_version, kind)
        for item in api.list_labelled(api_version, kind, selector)
    ]
    return Facts(live, predicted, labelled)


Progress = Callable[[str], None]


def execute(api: Api, plan: DeployPlan, desired: Sequence[Obj], progress: Progress) -> None:
    by_ref = {Ref.of(o): o for o in desired}
    for change in plan.changes:
        if change.action in ("create", "update"):
            progress(f"apply {change.ref}")
            try:
                api.apply(by_ref[change.ref], dry_run=False)
            except ApplyError as exc:
                raise OperationFailedError(f"apply failed: {exc}") from None
        elif change.action == "prune":
            progress(f"delete {change.ref}")
            api.delete(change.ref)


def wait_for_rollouts(
    api: Api,
    desired: Sequence[Obj],
    timeout_s: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    pending = [Ref.of(o) for o in desired if o["kind"] in ROLLOUT_KINDS]
    deadline = clock() + timeout_s
    while pending:
        still: list[Ref] = []
        for ref in pending:
            obj = api.get(ref)
            done, message = (False, "not found yet") if obj is None else rollout_status(obj)
            progress(f"{ref}: {message}")
            if not done:
                still.append(ref)
        pending = still
        if not pending:
            return
        if clock() >= deadline:
            raise OperationFailedError(
                *(f"{r}: rollout not finished after {timeout_s:.0f}s" for r in pending)
            )
        sleep(2.0)


def default_kubeconfig(build: Path) -> Path:
    env = os.environ.get("KUBECONFIG")
    return Path(env) if env else build / "kubeconfig"


def describe(plan: DeployPlan) -> list[str]:
    """What changed, one line per object (never a value: Secrets show only key paths)."""
    marks = {"create": "+", "update": "~", "prune": "-"}
    lines = []
    for c in plan.changes:
        if c.action == "unchanged":
            continue
        if c.action == "keep":
            lines.append(f"  ! {c.ref} left the overlay; kept (delete it by hand if intended)")
            continue
        detail = (
            f" ({', '.join(c.paths[:6])}{', ...' if len(c.paths) > 6 else ''})" if c.paths else ""
        )
        lines.append(f"  {marks[c.action]} {c.ref}{detail}")
    counts = {a: len(plan.by_action(a)) for a in ("create", "update", "prune", "unchanged")}
    lines.append(
        f"{counts['create']} created, {counts['update']} updated, {counts['prune']} pruned, "
        f"{counts['unchanged']} unchanged"
    )
    return lines


def deploy(
    api: Api,
    objects: Sequence[Obj],
    secrets: Sequence[Obj],
    env: str,
    dry_run: bool,
    timeout_s: float,
    progress: Progress,
) -> DeployPlan:
    """Dry-run everything server-side, then (unless dry_run) apply, prune and wait."""
    desired = [*objects, *secrets]
    progress("server-side dry run")
    facts = read_facts(api, desired, env)
    plan = plan_changes(desired, facts.live, facts.predicted, facts.labelled, env)
    if dry_run or plan.empty:
        return plan
    execute(api, plan, desired, progress)
    wait_for_rollouts(api, objects, timeout_s, progress)
    return plan
