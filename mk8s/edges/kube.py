"""The Kubernetes edge: one API server through the kubernetes client's dynamic API.

Server-side apply with field manager `mk8s`; transport and credential failures become one line
naming the server. Callers (deploy, the checks) hold an `Api`, so their logic is tested against
the real kube-apiserver of the test harness through `KubeApi` itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mk8s.edges.kube_drain import (
    NODE_WRITE_RETRIES,
    Cordon,
    CordonState,
    Eviction,
    PodRef,
    cordon_of,
    eviction_of,
)
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.secrets import require_private

Obj = dict[str, Any]
FIELD_MANAGER = "mk8s"


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


class Api(Protocol):
    """What deploy needs from a Kubernetes API server (KubeApi talks to a real one)."""

    def served(self, api_version: str, kind: str) -> bool: ...
    def get(self, ref: Ref) -> Obj | None: ...
    def apply(self, obj: Obj, dry_run: bool) -> Obj: ...
    def list_labelled(self, api_version: str, kind: str, selector: str) -> list[Obj]: ...
    def delete(self, ref: Ref) -> None: ...


# (connect, read) seconds. The kubernetes client sets no timeout of its own (kubernetes 37.0.2
# client/rest.py: none unless a call passes _request_timeout), so an API server that accepts
# and never answers would hang deploy for ever (issue 12).
KUBE_TIMEOUT_S = (5.0, 30.0)


def _bound_requests(client: Any) -> None:
    """Give every request of `client` a timeout unless the call brings its own."""
    rest = client.rest_client
    unbounded = rest.request

    def request(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return unbounded(*args, _request_timeout=_request_timeout or KUBE_TIMEOUT_S, **kwargs)

    rest.request = request


class KubeApi:
    """The kubernetes client's dynamic API: server-side apply, field manager `mk8s`."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import config
        from kubernetes.dynamic import DynamicClient

        if not kubeconfig.is_file():
            raise UserError(
                f"kubeconfig {kubeconfig} not found: run `invoke bootstrap` first or pass --kubeconfig"
            )
        require_private(kubeconfig, "kubeconfig")  # it holds a cluster-admin credential
        try:
            client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        except Exception as exc:  # the client raises plain exceptions for bad files
            raise UserError(f"kubeconfig {kubeconfig} is not usable: {exc}") from None
        self.server = str(client.configuration.host)
        _bound_requests(client)
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

    def raw(self, path: str) -> str:
        """GET a non-resource path (e.g. /metrics) as text, with the kubeconfig's credentials."""
        api = self._dyn.client
        with self.talking():
            request = api.param_serialize("GET", path, auth_settings=["BearerToken"])
            answer = api.call_api(*request)
            answer.read()
        if not 200 <= answer.status < 300:
            raise OperationFailedError(f"GET {path} on {self.server}: HTTP {answer.status}")
        return bytes(answer.data).decode()

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

    # --- drain primitives (DrainApi) ---

    def node(self, name: str) -> Obj | None:
        return self.get(Ref("v1", "Node", None, name))

    def _patch_node(self, node: str, decide: Callable[[Obj], Obj | None]) -> Obj:
        """Read the Node, let `decide` return a merge patch (None: leave it), write it with the
        resourceVersion read (a concurrent writer makes the server answer 409: read again)."""
        from kubernetes.dynamic.exceptions import ConflictError as Conflict

        resource = self._resource("v1", "Node")
        for _ in range(NODE_WRITE_RETRIES):
            current = self.node(node)
            if current is None:
                raise OperationFailedError(f"node {node} is not registered with {self.server}")
            patch = decide(current)
            if patch is None:
                return current
            patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            with self.talking():
                try:
                    out = resource.patch(
                        body=patch, name=node, content_type="application/merge-patch+json"
                    )
                except Conflict:
                    continue
            return dict(out.to_dict())
        raise OperationFailedError(f"node {node} kept changing: {NODE_WRITE_RETRIES} writes lost")

    def cordon(self, node: str, annotation: str, owner: str) -> Cordon:
        """Cordon and mark the cordon `owner`'s; a node cordoned already is not touched."""
        before: list[Cordon] = []

        def decide(current: Obj) -> Obj | None:
            before[:] = [cordon_of(current, annotation)]
            if before[0].state is not CordonState.NOT_CORDONED:
                return None
            return {
                "metadata": {"annotations": {annotation: owner}},
                "spec": {"unschedulable": True},
            }

        self._patch_node(node, decide)
        was = before[0]
        if was.state is CordonState.NOT_CORDONED:
            return Cordon(node, CordonState.CORDONED, owner)
        return was

    def uncordon(self, node: str, annotation: str) -> Cordon:
        """Lift the cordon only when it carries the mk8s mark; a foreign cordon stays."""
        before: list[Cordon] = []

        def decide(current: Obj) -> Obj | None:
            before[:] = [cordon_of(current, annotation)]
            state = before[0].state
            if state is CordonState.FOREIGN:
                return None
            if state is CordonState.NOT_CORDONED and before[0].owner is None:
                return None
            # Ours, or a stale mark on a schedulable node: lift both.
            return {
                "metadata": {"annotations": {annotation: None}},
                "spec": {"unschedulable": None},
            }

        self._patch_node(node, decide)
        was = before[0]
        if was.state is CordonState.OURS:
            return Cordon(node, CordonState.UNCORDONED, was.owner)
        return was

    def node_pods(self, node: str) -> list[Obj]:
        """Every pod bound to `node`, in all namespaces (a field selector, as kubectl drain)."""
        with self.talking():
            listed = self._resource("v1", "Pod").get(field_selector=f"spec.nodeName={node}")
        return [dict(item) for item in listed.to_dict()["items"]]

    def pod(self, ref: PodRef) -> Obj | None:
        return self.get(Ref("v1", "Pod", ref.namespace, ref.name))

    def evict(self, ref: PodRef, *, dry_run: bool) -> Eviction:
        """POST a policy/v1 Eviction to the pod's eviction subresource; `dry_run` asks the
        server to decide without deleting (dryRun=All: the PDB check runs, nothing is kept)."""
        from kubernetes.dynamic.exceptions import DynamicApiError

        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": ref.name, "namespace": ref.namespace},
        }
        path = f"/api/v1/namespaces/{ref.namespace}/pods/{ref.name}/eviction"
        params: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        with self.talking():
            try:
                resp = self._dyn.request("post", path, body=body, serialize=False, **params)
            except DynamicApiError as exc:
                if exc.status in (429, 403, 500, 404) and _pdb_or_gone(exc):
                    return eviction_of(ref, int(exc.status), str(exc.body))
                raise
        return eviction_of(ref, int(resp.status), "")

    def pdbs(self) -> list[Obj]:
        """Every PodDisruptionBudget (policy/v1), all namespaces."""
        with self.talking():
            listed = self._resource("policy/v1", "PodDisruptionBudget").get()
        return [dict(item) for item in listed.to_dict()["items"]]

    def create(self, obj: Obj) -> Obj:
        """Create `obj`; ConflictError when it exists already (another writer won the race)."""
        return self._write("create", obj)

    def replace(self, obj: Obj) -> Obj:
        """Replace `obj` as read: its metadata.resourceVersion makes the server refuse the
        write with ConflictError when someone changed the object since (optimistic locking)."""
        return self._write("replace", obj)

    def _write(self, verb: str, obj: Obj) -> Obj:
        from kubernetes.dynamic.exceptions import DynamicApiError

        ref = Ref.of(obj)
        with self.talking():
            resource = self._resource(ref.api_version, ref.kind)
            try:
                out = getattr(resource, verb)(body=obj, namespace=ref.namespace)
            except DynamicApiError as exc:
                if exc.status in (401, 403):
                    raise
                if exc.status == 409:
                    raise ConflictError(ref, exc.status, _reason(exc)) from None
                raise ApplyError(ref, exc.status, _reason(exc)) from None
            return dict(out.to_dict())


def _pdb_or_gone(exc: Any) -> bool:
    """An eviction answer about the pod or its PDB, not about our credentials (a 403 that
    names a poddisruptionbudget is the PDB's; any other 403 is RBAC: talking() words it)."""
    if exc.status != 403:
        return True
    try:
        return bool(json.loads(exc.body)["details"]["kind"] == "poddisruptionbudget")
    except (ValueError, KeyError, TypeError):
        return False


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(getattr(exc, "summary", lambda: exc)())


class ApplyError(Exception):
    def __init__(self, ref: Ref, status: int | None, message: str) -> None:
        super().__init__(f"{ref}: {message}")
        self.ref, self.status, self.message = ref, status, message


class ConflictError(ApplyError):
    """409: the object exists (create) or changed since it was read (replace)."""


def default_kubeconfig(build: Path) -> Path:
    env = os.environ.get("KUBECONFIG")
    return Path(env) if env else build / "kubeconfig"
