"""`invoke deploy`'s decisions against a real kube-apiserver + etcd (tests/support/envtest.py):
what is created, updated, left alone and pruned; in which order; what the server refuses and
how deploy reports it; how rollouts are waited for. The server's answers (dry-run results,
404 for a missing namespace, 422 for an invalid object, discovery of served kinds) are its own.
There is no controller-manager: where a test needs a finished rollout, a thread writes the
Deployment status the deployment controller would. The pure judgements (rollout status,
bookkeeping, secrets) run on recorded server answers (tests/deploy/answers/)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets as tokens
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from mk8s.deploy import decide as deploy_decide
from mk8s.deploy import flow as deploy_flow
from mk8s.edges.kube import KubeApi, Ref
from mk8s.edges.kustomize import cache_dir
from mk8s.errors import OperationFailedError, UserError
from mk8s.render.manifests import SecretRef
from tests.support.envtest import KubeApiServer

Obj = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
# The real CRDs of the add-on versions live beside the checkout (CI copies shared/ there).
SHARED = Path(os.environ.get("MK8S_SHARED") or REPO.parent / "shared")
METALLB_CRD = SHARED / "upstream" / "crds" / "metallb-v0.14.9-ipaddresspools.yaml"


class Recording:
    """The real KubeApi, with a log of what deploy asked it to change (reads are not logged)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.calls: list[str] = []

    def served(self, api_version: str, kind: str) -> bool:
        return self.api.served(api_version, kind)

    def get(self, ref: Ref) -> Obj | None:
        return self.api.get(ref)

    def apply(self, obj: Obj, dry_run: bool) -> Obj:
        self.calls.append(f"{'dry-run' if dry_run else 'apply'} {Ref.of(obj)}")
        return self.api.apply(obj, dry_run)

    def list_labelled(self, api_version: str, kind: str, selector: str) -> list[Obj]:
        return self.api.list_labelled(api_version, kind, selector)

    def delete(self, ref: Ref) -> None:
        self.calls.append(f"delete {ref}")
        self.api.delete(ref)


@pytest.fixture(scope="module")
def kube(kube_apiserver: KubeApiServer) -> KubeApi:
    """The admin KubeApi, with MetalLB's real IPAddressPool CRD and its namespace installed."""
    client = kube_apiserver.api_client()
    if not METALLB_CRD.is_file():
        pytest.fail(f"{METALLB_CRD}: missing; put shared/ beside the checkout or set MK8S_SHARED")
    crd = yaml.safe_load(METALLB_CRD.read_text())
    with contextlib.suppress(kubernetes.client.ApiException):  # another module installed it
        kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(crd)
    with contextlib.suppress(kubernetes.client.ApiException):
        kube_apiserver.create_namespace("metallb-system")
    for _ in range(200):
        api = KubeApi(kube_apiserver.kubeconfig)
        if api.served("metallb.io/v1beta1", "IPAddressPool"):
            return api
    pytest.fail("the IPAddressPool CRD never became served")


@dataclass
class World:
    """One test's objects: a namespace, environment label and pool name of its own."""

    env: str
    ns: Obj
    deploy: Obj
    pool: Obj

    @property
    def desired(self) -> list[Obj]:
        return [self.pool, self.deploy, self.ns]

    def obj(self, api_version: str, kind: str, name: str, namespace: str | None = None,
            **body: Any) -> Obj:  # fmt: skip
        return make(self.env, api_version, kind, name, namespace, **body)


def make(env: str, api_version: str, kind: str, name: str, namespace: str | None = None,
         **body: Any) -> Obj:  # fmt: skip
    meta: Obj = {"name": name,
                 "labels": {"app.kubernetes.io/managed-by": "mk8s", "mk8s.io/environment": env}}  # fmt: skip
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def deployment_spec(replicas: int = 2) -> Obj:
    return {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        },
    }


