"""Every built-in object is valid for the cluster: strictly against the Kubernetes minor of the
MicroK8s channel (kubernetes-validate), so a misspelt field fails here rather than being ignored
live. Custom resources are validated against the real upstream CRDs in test_crds.py, and the
whole overlay once more by kubeconform in test_kubeconform.py."""

from __future__ import annotations

import copy
from collections.abc import Callable

import kubernetes_validate
import pytest

from mk8s.inventory.model import Environment
from tests.manifests.conftest import Rendered, variant
from tests.support import upstream


def builtin_problems(r: Rendered, version: str) -> list[str]:
    problems = []
    for obj in r.objects:
        if upstream.is_custom(obj):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    return problems


def test_builtin_kinds_validate_strictly_against_the_channel_minor(each_env: Rendered) -> None:
    assert builtin_problems(each_env, f"1.{each_env.env.microk8s.minor}.0") == []


def test_a_misspelt_builtin_field_fails_strict_validation(rendered: dict[str, Rendered]) -> None:
    obj = copy.deepcopy(rendered["dev"].get("Deployment", "sample-app", "sample-app"))
    obj["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_traefik_variant_builtin_kinds_validate_too(
    render_variant: Callable[[Environment], Rendered],
) -> None:
    r = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    assert builtin_problems(r, "1.35.0") == []


def test_the_project_keeps_no_hand_written_crd_schemas() -> None:
    # The upstream CRDs replaced them (issue 13): a second, weaker copy would drift again.
    from tests.manifests.conftest import ROOT

    assert not (ROOT / "schemas").exists()
