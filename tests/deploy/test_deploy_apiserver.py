"""`invoke deploy`'s edge against a real kube-apiserver + etcd (tests/support/envtest.py):
server-side dry run, apply with field manager mk8s, label-scoped prune, drift correction and
rollout reading, with the real dev overlay. There is no controller-manager: the test sets the
Deployment status a controller would, and installs the CRDs the add-ons would bring."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from mk8s.deploy import decide as deploy_decide
from mk8s.deploy import flow as deploy_flow
from mk8s.edges.kube import KubeApi, Ref
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.load import load_environment
from mk8s.render.manifests import SecretRef, secret_refs
from tests.manifests.conftest import ROOT, render
from tests.support import upstream
from tests.support.envtest import KubeApiServer

pytestmark = pytest.mark.slow

ENV = "dev"
# Namespaces the MicroK8s add-ons create before mk8s deploys.
ADDON_NAMESPACES = ("metallb-system", "ingress", "cert-manager", "argocd")
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def overlays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    scratch = tmp_path_factory.mktemp("deploy")
    return {
        name: render(load_environment(str(ROOT / "inventory" / f"{name}.yaml")), scratch).objects
        for name in ("dev", "stage", "prod")
    }


@pytest.fixture(scope="module")
def dev_objects(overlays: dict[str, list[Obj]]) -> list[Obj]:
    return overlays[ENV]


def install_what_addons_bring(kube_apiserver: KubeApiServer) -> None:
    """What `microk8s enable ...`, csi-driver-nfs and `connect-external-ceph` leave behind
    that deploy checks for (mk8s.deploy.prerequisites): the CSI drivers' CSIDriver objects and
    the Rook external-cluster connection of the prod inventory's Ceph cluster."""
    client = kube_apiserver.api_client()
    storage = kubernetes.client.StorageV1Api(client)
    for driver in ("nfs.csi.k8s.io", "rook-ceph.rbd.csi.ceph.com"):
        storage.create_csi_driver({"metadata": {"name": driver}, "spec": {"attachRequired": False}})
    prod = load_environment(str(ROOT / "inventory" / "prod.yaml"))
    assert prod.storage.ceph is not None
    core = kubernetes.client.CoreV1Api(client)
    kube_apiserver.create_namespace("rook-ceph-external")
    core.create_namespaced_secret(
        "rook-ceph-external",
        {
            "metadata": {"name": "rook-ceph-mon"},
            "stringData": {"fsid": prod.storage.ceph.cluster_id},
        },
    )
    core.create_namespaced_config_map(
        "rook-ceph-external",
        {"metadata": {"name": "rook-ceph-mon-endpoints"}, "data": {"data": "a=192.168.30.21:6789"}},
    )


@pytest.fixture(scope="module")
def api(kube_apiserver: KubeApiServer, overlays: dict[str, list[Obj]]) -> Iterator[KubeApi]:
    # The real CRDs of the add-on versions (shared/upstream/crds): the server enforces their
    # schemas, so the dry run rejects what cert-manager 1.17.1 or Argo CD 2.7.2 would.
    upstream.install(kube_apiserver.api_client())
    custom = {
        (o["apiVersion"], o["kind"])
        for objects in overlays.values()
        for o in objects
        if upstream.is_custom(o)
    }
    unknown = custom - set(upstream.served_versions())
    assert not unknown, f"no upstream CRD in shared/upstream/crds for {sorted(unknown)}"
    for name in ADDON_NAMESPACES:
        try:
            kube_apiserver.create_namespace(name)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:  # 409: another module of this session created it
                raise
    install_what_addons_bring(kube_apiserver)
    kube = KubeApi(kube_apiserver.kubeconfig)
    # Wait until discovery serves the new kinds (CRDs become Established asynchronously).
    for _ in range(100):
        if all(kube.served(a, k) for a, k in custom):
            break
        kube = KubeApi(kube_apiserver.kubeconfig)
    yield kube


