"""The renderer's own rules: pure functions of the inventory, no secret ever rendered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mk8s.render import manifests
from mk8s.render.plan import build_plan
from tests.manifests.conftest import variant


@given(rps=st.integers(1, 10_000), burst=st.integers(1, 100_000))
def test_nginx_burst_is_never_below_the_inventory_burst(rps: int, burst: int) -> None:
    multiplier = manifests.burst_multiplier(rps, burst)
    assert multiplier >= 1
    assert rps * multiplier >= burst
    assert rps * (multiplier - 1) < burst or multiplier == 1


def test_secret_values_never_reach_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOUDFLARE_API_TOKEN", "VELERO_S3_ACCESS_KEY", "VELERO_S3_SECRET_KEY"):
        monkeypatch.setenv(name, f"do-not-render-{name}")
    plan = build_plan(variant("prod"))
    for artifact in plan.artifacts:
        assert "do-not-render" not in artifact.content, artifact.path
    refs = plan.artifact(manifests.SECRETS_JSON).content
    assert "${CLOUDFLARE_API_TOKEN}" in refs and "${VELERO_S3_SECRET_KEY}" in refs


def test_a_lab_environment_builds_on_the_dev_overlay() -> None:
    env = variant("dev", name="lab")
    assert env.effective_tier == "lab"
    assert manifests.overlay(env) == "dev"


def test_components_follow_the_inventory() -> None:
    assert [c.rsplit("/", 1)[1] for c in manifests.components(variant("dev"))] == ["nginx"]
    assert [c.rsplit("/", 1)[1] for c in manifests.components(variant("prod"))] == [
        "nginx",
        "external-dns",
        "velero",
    ]


def test_s3_egress_port_comes_from_the_endpoint() -> None:
    assert manifests.s3_port("https://minio.example.lan:9000") == 9000
    assert manifests.s3_port("https://s3.example.com") == 443
    assert manifests.s3_port("http://minio") == 80
