"""Can this VM set be snapshotted, or rolled back to snapshot S? Pure, over Proxmox facts.

What decides it, per disk (proxmox/pve-storage@0c56bad, src/PVE/Storage/):
- snapshots at all: `volume_has_feature(..., 'snapshot', ...)`: ZFS, LVM-thin and RBD (Ceph)
  volumes yes; file storages (dir, NFS, CIFS) only for qcow2 images, never raw (Plugin.pm);
  the API says the same for the whole VM: `GET .../feature?feature=snapshot` (qemu-server
  API2/Qemu.pm `vm_feature`), which the reader asks and which wins when it says no;
- rollback: `volume_rollback_is_possible`: ZFS only to the *newest* snapshot of the volume
  (ZFSPoolPlugin.pm: "is not most recent snapshot"; rolling back further means destroying the
  newer ones), LVM-thin to any (LvmThinPlugin.pm), RBD and qcow2-on-file to any (Plugin.pm's
  default); storages with `snapshot-as-volume-chain` (PVE 9: qcow2 on thick LVM or on files)
  order snapshots and refuse some rollbacks (Plugin.pm and LVMPlugin.pm collect "blockers"),
  which mk8s does not model: such disks are refused; thick LVM without it cannot snapshot;
- a locked VM (backup, migrate, snapshot in progress) refuses both (PVE `check_lock`).
Storage types not listed here are refused as "not modelled" rather than guessed.

And one rule of the cluster, not of Proxmox (issue 14; shared/reference/microk8s-behaviour.md):
rolling back some voters but not all rewinds their datastore alone, so a rollback set must be
every node or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

FILE_STORAGES = ("dir", "nfs", "cifs", "glusterfs", "cephfs")


class Rollback(StrEnum):
    ANY = "any snapshot"
    NEWEST = "only the newest snapshot"
    NONE = "no snapshots"


@dataclass(frozen=True)
class Disk:
    key: str  # scsi0
    volume: str  # local-zfs:vm-101-disk-0
    storage_type: str  # zfspool, lvmthin, rbd, dir, ...
    fmt: str = "raw"  # raw, qcow2, subvol
    volume_chain: bool = False  # the storage's `snapshot-as-volume-chain`


@dataclass(frozen=True)
class VmSnapFacts:
    name: str
    vmid: int
    disks: tuple[Disk, ...]
    snapshots: tuple[str, ...] = ()  # oldest first
    api_has_snapshot: bool | None = None  # GET .../feature?feature=snapshot, when asked
    lock: str | None = None


@dataclass(frozen=True)
class Decision:
    ok: bool
    reasons: tuple[str, ...]


def disk_rule(disk: Disk) -> Rollback | None:
    """How far this disk can roll back; None when its storage type is not modelled."""
    if disk.volume_chain:
        return None
    if disk.storage_type == "zfspool":
        return Rollback.NEWEST
    if disk.storage_type in ("lvmthin", "rbd"):
        return Rollback.ANY
    if disk.storage_type in FILE_STORAGES:
        return Rollback.ANY if disk.fmt == "qcow2" else Rollback.NONE
    if disk.storage_type == "lvm":
        return Rollback.NONE
    return None


def _disk_problems(vm: VmSnapFacts) -> list[str]:
    out = []
    for d in vm.disks:
        rule = disk_rule(d)
        if rule is None:
            chain = " with snapshot-as-volume-chain" if d.volume_chain else ""
            out.append(
                f"{vm.name}: {d.key} on {d.storage_type} storage{chain}: not modelled by mk8s"
            )
        elif rule is Rollback.NONE:
            out.append(
                f"{vm.name}: {d.key} ({d.volume}, {d.fmt} on {d.storage_type}) cannot be "
                "snapshotted (move it to ZFS, LVM-thin, Ceph or qcow2)"
            )
    return out


def can_snapshot(vms: Iterable[VmSnapFacts]) -> Decision:
    reasons: list[str] = []
    for vm in vms:
        if vm.lock:
            reasons.append(f"{vm.name}: VM is locked ({vm.lock})")
        disk_reasons = _disk_problems(vm)
        reasons.extend(disk_reasons)
        if vm.api_has_snapshot is False and not disk_reasons:
            reasons.append(f"{vm.name}: Proxmox reports the snapshot feature unavailable")
    return Decision(not reasons, tuple(reasons))


def can_rollback(
    vms: Sequence[VmSnapFacts], snapshot: str, all_nodes: Iterable[str] | None = None
) -> Decision:
    """Whether every VM in `vms` can be rolled back to `snapshot` (and the set is whole)."""
    reasons: list[str] = []
    if all_nodes is not None:
        left_out = sorted(set(all_nodes) - {vm.name for vm in vms})
        if left_out:
            reasons.append(
                f"rolling back without {', '.join(left_out)} would rewind only part of the "
                "datastore: roll back every node or none"
            )
    for vm in vms:
        if vm.lock:
            reasons.append(f"{vm.name}: VM is locked ({vm.lock})")
        if snapshot not in vm.snapshots:
            reasons.append(f"{vm.name}: has no snapshot {snapshot!r}")
            continue
        reasons.extend(_disk_problems(vm))
        newer = vm.snapshots[vm.snapshots.index(snapshot) + 1 :]
        zfs = [d for d in vm.disks if disk_rule(d) is Rollback.NEWEST]
        if newer and zfs:
            reasons.append(
                f"{vm.name}: {', '.join(d.key for d in zfs)} on ZFS roll back only to the newest "
                f"snapshot; {snapshot!r} is older than {', '.join(newer)} (deleting those first "
                "loses them)"
            )
    return Decision(not reasons, tuple(reasons))
