"""Every custom resource of every built overlay validates against the real CRD of the version
MicroK8s (or mk8s' pin) installs, read from shared/upstream/crds (tests/support/upstream.py).
The broken states are the ones issue 13 found the hand-written schemas let through."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from mk8s.inventory.model import Environment
from tests.manifests.conftest import Rendered, variant
from tests.support import upstream

Obj = dict[str, Any]


def problems(objects: list[Obj]) -> dict[str, list[str]]:
    found = {
        f"{o['kind']}/{o['metadata']['name']}": upstream.errors(o)
        for o in objects
        if upstream.is_custom(o)
    }
    return {k: v for k, v in found.items() if v}


def test_every_custom_resource_validates_against_the_upstream_crd(each_env: Rendered) -> None:
    custom = {o["kind"] for o in each_env.objects if upstream.is_custom(o)}
    assert {"IPAddressPool", "L2Advertisement", "ClusterIssuer", "Certificate"} <= custom
    assert problems(each_env.objects) == {}


def test_prod_renders_every_kind_it_needs_from_velero_and_argo_cd(
    rendered: dict[str, Rendered],
) -> None:
    kinds = {o["kind"] for o in rendered["prod"].objects if upstream.is_custom(o)}
    assert {"BackupStorageLocation", "Schedule", "Application"} <= kinds


def test_traefik_variant_validates_against_traefik_3_6_crds(
    render_variant: Callable[[Environment], Rendered],
) -> None:
    r = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    assert {"Middleware", "TLSOption"} <= {o["kind"] for o in r.objects}
    assert problems(r.objects) == {}


def mutate(obj: Obj, path: tuple[str | int, ...], value: Any) -> Obj:
    out = copy.deepcopy(obj)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


# What the hand-written schemas accepted and the real CRDs reject (issue 13), plus typos.
BROKEN = [
    # cert-manager 1.18 added acme.profile; 1.17.1 (MicroK8s 1.33) does not know it.
    ("ClusterIssuer", ("spec", "acme", "profile"), "tlsserver", "profile"),
    ("ClusterIssuer", ("spec", "acme", "emial"), "x@example.com", "emial"),
    # Argo CD 2.7.2 has no syncPolicy.automated.enabled (added in 3.x).
    ("Application", ("spec", "syncPolicy", "automated"), {"enabled": True}, "enabled"),
    ("Application", ("spec", "syncPolicy", "automatic"), {}, "automatic"),
    ("Certificate", ("spec", "usages"), ["server-auth", "encipher"], "encipher"),
    ("Certificate", ("spec", "renewBfore"), "1h", "renewBfore"),
    ("IPAddressPool", ("spec", "adresses"), ["10.0.0.1/32"], "adresses"),
    ("BackupStorageLocation", ("spec", "credential"), {"name": "velero-s3-credentials"}, "key"),
    ("BackupStorageLocation", ("spec", "objectStorage", "buckett"), "b", "buckett"),
    ("Schedule", ("spec", "template", "ttll"), "1h", "ttll"),
]


@pytest.mark.parametrize(("kind", "path", "value", "named"), BROKEN)
def test_a_field_the_installed_version_lacks_fails_its_crd(
    rendered: dict[str, Rendered], kind: str, path: tuple[str, ...], value: Any, named: str
) -> None:
    obj = rendered["prod"].of_kind(kind)[0]
    assert upstream.errors(obj) == []
    broken = mutate(obj, path, value)
    assert any(named in e for e in upstream.errors(broken)), upstream.errors(broken)


def test_a_traefik_rate_limit_below_its_minimum_fails_its_crd(
    render_variant: Callable[[Environment], Rendered],
) -> None:
    r = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    middleware = next(
        o for o in r.objects if o["kind"] == "Middleware" and "rateLimit" in o["spec"]
    )
    broken = mutate(middleware, ("spec", "rateLimit", "burst"), -1)
    assert any("burst" in e for e in upstream.errors(broken))


def test_a_kind_no_upstream_crd_serves_is_named() -> None:
    obj = {"apiVersion": "velero.io/v2", "kind": "Schedule", "metadata": {"name": "x"}}
    assert upstream.errors(obj) == [
        "no upstream CRD serves velero.io/v2 Schedule (shared/upstream/crds)"
    ]
