"""kubeconform, strict, over every built overlay: native kinds against Kubernetes 1.33, custom
kinds against the upstream CRDs (tests/support/kubeconform.py says where each schema comes
from). A second, independent validator beside kubernetes-validate and the CRD test."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from mk8s.inventory.model import Environment
from tests.manifests.conftest import Rendered, variant
from tests.support import kubeconform


def conform(objects: list[dict], workdir: Path) -> tuple[int, str]:  # type: ignore[type-arg]
    try:
        result = kubeconform.run(objects, workdir)
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    return result.returncode, result.stdout + result.stderr


def test_every_built_overlay_conforms_strictly(each_env: Rendered, tmp_path: Path) -> None:
    code, out = conform(each_env.objects, tmp_path)
    assert code == 0, out
    assert f"Valid: {len(each_env.objects)}," in out, out


def test_the_traefik_overlay_conforms_strictly(
    render_variant: Callable[[Environment], Rendered], tmp_path: Path
) -> None:
    r = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    code, out = conform(r.objects, tmp_path)
    assert code == 0, out


def test_a_misspelt_native_field_fails(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    obj = copy.deepcopy(rendered["dev"].get("Deployment", "sample-app", "sample-app"))
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    code, out = conform([obj], tmp_path)
    assert code != 0
    assert "imagePullPolicyy" in out and "Deployment" in out, out


def test_a_field_cert_manager_1_17_lacks_fails(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    obj = copy.deepcopy(rendered["prod"].of_kind("ClusterIssuer")[0])
    obj["spec"]["acme"]["profile"] = "tlsserver"
    code, out = conform([obj], tmp_path)
    assert code != 0
    assert "profile" in out, out


def test_a_kind_without_a_schema_fails(tmp_path: Path) -> None:
    obj = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}}
    code, out = conform([obj], tmp_path)
    assert code != 0
    assert "Widget" in out and "could not find schema" in out, out
