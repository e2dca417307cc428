"""Per-environment values for the kustomize overlay: build/ENV/manifests/ (and add-on values).

`manifests/` in the repo holds everything that is the same in every environment (base, the
team blueprint, components, and per-tier overlays that differ only by policy such as replica
counts). Every value that differs per environment comes from the inventory through here:
build/ENV/manifests/kustomization.yaml builds on `manifests/overlays/TIER`, picks the
components the inventory asks for and adds the rendered objects and patches. `kustomize build`
of that directory is the exact set of objects `invoke deploy` applies.

Secrets are never rendered: `secrets.json` lists which Secret to create from which environment
variable; `invoke deploy` resolves them at apply time (mk8s.deploy.flow).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from mk8s.inventory.model import Environment, Team
from mk8s.render.artifact import Artifact

DIR = "manifests"
# From build/ENV/manifests/ back to the repository root.
REPO = "../../.."
SECRETS_JSON = f"{DIR}/secrets.json"

# MicroK8s runs its kubelet from the snap: CSI drivers and Velero's node agent must use this
# directory, not /var/lib/kubelet (shared/reference/microk8s.md, "Add-ons").
KUBELET_DIR = "/var/snap/microk8s/common/var/lib/kubelet"
# The ingress add-on's default class is `public` with either controller: NGINX registers
# `public` and `nginx` (HTTP-01 with class `nginx` fails on MicroK8s); the Traefik add-on
# (1.35+, core-addons addons/ingress/values.yaml) registers `traefik` and, for compatibility,
# `public` (default) and `nginx`. So the same class routes the sample app out of either.
INGRESS_CLASS = {"nginx": "public", "traefik": "public"}
INGRESS_NAMESPACE = "ingress"
ACME = {
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "letsencrypt-prod": "https://acme-v02.api.letsencrypt.org/directory",
}
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


def _dump(docs: list[Obj]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=1000)


def _meta(name: str, namespace: str | None = None, **extra: Any) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


# --- networking -------------------------------------------------------------------------


def metallb(env: Environment) -> list[Obj]:
    """The add-on's own pool and advertisement, set to the inventory range (layer 2).

    MetalLB's webhook rejects overlapping pools, so mk8s converges the objects the add-on made
    (`microk8s enable metallb:RANGE`) instead of adding a second pool.
    """
    return [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": _meta("default-addresspool", "metallb-system", annotations=NO_PRUNE),
            "spec": {"addresses": [str(env.network.metallb_range)], "autoAssign": True},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": _meta(
                "default-advertise-all-pools", "metallb-system", annotations=NO_PRUNE
            ),
            "spec": {"ipAddressPools": ["default-addresspool"]},
        },
    ]


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
        "metadata": _meta("nginx-load-balancer-microk8s-conf", INGRESS_NAMESPACE),
        "data": data,
    }


def traefik_middlewares(env: Environment) -> list[Obj]:
    """Traefik answers rate-limited requests with 429 itself; average/burst per client IP."""
    limit = env.ingress.rate_limit
    if limit is None:
        return []
    spec = {
        "rateLimit": {
            "average": limit.rps,
            "period": "1s",
            "burst": limit.burst,
            "sourceCriterion": {"ipStrategy": {"depth": 0}},
        }
    }
    return [
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": _meta("rate-limit", ns),
            "spec": spec,
        }
        for ns in (INGRESS_NAMESPACE, SAMPLE_APP)
    ]


def ingress_annotations(env: Environment) -> dict[str, str]:
    ing = env.ingress
    limit = ing.rate_limit
    common: dict[str, str] = {}
    if env.dns.external_dns:
        common["external-dns.alpha.kubernetes.io/target"] = ingress_address(env)
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


# --- cert-manager ----------------------------------------------------------------------


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
        "metadata": _meta(tls.issuer),
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
        "metadata": _meta("sample-app-tls", SAMPLE_APP),
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


# --- storage ---------------------------------------------------------------------------


def storage_classes(env: Environment) -> list[Obj]:
    st = env.storage

    def sc(name: str, provisioner: str, reclaim: str, binding: str, **rest: Any) -> Obj:
        default = "true" if name == st.default_class else "false"
        if name == st.default_class and st.reclaim_policy is not None:
            reclaim = st.reclaim_policy
        annotations = {"storageclass.kubernetes.io/is-default-class": default}
        if name == "microk8s-hostpath":
            annotations |= NO_PRUNE
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": _meta(name, annotations=annotations),
            "provisioner": provisioner,
            "reclaimPolicy": reclaim,
            "volumeBindingMode": binding,
            **rest,
        }

    out: list[Obj] = []
    if "hostpath-storage" in env.microk8s.addons:
        # The add-on's class (node-local, not HA): mk8s only decides whether it is the default.
        out.append(
            sc("microk8s-hostpath", "microk8s.io/hostpath", "Delete", "WaitForFirstConsumer")
        )
    if st.nfs is not None:
        out.append(
            sc(
                "sc-nfs",
                "nfs.csi.k8s.io",
                "Delete",
                "Immediate",
                parameters={"server": str(st.nfs.server), "share": st.nfs.share},
                mountOptions=list(st.nfs.mount_options),
                allowVolumeExpansion=True,
            )
        )
    if st.ceph is not None:
        # Rook's external-cluster mode (`microk8s enable rook-ceph` + `connect-external-ceph`):
        # CSI driver rook-ceph.rbd.csi.ceph.com, cluster id = the external cluster namespace.
        ns = "rook-ceph-external"
        out.append(
            sc(
                "sc-ceph-rbd",
                "rook-ceph.rbd.csi.ceph.com",
                "Retain",
                "Immediate",
                parameters={
                    "clusterID": ns,
                    "pool": st.ceph.pool,
                    "imageFormat": "2",
                    "imageFeatures": "layering",
                    "csi.storage.k8s.io/fstype": "ext4",
                    "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-rbd-provisioner",
                    "csi.storage.k8s.io/provisioner-secret-namespace": ns,
                    "csi.storage.k8s.io/controller-expand-secret-name": "rook-csi-rbd-provisioner",
                    "csi.storage.k8s.io/controller-expand-secret-namespace": ns,
                    "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-rbd-node",
                    "csi.storage.k8s.io/node-stage-secret-namespace": ns,
                },
                allowVolumeExpansion=True,
            )
        )
    if st.fast_class:
        # SSD tier: the hostpath provisioner writing to the SSD-backed directory (pvDir).
        out.append(
            sc(
                "sc-fast",
                "microk8s.io/hostpath",
                "Delete",
                "WaitForFirstConsumer",
                parameters={"pvDir": "/var/snap/microk8s/common/fast-storage"},
            )
        )
    return out


# --- security --------------------------------------------------------------------------


def cluster_rbac(env: Environment) -> list[Obj]:
    """The cluster-wide rows of the RBAC matrix: SRE cluster-admin, auditors read-only."""

    def crb(name: str, role: str, group: str) -> Obj:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        }

    acc = env.access
    return [
        crb("mk8s-cluster-admin", "cluster-admin", acc.cluster_admin_group),
        crb("mk8s-auditor-view", "view", acc.auditor_group),
        crb("mk8s-auditor-cluster-read", "mk8s-auditor-cluster-read", acc.auditor_group),
    ]


def api_addresses(env: Environment) -> list[str]:
    ips = {str(n.ip) for n in env.nodes}
    if env.network.api_vip is not None:
        ips.add(str(env.network.api_vip))
    return sorted(ips)


def allow_kube_api(env: Environment, namespace: str) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("allow-kube-api", namespace),
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


def team_kustomization(team: Team) -> Obj:
    """One team: the repo's blueprint (manifests/team) renamed and given its quota and groups."""
    q = team.quota
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": team.name,
        "resources": [f"../../{REPO}/manifests/team"],
        "patches": [
            {
                "target": {"kind": "Namespace", "name": "team"},
                "patch": _ops([{"op": "replace", "path": "/metadata/name", "value": team.name}]),
            },
            {
                "target": {"kind": "ResourceQuota", "name": "compute"},
                "patch": _ops(
                    [
                        {
                            "op": "replace",
                            "path": "/spec/hard",
                            "value": {
                                "requests.cpu": q.cpu,
                                "requests.memory": q.memory,
                                "limits.cpu": q.cpu,
                                "limits.memory": q.memory,
                                "pods": str(q.pods),
                            },
                        }
                    ]
                ),
            },
            {
                "target": {"kind": "RoleBinding", "name": "namespace-admin"},
                "patch": _ops(
                    [{"op": "replace", "path": "/subjects/0/name", "value": team.leads_group}]
                ),
            },
            {
                "target": {"kind": "RoleBinding", "name": "developer"},
                "patch": _ops(
                    [{"op": "replace", "path": "/subjects/0/name", "value": team.developers_group}]
                ),
            },
        ],
    }


