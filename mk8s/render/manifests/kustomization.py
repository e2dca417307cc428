"""build/ENV/manifests/kustomization.yaml and every file it includes: the overlay of the tier,
the components the inventory asks for, and the rendered values and patches."""

from __future__ import annotations

import json
from collections.abc import Iterator

from mk8s.inventory.model import Environment
from mk8s.render.artifact import Artifact
from mk8s.render.manifests.access import cluster_rbac, team_kustomization
from mk8s.render.manifests.common import (
    DIR,
    INGRESS_NAMESPACE,
    KUBELET_DIR,
    REPO,
    SAMPLE_APP,
    SECRETS_JSON,
    Obj,
    allow_kube_api,
    dump,
    labels,
    ops,
    overlay,
)
from mk8s.render.manifests.gitops import APPS_FILE, argocd_children, argocd_root
from mk8s.render.manifests.ingress import (
    ingress_lb_annotations,
    keep_helm_label,
    metallb,
    nginx_configmap_patch,
    sample_app_ingress_patch,
    traefik_http_redirect,
    traefik_middlewares,
    traefik_service,
)
from mk8s.render.manifests.operations import external_dns_args, observability_value_files, velero
from mk8s.render.manifests.secrets import secret_refs
from mk8s.render.manifests.storage import (
    CEPH_CONF,
    CEPH_KEYRING_TEMPLATE,
    ceph_conf,
    ceph_keyring_template,
    storage_classes,
)
from mk8s.render.manifests.tls import certificate, cluster_issuer


def components(env: Environment) -> list[str]:
    names: list[str] = [env.ingress.controller]
    if env.dns.external_dns:
        names.append("external-dns")
    if env.backup is not None:
        names.append("velero")
    return [f"{REPO}/manifests/components/{n}" for n in names]


def _values(env: Environment) -> dict[str, list[Obj]]:
    """values/NAME: rendered objects the kustomization lists as resources."""
    values: dict[str, list[Obj]] = {
        "metallb.yaml": metallb(env),
        "cert-manager.yaml": [cluster_issuer(env), certificate(env)],
        "storage.yaml": storage_classes(env),
        "rbac.yaml": cluster_rbac(env),
    }
    if env.ingress.controller == "traefik":
        values["traefik.yaml"] = [
            traefik_service(env),
            *traefik_middlewares(env),
            traefik_http_redirect(env),
        ]
    if env.dns.external_dns:
        values["external-dns.yaml"] = [allow_kube_api(env, "external-dns")]
    if env.backup is not None:
        values["velero.yaml"] = velero(env)
    if env.gitops.enabled:
        values["argocd.yaml"] = [argocd_root(env)]
    return values


def _patches(env: Environment) -> list[Obj]:
    patches: list[Obj] = [
        {
            "target": {"kind": "Ingress", "name": SAMPLE_APP, "namespace": SAMPLE_APP},
            "patch": ops(sample_app_ingress_patch(env)),
        }
    ]
    if env.ingress.controller == "nginx":
        # The nginx component's own LoadBalancer Service (the add-on has none: hostPorts only).
        patches.append(
            {
                "target": {"kind": "Service", "name": "ingress-lb", "namespace": INGRESS_NAMESPACE},
                "patch": ops(
                    [
                        {
                            "op": "add",
                            "path": "/metadata/annotations",
                            "value": ingress_lb_annotations(env),
                        }
                    ]
                ),
            }
        )
        patches.append({"path": "patches/nginx-configmap.yaml"})
    if env.dns.external_dns:
        patches.append(
            {
                "target": {"kind": "Deployment", "name": "external-dns"},
                "patch": ops(external_dns_args(env)),
            }
        )
    return patches


def _files(env: Environment) -> Iterator[tuple[str, str]]:
    """(path under build/ENV/, content) of every rendered file."""
    values = _values(env)
    if env.gitops.enabled:
        yield APPS_FILE, dump(argocd_children(env))
    if env.ingress.controller == "nginx":
        yield f"{DIR}/patches/nginx-configmap.yaml", dump([nginx_configmap_patch(env)])
    for name, docs in values.items():
        yield f"{DIR}/values/{name}", dump(docs)
    for team in env.teams:
        yield f"{DIR}/teams/{team.name}/kustomization.yaml", dump([team_kustomization(team)])

    kustomization: Obj = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [
            f"{REPO}/manifests/overlays/{overlay(env)}",
            *(f"values/{name}" for name in values),
            *(f"teams/{t.name}" for t in env.teams),
        ],
        "components": components(env),
        "patches": _patches(env),
        # Every object carries mk8s' labels: `invoke deploy` prunes only objects that carry them.
        "labels": [{"pairs": labels(env), "includeSelectors": False}],
    }
    if env.ingress.controller == "traefik":
        kustomization["replacements"] = [keep_helm_label()]
    header = (
        f"# Rendered by `invoke plan --env {env.name}` from inventory values; do not edit.\n"
        f"# `kustomize build build/{env.name}/{DIR}` is what `invoke deploy` applies.\n"
    )
    yield f"{DIR}/kustomization.yaml", header + dump([kustomization])
    yield SECRETS_JSON, json.dumps([s.as_json() for s in secret_refs(env)], indent=2) + "\n"
    if env.monitoring.enabled:
        for name, text in observability_value_files(env).items():
            yield f"observability/{name}", text
    if env.storage.nfs is not None:
        # csi-driver-nfs Helm values: MicroK8s' kubelet dir, or mounts land where kubelet never looks.
        yield "helm/csi-driver-nfs.values.yaml", dump([{"kubeletDir": KUBELET_DIR}])
    if env.storage.ceph is not None:
        yield CEPH_CONF, ceph_conf(env)
        yield CEPH_KEYRING_TEMPLATE, ceph_keyring_template(env)


def render(env: Environment) -> list[Artifact]:
    return [Artifact(path, content) for path, content in _files(env)]
