"""`invoke deploy`'s decisions on recorded API-server answers: what is created, updated, left
alone and pruned; in which order; what is refused; how rollouts are judged."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest

from mk8s.deploy import decide as deploy_decide
from mk8s.deploy import flow as deploy_flow
from mk8s.edges.kube import ApplyError, Ref
from mk8s.edges.kustomize import cache_dir
from mk8s.errors import OperationFailedError, UserError
from mk8s.render.manifests import SecretRef
from tests.deploy.recorded import RecordedApi, answer, server_view

ENV = "dev"
LABELS = {"app.kubernetes.io/managed-by": "mk8s", "mk8s.io/environment": ENV}
Obj = dict[str, Any]


def obj(api_version: str, kind: str, name: str, namespace: str | None = None, **body: Any) -> Obj:
    meta: Obj = {"name": name, "labels": dict(LABELS)}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


NS = obj("v1", "Namespace", "sample-app")
DEPLOY = obj(
    "apps/v1",
    "Deployment",
    "sample-app",
    "sample-app",
    spec={"replicas": 2, "selector": {"matchLabels": {"app": "x"}}},
)
POOL = obj(
    "metallb.io/v1beta1",
    "IPAddressPool",
    "default-addresspool",
    "metallb-system",
    spec={"addresses": ["192.168.10.50-192.168.10.69"]},
)
DESIRED = [POOL, DEPLOY, NS]


def noop(_: str) -> None:
    pass


def run(api: RecordedApi, desired: list[Obj], dry_run: bool = False) -> deploy_decide.DeployPlan:
    return deploy_flow.deploy(api, desired, [], ENV, dry_run, timeout_s=5, progress=noop)


def actions(plan: deploy_decide.DeployPlan) -> list[tuple[str, str]]:
    return [(c.action, str(c.ref)) for c in plan.changes]


def test_fresh_cluster_creates_everything_namespaces_first_custom_resources_last() -> None:
    api = RecordedApi()
    plan = run(api, DESIRED)
    assert actions(plan) == [
        ("create", "Namespace sample-app"),
        ("create", "Deployment sample-app/sample-app"),
        ("create", "IPAddressPool metallb-system/default-addresspool"),
    ]
    assert [c for c in api.calls if c.startswith("apply")] == [
        "apply Namespace sample-app",
        "apply Deployment sample-app/sample-app",
        "apply IPAddressPool metallb-system/default-addresspool",
    ]


def test_every_object_is_dry_run_on_the_server_before_anything_is_applied() -> None:
    api = RecordedApi()
    run(api, DESIRED)
    first_apply = next(i for i, c in enumerate(api.calls) if c.startswith("apply"))
    assert all(c.startswith("dry-run") for c in api.calls[:first_apply])
    assert len(api.calls[:first_apply]) == len(DESIRED)


def test_rerun_on_a_converged_cluster_changes_nothing() -> None:
    api = RecordedApi()
    run(api, DESIRED)
    api.calls.clear()
    plan = run(api, DESIRED)
    assert plan.empty
    assert {a for a, _ in actions(plan)} == {"unchanged"}
    assert not [c for c in api.calls if not c.startswith("dry-run")]


def test_server_bookkeeping_and_status_are_not_changes() -> None:
    live = answer("deployment-live")
    predicted = copy.deepcopy(live)
    predicted["metadata"]["resourceVersion"] = "48214"
    predicted["metadata"]["managedFields"] = []
    predicted["status"] = {}
    ref = Ref.of(live)
    plan = deploy_decide.plan_changes([live], {ref: live}, {ref: predicted}, [], ENV)
    assert actions(plan) == [("unchanged", "Deployment sample-app/sample-app")]


def test_drift_is_reported_by_field_and_corrected() -> None:
    live = answer("deployment-live")
    live["spec"]["replicas"] = 5  # someone ran `kubectl scale`
    ref = Ref.of(live)
    api = RecordedApi(live={ref: live})
    predicted = copy.deepcopy(live)
    predicted["spec"]["replicas"] = 2  # the server's dry-run answer for mk8s' apply
    api.dry_run_answers[ref] = predicted
    api.rollouts[ref] = [answer("deployment-live")]
    desired = copy.deepcopy(DEPLOY)
    plan = run(api, [desired])
    (change,) = plan.changes
    assert (change.action, change.paths) == ("update", ("spec.replicas",))
    assert "apply Deployment sample-app/sample-app" in api.calls
    assert deploy_flow.describe(plan)[0] == "  ~ Deployment sample-app/sample-app (spec.replicas)"


def test_prune_removes_only_this_envs_labelled_objects_that_left_the_overlay() -> None:
    gone = obj("v1", "ConfigMap", "old-settings", "sample-app", data={"a": "b"})
    other_env = obj("v1", "ConfigMap", "stage-thing", "sample-app")
    other_env["metadata"]["labels"]["mk8s.io/environment"] = "stage"
    unlabelled = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hand-made", "namespace": "sample-app"},
    }
    addon_owned = obj("v1", "ConfigMap", "nginx-load-balancer-microk8s-conf", "ingress")
    addon_owned["metadata"]["annotations"] = {"mk8s.io/prune": "disabled"}
    api = RecordedApi(
        live={Ref.of(o): server_view(o) for o in (gone, other_env, unlabelled, addon_owned)}
    )
    plan = run(api, DESIRED)
    assert plan.by_action("prune") == [deploy_decide.Change(Ref.of(gone), "prune")]
    assert api.calls[-1] == "delete ConfigMap sample-app/old-settings"
    assert Ref.of(other_env) in api.live and Ref.of(unlabelled) in api.live
    assert Ref.of(addon_owned) in api.live


def test_prune_deletes_dependents_and_keeps_a_namespace_that_left_the_overlay() -> None:
    old_ns = obj("v1", "Namespace", "team-old")
    old_np = obj("networking.k8s.io/v1", "NetworkPolicy", "default-deny", "team-old", spec={})
    old_cr = obj("velero.io/v1", "Schedule", "daily", "velero", spec={})
    labelled = [server_view(o) for o in (old_ns, old_np, old_cr)]
    plan = deploy_decide.plan_changes([], {}, {}, labelled, ENV)
    assert actions(plan) == [
        ("prune", "Schedule velero/daily"),
        ("prune", "NetworkPolicy team-old/default-deny"),
        ("keep", "Namespace team-old"),
    ]
    # Deleting a namespace would delete whatever the team runs in it: never done by deploy.
    assert "  ! Namespace team-old left the overlay; kept (delete it by hand if intended)" in (
        deploy_flow.describe(plan)
    )
    api = RecordedApi(live={Ref.of(o): o for o in labelled})
    deploy_flow.execute(api, plan, [], noop)
    assert api.calls == [
        "delete Schedule velero/daily",
        "delete NetworkPolicy team-old/default-deny",
    ]


def test_dry_run_changes_nothing_on_the_server() -> None:
    api = RecordedApi()
    plan = run(api, DESIRED, dry_run=True)
    assert len(plan.by_action("create")) == 3
    assert all(c.startswith("dry-run") for c in api.calls)


def test_objects_in_a_namespace_created_by_this_deploy_are_creates() -> None:
    api = RecordedApi()
    missing = answer("namespace-not-found")
    api.dry_run_answers[Ref.of(DEPLOY)] = ApplyError(Ref.of(DEPLOY), 404, missing["message"])
    plan = run(api, DESIRED, dry_run=True)
    assert ("create", "Deployment sample-app/sample-app") in actions(plan)


def test_every_rejected_object_is_reported_and_nothing_is_applied() -> None:
    api = RecordedApi(live={Ref.of(NS): server_view(NS)})
    invalid = answer("invalid-field")
    api.dry_run_answers[Ref.of(POOL)] = ApplyError(Ref.of(POOL), 422, invalid["message"])
    # A namespace this deploy does not create is missing: an error, not a pending create.
    api.dry_run_answers[Ref.of(DEPLOY)] = ApplyError(
        Ref.of(DEPLOY), 404, 'namespaces "other" not found'
    )
    with pytest.raises(OperationFailedError) as err:
        run(api, DESIRED)
    lines = err.value.lines
    assert lines[0] == "the API server rejected the dry run:"
    assert any("invalid range" in line for line in lines)
    assert any("Deployment sample-app/sample-app" in line for line in lines)
    assert not [c for c in api.calls if c.startswith("apply")]


def test_kinds_the_cluster_does_not_serve_are_named_before_anything_runs() -> None:
    api = RecordedApi(
        unserved={("metallb.io/v1beta1", "IPAddressPool"), ("velero.io/v1", "Schedule")}
    )
    schedule = obj("velero.io/v1", "Schedule", "daily", "velero", spec={})
    with pytest.raises(UserError) as err:
        run(api, [*DESIRED, schedule])
    assert err.value.lines == (
        "the cluster does not serve metallb.io/v1beta1 IPAddressPool: MetalLB missing; "
        "microk8s enable metallb:RANGE (invoke bootstrap)",
        "the cluster does not serve velero.io/v1 Schedule: Velero's CRDs missing; velero install "
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


def test_deploy_waits_until_the_rollout_completes() -> None:
    api = RecordedApi()
    ref = Ref.of(DEPLOY)
    api.rollouts[ref] = [answer("deployment-rolling"), answer("deployment-live")]
    seen: list[str] = []
    deploy_flow.wait_for_rollouts(api, [DEPLOY], 60, seen.append, sleep=lambda _: None)
    assert seen == [
        "Deployment sample-app/sample-app: 2/3 replicas updated",
        "Deployment sample-app/sample-app: 2/2 available",
    ]


def test_a_rollout_that_never_finishes_fails_after_the_timeout() -> None:
    api = RecordedApi(rollouts={Ref.of(DEPLOY): [answer("deployment-rolling")]})
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(OperationFailedError, match="rollout not finished after 30s"):
        deploy_flow.wait_for_rollouts(
            api, [DEPLOY], 30, noop, clock=lambda: float(next(ticks)), sleep=lambda _: None
        )


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
    live = server_view(secret)
    live["stringData"] = {"api-token": "old-token"}
    ref = Ref.of(secret)
    plan = deploy_decide.plan_changes([secret], {ref: live}, {ref: server_view(secret)}, [], ENV)
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