def _ops(ops: list[Obj]) -> str:
    return json.dumps(ops, sort_keys=False)


# --- operations ------------------------------------------------------------------------


def external_dns_args(env: Environment) -> list[Obj]:
    """Restrict ExternalDNS to this env's domain; the owner id keeps envs off each other's records."""
    return [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg}
        for arg in (f"--domain-filter={env.ingress.domain}", f"--txt-owner-id=mk8s-{env.name}")
    ]


def s3_port(endpoint: str) -> int:
    parts = urlsplit(endpoint)
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def velero(env: Environment) -> list[Obj]:
    assert env.backup is not None
    b = env.backup
    out: list[Obj] = [
        {
            "apiVersion": "velero.io/v1",
            "kind": "BackupStorageLocation",
            "metadata": _meta("default", "velero"),
            "spec": {
                "provider": "aws",
                "default": True,
                "objectStorage": {"bucket": b.target.bucket, "prefix": env.name},
                "config": {
                    "region": b.target.region,
                    "s3Url": b.target.endpoint,
                    "s3ForcePathStyle": "true",
                },
                "credential": {"name": "velero-s3-credentials", "key": "cloud"},
            },
        }
    ]
    for s in b.schedules:
        out.append(
            {
                "apiVersion": "velero.io/v1",
                "kind": "Schedule",
                "metadata": _meta(s.name, "velero"),
                "spec": {
                    "schedule": s.cron,
                    "useOwnerReferencesInBackup": False,
                    "template": {
                        "ttl": f"{s.ttl_days * 24}h0m0s",
                        "includedNamespaces": list(s.namespaces),
                        "includeClusterResources": s.namespaces == ["*"],
                        "storageLocation": "default",
                        "defaultVolumesToFsBackup": b.fs_backup,
                    },
                },
            }
        )
    out.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("allow-s3", "velero"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": s3_port(b.target.endpoint)}]}],
            },
        }
    )
    out.append(allow_kube_api(env, "velero"))
    return out


