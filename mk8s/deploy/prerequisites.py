"""What a built overlay needs from the cluster that MicroK8s does not ship, read before the
dry run so a fresh cluster gets one line per missing piece naming the command that installs it
(no silent "documented one-time install").

Pure: `needs` derives the requirements from the desired objects; `missing` judges them against
facts the deploy flow reads (which kinds the server serves, which objects exist).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mk8s.edges.kube import Obj, Ref
from mk8s.render.manifests import (
    CEPH_DRIVER,
    CEPH_FSID_ANNOTATION,
    CEPH_NAMESPACE,
    INGRESS_NAMESPACE,
    TRAEFIK_SERVICE,
)

# Where each custom API group comes from, and the command that brings it.
KIND_SOURCES: dict[str, tuple[str, str]] = {
    # velero@v1.16.1:pkg/cmd/cli/install/install.go (--crds-only, --dry-run, -o). MicroK8s has
    # no Velero add-on; mk8s deploys the server and node agent, never the CRDs.
    "velero.io": (
        "Velero's CRDs",
        "velero install --crds-only --dry-run -o yaml | microk8s kubectl apply -f - "
        "(Velero CLI v1.16.1)",
    ),
    # microk8s-community-addons@1.33:addons/argocd/enable (chart argo-cd 5.34.3, Argo CD 2.7.2).
    "argoproj.io": (
        "Argo CD",
        "microk8s enable community && microk8s enable argocd "
        "(invoke bootstrap does both when gitops.enabled)",
    ),
    # microk8s-core-addons@1.35:addons/ingress/enable installs the Traefik chart with its CRDs.
    "traefik.io": ("Traefik's CRDs", "microk8s enable ingress (channels >= 1.35: Traefik)"),
    "cert-manager.io": ("cert-manager", "microk8s enable cert-manager"),
    "metallb.io": ("MetalLB", "microk8s enable metallb:RANGE (invoke bootstrap)"),
}
# Provisioners MicroK8s serves itself (hostpath-storage add-on): no CSIDriver object.
BUILT_IN_PROVISIONERS = frozenset({"microk8s.io/hostpath"})
NFS_DRIVER = "nfs.csi.k8s.io"
# microk8s-core-addons@1.33:addons/rook-ceph/plugin/.rook-import-external-cluster.sh:
# RBD_PROVISIONER = <operator namespace rook-ceph>.rbd.csi.ceph.com; the connection lives in
# namespace rook-ceph-external (connect-external-ceph --namespace default) as Secret
# rook-ceph-mon (keys fsid, ceph-username, ...) and ConfigMap rook-ceph-mon-endpoints (data).
CEPH_POOL_PARAMETER = "pool"


@dataclass(frozen=True)
class Needs:
    kinds: tuple[tuple[str, str], ...]  # custom (apiVersion, kind) the overlay creates
    objects: tuple[Ref, ...]  # objects that must exist (CSI drivers, the Ceph connection)
    ceph_fsid: str | None  # the inventory's storage.ceph.cluster_id, when Ceph is used
    ceph_pool: str | None


def _custom_group(api_version: str) -> str | None:
    group = api_version.rpartition("/")[0]
    # Built-in groups are k8s.io or end in .k8s.io; a plain suffix test would count mk8s.io.
    builtin = group == "k8s.io" or group.endswith(".k8s.io")
    return group if "." in group and not builtin else None


def csi_driver(name: str) -> Ref:
    # A CSIDriver object's name is its driver's name (storage.k8s.io/v1 CSIDriver API).
    return Ref("storage.k8s.io/v1", "CSIDriver", None, name)


CEPH_MON_SECRET = Ref("v1", "Secret", CEPH_NAMESPACE, "rook-ceph-mon")
CEPH_MON_ENDPOINTS = Ref("v1", "ConfigMap", CEPH_NAMESPACE, "rook-ceph-mon-endpoints")
# The overlay co-owns a few fields of the Traefik chart's Service; the chart must have made it
# (an apply alone would create a Service without ports, which the API server rejects).
TRAEFIK = Ref("v1", "Service", INGRESS_NAMESPACE, TRAEFIK_SERVICE)


def needs(desired: Sequence[Obj]) -> Needs:
    kinds = sorted(
        {(o["apiVersion"], o["kind"]) for o in desired if _custom_group(o["apiVersion"])}
    )
    objects: list[Ref] = []
    fsid = pool = None
    for o in desired:
        if Ref.of(o) == TRAEFIK:
            objects.append(TRAEFIK)
        if o["kind"] != "StorageClass" or o["provisioner"] in BUILT_IN_PROVISIONERS:
            continue
        objects.append(csi_driver(o["provisioner"]))
        if o["provisioner"] == CEPH_DRIVER:
            objects += [CEPH_MON_SECRET, CEPH_MON_ENDPOINTS]
            fsid = o["metadata"].get("annotations", {}).get(CEPH_FSID_ANNOTATION)
            pool = o.get("parameters", {}).get(CEPH_POOL_PARAMETER)
    return Needs(tuple(kinds), tuple(dict.fromkeys(objects)), fsid, pool)


def _install(obj: Ref, env: str, needs_: Needs) -> str:
    if obj == csi_driver(NFS_DRIVER):
        return (
            "csi-driver-nfs is not installed: microk8s helm3 repo add csi-driver-nfs "
            "https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/master/charts && "
            "microk8s helm3 install csi-driver-nfs csi-driver-nfs/csi-driver-nfs -n kube-system "
            f"-f build/{env}/helm/csi-driver-nfs.values.yaml"
        )
    if obj == csi_driver(CEPH_DRIVER):
        return "the Rook Ceph CSI driver is not installed: microk8s enable rook-ceph"
    if obj == TRAEFIK:
        return (
            f"the Traefik chart's {obj} is missing: microk8s enable ingress "
            "(channels >= 1.35 install Traefik)"
        )
    if obj in (CEPH_MON_SECRET, CEPH_MON_ENDPOINTS):
        return f"the Ceph connection is missing ({obj}): {connect_command(env, needs_)}"
    return f"{obj} is missing"


def connect_command(env: str, needs_: Needs) -> str:
    pool = needs_.ceph_pool or "microk8s-rbd0"
    return (
        f"sudo microk8s connect-external-ceph --ceph-conf build/{env}/ceph/ceph.conf "
        f"--keyring KEYRING --rbd-pool {pool} (docs/deploy.md, Ceph)"
    )


def missing(
    needs_: Needs,
    served: Mapping[tuple[str, str], bool],
    present: Mapping[Ref, Obj | None],
    env: str,
) -> list[str]:
    """One line per missing piece, naming it and the command that installs it."""
    lines: list[str] = []
    for api_version, kind in needs_.kinds:
        if served.get((api_version, kind)):
            continue
        group = _custom_group(api_version) or ""
        what, command = KIND_SOURCES.get(group, (f"the CRD of {kind}", "install its CRDs"))
        lines.append(f"the cluster does not serve {api_version} {kind}: {what} missing; {command}")
    for obj in needs_.objects:
        if present.get(obj) is None:
            lines.append(_install(obj, env, needs_))
    secret = present.get(CEPH_MON_SECRET)
    if needs_.ceph_fsid and secret is not None:
        fsid = base64.b64decode(secret.get("data", {}).get("fsid", "")).decode(errors="replace")
        if fsid != needs_.ceph_fsid:
            lines.append(
                f"the connected Ceph cluster is not storage.ceph.cluster_id {needs_.ceph_fsid} "
                f"({CEPH_MON_SECRET} names another fsid): {connect_command(env, needs_)}"
            )
    return lines
