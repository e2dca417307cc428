"""Phase 2 checks against a real kube-apiserver: StorageClass default, PVC round trip,
default-deny NetworkPolicy, and the RBAC matrix through the real RBAC authorizer."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import cluster
from mk8s.checks import kube_facts as kf
from mk8s.checks.cluster import AccessExpectation
from mk8s.checks.rbac import rbac_expectations
from mk8s.inventory.model import Environment
from tests.conformance.actors import FakeKubelet, terminated
from tests.conformance.conftest import ROOT

pytestmark = pytest.mark.slow

# --- StorageClass default ------------------------------------------------------------------------

# StorageClasses are cluster-wide and the API server is shared by the session: one test owns them.


def _storage_class(api: Any, name: str, default: bool) -> None:
    storage = client.StorageV1Api(api)
    annotations = {kf.DEFAULT_CLASS_ANNOTATION: "true" if default else "false"}
    body = client.V1StorageClass(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations),
        provisioner="microk8s.io/hostpath",
        volume_binding_mode="WaitForFirstConsumer",
    )
    try:
        storage.create_storage_class(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        storage.patch_storage_class(name, {"metadata": {"annotations": annotations}})


@pytest.fixture
def storage_classes(api: Any) -> Iterator[None]:
    yield
    for name in ("sc-fast", "sc-nfs"):
        with contextlib.suppress(ApiException):
            client.StorageV1Api(api).delete_storage_class(name)
    _storage_class(api, "microk8s-hostpath", default=True)


def test_default_storage_class_verdicts(
    api: Any, dev_env: Environment, storage_classes: None
) -> None:
    _storage_class(api, "microk8s-hostpath", default=True)
    _storage_class(api, "sc-fast", default=False)
    ok = cluster.default_storage_class(kf.read_storage_classes(api), "microk8s-hostpath")
    assert ok.passed, ok

    _storage_class(api, "sc-fast", default=True)  # two defaults: PVCs become ambiguous
    two = cluster.default_storage_class(kf.read_storage_classes(api), "microk8s-hostpath")
    assert not two.passed and "microk8s-hostpath, sc-fast" in two.measured

    _storage_class(api, "microk8s-hostpath", default=False)  # the wrong one is default
    wrong = cluster.default_storage_class(kf.read_storage_classes(api), "microk8s-hostpath")
    assert not wrong.passed and wrong.measured == "sc-fast"

    missing = cluster.default_storage_class(kf.read_storage_classes(api), "sc-nfs")
    assert not missing.passed and "does not exist" in missing.message


# --- PVC round trip --------------------------------------------------------------------------------


class FakeVolume:
    """Plays the kubelet for probe pods on one PVC: the writer's bytes land in `data`, the reader
    sees them (or not, when `lose` is set: a volume that does not keep data)."""

    def __init__(self, lose: bool = False) -> None:
        self.data: bytes | None = None
        self.lose = lose

    def fate(self, pod: Any) -> dict[str, Any] | None:
        container = pod.spec.containers[0]
        env = {e.name: e.value for e in container.env or ()}
        if pod.metadata.name.endswith("-writer"):
            self.data = env["DATA"].encode()
            return terminated("Succeeded", hashlib.sha256(self.data).hexdigest())
        if pod.metadata.name.endswith("-reader"):
            seen = b"" if self.lose or self.data is None else self.data
            return terminated("Succeeded", hashlib.sha256(seen).hexdigest())
        return None


def _bind(api: Any, namespace: str, name: str) -> None:
    """What the PV controller does once the provisioner made a volume."""
    client.CoreV1Api(api).patch_namespaced_persistent_volume_claim_status(
        name, namespace, {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                     "capacity": {"storage": "64Mi"}}}
    )  # fmt: skip


def _pvc_verdict(api: Any, namespace: str, volume: FakeVolume, bind: bool) -> Any:
    _storage_class(api, "microk8s-hostpath", default=True)
    kf.create_pvc(api, namespace, "probe")
    if bind:
        _bind(api, namespace, "probe")
    with FakeKubelet(api, namespace, volume.fate):
        written, read_back = kf.pvc_round_trip(api, namespace, "probe", secrets.token_hex(16), 10)
    return cluster.pvc_keeps_data(
        kf.read_pvc(api, namespace, "probe"), "microk8s-hostpath", written, read_back
    )


def test_pvc_on_default_class_binds_and_keeps_data(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(), bind=True)
    assert verdict.passed, verdict


def test_pvc_fails_when_data_is_lost_across_pods(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(lose=True), bind=True)
    assert not verdict.passed
    assert "data lost" in verdict.measured


def test_pvc_fails_when_it_never_binds(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(), bind=False)
    assert not verdict.passed
    assert verdict.message == "PVC probe is Pending, not Bound"


def test_pvc_gets_the_default_class_from_the_api_server(api: Any, namespace: str) -> None:
    """No class named in the claim: the DefaultStorageClass admission fills it in."""
    _storage_class(api, "microk8s-hostpath", default=True)
    kf.create_pvc(api, namespace, "unnamed")
    assert kf.read_pvc(api, namespace, "unnamed").storage_class == "microk8s-hostpath"


# --- NetworkPolicy ---------------------------------------------------------------------------------


def _sample_app_policies(namespace: str) -> list[dict[str, Any]]:
    """The sample app's policies (manifests/base/sample-app/networkpolicy.yaml when present)."""
    path = ROOT / "manifests" / "base" / "sample-app" / "networkpolicy.yaml"
    if path.is_file():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    else:
        docs = [
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "default-deny"},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "allow-from-ingress"},
             "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sample-app"}},
                      "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                          "kubernetes.io/metadata.name": "ingress"}}}]}]}},
        ]  # fmt: skip
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def _probe_fate(result: str) -> Any:
    return lambda pod: terminated("Succeeded", result)


