"""Every object is valid for the cluster: built-in kinds strictly against the Kubernetes minor
of the MicroK8s channel, custom resources against the schemas in schemas/ (written from each
project's documented API), so a misspelt field fails here rather than being ignored live."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from mk8s.inventory.model import Environment
from tests.manifests.conftest import ROOT, Rendered, variant

SCHEMAS = ROOT / "schemas"


def schema_for(obj: dict[str, Any]) -> Path | None:
    group, _, version = obj["apiVersion"].rpartition("/")
    if not group or "." not in group or group.endswith("k8s.io"):
        return None  # a built-in API group
    return SCHEMAS / group / f"{obj['kind']}-{version}.json"


def cr_errors(obj: dict[str, Any]) -> list[str]:
    path = schema_for(obj)
    assert path is not None
    if not path.is_file():
        return [f"no schema {path.relative_to(ROOT)} for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft202012Validator(json.loads(path.read_text()))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_builtin_kinds_validate_strictly_against_the_channel_minor(each_env: Rendered) -> None:
    version = f"1.{each_env.env.microk8s.minor}.0"
    problems = []
    for obj in each_env.objects:
        if schema_for(obj) is not None:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert problems == []


def test_every_custom_resource_validates_against_its_schema(each_env: Rendered) -> None:
    custom = [o for o in each_env.objects if schema_for(o) is not None]
    assert custom, "expected MetalLB/cert-manager objects at least"
    problems = {f"{o['kind']}/{o['metadata']['name']}": cr_errors(o) for o in custom}
    assert {k: v for k, v in problems.items() if v} == {}


def test_every_schema_cites_the_documented_api() -> None:
    files = sorted(SCHEMAS.rglob("*.json"))
    assert len(files) >= 9
    for path in files:
        description = json.loads(path.read_text())["description"]
        assert "https://" in description, path


@pytest.mark.parametrize(
    ("kind", "where", "typo"),
    [
        ("IPAddressPool", ("spec",), "adresses"),
        ("ClusterIssuer", ("spec", "acme"), "emial"),
        ("Certificate", ("spec",), "renewBfore"),
        ("Schedule", ("spec", "template"), "ttll"),
        ("BackupStorageLocation", ("spec", "objectStorage"), "buckett"),
        ("Application", ("spec", "syncPolicy"), "automatic"),
    ],
)
def test_a_misspelt_field_fails_its_schema(
    rendered: dict[str, Rendered], kind: str, where: tuple[str, ...], typo: str
) -> None:
    obj = copy.deepcopy(rendered["prod"].of_kind(kind)[0])
    target = obj
    for key in where:
        target = target[key]
    target[typo] = "x"
    assert any(typo in e for e in cr_errors(obj))


def test_a_misspelt_builtin_field_fails_strict_validation(rendered: dict[str, Rendered]) -> None:
    obj = copy.deepcopy(rendered["dev"].get("Deployment", "sample-app", "sample-app"))
    obj["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_traefik_variant_validates_too(
    render_variant: Callable[[Environment], Rendered],
) -> None:
    r = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    kinds = {o["kind"] for o in r.objects if schema_for(o) is not None}
    assert {"Middleware", "TLSOption"} <= kinds
    problems = {
        f"{o['kind']}/{o['metadata']['name']}": cr_errors(o)
        for o in r.objects
        if schema_for(o) is not None
    }
    assert {k: v for k, v in problems.items() if v} == {}
    for obj in r.objects:
        if schema_for(obj) is None:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