def argocd_application(env: Environment, name: str, path: str, plain: bool) -> Obj:
    g = env.gitops
    source: Obj = {"repoURL": g.repo_url, "targetRevision": g.revision, "path": path}
    if plain:
        source["directory"] = {"recurse": False}
    sync: Obj = {"syncOptions": ["ServerSideApply=true"]}
    if g.auto_sync:
        sync["automated"] = {"prune": True, "selfHeal": True}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": _meta(name, "argocd"),
        "spec": {
            "project": "default",
            "source": source,
            "destination": {"server": "https://kubernetes.default.svc"},
            "syncPolicy": sync,
        },
    }


def argocd_root(env: Environment) -> Obj:
    """App-of-apps root: syncs the child Applications in build/ENV/manifests/apps/."""
    return argocd_application(env, f"mk8s-{env.name}", f"build/{env.name}/{DIR}/apps", plain=True)


def argocd_children(env: Environment) -> list[Obj]:
    return [
        argocd_application(env, f"mk8s-{env.name}-platform", f"build/{env.name}/{DIR}", plain=False)
    ]


def observability_values(env: Environment) -> dict[str, Obj]:
    """Helm values for the observability add-on's charts (`microk8s enable observability
    --kube-prometheus-stack-values=... --loki-stack-values=...`), or kube-prometheus-stack."""
    m = env.monitoring
    scrape = f"{m.scrape_interval_s}s"
    retention_h = f"{m.log_retention_days * 24}h"
    return {
        "kube-prometheus-stack.values.yaml": {
            "prometheus": {
                "prometheusSpec": {
                    "scrapeInterval": scrape,
                    "evaluationInterval": scrape,
                    "retention": f"{m.log_retention_days}d",
                }
            },
            "nodeExporter": {"enabled": True},
            "kubeStateMetrics": {"enabled": True},
            "kubelet": {"enabled": True, "serviceMonitor": {"cAdvisor": True}},
        },
        "loki-stack.values.yaml": {
            "loki": {
                "config": {
                    "table_manager": {
                        "retention_deletes_enabled": True,
                        "retention_period": retention_h,
                    },
                    "limits_config": {"retention_period": retention_h},
                }
            }
        },
    }


def observability_value_files(env: Environment) -> dict[str, str]:
    """The values files as text: rendered into build/ENV/ and uploaded by bootstrap."""
    return {name: _dump([body]) for name, body in observability_values(env).items()}


# --- secrets (references only) ----------------------------------------------------------


@dataclass(frozen=True)
class SecretRef:
    """A Secret `invoke deploy` creates: each key is a template over environment variables."""

    namespace: str
    name: str
    data: dict[str, str] = field(default_factory=dict)  # key -> "${ENV_VAR}" template

    def as_json(self) -> Obj:
        return {"namespace": self.namespace, "name": self.name, "data": dict(self.data)}


