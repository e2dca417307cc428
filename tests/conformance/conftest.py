"""Fixtures for the conformance checks' own tests: one real kube-apiserver per session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from tests.support.envtest import KubeApiServer, kube_apiserver

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["kube_apiserver"]


@pytest.fixture
def api(kube_apiserver: KubeApiServer) -> Iterator[Any]:
    """An admin ApiClient on the session's API server."""
    client = kube_apiserver.api_client()
    yield client
    client.close()


@pytest.fixture
def namespace(kube_apiserver: KubeApiServer, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test (never finalised: there is no namespace controller)."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in base)
    return kube_apiserver.create_namespace(f"{safe}-{secrets.token_hex(3)}")


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def crds(kube_apiserver: KubeApiServer) -> list[str]:
    """Install the upstream CRDs (cert-manager's Certificate among them, shared/upstream/crds)
    and the minimal ones for kinds it does not hold (Velero Backup/Restore, PrometheusRule)."""

    from tests.support import upstream

    api = kube_apiserver.api_client()
    names = upstream.install(api)
    names += upstream.create_crds(api, yaml.safe_load_all((FIXTURES / "crds.yaml").read_text()))
    api.close()
    return names


@pytest.fixture(scope="session")
def aggregated_roles(kube_apiserver: KubeApiServer) -> int:
    """admin/edit/view filled in as the (absent) controller-manager would do."""
    from tests.conformance.actors import aggregate_cluster_roles

    api = kube_apiserver.api_client()
    try:
        return aggregate_cluster_roles(api)
    finally:
        api.close()


@pytest.fixture(scope="session")
def dev_env() -> Environment:
    """The shipped dev inventory: the values the checks are judged against."""
    return load_environment("dev", ROOT)
