"""StorageClasses (hostpath, NFS through csi-driver-nfs, Ceph RBD through Rook's external
mode, the SSD tier) and the Ceph client configuration `connect-external-ceph` reads."""

from __future__ import annotations

from typing import Any

from mk8s.inventory.model import Environment
from mk8s.render.manifests.common import NO_PRUNE, Obj, meta

CEPH_DRIVER = "rook-ceph.rbd.csi.ceph.com"
# `connect-external-ceph --namespace` default (microk8s-core-addons@1.33:addons/rook-ceph/plugin/
# connect-external-ceph), which is also the StorageClass clusterID there.
CEPH_NAMESPACE = "rook-ceph-external"
CEPH_FSID_ANNOTATION = "mk8s.io/ceph-fsid"
CEPH_CONF = "ceph/ceph.conf"
CEPH_KEYRING_TEMPLATE = "ceph/keyring.template"


def storage_classes(env: Environment) -> list[Obj]:
    st = env.storage

    def sc(
        name: str,
        provisioner: str,
        reclaim: str,
        binding: str,
        extra: dict[str, str] | None = None,
        **rest: Any,
    ) -> Obj:
        default = "true" if name == st.default_class else "false"
        if name == st.default_class and st.reclaim_policy is not None:
            reclaim = st.reclaim_policy
        annotations = {"storageclass.kubernetes.io/is-default-class": default} | (extra or {})
        if name == "microk8s-hostpath":
            annotations |= NO_PRUNE
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": meta(name, annotations=annotations),
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
        # microk8s-core-addons@1.33:addons/rook-ceph/plugin/.rook-import-external-cluster.sh
        # sets RBD_PROVISIONER rook-ceph.rbd.csi.ceph.com and CLUSTER_ID_RBD = the namespace.
        # The fsid annotation lets `invoke deploy` check the connected cluster is this one.
        ns = CEPH_NAMESPACE
        out.append(
            sc(
                "sc-ceph-rbd",
                CEPH_DRIVER,
                "Retain",
                "Immediate",
                extra={CEPH_FSID_ANNOTATION: st.ceph.cluster_id},
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


def ceph_conf(env: Environment) -> str:
    """The ceph.conf `connect-external-ceph --ceph-conf` reads: the inventory's cluster (fsid)
    and monitors. librados takes `mon_host` as a comma-separated list."""
    assert env.storage.ceph is not None
    ceph = env.storage.ceph
    return (
        f"# Rendered by `invoke plan --env {env.name}` from storage.ceph; do not edit.\n"
        "[global]\n"
        f"fsid = {ceph.cluster_id}\n"
        f"mon_host = {','.join(ceph.monitors)}\n"
    )


def ceph_keyring_template(env: Environment) -> str:
    """The keyring `connect-external-ceph --keyring` reads, with the key left as the variable
    the inventory names: the key itself is never rendered (fill it with envsubst at use)."""
    assert env.storage.ceph is not None
    ceph = env.storage.ceph
    return f"[client.{ceph.user_id}]\n\tkey = ${{{ceph.user_key_env}}}\n"
