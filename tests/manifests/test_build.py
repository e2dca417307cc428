"""Every environment's overlay builds with the pinned kustomize, and the output is deterministic."""

from __future__ import annotations

from pathlib import Path

from mk8s.edges import kustomize
from mk8s.inventory.load import load_environment
from mk8s.render.manifests import DIR, app_host
from tests.manifests.conftest import ENVS, ROOT, Rendered, render


def test_every_overlay_builds_to_labelled_objects(each_env: Rendered) -> None:
    assert len(each_env.objects) > 30
    for obj in each_env.objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "mk8s", obj["metadata"]
        assert labels.get("mk8s.io/environment") == each_env.env.name


def test_build_output_is_byte_identical_across_renders(tmp_path: Path) -> None:
    for name in ENVS:
        env = load_environment(str(ROOT / "inventory" / f"{name}.yaml"))
        first = render(env, tmp_path / "a")
        second = render(env, tmp_path / "b")
        a = kustomize.build_text(first.directory / DIR, allow_kubectl=False)
        b = kustomize.build_text(second.directory / DIR, allow_kubectl=False)
        assert a == b, name


def test_objects_are_unique_by_kind_namespace_and_name(each_env: Rendered) -> None:
    keys = [
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in each_env.objects
    ]
    assert len(keys) == len(set(keys))


def test_sample_app_is_named_and_routed_as_the_conformance_suite_expects(
    each_env: Rendered,
) -> None:
    deployment = each_env.get("Deployment", "sample-app", "sample-app")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "sample-app"
    ingress = each_env.get("Ingress", "sample-app", "sample-app")
    host = app_host(each_env.env)
    assert host == f"app.{each_env.env.ingress.domain}"
    assert ingress["spec"]["rules"][0]["host"] == host
    assert ingress["spec"]["tls"][0] == {"hosts": [host], "secretName": "sample-app-tls"}
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceAccount"):
        each_env.get(kind, "sample-app", "sample-app")


def test_no_placeholder_survives_the_build(each_env: Rendered) -> None:
    text = str(each_env.objects)
    assert "set-by-plan" not in text
