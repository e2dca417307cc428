"""A healthy 3-node stage cluster as `mk8s.day2.cluster_facts` records it, and the realistic
ways it breaks, one change each (for the preflight and status verdict tests)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from mk8s.day2.certs import CERT_FILES, CertFacts
from mk8s.day2.facts import (
    CORDON_ANNOTATION,
    Blocker,
    ClusterFacts,
    Disruption,
    NodeFacts,
    SnapFacts,
    StorageRoom,
    VmState,
)
from mk8s.day2.snapshots import Disk, VmSnapFacts
from mk8s.edges.microk8s import Member

NOW = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
NAMES = ("stage-k8s-1", "stage-k8s-2", "stage-k8s-3")
IPS = ("10.20.0.11", "10.20.0.12", "10.20.0.13")
RPO_MINUTES = 15
GIB = 1024**3
__all__ = ["CORDON_ANNOTATION"]


def members(*ips: str, role: str = "voter") -> tuple[Member, ...]:
    return tuple(Member(f"{ip}:19001", role) for ip in ips)


def certs(node: str, days: int = 300) -> tuple[CertFacts, ...]:
    return tuple(
        CertFacts(node, f.name, f.path, not_after=NOW + timedelta(days=days), subject="CN=x")
        for f in CERT_FILES
    )


def node(i: int) -> NodeFacts:
    name, ip = NAMES[i], IPS[i]
    vmid = 201 + i
    return NodeFacts(
        name=name,
        ip=ip,
        vm=VmState("running", f"pve{i + 1}"),
        ssh=True,
        snap=SnapFacts("1.33/stable", "8148", "v1.33.5", True, "8148"),
        ready=True,
        kubelet_version="v1.33.5",
        unschedulable=False,
        members=members(*IPS),
        api=True,
        cni_ready=True,
        reboot_required=False,
        certs=certs(name),
        snapshots=VmSnapFacts(
            name,
            vmid,
            (Disk("scsi0", f"local-zfs:vm-{vmid}-disk-0", "zfspool"),),
            ("pre-upgrade-1-32",),
            True,
        ),
    )


def healthy() -> ClusterFacts:
    return ClusterFacts(
        env="stage",
        taken_at=NOW,
        nodes=tuple(node(i) for i in range(3)),
        disruption=tuple(Disruption(n, ("sample/web-" + n[-1],)) for n in NAMES),
        leader=NAMES[0],
        endpoint_node=NAMES[0],
        newest_backup=NOW - timedelta(minutes=6),
        evidence_at=NOW - timedelta(days=2),
        storage=tuple(
            StorageRoom(f"pve{i + 1}", "local-zfs", 400 * GIB, 900 * GIB) for i in range(3)
        ),
    )


def with_node(facts: ClusterFacts, name: str, **changes: Any) -> ClusterFacts:
    nodes = tuple(dataclasses.replace(n, **changes) if n.name == name else n for n in facts.nodes)
    return dataclasses.replace(facts, nodes=nodes)


def with_all(facts: ClusterFacts, **changes: Any) -> ClusterFacts:
    return dataclasses.replace(
        facts, nodes=tuple(dataclasses.replace(n, **changes) for n in facts.nodes)
    )


# --- realistic broken clusters, one change each --------------------------------------------


def voter_down() -> ClusterFacts:
    """stage-k8s-3's VM was powered off: still listed as voter by the two others (#2400)."""
    return with_node(
        healthy(),
        NAMES[2],
        vm=VmState("stopped", "pve3"),
        ssh=False,
        ssh_error="connect to 10.20.0.13:22 timed out",
        ready=False,
        api=False,
        members=None,
        cni_ready=False,
    )


def voter_down_listed() -> ClusterFacts:
    """Like voter_down, but the Node still reports Ready (the node-monitor grace period):
    only liveness tells the voter is gone."""
    return with_node(
        healthy(), NAMES[2], ssh=False, ssh_error="connection refused", api=False, members=None
    )


def members_disagree() -> ClusterFacts:
    """stage-k8s-2 lists itself and stage-k8s-1 only: a split view after a failed re-join."""
    return with_node(
        healthy(), NAMES[1], members=(*members(IPS[0], IPS[1]), *members(IPS[2], role="spare"))
    )


def pdb_allows_0() -> ClusterFacts:
    f = healthy()
    blocked = Disruption(
        NAMES[1],
        (),
        (
            Blocker(
                "sample",
                "web-2",
                "sample-app",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            ),
        ),
    )
    return dataclasses.replace(
        f, disruption=tuple(blocked if d.node == NAMES[1] else d for d in f.disruption)
    )


def cert_expired() -> ClusterFacts:
    name = NAMES[0]
    expired = tuple(
        dataclasses.replace(c, not_after=NOW - timedelta(days=3)) if c.name == "server.crt" else c
        for c in certs(name)
    )
    return with_node(healthy(), name, certs=expired)


def cert_soon() -> ClusterFacts:
    """front-proxy-client.crt has 20 days left: fine for status' 15-day alert, not for > 30."""
    name = NAMES[1]
    soon = tuple(
        dataclasses.replace(c, not_after=NOW + timedelta(days=20, hours=1))
        if c.name == "front-proxy-client.crt"
        else c
        for c in certs(name)
    )
    return with_node(healthy(), name, certs=soon)


def vm_locked() -> ClusterFacts:
    f = with_node(healthy(), NAMES[1], vm=VmState("running", "pve2", "backup"))
    snaps = f.node(NAMES[1]).snapshots
    assert snaps is not None
    return with_node(f, NAMES[1], snapshots=dataclasses.replace(snaps, lock="backup"))


def stale_backup() -> ClusterFacts:
    return dataclasses.replace(healthy(), newest_backup=NOW - timedelta(hours=7))


def not_ready() -> ClusterFacts:
    return with_node(healthy(), NAMES[1], ready=False)


def foreign_cordon() -> ClusterFacts:
    return with_node(healthy(), NAMES[1], unschedulable=True)


def raw_dir_disk() -> ClusterFacts:
    f = healthy()
    snaps = f.node(NAMES[0]).snapshots
    assert snaps is not None
    raw = (Disk("scsi0", "local:201/vm-201-disk-0.raw", "dir"),)
    return with_node(f, NAMES[0], snapshots=dataclasses.replace(snaps, disks=raw))


def storage_full() -> ClusterFacts:
    f = healthy()
    full = tuple(
        dataclasses.replace(r, avail_bytes=30 * GIB) if r.pve_node == "pve2" else r
        for r in f.storage
    )
    return dataclasses.replace(f, storage=full)
