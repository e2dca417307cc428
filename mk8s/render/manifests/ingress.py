"""MetalLB and the ingress controller: the address pool, the controller's LoadBalancer Service,
rate limits, HTTPS redirect and the sample app's routing, for NGINX (<= 1.34) and Traefik."""

from __future__ import annotations

import math

from mk8s.inventory.model import Environment
from mk8s.render.manifests.common import (
    INGRESS_CLASS,
    INGRESS_NAMESPACE,
    NO_PRUNE,
    SAMPLE_APP,
    Obj,
    app_host,
    ingress_address,
    meta,
)

# metallb@v0.14.9:controller/service.go reads `metallb.io/loadBalancerIPs`; the
# `metallb.universe.tf/` prefix is its deprecated fallback.
LOAD_BALANCER_IPS = "metallb.io/loadBalancerIPs"
# ExternalDNS >= v0.22 reads annotations under `external-dns.kubernetes.io/` only
# (external-dns@v0.22.0:source/annotations/annotations.go DefaultAnnotationPrefix), no fallback
# to `external-dns.alpha.kubernetes.io/`.
EXTERNAL_DNS_TARGET = "external-dns.kubernetes.io/target"
# The Service the Traefik chart creates for the add-on: release `traefik` in namespace `ingress`
# (microk8s-core-addons@1.35:addons/ingress/enable), named by the release
# (traefik-helm-chart@v37.4.0:traefik/templates/_service.tpl traefik.service-name), type
# LoadBalancer (values.yaml service.type).
TRAEFIK_SERVICE = "traefik"
# The chart's Service keeps the label Helm gave it (app.kubernetes.io/managed-by: Helm): the
# overlay's labels would take that field over through the forced apply. Kustomize runs
# `replacements` after `labels`, so the kustomization copies this annotation's value back
# into the label (mk8s.render.manifests.kustomization).
HELM_MANAGED_BY = "mk8s.io/managed-by-label"
# Router references `<namespace>-<name>@kubernetescrd` (Traefik's Kubernetes CRD provider).
REDIRECT_MIDDLEWARE = "redirect-https"


def metallb(env: Environment) -> list[Obj]:
    """The add-on's own pool and advertisement, set to the inventory range (layer 2).

    MetalLB's webhook rejects overlapping pools, so mk8s converges the objects the add-on made
    (`microk8s enable metallb:RANGE`) instead of adding a second pool.
    """
    return [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": meta("default-addresspool", "metallb-system", annotations=NO_PRUNE),
            "spec": {"addresses": [str(env.network.metallb_range)], "autoAssign": True},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": meta("default-advertise-all-pools", "metallb-system", annotations=NO_PRUNE),
            "spec": {"ipAddressPools": ["default-addresspool"]},
        },
    ]


def ingress_lb_annotations(env: Environment) -> dict[str, str]:
    return {LOAD_BALANCER_IPS: ingress_address(env)}


def traefik_service(env: Environment) -> Obj:
    """The chart's own `traefik` LoadBalancer Service, co-owned by mk8s (server-side apply of
    these fields only, never pruned): it is the Service that carries the traffic, so it gets
    the pinned address and keeps client IPs. A second mk8s Service would wait forever for the
    address the chart's took first (MetalLB hands the lowest free one), and this one would
    route with the chart's `externalTrafficPolicy: Cluster`, hiding the client IPs the
    per-IP rate limits key on."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(
            TRAEFIK_SERVICE,
            INGRESS_NAMESPACE,
            annotations=ingress_lb_annotations(env) | NO_PRUNE | {HELM_MANAGED_BY: "Helm"},
        ),
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
    }


def keep_helm_label() -> Obj:
    """The kustomize replacement that gives the chart's Service its Helm label back."""
    where = {"kind": "Service", "name": TRAEFIK_SERVICE, "namespace": INGRESS_NAMESPACE}
    return {
        "source": where | {"fieldPath": f"metadata.annotations.[{HELM_MANAGED_BY}]"},
        "targets": [
            {
                "select": where,
                "fieldPaths": ["metadata.labels.[app.kubernetes.io/managed-by]"],
            }
        ],
    }


def burst_multiplier(rps: int, burst: int) -> int:
    """ingress-nginx takes burst as a multiple of the rate; round up so burst is never below."""
    return max(1, math.ceil(burst / rps))