@pytest.fixture
def world() -> World:
    tag = tokens.token_hex(3)
    env, ns = f"logic-{tag}", f"logic-{tag}"
    return World(
        env,
        make(env, "v1", "Namespace", ns),
        make(env, "apps/v1", "Deployment", "sample-app", ns, spec=deployment_spec()),
        make(env, "metallb.io/v1beta1", "IPAddressPool", f"pool-{tag}", "metallb-system",
             spec={"addresses": ["192.168.10.50-192.168.10.69"]}),
    )  # fmt: skip


@contextlib.contextmanager
def rollout_controller(
    server: KubeApiServer, namespace: str, after_s: float = 0.0
) -> Iterator[None]:
    """What the deployment controller writes once every replica is available (after a delay)."""
    apps = kubernetes.client.AppsV1Api(server.api_client())
    stop = threading.Event()

    def loop() -> None:
        if stop.wait(after_s):
            return
        while not stop.is_set():
            for d in apps.list_namespaced_deployment(namespace).items:
                n = d.spec.replicas
                done = {"observedGeneration": d.metadata.generation, "replicas": n,
                        "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}  # fmt: skip
                with contextlib.suppress(kubernetes.client.ApiException):
                    apps.patch_namespaced_deployment_status(
                        d.metadata.name, namespace, {"status": done}
                    )
            stop.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def noop(_: str) -> None:
    pass


def run(api: Recording, w: World, desired: list[Obj] | None = None, dry_run: bool = False,
        timeout_s: float = 20) -> deploy_decide.DeployPlan:  # fmt: skip
    objects = w.desired if desired is None else desired
    return deploy_flow.deploy(api, objects, [], w.env, dry_run, timeout_s=timeout_s, progress=noop)


def actions(plan: deploy_decide.DeployPlan) -> list[tuple[str, str]]:
    return [(c.action, str(c.ref)) for c in plan.changes]


def test_fresh_cluster_creates_everything_namespaces_first_custom_resources_last(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    api = Recording(kube)
    with rollout_controller(kube_apiserver, world.ns["metadata"]["name"]):
        plan = run(api, world)
    ns, pool = world.ns["metadata"]["name"], world.pool["metadata"]["name"]
    assert actions(plan) == [
        ("create", f"Namespace {ns}"),
        ("create", f"Deployment {ns}/sample-app"),
        ("create", f"IPAddressPool metallb-system/{pool}"),
    ]
    assert [c for c in api.calls if c.startswith("apply")] == [
        f"apply Namespace {ns}",
        f"apply Deployment {ns}/sample-app",
        f"apply IPAddressPool metallb-system/{pool}",
    ]
    assert all(kube.get(Ref.of(o)) is not None for o in world.desired)


def test_every_object_is_dry_run_on_the_server_before_anything_is_applied(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    api = Recording(kube)
    with rollout_controller(kube_apiserver, world.ns["metadata"]["name"]):
        run(api, world)
    first_apply = next(i for i, c in enumerate(api.calls) if c.startswith("apply"))
    assert all(c.startswith("dry-run") for c in api.calls[:first_apply])
    assert len(api.calls[:first_apply]) == len(world.desired)


def test_rerun_on_a_converged_cluster_changes_nothing(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    api = Recording(kube)
    with rollout_controller(kube_apiserver, world.ns["metadata"]["name"]):
        run(api, world)
        api.calls.clear()
        plan = run(api, world)
    assert plan.empty
    assert {a for a, _ in actions(plan)} == {"unchanged"}
    assert not [c for c in api.calls if not c.startswith("dry-run")]


def test_drift_is_reported_by_field_and_corrected(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    api = Recording(kube)
    ns = world.ns["metadata"]["name"]
    with rollout_controller(kube_apiserver, ns):
        run(api, world)
        # Someone ran `kubectl scale --replicas 5` (another field manager, the scale subresource).
        apps = kubernetes.client.AppsV1Api(kube_apiserver.api_client())
        apps.patch_namespaced_deployment_scale("sample-app", ns, {"spec": {"replicas": 5}})
        api.calls.clear()
        plan = run(api, world)
    changes = [c for c in plan.changes if c.action != "unchanged"]
    (change,) = changes
    assert (change.action, change.paths) == ("update", ("spec.replicas",))
    assert f"apply Deployment {ns}/sample-app" in api.calls
    assert f"  ~ Deployment {ns}/sample-app (spec.replicas)" in deploy_flow.describe(plan)
    live = kube.get(Ref.of(world.deploy))
    assert live is not None and live["spec"]["replicas"] == 2


def test_prune_removes_only_this_envs_labelled_objects_that_left_the_overlay(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    ns = world.ns["metadata"]["name"]
    api = Recording(kube)
    gone = world.obj("v1", "ConfigMap", "old-settings", ns, data={"a": "b"})
    other_env = make(f"{world.env}-other", "v1", "ConfigMap", "other-env-thing", ns)
    unlabelled = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "hand-made", "namespace": ns}}  # fmt: skip
    addon_owned = world.obj("v1", "ConfigMap", "nginx-load-balancer-microk8s-conf", ns)
    addon_owned["metadata"]["annotations"] = {"mk8s.io/prune": "disabled"}
    with rollout_controller(kube_apiserver, ns):
        run(api, world)
        for o in (gone, other_env, unlabelled, addon_owned):
            kube.apply(o, dry_run=False)
        api.calls.clear()
        plan = run(api, world)
    assert plan.by_action("prune") == [deploy_decide.Change(Ref.of(gone), "prune")]
    assert api.calls[-1] == f"delete ConfigMap {ns}/old-settings"
    assert kube.get(Ref.of(gone)) is None
    assert all(kube.get(Ref.of(o)) is not None for o in (other_env, unlabelled, addon_owned))


def test_prune_deletes_dependents_and_keeps_a_namespace_that_left_the_overlay(
    kube: KubeApi, world: World
) -> None:
    old_ns = world.obj("v1", "Namespace", f"{world.env}-old")
    old_np = world.obj("networking.k8s.io/v1", "NetworkPolicy", "default-deny",
                       f"{world.env}-old", spec={"podSelector": {}})  # fmt: skip
    old_cr = world.obj("metallb.io/v1beta1", "IPAddressPool", f"{world.env}-old",
                       "metallb-system", spec={"addresses": ["192.168.10.70/32"]})  # fmt: skip
    for o in (old_ns, old_np, old_cr):
        kube.apply(o, dry_run=False)
    api = Recording(kube)
    plan = run(api, world, desired=[])
    assert actions(plan) == [
        ("prune", f"IPAddressPool metallb-system/{world.env}-old"),
        ("prune", f"NetworkPolicy {world.env}-old/default-deny"),
        ("keep", f"Namespace {world.env}-old"),
    ]
    # Deleting a namespace would delete whatever the team runs in it: never done by deploy.
    assert (
        f"  ! Namespace {world.env}-old left the overlay; kept (delete it by hand if intended)"
        in deploy_flow.describe(plan)
    )
    assert api.calls == [
        f"delete IPAddressPool metallb-system/{world.env}-old",
        f"delete NetworkPolicy {world.env}-old/default-deny",
    ]
    assert kube.get(Ref.of(old_ns)) is not None and kube.get(Ref.of(old_np)) is None


def test_dry_run_changes_nothing_on_the_server(kube: KubeApi, world: World) -> None:
    api = Recording(kube)
    plan = run(api, world, dry_run=True)
    assert len(plan.by_action("create")) == 3
    assert all(c.startswith("dry-run") for c in api.calls)
    assert all(kube.get(Ref.of(o)) is None for o in world.desired)


def test_objects_in_a_namespace_created_by_this_deploy_are_creates(
    kube: KubeApi, world: World
) -> None:
    """The server answers the Deployment's dry run with 404 (its namespace does not exist yet)."""
    plan = run(Recording(kube), world, dry_run=True)
    assert ("create", f"Deployment {world.ns['metadata']['name']}/sample-app") in actions(plan)


def test_every_rejected_object_is_reported_and_nothing_is_applied(
    kube: KubeApi, world: World
) -> None:
    ns = world.ns["metadata"]["name"]
    kube.apply(world.ns, dry_run=False)
    invalid = copy.deepcopy(world.deploy)
    invalid["spec"]["template"]["metadata"]["labels"] = {"app": "y"}  # selector does not match
    # A namespace this deploy does not create is missing: an error, not a pending create.
    elsewhere = world.obj("v1", "ConfigMap", "settings", f"{world.env}-nowhere")
    api = Recording(kube)
    with pytest.raises(OperationFailedError) as err:
        run(api, world, desired=[world.ns, invalid, elsewhere])
    lines = err.value.lines
    assert lines[0] == "the API server rejected the dry run:"
    assert any(
        line.startswith(f"Deployment {ns}/sample-app: ") and "selector" in line for line in lines
    ), lines
    assert any(
        line.startswith(f"ConfigMap {world.env}-nowhere/settings: ") and "not found" in line
        for line in lines
    ), lines
    assert not [c for c in api.calls if c.startswith("apply")]


def test_kinds_the_cluster_does_not_serve_are_named_before_anything_runs(
    kube: KubeApi, world: World
) -> None:
    api = Recording(kube)
    widget = world.obj("example.mk8s.io/v1", "Widget", "w", "metallb-system")
    schedule = world.obj("velero.io/v9", "Schedule", "daily", "velero", spec={})
    with pytest.raises(UserError) as err:
        run(api, world, desired=[*world.desired, widget, schedule])
    assert err.value.lines == (
        "the cluster does not serve example.mk8s.io/v1 Widget: the CRD of Widget missing; "
        "install its CRDs",
        "the cluster does not serve velero.io/v9 Schedule: Velero's CRDs missing; velero install "
        "--crds-only --dry-run -o yaml | microk8s kubectl apply -f - (Velero CLI v1.16.1)",
    )
    assert api.calls == []


# --- rollouts ------------------------------------------------------------------------------


def test_rollout_judgement_follows_kubectl_rollout_status() -> None:
    assert deploy_decide.rollout_status(answer("deployment-live")) == (True, "2/2 available")
    assert deploy_decide.rollout_status(answer("deployment-rolling")) == (
        False,
        "2/3 replicas updated",
    )
    assert deploy_decide.rollout_status(answer("daemonset-rolling")) == (False, "2/3 pods updated")
    stale = answer("deployment-live")
    stale["metadata"]["generation"] = 4
    assert deploy_decide.rollout_status(stale)[0] is False
    with pytest.raises(OperationFailedError, match="progress deadline"):
        deploy_decide.rollout_status(answer("deployment-stuck"))


def test_server_bookkeeping_and_status_are_not_changes(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    """The live object carries uid, resourceVersion, managedFields and a controller's status;
    the server's dry-run answer differs in those only: no change."""
    for o in (world.ns, world.deploy):
        kube.apply(o, dry_run=False)
    with rollout_controller(kube_apiserver, world.ns["metadata"]["name"]):
        deploy_flow.wait_for_rollouts(kube, [world.deploy], 30, noop)
    ref = Ref.of(world.deploy)
    live = kube.get(ref)
    predicted = kube.apply(world.deploy, dry_run=True)
    assert live is not None and live["status"] and live["metadata"]["managedFields"]
    plan = deploy_decide.plan_changes([world.deploy], {ref: live}, {ref: predicted}, [], world.env)
    assert actions(plan) == [("unchanged", str(ref))]


def test_deploy_waits_until_the_rollout_completes(
    kube: KubeApi, kube_apiserver: KubeApiServer, world: World
) -> None:
    for o in (world.ns, world.deploy):
        kube.apply(o, dry_run=False)
    seen: list[str] = []
    with rollout_controller(kube_apiserver, world.ns["metadata"]["name"], after_s=0.5):
        deploy_flow.wait_for_rollouts(kube, [world.deploy], 30, seen.append)
    ns = world.ns["metadata"]["name"]
    assert len(seen) >= 2 and seen[0] != f"Deployment {ns}/sample-app: 2/2 available"
    assert seen[-1] == f"Deployment {ns}/sample-app: 2/2 available"


def test_a_rollout_that_never_finishes_fails_after_the_timeout(kube: KubeApi, world: World) -> None:
    for o in (world.ns, world.deploy):
        kube.apply(o, dry_run=False)
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(OperationFailedError, match="rollout not finished after 30s"):
        deploy_flow.wait_for_rollouts(
            kube, [world.deploy], 30, noop, clock=lambda: float(next(ticks)), sleep=lambda _: None
        )


def answer(name: str) -> Obj:
    """A server answer recorded from a real cluster (tests/deploy/answers/)."""
    data: Obj = json.loads((ANSWERS / f"{name}.json").read_text())
    return data


ENV = "dev"
LABELS = {"app.kubernetes.io/managed-by": "mk8s", "mk8s.io/environment": ENV}
ANSWERS = Path(__file__).parent / "answers"


# --- secrets -------------------------------------------------------------------------------

SPECS = [
    SecretRef("cert-manager", "cloudflare-api-token", {"api-token": "${CLOUDFLARE_API_TOKEN}"}),
    SecretRef(
        "velero",
        "velero-s3-credentials",
        {"cloud": "[default]\naws_access_key_id=${S3_KEY}\naws_secret_access_key=${S3_SECRET}\n"},
    ),
]


def test_secrets_are_built_from_the_environment_at_deploy_time() -> None:
    env = {"CLOUDFLARE_API_TOKEN": "tok-123", "S3_KEY": "AKIA1", "S3_SECRET": "s3cr3t"}
    cf, s3 = deploy_flow.build_secrets(SPECS, env, ENV)
    assert cf["stringData"] == {"api-token": "tok-123"}
    assert "aws_secret_access_key=s3cr3t" in s3["stringData"]["cloud"]
    assert cf["metadata"]["labels"] == LABELS
    assert "tok-123" not in str(deploy_decide.redact(cf))


def test_every_missing_secret_variable_is_named_at_once() -> None:
    with pytest.raises(UserError) as err:
        deploy_flow.build_secrets(SPECS, {"S3_KEY": "x"}, ENV)
    assert [line.split()[2] for line in err.value.lines] == ["CLOUDFLARE_API_TOKEN", "S3_SECRET"]


def test_a_secret_change_is_shown_by_key_never_by_value() -> None:
    (secret,) = deploy_flow.build_secrets(SPECS[:1], {"CLOUDFLARE_API_TOKEN": "new-token"}, ENV)
    live = copy.deepcopy(secret)
    live["stringData"] = {"api-token": "old-token"}
    ref = Ref.of(secret)
    plan = deploy_decide.plan_changes([secret], {ref: live}, {ref: copy.deepcopy(secret)}, [], ENV)
    text = "\n".join(deploy_flow.describe(plan))
    assert "stringData.api-token" in text
    assert "new-token" not in text and "old-token" not in text


def test_deploy_task_names_missing_secret_variables_without_a_traceback(
    repo_root: Any,
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "MK8S_CACHE": str(cache_dir())}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "deploy", "--env", "stage", "--dry-run"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "CLOUDFLARE_API_TOKEN is not set" in result.stderr
    assert "VELERO_S3_SECRET_KEY is not set" in result.stderr


def test_an_unreachable_api_server_is_one_line_and_exit_1(repo_root: Any, tmp_path: Any) -> None:
    # Port 1 on loopback: nothing listens, the real client gets connection refused.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    kubeconfig.chmod(0o600)  # a kubeconfig others can read is refused (issue 12)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "MK8S_CACHE": str(cache_dir())}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "deploy",
            "--env",
            "dev",
            "--dry-run",
            "--kubeconfig",
            str(kubeconfig),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: cannot reach the API server at https://127.0.0.1:1: MaxRetryError"
    )