def set_rolled_out(kube_apiserver: KubeApiServer, objects: list[Obj]) -> None:
    """What the deployment controller would write once every replica is available."""
    apps = kubernetes.client.AppsV1Api(kube_apiserver.api_client())
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        live = apps.read_namespaced_deployment(o["metadata"]["name"], o["metadata"]["namespace"])
        n = live.spec.replicas
        status = {
            "observedGeneration": live.metadata.generation,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
        apps.patch_namespaced_deployment_status(
            o["metadata"]["name"], o["metadata"]["namespace"], {"status": status}
        )
    for o in objects:
        if o["kind"] != "DaemonSet":
            continue
        name, namespace = o["metadata"]["name"], o["metadata"]["namespace"]
        live = apps.read_namespaced_daemon_set(name, namespace)
        three = {
            "observedGeneration": live.metadata.generation,
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberAvailable": 3,
            "numberReady": 3,
            "numberMisscheduled": 0,
        }
        apps.patch_namespaced_daemon_set_status(name, namespace, {"status": three})


@pytest.mark.parametrize("name", ["stage", "prod"])
def test_stage_and_prod_overlays_pass_the_servers_dry_run(
    api: KubeApi, overlays: dict[str, list[Obj]], name: str
) -> None:
    plan = deploy_flow.deploy(api, overlays[name], [], name, True, 5, lambda _: None)
    assert len(plan.changes) == len(overlays[name])
    assert api.get(Ref("v1", "Namespace", None, "velero")) is None


def test_dry_run_on_an_empty_cluster_creates_nothing(api: KubeApi, dev_objects: list[Obj]) -> None:
    plan = deploy_flow.deploy(api, dev_objects, [], ENV, True, 5, lambda _: None)
    assert {c.action for c in plan.changes} == {"create"}
    assert len(plan.changes) == len(dev_objects)
    assert api.get(Ref("v1", "Namespace", None, "sample-app")) is None


def test_apply_then_rerun_is_a_no_op(
    api: KubeApi, dev_objects: list[Obj], kube_apiserver: KubeApiServer
) -> None:
    facts = deploy_flow.read_facts(api, dev_objects, ENV)
    plan = deploy_decide.plan_changes(dev_objects, facts.live, facts.predicted, facts.labelled, ENV)
    deploy_flow.execute(api, plan, dev_objects, lambda _: None)
    set_rolled_out(kube_apiserver, dev_objects)
    deploy_flow.wait_for_rollouts(api, dev_objects, 10, lambda _: None)
    pool = api.get(
        Ref("metallb.io/v1beta1", "IPAddressPool", "metallb-system", "default-addresspool")
    )
    assert pool is not None
    assert pool["spec"]["addresses"] == ["192.168.10.50-192.168.10.69"]
    managers = {m["manager"] for m in pool["metadata"]["managedFields"]}
    assert managers == {"mk8s"}

    again = deploy_flow.deploy(api, dev_objects, [], ENV, False, 10, lambda _: None)
    changed = [(c.action, str(c.ref), c.paths) for c in again.changes if c.action != "unchanged"]
    assert changed == []


def test_a_hand_edit_is_reported_and_reverted(
    api: KubeApi, dev_objects: list[Obj], kube_apiserver: KubeApiServer
) -> None:
    apps = kubernetes.client.AppsV1Api(kube_apiserver.api_client())
    apps.patch_namespaced_deployment(
        "sample-app",
        "sample-app",
        {"spec": {"revisionHistoryLimit": 9}},
        field_manager="kubectl-edit",
    )
    plan = deploy_flow.deploy(api, dev_objects, [], ENV, True, 5, lambda _: None)
    updates = [(str(c.ref), c.paths) for c in plan.by_action("update")]
    assert updates == [("Deployment sample-app/sample-app", ("spec.revisionHistoryLimit",))]
    facts = deploy_flow.read_facts(api, dev_objects, ENV)
    deploy_flow.execute(
        api,
        deploy_decide.plan_changes(dev_objects, facts.live, facts.predicted, facts.labelled, ENV),
        dev_objects,
        lambda _: None,
    )
    assert (
        apps.read_namespaced_deployment("sample-app", "sample-app").spec.revision_history_limit == 5
    )


def test_what_the_hpa_scaled_is_left_alone(
    api: KubeApi, dev_objects: list[Obj], kube_apiserver: KubeApiServer
) -> None:
    # The HPA writes the scale subresource; mk8s sets no replicas (issue 13), so a forced
    # apply neither reports nor resets the count.
    apps = kubernetes.client.AppsV1Api(kube_apiserver.api_client())
    apps.patch_namespaced_deployment_scale(
        "sample-app",
        "sample-app",
        {"spec": {"replicas": 7}},
        field_manager="horizontal-pod-autoscaler",
    )
    again = deploy_flow.deploy(api, dev_objects, [], ENV, False, 10, lambda _: None)
    assert [str(c.ref) for c in again.by_action("update")] == []
    assert apps.read_namespaced_deployment("sample-app", "sample-app").spec.replicas == 7


def test_the_server_enforces_the_real_crds(api: KubeApi, dev_objects: list[Obj]) -> None:
    certificate = next(o for o in dev_objects if o["kind"] == "Certificate")
    broken = {**certificate, "spec": {**certificate["spec"], "usages": ["encipher"]}}
    with pytest.raises(OperationFailedError) as err:
        deploy_flow.read_facts(api, [broken], ENV)
    assert "Certificate sample-app/sample-app-tls" in err.value.lines[1]
    assert "usages" in err.value.lines[1]


def test_prune_deletes_only_what_left_the_overlay(
    api: KubeApi, dev_objects: list[Obj], kube_apiserver: KubeApiServer
) -> None:
    core = kubernetes.client.CoreV1Api(kube_apiserver.api_client())
    core.create_namespaced_config_map(
        "sample-app",
        {
            "metadata": {
                "name": "stage-owned",
                "labels": {"app.kubernetes.io/managed-by": "mk8s", "mk8s.io/environment": "stage"},
            }
        },
    )
    leaving = {
        ("NetworkPolicy", "allow-acme-http01-solver"),
        ("ConfigMap", "nginx-load-balancer-microk8s-conf"),
    }
    remaining = [o for o in dev_objects if (o["kind"], o["metadata"]["name"]) not in leaving]
    facts = deploy_flow.read_facts(api, remaining, ENV)
    plan = deploy_decide.plan_changes(remaining, facts.live, facts.predicted, facts.labelled, ENV)
    assert [str(c.ref) for c in plan.by_action("prune")] == [
        "NetworkPolicy sample-app/allow-acme-http01-solver"
    ]
    deploy_flow.execute(api, plan, remaining, lambda _: None)
    assert (
        api.get(
            Ref("networking.k8s.io/v1", "NetworkPolicy", "sample-app", "allow-acme-http01-solver")
        )
        is None
    )
    # The add-on's ConfigMap (prune disabled) and another environment's object stay.
    assert api.get(Ref("v1", "ConfigMap", "ingress", "nginx-load-balancer-microk8s-conf"))
    assert api.get(Ref("v1", "ConfigMap", "sample-app", "stage-owned"))


def test_secrets_from_references_converge_and_changes_show_keys_only(
    api: KubeApi, kube_apiserver: KubeApiServer
) -> None:
    specs = [SecretRef("cert-manager", "cloudflare-api-token", {"api-token": "${CF_TOKEN}"})]
    core = kubernetes.client.CoreV1Api(kube_apiserver.api_client())

    def deploy_with(token: str) -> deploy_decide.DeployPlan:
        secrets = deploy_flow.build_secrets(specs, {"CF_TOKEN": token}, "secrets-test")
        return deploy_flow.deploy(api, [], secrets, "secrets-test", False, 5, lambda _: None)

    first = deploy_with("token-one")
    assert [c.action for c in first.changes] == ["create"]
    stored = core.read_namespaced_secret("cloudflare-api-token", "cert-manager")
    assert base64.b64decode(stored.data["api-token"]) == b"token-one"

    assert deploy_with("token-one").empty

    rotated = deploy_with("token-two")
    text = "\n".join(deploy_flow.describe(rotated))
    assert "~ Secret cert-manager/cloudflare-api-token (data.api-token)" in text
    assert "token-one" not in text and "token-two" not in text
    stored = core.read_namespaced_secret("cloudflare-api-token", "cert-manager")
    assert base64.b64decode(stored.data["api-token"]) == b"token-two"


def test_a_kubeconfig_the_server_refuses_is_one_clear_line(
    kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    config = yaml.safe_load(kube_apiserver.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": "not-the-admin-token"}
    wrong = tmp_path / "kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    wrong.chmod(0o600)  # a kubeconfig others can read is refused before any request
    with pytest.raises(OperationFailedError) as err:
        # Discovery may come from the client's cache; the first real request is refused.
        KubeApi(wrong).get(Ref("v1", "Namespace", None, "default"))
    assert err.value.lines == (
        f"the API server at {kube_apiserver.url} refused the kubeconfig's credentials "
        "(401 Unauthorized)",
    )


def chart_traefik_service() -> Obj:
    """The Service traefik-helm-chart v37.4.0 renders for the add-on's values
    (microk8s-core-addons@1.35:addons/ingress/values.yaml): ports web 80 and websecure 443,
    type LoadBalancer, externalTrafficPolicy left to the default (Cluster)."""
    return {
        "metadata": {
            "name": "traefik",
            "namespace": "ingress",
            "labels": {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "traefik"},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app.kubernetes.io/name": "traefik"},
            "ports": [
                {"name": "web", "port": 80, "targetPort": "web", "protocol": "TCP"},
                {"name": "websecure", "port": 443, "targetPort": "websecure", "protocol": "TCP"},
            ],
        },
    }


def test_the_traefik_overlay_co_owns_the_charts_service(
    api: KubeApi, kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    from tests.manifests.conftest import variant

    env = variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    objects = render(env, tmp_path).objects
    core = kubernetes.client.CoreV1Api(kube_apiserver.api_client())
    with pytest.raises(UserError, match="Service ingress/traefik is missing"):
        deploy_flow.read_facts(api, objects, "prod")
    core.create_namespaced_service("ingress", chart_traefik_service())
    plan = deploy_flow.deploy(api, objects, [], "prod", True, 5, lambda _: None)
    assert "Service ingress/traefik" in {str(c.ref) for c in plan.by_action("update")}
    (service,) = [
        o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "traefik"
    ]
    api.apply(service, dry_run=False)
    live = core.read_namespaced_service("traefik", "ingress")
    assert live.spec.external_traffic_policy == "Local"
    assert live.metadata.annotations["metallb.io/loadBalancerIPs"] == "192.168.30.50"
    assert [p.port for p in live.spec.ports] == [80, 443]  # the chart's fields stay
    assert live.spec.selector == {"app.kubernetes.io/name": "traefik"}
    assert live.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"


def test_stage_with_its_secrets_deploys_and_converges(
    api: KubeApi, overlays: dict[str, list[Obj]], kube_apiserver: KubeApiServer
) -> None:
    """Last in this module: stage takes over the cluster-scoped objects dev applied."""
    specs = secret_refs(load_environment(str(ROOT / "inventory" / "stage.yaml")))
    environ = {name: f"test-{name.lower()}" for name in deploy_flow.env_vars_named(specs)}
    secrets = deploy_flow.build_secrets(specs, environ, "stage")
    desired = [*overlays["stage"], *secrets]
    facts = deploy_flow.read_facts(api, desired, "stage")
    plan = deploy_decide.plan_changes(desired, facts.live, facts.predicted, facts.labelled, "stage")
    deploy_flow.execute(api, plan, desired, lambda _: None)
    set_rolled_out(kube_apiserver, overlays["stage"])
    deploy_flow.wait_for_rollouts(api, overlays["stage"], 10, lambda _: None)

    again = deploy_flow.deploy(api, overlays["stage"], secrets, "stage", False, 10, lambda _: None)
    changed = [(c.action, str(c.ref), c.paths) for c in again.changes if c.action != "unchanged"]
    assert changed == []
    assert {str(c.ref) for c in again.changes} >= {
        "Secret velero/velero-s3-credentials",
        "Secret external-dns/cloudflare-api-token",
        "DaemonSet velero/node-agent",
        "Schedule velero/daily",
    }
