"""Names and helpers every part of the rendered overlay shares."""

from __future__ import annotations

import json
from typing import Any

import yaml

from mk8s.inventory.model import Environment

DIR = "manifests"
# From build/ENV/manifests/ back to the repository root.
REPO = "../../.."
SECRETS_JSON = f"{DIR}/secrets.json"

# MicroK8s runs its kubelet from the snap: CSI drivers and Velero's node agent must use this
# directory, not /var/lib/kubelet (shared/reference/microk8s.md, "Add-ons").
KUBELET_DIR = "/var/snap/microk8s/common/var/lib/kubelet"
# The ingress add-on's default class is `public` with either controller: ingress-nginx v1.13.8
# (channels <= 1.34) serves both IngressClasses the add-on registers, `public` and `nginx`, each
# with controller k8s.io/ingress-nginx (microk8s-core-addons@1.33:addons/ingress/ingress.yaml,
# enable TAG); the Traefik add-on (1.35+, microk8s-core-addons@1.35:addons/ingress/values.yaml)
# registers `traefik` and, for compatibility, `public` (default) and `nginx`. `public` is the
# one class that routes the sample app and HTTP-01 solvers out of either, so it stays the choice.
INGRESS_CLASS = {"nginx": "public", "traefik": "public"}
INGRESS_NAMESPACE = "ingress"
# MicroK8s API server port on every control-plane node; the in-cluster Service is DNAT-ed to it,
# and Calico evaluates egress policy after DNAT, so policies allow node:16443.
API_PORT = 16443
SAMPLE_APP = "sample-app"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mk8s"}
ENV_LABEL = "mk8s.io/environment"
# Objects an add-on created and mk8s co-owns: configured, never pruned (mk8s.deploy.flow).
NO_PRUNE = {"mk8s.io/prune": "disabled"}

Obj = dict[str, Any]


def app_host(env: Environment) -> str:
    """Where the sample app answers: the conformance suite and the load tests use this host."""
    return f"app.{env.ingress.domain}"


def ingress_address(env: Environment) -> str:
    """The ingress controller's LoadBalancer address: the first of the MetalLB range, pinned so
    DNS records and firewall rules can name it (MicroK8s' NGINX reports 127.0.0.1 as the
    Ingress status, which ExternalDNS would otherwise publish)."""
    return str(env.network.metallb_range.start)


def overlay(env: Environment) -> str:
    tier = env.effective_tier
    return "dev" if tier == "lab" else tier


def labels(env: Environment) -> dict[str, str]:
    return MANAGED_BY | {ENV_LABEL: env.name}


def dump(docs: list[Obj]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=1000)


def meta(name: str, namespace: str | None = None, **extra: Any) -> Obj:
    out: Obj = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out.update(extra)
    return out


def ops(items: list[Obj]) -> str:
    """JSON6902 operations as the text kustomize's `patch:` takes."""
    return json.dumps(items, sort_keys=False)


def api_addresses(env: Environment) -> list[str]:
    ips = {str(n.ip) for n in env.nodes}
    if env.network.api_vip is not None:
        ips.add(str(env.network.api_vip))
    return sorted(ips)


def allow_kube_api(env: Environment, namespace: str) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("allow-kube-api", namespace),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": f"{ip}/32"}} for ip in api_addresses(env)],
                    "ports": [{"protocol": "TCP", "port": API_PORT}],
                }
            ],
        },
    }
