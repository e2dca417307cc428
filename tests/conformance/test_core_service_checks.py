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
    """Plays the kubelet for probe pods on one PVC: the writer's bytes land in the volume, the
    reader sees them, or not: `lose` is a volume that keeps nothing, `node_local` one whose
    bytes stay on the node that wrote them (hostpath: a reader elsewhere finds an empty
    directory), shared storage (NFS, Ceph) is the default."""

    def __init__(self, lose: bool = False, node_local: bool = False) -> None:
        self.data: dict[str | None, bytes] = {}
        self.lose = lose
        self.node_local = node_local

    def fate(self, pod: Any) -> dict[str, Any] | None:
        container = pod.spec.containers[0]
        env = {e.name: e.value for e in container.env or ()}
        where = pod.spec.node_name if self.node_local else None
        if pod.metadata.name.endswith("-writer"):
            self.data[where] = env["DATA"].encode()
            return terminated("Succeeded", hashlib.sha256(self.data[where]).hexdigest())
        if pod.metadata.name.endswith("-reader"):
            seen = b"" if self.lose else self.data.get(where, b"")
            return terminated("Succeeded", hashlib.sha256(seen).hexdigest())
        return None


def _bind(api: Any, namespace: str, name: str) -> None:
    """What the PV controller does once the provisioner made a volume."""
    client.CoreV1Api(api).patch_namespaced_persistent_volume_claim_status(
        name, namespace, {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                     "capacity": {"storage": "64Mi"}}}
    )  # fmt: skip


def _pvc_verdict(
    api: Any, namespace: str, volume: FakeVolume, bind: bool, tier: str = "dev",
    nodes: tuple[str | None, str | None] = (None, None),
) -> Any:  # fmt: skip
    _storage_class(api, "microk8s-hostpath", default=True)
    kf.create_pvc(api, namespace, "probe")
    if bind:
        _bind(api, namespace, "probe")
    with FakeKubelet(api, namespace, volume.fate):
        trip = kf.pvc_round_trip(api, namespace, "probe", secrets.token_hex(16), 10, *nodes)
    return cluster.pvc_keeps_data(kf.read_pvc(api, namespace, "probe"), "microk8s-hostpath",
                                  trip, tier)  # fmt: skip


def test_pvc_on_default_class_binds_and_keeps_data(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(), bind=True)
    assert verdict.passed, verdict


def test_pvc_fails_when_data_is_lost_across_pods(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(lose=True), bind=True)
    assert not verdict.passed
    assert "data lost" in verdict.measured


def test_pvc_in_stage_reads_back_on_another_node(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(), True, "stage", ("k8s-1", "k8s-2"))
    assert verdict.passed, verdict
    assert "data read back from k8s-1 to k8s-2" in verdict.message


def test_pvc_in_stage_fails_on_node_local_storage(api: Any, namespace: str) -> None:
    """hostpath behind the default class in stage: the reader on another node finds nothing."""
    volume = FakeVolume(node_local=True)
    verdict = _pvc_verdict(api, namespace, volume, True, "stage", ("k8s-1", "k8s-2"))
    assert not verdict.passed
    assert verdict.measured == "data lost"
    assert "on k8s-1, read back" in verdict.message and "on k8s-2" in verdict.message


def test_pvc_in_stage_fails_when_both_pods_ran_on_one_node(api: Any, namespace: str) -> None:
    """What the old check did: node-local storage passes when both pods share a node."""
    volume = FakeVolume(node_local=True)
    verdict = _pvc_verdict(api, namespace, volume, True, "prod", ("k8s-1", "k8s-1"))
    assert not verdict.passed
    assert "writer and reader both on k8s-1; prod storage must be read from another node" in (
        verdict.message
    )


def test_pvc_in_dev_may_stay_on_one_node(api: Any, namespace: str) -> None:
    volume = FakeVolume(node_local=True)
    verdict = _pvc_verdict(api, namespace, volume, True, "dev", ("k8s-1", "k8s-1"))
    assert verdict.passed, verdict


def test_pvc_fails_when_it_never_binds(api: Any, namespace: str) -> None:
    verdict = _pvc_verdict(api, namespace, FakeVolume(), bind=False)
    assert not verdict.passed
    assert verdict.message == "PVC probe is Pending, not Bound"


def test_pvc_gets_the_default_class_from_the_api_server(api: Any, namespace: str) -> None:
    """No class named in the claim: the DefaultStorageClass admission fills it in."""
    _storage_class(api, "microk8s-hostpath", default=True)
    kf.create_pvc(api, namespace, "unnamed")
    assert kf.read_pvc(api, namespace, "unnamed").storage_class == "microk8s-hostpath"