def nginx_configmap_patch(env: Environment) -> Obj:
    ing = env.ingress
    limit = ing.rate_limit
    code = str(limit.status_code if limit else 429)
    data = {
        "limit-req-status-code": code,
        "limit-conn-status-code": code,
        # WebSocket-friendly: keep upgraded connections open for the inventory's timeout.
        "proxy-read-timeout": str(ing.proxy_timeout_s),
        "proxy-send-timeout": str(ing.proxy_timeout_s),
    }
    if limit is not None:
        # The env's default for every ingress: a per-client-IP zone applied in every location.
        data["http-snippet"] = (
            f"limit_req_zone $binary_remote_addr zone=mk8s_per_ip:10m rate={limit.rps}r/s;"
        )
        # The status code is the http-level limit-req-status-code above.
        data["location-snippet"] = f"limit_req zone=mk8s_per_ip burst={limit.burst} nodelay;"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta("nginx-load-balancer-microk8s-conf", INGRESS_NAMESPACE),
        "data": data,
    }


def traefik_middlewares(env: Environment) -> list[Obj]:
    """The HTTPS redirect and, when the inventory limits, the per-client-IP rate limit
    (Traefik answers rate-limited requests with 429 itself)."""
    out: list[Obj] = [
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": meta(REDIRECT_MIDDLEWARE, SAMPLE_APP),
            "spec": {"redirectScheme": {"scheme": "https", "permanent": True}},
        }
    ]
    limit = env.ingress.rate_limit
    if limit is None:
        return out
    spec = {
        "rateLimit": {
            "average": limit.rps,
            "period": "1s",
            "burst": limit.burst,
            "sourceCriterion": {"ipStrategy": {"depth": 0}},
        }
    }
    return out + [
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": meta("rate-limit", ns),
            "spec": spec,
        }
        for ns in (INGRESS_NAMESPACE, SAMPLE_APP)
    ]


def _dns_annotations(env: Environment) -> dict[str, str]:
    return {EXTERNAL_DNS_TARGET: ingress_address(env)} if env.dns.external_dns else {}


def ingress_annotations(env: Environment) -> dict[str, str]:
    ing = env.ingress
    limit = ing.rate_limit
    common = _dns_annotations(env)
    if ing.controller == "nginx":
        out = common | {
            "nginx.ingress.kubernetes.io/proxy-read-timeout": str(ing.proxy_timeout_s),
            "nginx.ingress.kubernetes.io/proxy-send-timeout": str(ing.proxy_timeout_s),
            "nginx.ingress.kubernetes.io/ssl-redirect": "true",
        }
        if limit is not None:
            out["nginx.ingress.kubernetes.io/limit-rps"] = str(limit.rps)
            out["nginx.ingress.kubernetes.io/limit-burst-multiplier"] = str(
                burst_multiplier(limit.rps, limit.burst)
            )
        return out
    out = common | {
        "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
        "traefik.ingress.kubernetes.io/router.tls": "true",
    }
    if limit is not None:
        out["traefik.ingress.kubernetes.io/router.middlewares"] = (
            f"{SAMPLE_APP}-rate-limit@kubernetescrd"
        )
    return out


def traefik_http_redirect(env: Environment) -> Obj:
    """Plain HTTP to the app's host answers a permanent redirect to HTTPS, as ingress-nginx's
    ssl-redirect does. The app's router is TLS-only on `websecure`, so without this router on
    `web` (the add-on's HTTP entry point, values.yaml ports.web) HTTP gets 404. ACME HTTP-01
    solver Ingresses still win on their longer path rule."""
    host = app_host(env)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(
            f"{SAMPLE_APP}-http",
            SAMPLE_APP,
            annotations=_dns_annotations(env)
            | {
                "traefik.ingress.kubernetes.io/router.entrypoints": "web",
                "traefik.ingress.kubernetes.io/router.middlewares": (
                    f"{SAMPLE_APP}-{REDIRECT_MIDDLEWARE}@kubernetescrd"
                ),
            },
        ),
        "spec": {
            "ingressClassName": INGRESS_CLASS["traefik"],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": SAMPLE_APP, "port": {"name": "http"}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


def sample_app_ingress_patch(env: Environment) -> list[Obj]:
    """JSON6902 ops on the base Ingress: class, host, TLS secret and annotations."""
    host = app_host(env)
    return [
        {
            "op": "replace",
            "path": "/spec/ingressClassName",
            "value": INGRESS_CLASS[env.ingress.controller],
        },
        {"op": "replace", "path": "/spec/tls/0/hosts", "value": [host]},
        {"op": "replace", "path": "/spec/rules/0/host", "value": host},
        {"op": "add", "path": "/metadata/annotations", "value": ingress_annotations(env)},
    ]