def secret_refs(env: Environment) -> list[SecretRef]:
    out: list[SecretRef] = []
    if env.tls.challenge == "dns-01" and env.tls.dns01_token_env:
        out.append(
            SecretRef(
                "cert-manager",
                "cloudflare-api-token",
                {"api-token": f"${{{env.tls.dns01_token_env}}}"},
            )
        )
    if env.dns.external_dns and env.dns.api_token_env:
        out.append(
            SecretRef(
                "external-dns",
                "cloudflare-api-token",
                {"api-token": f"${{{env.dns.api_token_env}}}"},
            )
        )
    if env.backup is not None:
        t = env.backup.target
        cloud = (
            "[default]\n"
            f"aws_access_key_id=${{{t.access_key_env}}}\n"
            f"aws_secret_access_key=${{{t.secret_key_env}}}\n"
        )
        out.append(SecretRef("velero", "velero-s3-credentials", {"cloud": cloud}))
    return out


# --- the kustomization -------------------------------------------------------------------


def components(env: Environment) -> list[str]:
    names: list[str] = [env.ingress.controller]
    if env.dns.external_dns:
        names.append("external-dns")
    if env.backup is not None:
        names.append("velero")
    return [f"{REPO}/manifests/components/{n}" for n in names]


def _files(env: Environment) -> Iterator[tuple[str, str]]:
    """(path under build/ENV/, content) of every rendered file."""
    values: dict[str, list[Obj]] = {
        "metallb.yaml": metallb(env),
        "cert-manager.yaml": [cluster_issuer(env), certificate(env)],
        "storage.yaml": storage_classes(env),
        "rbac.yaml": cluster_rbac(env),
    }
    if env.ingress.controller == "traefik" and env.ingress.rate_limit is not None:
        values["traefik.yaml"] = traefik_middlewares(env)
    if env.dns.external_dns:
        values["external-dns.yaml"] = [allow_kube_api(env, "external-dns")]
    if env.backup is not None:
        values["velero.yaml"] = velero(env)
    if env.gitops.enabled:
        values["argocd.yaml"] = [argocd_root(env)]
        yield f"{DIR}/apps/applications.yaml", _dump(argocd_children(env))

    patches: list[Obj] = [
        {
            "target": {"kind": "Ingress", "name": SAMPLE_APP, "namespace": SAMPLE_APP},
            "patch": _ops(sample_app_ingress_patch(env)),
        }
    ]
    patches.append(
        {
            "target": {"kind": "Service", "name": "ingress-lb", "namespace": INGRESS_NAMESPACE},
            "patch": _ops(
                [
                    {
                        "op": "add",
                        "path": "/metadata/annotations",
                        "value": {"metallb.universe.tf/loadBalancerIPs": ingress_address(env)},
                    }
                ]
            ),
        }
    )
    if env.ingress.controller == "nginx":
        patches.append({"path": "patches/nginx-configmap.yaml"})
        yield f"{DIR}/patches/nginx-configmap.yaml", _dump([nginx_configmap_patch(env)])
    if env.dns.external_dns:
        patches.append(
            {
                "target": {"kind": "Deployment", "name": "external-dns"},
                "patch": _ops(external_dns_args(env)),
            }
        )

    for name, docs in values.items():
        yield f"{DIR}/values/{name}", _dump(docs)
    for team in env.teams:
        yield f"{DIR}/teams/{team.name}/kustomization.yaml", _dump([team_kustomization(team)])

    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [
            f"{REPO}/manifests/overlays/{overlay(env)}",
            *(f"values/{name}" for name in values),
            *(f"teams/{t.name}" for t in env.teams),
        ],
        "components": components(env),
        "patches": patches,
        # Every object carries mk8s' labels: `invoke deploy` prunes only objects that carry them.
        "labels": [{"pairs": labels(env), "includeSelectors": False}],
    }
    header = (
        f"# Rendered by `invoke plan --env {env.name}` from inventory values; do not edit.\n"
        f"# `kustomize build build/{env.name}/{DIR}` is what `invoke deploy` applies.\n"
    )
    yield f"{DIR}/kustomization.yaml", header + _dump([kustomization])
    yield SECRETS_JSON, json.dumps([s.as_json() for s in secret_refs(env)], indent=2) + "\n"
    if env.monitoring.enabled:
        for name, text in observability_value_files(env).items():
            yield f"observability/{name}", text
    if env.storage.nfs is not None:
        # csi-driver-nfs Helm values: MicroK8s' kubelet dir, or mounts land where kubelet never looks.
        yield "helm/csi-driver-nfs.values.yaml", _dump([{"kubeletDir": KUBELET_DIR}])


def render(env: Environment) -> list[Artifact]:
    return [Artifact(path, content) for path, content in _files(env)]
