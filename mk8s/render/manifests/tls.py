"""cert-manager: the ACME ClusterIssuer and the sample app's Certificate."""

from __future__ import annotations

from mk8s.inventory.model import Environment
from mk8s.render.manifests.common import INGRESS_CLASS, SAMPLE_APP, Obj, app_host, meta

ACME = {
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "letsencrypt-prod": "https://acme-v02.api.letsencrypt.org/directory",
}


def cluster_issuer(env: Environment) -> Obj:
    tls = env.tls
    solver: Obj
    if tls.challenge == "dns-01":
        solver = {
            "dns01": {
                "cloudflare": {
                    "apiTokenSecretRef": {"name": "cloudflare-api-token", "key": "api-token"}
                }
            },
            "selector": {"dnsZones": [env.ingress.domain]},
        }
    else:
        solver = {
            "http01": {"ingress": {"ingressClassName": INGRESS_CLASS[env.ingress.controller]}}
        }
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": meta(tls.issuer),
        "spec": {
            "acme": {
                "server": ACME[tls.issuer],
                "email": tls.email,
                "privateKeySecretRef": {"name": f"{tls.issuer}-account-key"},
                "solvers": [solver],
            }
        },
    }


def certificate(env: Environment) -> Obj:
    tls, domain = env.tls, env.ingress.domain
    names = [domain, f"*.{domain}"] if tls.wildcard else [app_host(env)]
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta("sample-app-tls", SAMPLE_APP),
        "spec": {
            "secretName": "sample-app-tls",
            "issuerRef": {"name": tls.issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
            "dnsNames": names,
            # Let's Encrypt issues 90-day certificates; renew renew_before_days before expiry.
            "duration": "2160h",
            "renewBefore": f"{tls.renew_before_days * 24}h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }
