"""The facts every day-2 decision reads: one snapshot of the cluster, taken read-only.

`status`, the preflight gates of `upgrade`/`drain`/`maintenance` and the per-node gates after
each step all decide on these types (pure functions, tested on recorded facts); the readers
that fill them live beside them (`mk8s.day2.cluster_facts`). A fact that could not be read is
`None`, never a guess: "unknown" must not pass a gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mk8s.day2.certs import CertFacts
from mk8s.day2.snapshots import VmSnapFacts
from mk8s.edges.microk8s import Member

# The annotation mk8s puts on a Node it cordons, so it uncordons only its own cordons (the
# value names the run: "<task> <run id>"). system-upgrade-controller uncordons nodes it never
# cordoned; this is how mk8s does not.
CORDON_ANNOTATION = "mk8s.io/cordoned-by"


@dataclass(frozen=True)
class SnapFacts:
    """`snap list microk8s` (and the store's view of the channel) on one node."""

    channel: str  # tracking, e.g. 1.33/stable
    revision: str  # e.g. 8148
    version: str  # e.g. v1.33.5
    held: bool
    latest_revision: str | None = None  # newest revision in `channel`, when known


@dataclass(frozen=True)
class VmState:
    """The node's VM as Proxmox reports it."""

    status: str  # running, stopped, paused, ...
    pve_node: str  # the host it runs on now (may differ from the inventory after a migration)
    lock: str | None = None  # backup, snapshot, rollback, migrate, ...


@dataclass(frozen=True)
class NodeFacts:
    name: str
    ip: str
    vm: VmState | None = None
    ssh: bool | None = None
    ssh_error: str | None = None
    snap: SnapFacts | None = None
    ready: bool | None = None  # the Node's Ready condition
    kubelet_version: str | None = None  # status.nodeInfo.kubeletVersion
    unschedulable: bool | None = None
    cordoned_by: str | None = None  # the CORDON_ANNOTATION value, when mk8s cordoned it
    members: tuple[Member, ...] | None = None  # the datastore as *this node* lists it
    api: bool | None = None  # the API server answers on this node's address
    cni_ready: bool | None = None  # the CNI pod scheduled on this node is Ready
    reboot_required: bool | None = None  # /var/run/reboot-required exists
    certs: tuple[CertFacts, ...] = ()
    snapshots: VmSnapFacts | None = None


@dataclass(frozen=True)
class Blocker:
    """A pod whose eviction the API refused (429 on a server-side dry-run eviction)."""

    namespace: str
    pod: str
    pdb: str | None  # the PDB named in the refusal, when the API names it
    message: str


@dataclass(frozen=True)
class Disruption:
    """Per node: the pods a drain would evict and those a PDB would keep."""

    node: str
    evictable: tuple[str, ...] = ()  # namespace/pod
    blockers: tuple[Blocker, ...] = ()


@dataclass(frozen=True)
class StorageRoom:
    """One Proxmox storage as one host sees it (`GET nodes/{node}/storage`: avail, total)."""

    pve_node: str
    storage: str
    avail_bytes: int
    total_bytes: int | None = None


@dataclass(frozen=True)
class ClusterFacts:
    env: str
    taken_at: datetime
    nodes: tuple[NodeFacts, ...]
    disruption: tuple[Disruption, ...] = ()
    leader: str | None = None  # the datastore leader's node name, when known
    endpoint_node: str | None = None  # the node the operator's kubeconfig points at
    newest_backup: datetime | None = None  # completion time of the newest good backup
    evidence_at: datetime | None = None  # the newest signed evidence for this environment
    problems: tuple[str, ...] = field(default=())  # what could not be read, one line each
    storage: tuple[StorageRoom, ...] = ()  # free space of the storages holding the VMs' disks
    evidence_problem: str | None = None  # why evidence_at is None (no run, unsigned, ...)

    def node(self, name: str) -> NodeFacts:
        return next(n for n in self.nodes if n.name == name)
