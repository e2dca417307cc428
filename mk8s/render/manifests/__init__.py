"""Per-environment values for the kustomize overlay: build/ENV/manifests/ (and add-on values).

`manifests/` in the repo holds everything that is the same in every environment (base, the
team blueprint, components, and per-tier overlays that differ only by policy such as the
autoscaler's floor). Every value that differs per environment comes from the inventory through
here: build/ENV/manifests/kustomization.yaml builds on `manifests/overlays/TIER`, picks the
components the inventory asks for and adds the rendered objects and patches. `kustomize build`
of that directory is the exact set of objects `invoke deploy` applies, and what `invoke
publish` commits for Argo CD.

Secrets are never rendered: `secrets.json` lists which Secret to create from which environment
variable; `invoke deploy` resolves them at apply time (mk8s.deploy.flow).

One module per concern: common (names, helpers), ingress (MetalLB, NGINX, Traefik), tls
(cert-manager), storage, access (RBAC, teams), operations (ExternalDNS, Velero, observability),
gitops (Argo CD), secrets, kustomization (the files and `render`).
"""

from __future__ import annotations

from mk8s.render.manifests.access import cluster_rbac, team_kustomization
from mk8s.render.manifests.common import (
    DIR,
    ENV_LABEL,
    INGRESS_CLASS,
    INGRESS_NAMESPACE,
    KUBELET_DIR,
    MANAGED_BY,
    NO_PRUNE,
    SAMPLE_APP,
    SECRETS_JSON,
    allow_kube_api,
    app_host,
    ingress_address,
    labels,
    overlay,
)
from mk8s.render.manifests.gitops import (
    APPS_DIR,
    APPS_FILE,
    PLATFORM_DIR,
    argocd_children,
    argocd_root,
    gitops_path,
)
from mk8s.render.manifests.ingress import (
    EXTERNAL_DNS_TARGET,
    LOAD_BALANCER_IPS,
    TRAEFIK_SERVICE,
    burst_multiplier,
    ingress_annotations,
    metallb,
    nginx_configmap_patch,
    traefik_http_redirect,
    traefik_middlewares,
    traefik_service,
)
from mk8s.render.manifests.kustomization import components, render
from mk8s.render.manifests.operations import (
    external_dns_args,
    observability_value_files,
    observability_values,
    s3_port,
    velero,
)
from mk8s.render.manifests.secrets import SecretRef, secret_refs
from mk8s.render.manifests.storage import (
    CEPH_CONF,
    CEPH_DRIVER,
    CEPH_FSID_ANNOTATION,
    CEPH_NAMESPACE,
    ceph_conf,
    storage_classes,
)
from mk8s.render.manifests.tls import ACME, certificate, cluster_issuer

__all__ = [
    "ACME",
    "APPS_DIR",
    "APPS_FILE",
    "CEPH_CONF",
    "CEPH_DRIVER",
    "CEPH_FSID_ANNOTATION",
    "CEPH_NAMESPACE",
    "DIR",
    "ENV_LABEL",
    "EXTERNAL_DNS_TARGET",
    "INGRESS_CLASS",
    "INGRESS_NAMESPACE",
    "KUBELET_DIR",
    "LOAD_BALANCER_IPS",
    "MANAGED_BY",
    "NO_PRUNE",
    "PLATFORM_DIR",
    "SAMPLE_APP",
    "SECRETS_JSON",
    "TRAEFIK_SERVICE",
    "SecretRef",
    "allow_kube_api",
    "app_host",
    "argocd_children",
    "argocd_root",
    "burst_multiplier",
    "ceph_conf",
    "certificate",
    "cluster_issuer",
    "cluster_rbac",
    "components",
    "external_dns_args",
    "gitops_path",
    "ingress_address",
    "ingress_annotations",
    "labels",
    "metallb",
    "nginx_configmap_patch",
    "observability_value_files",
    "observability_values",
    "overlay",
    "render",
    "s3_port",
    "secret_refs",
    "storage_classes",
    "team_kustomization",
    "traefik_http_redirect",
    "traefik_middlewares",
    "traefik_service",
    "velero",
]