def _np_verdict(api: Any, app_ns: str, probe_ns: str, probe_result: str, ingress_ok: bool) -> Any:
    url = f"http://sample-app.{app_ns}.svc:80/"
    with FakeKubelet(api, probe_ns, _probe_fate(probe_result)):
        connected, detail = kf.connect_probe(api, probe_ns, "np-probe", url, 10)
    denied = cluster.ConnectProbe(f"namespace {probe_ns}", url, connected, detail)
    allowed = cluster.ConnectProbe("ingress controller", "sample-app", ingress_ok, "HTTP 200")
    return cluster.network_policy(app_ns, kf.read_policies(api, app_ns), denied, allowed)


@pytest.fixture(autouse=True)
def _rbac_aggregated(request: pytest.FixtureRequest) -> None:
    if "rbac" in request.node.name:
        request.getfixturevalue("aggregated_roles")


@pytest.fixture
def probe_namespace(kube_apiserver: Any) -> str:
    return kube_apiserver.create_namespace(f"probe-{secrets.token_hex(3)}")


def test_network_policy_passes_when_default_deny_blocks_other_namespaces(
    api: Any, namespace: str, probe_namespace: str
) -> None:
    net = client.NetworkingV1Api(api)
    for doc in _sample_app_policies(namespace):
        net.create_namespaced_network_policy(namespace, doc)
    verdict = _np_verdict(api, namespace, probe_namespace, "blocked", ingress_ok=True)
    assert verdict.passed, verdict


def test_network_policy_fails_without_a_default_deny_policy(
    api: Any, namespace: str, probe_namespace: str
) -> None:
    net = client.NetworkingV1Api(api)
    for doc in _sample_app_policies(namespace):
        if doc["metadata"]["name"] != "default-deny":
            net.create_namespaced_network_policy(namespace, doc)
    verdict = _np_verdict(api, namespace, probe_namespace, "blocked", ingress_ok=True)
    assert not verdict.passed
    assert "has no default-deny policy" in verdict.message


def test_network_policy_fails_when_not_enforced(
    api: Any, namespace: str, probe_namespace: str
) -> None:
    """The objects exist but the CNI ignores them: the probe gets through."""
    net = client.NetworkingV1Api(api)
    for doc in _sample_app_policies(namespace):
        net.create_namespaced_network_policy(namespace, doc)
    verdict = _np_verdict(api, namespace, probe_namespace, "open", ingress_ok=True)
    assert not verdict.passed
    assert "policy not enforced" in verdict.message


def test_network_policy_fails_when_the_allowed_path_is_blocked(
    api: Any, namespace: str, probe_namespace: str
) -> None:
    net = client.NetworkingV1Api(api)
    for doc in _sample_app_policies(namespace):
        net.create_namespaced_network_policy(namespace, doc)
    verdict = _np_verdict(api, namespace, probe_namespace, "blocked", ingress_ok=False)
    assert not verdict.passed
    assert "allowed path" in verdict.message


# --- RBAC matrix ---------------------------------------------------------------------------------


