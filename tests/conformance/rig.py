"""Shared pieces of the broken-cluster rig: a loopback copy of the dev inventory, Ready app
pods in the real kube-apiserver, MetalLB's status write, the real CRDs from shared/upstream."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from mk8s.inventory.model import Environment
from tests.support import upstream

ROOT = Path(__file__).resolve().parents[2]
APP_LABELS = {"app.kubernetes.io/name": "sample-app"}
APP_SELECTOR = "app.kubernetes.io/name=sample-app"


def shared_dir() -> Path:
    """/work/shared as CI lays it out: beside the clone, or where MK8S_SHARED says."""
    path = Path(os.environ.get("MK8S_SHARED") or ROOT.parent / "shared")
    if not (path / "upstream" / "crds").is_dir():
        pytest.fail(
            f"{path}/upstream/crds not found: put shared/ beside the clone or set MK8S_SHARED"
        )
    return path


def loopback_env(dev_env: Environment, octet: int) -> Environment:
    """The dev inventory on 127.<octet>.0.0/24: nodes .11-.13, MetalLB .50-.69."""
    data = dev_env.model_dump(mode="json")
    p = f"127.{octet}.0"
    data["network"].update(
        subnet=f"{p}.0/24", gateway=f"{p}.1", dns_servers=[f"{p}.1"],
        metallb_range=f"{p}.50-{p}.69", api_vip=None,
    )  # fmt: skip
    for i, n in enumerate(data["nodes"]):
        n["ip"] = f"{p}.{11 + i}"
    return Environment.model_validate(data)


def install_crds(api: Any, *files: str) -> None:
    """Create the real CRDs (shared/upstream/crds/FILE) and wait until they are Established."""
    crds = shared_dir() / "upstream" / "crds"
    upstream.create_crds(
        api, (d for f in files for d in yaml.safe_load_all((crds / f).read_text()))
    )


def ready_pod(api: Any, namespace: str, node: str, ready: bool = True, name: str = "") -> str:
    """An app pod bound to `node`, its status written as the kubelet would."""
    core = client.CoreV1Api(api)
    name = name or f"sample-app-6b9f7c5d4-{secrets.token_hex(3)}"
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=APP_LABELS),
            spec=client.V1PodSpec(
                node_name=node, containers=[client.V1Container(name="app", image="agnhost")]
            ),
        ),
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    core.patch_namespaced_pod_status(
        name, namespace,
        {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}},
    )  # fmt: skip
    return name


def assign_lb_ip(api: Any, namespace: str, name: str, ip: str) -> None:
    """What MetalLB's controller writes once it allocated an address."""
    client.CoreV1Api(api).patch_namespaced_service_status(
        name, namespace, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
    )


def app_ingress(host: str, service: str = "sample-app", name: str = "sample-app") -> dict[str, Any]:
    """The sample app's Ingress as the plan renders it (manifests/base/sample-app/ingress.yaml)."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "public",
            "tls": [{"hosts": [host], "secretName": "sample-app-tls"}],
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"name": "http"}}}}]}}],
        },
    }  # fmt: skip