# NetworkPolicy: tests/conformance/test_network_policy.py (a positive control in every run).


@pytest.fixture(autouse=True)
def _rbac_aggregated(request: pytest.FixtureRequest) -> None:
    if "rbac" in request.node.name:
        request.getfixturevalue("aggregated_roles")


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


# --- RBAC: every team x role x namespace class --------------------------------------------------


def _env_with_teams(dev_env: Environment) -> tuple[Environment, str, str]:
    """Two teams, and groups of this test's own (the API server is shared)."""
    tag = secrets.token_hex(3)
    a, b = f"a{tag}", f"b{tag}"
    data = dev_env.model_dump(mode="json")
    data["teams"] = [{"name": t, "leads_group": f"{t}-leads", "developers_group": f"{t}-devs"}
                     for t in (a, b)]  # fmt: skip
    data["access"] = {"cluster_admin_group": f"{tag}-sre", "auditor_group": f"{tag}-auditors"}
    return Environment.model_validate(data), a, b


def _matrix(api: Any, env: Environment) -> Any:
    return cluster.rbac_matrix([(c, kf.review_access(api, c)) for c in rbac_expectations(env)])


def _bind_role(
    api: Any, namespace: str, name: str, role: str, group: str, kind: str = "ClusterRole"
) -> None:
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]},
    )  # fmt: skip


def test_rbac_matrix_covers_every_team_role_and_namespace_class(
    api: Any, dev_env: Environment
) -> None:
    env, a, b = _env_with_teams(dev_env)
    apply_rbac(api, rbac_objects(env)[0])
    cells = rbac_expectations(env)
    verdict = _matrix(api, env)
    assert verdict.passed, verdict
    # 6 roles (admin, auditor, 2 x lead, 2 x dev) x (3 namespaces x 8 probes + 4 cluster probes)
    assert len(cells) == 6 * (3 * 8 + 4)
    cross = [c for c in cells if c.group == f"{a}-leads" and c.namespace == b]
    assert cross and not any(c.allowed for c in cross)
    auditor_secrets = [c for c in cells if c.role == "auditor" and c.resource == "secrets"]
    assert {c.namespace for c in auditor_secrets} == {a, b, "kube-system"}
    assert not any(c.allowed for c in auditor_secrets)


def test_rbac_matrix_fails_when_a_lead_reaches_another_teams_namespace(
    api: Any, dev_env: Environment
) -> None:
    env, a, b = _env_with_teams(dev_env)
    apply_rbac(api, rbac_objects(env)[0])
    _bind_role(api, b, "stray-admin", "admin", f"{a}-leads")  # a copy-pasted binding
    verdict = _matrix(api, env)
    assert not verdict.passed
    assert (
        f"namespace-admin ({a}-leads) get secrets in {b}: allowed, expected denied"
        in verdict.message
    )
    assert f"({b}-leads)" not in verdict.message


def test_rbac_matrix_fails_when_developers_can_read_every_namespace(
    api: Any, dev_env: Environment
) -> None:
    """A ClusterRoleBinding of `view` to a team's developers: cross-team reads."""
    env, a, b = _env_with_teams(dev_env)
    apply_rbac(api, rbac_objects(env)[0])
    client.RbacAuthorizationV1Api(api).create_cluster_role_binding(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{a}-devs-view"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": f"{a}-devs"}]},
    )  # fmt: skip
    verdict = _matrix(api, env)
    assert not verdict.passed
    assert f"developer ({a}-devs) list pods in {b}: allowed, expected denied" in verdict.message
    assert (
        f"developer ({a}-devs) list pods in kube-system: allowed, expected denied"
        in verdict.message
    )


def test_rbac_matrix_fails_when_auditors_can_read_secrets_in_a_team_namespace(
    api: Any, dev_env: Environment
) -> None:
    """Auditors bound to `edit` in one team namespace "to see everything": Secrets with it."""
    env, a, _ = _env_with_teams(dev_env)
    apply_rbac(api, rbac_objects(env)[0])
    _bind_role(api, a, "auditors-edit", "edit", env.access.auditor_group)
    verdict = _matrix(api, env)
    assert not verdict.passed
    assert (
        f"auditor ({env.access.auditor_group}) get secrets in {a}: allowed, expected denied"
        in verdict.message
    )
    assert (
        f"auditor ({env.access.auditor_group}) create deployments.apps in {a}: allowed"
        in verdict.message
    )