def rbac_objects(env: Environment) -> tuple[list[dict[str, Any]], str]:
    """The RBAC objects for `env`, taken from the platform manifests themselves."""
    auditor = ROOT / "manifests" / "base" / "rbac" / "auditor.yaml"
    team = ROOT / "manifests" / "team" / "rbac.yaml"
    source = "manifests/"
    docs = [*yaml.safe_load_all(auditor.read_text()), *yaml.safe_load_all(team.read_text())]
    docs = [d for d in docs if d]
    out: list[dict[str, Any]] = [d for d in docs if d["kind"] == "ClusterRole"]
    for t in env.teams:
        for d in docs:
            if d["kind"] != "RoleBinding":
                continue
            binding = yaml.safe_load(yaml.safe_dump(d))
            binding["metadata"]["namespace"] = t.name
            group = t.leads_group if d["roleRef"]["name"] == "admin" else t.developers_group
            binding["subjects"] = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                    "name": group}]  # fmt: skip
            out.append(binding)
    try:
        render: Any = importlib.import_module("mk8s.render.manifests")
        out += render.cluster_rbac(env)
        source += " + mk8s.render.manifests.cluster_rbac"
    except (ImportError, AttributeError):
        source += " + equivalent ClusterRoleBindings"
        acc = env.access
        for name, role, group in (
            ("mk8s-cluster-admin", "cluster-admin", acc.cluster_admin_group),
            ("mk8s-auditor-view", "view", acc.auditor_group),
            ("mk8s-auditor-cluster-read", "mk8s-auditor-cluster-read", acc.auditor_group),
        ):
            out.append({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": group}],
            })  # fmt: skip
    return out, source


def apply_rbac(api: Any, docs: list[dict[str, Any]], skip: str | None = None) -> None:
    """Create or replace each object, as an apply would: cluster-wide bindings have fixed
    names (mk8s-cluster-admin, ...) and each test binds its own groups to them."""
    rbac = client.RbacAuthorizationV1Api(api)
    core = client.CoreV1Api(api)
    for doc in docs:
        name = doc["metadata"]["name"]
        ns = doc["metadata"].get("namespace")
        if f"{ns}/{name}" == skip:
            continue
        if doc["kind"] == "ClusterRole":
            create, replace = rbac.create_cluster_role, rbac.replace_cluster_role
            args: tuple[str, ...] = ()
        elif doc["kind"] == "ClusterRoleBinding":
            create, replace = rbac.create_cluster_role_binding, rbac.replace_cluster_role_binding
            args = ()
        else:
            with contextlib.suppress(ApiException):
                core.create_namespace({"metadata": {"name": ns}})
            create, replace = (
                rbac.create_namespaced_role_binding,
                rbac.replace_namespaced_role_binding,
            )
            args = (ns,)
        try:
            create(*args, doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            replace(name, *args, doc)


def _env_with_team(dev_env: Environment, team: str) -> Environment:
    data = dev_env.model_dump(mode="json")
    data["teams"] = [{"name": team, "leads_group": f"{team}-leads",
                      "developers_group": f"{team}-devs"}]  # fmt: skip
    data["access"] = {"cluster_admin_group": f"{team}-sre", "auditor_group": f"{team}-auditors"}
    return Environment.model_validate(data)


def test_rbac_matrix_passes_with_the_platform_roles_applied(
    api: Any, dev_env: Environment, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env_with_team(dev_env, f"t{secrets.token_hex(3)}")
    docs, source = rbac_objects(env)
    apply_rbac(api, docs)
    cells = [(cell, kf.review_access(api, cell)) for cell in rbac_expectations(env)]
    verdict = cluster.rbac_matrix(cells)
    print(f"RBAC objects from {source}")
    assert verdict.passed, verdict
    assert len(cells) >= 20


def test_rbac_matrix_fails_when_the_developer_binding_is_missing(
    api: Any, dev_env: Environment
) -> None:
    team = f"t{secrets.token_hex(3)}"
    env = _env_with_team(dev_env, team)
    docs, _ = rbac_objects(env)
    apply_rbac(api, docs, skip=f"{team}/developer")
    verdict = cluster.rbac_matrix([(c, kf.review_access(api, c)) for c in rbac_expectations(env)])
    assert not verdict.passed
    assert (
        f"developer ({team}-devs) create deployments.apps in {team}: denied, expected allowed"
        in (verdict.message)
    )


def test_rbac_matrix_fails_when_a_role_grants_too_much(api: Any, dev_env: Environment) -> None:
    """Developers bound to `admin` instead of `edit` may change RBAC: the matrix catches it."""
    team = f"t{secrets.token_hex(3)}"
    env = _env_with_team(dev_env, team)
    docs, _ = rbac_objects(env)
    for doc in docs:
        if doc["kind"] == "RoleBinding" and doc["metadata"]["name"] == "developer":
            doc["roleRef"]["name"] = "admin"
    apply_rbac(api, docs)
    verdict = cluster.rbac_matrix([(c, kf.review_access(api, c)) for c in rbac_expectations(env)])
    assert not verdict.passed
    assert "create rolebindings.rbac.authorization.k8s.io in" in verdict.message
    assert "allowed, expected denied" in verdict.message


def test_review_access_asks_the_real_authorizer(api: Any) -> None:
    """system:masters may do anything; an unknown group may do nothing."""
    anything = AccessExpectation("x", "system:masters", "delete", "nodes")
    nothing = AccessExpectation("x", "no-such-group", "list", "pods", namespace="default")
    assert kf.review_access(api, anything) is True
    assert kf.review_access(api, nothing) is False
