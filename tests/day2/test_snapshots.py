"""Snapshot and rollback decisions, on PVE's storage rules; fakepve serves the same rules."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI

from mk8s.day2.snapshot_facts import read_vm
from mk8s.day2.snapshots import Disk, Rollback, VmSnapFacts, can_rollback, can_snapshot, disk_rule
from mk8s.edges.proxmox import Pve, PveApiError, VmFacts, rollback, snapshot
from mk8s.errors import OperationFailedError
from tests.support.fakepve import ServedPve, serve_lab

ZFS = Disk("scsi0", "local-zfs:vm-101-disk-0", "zfspool")
THIN = Disk("scsi0", "local-lvm:vm-102-disk-0", "lvmthin")
CEPH = Disk("scsi0", "ceph:vm-103-disk-0", "rbd")
RAW_DIR = Disk("scsi0", "local:103/vm-103-disk-0.raw", "dir", "raw")
QCOW_DIR = Disk("scsi0", "local:104/vm-104-disk-0.qcow2", "dir", "qcow2")


def vm(name: str, disk: Disk, *snaps: str, **kw: Any) -> VmSnapFacts:
    return VmSnapFacts(name, 100, (disk,), tuple(snaps), **kw)


def test_disk_rules_are_pves() -> None:
    assert disk_rule(ZFS) is Rollback.NEWEST
    assert disk_rule(THIN) is Rollback.ANY and disk_rule(CEPH) is Rollback.ANY
    assert disk_rule(QCOW_DIR) is Rollback.ANY and disk_rule(RAW_DIR) is Rollback.NONE
    assert disk_rule(Disk("scsi0", "x:y", "iscsidirect")) is None
    assert disk_rule(Disk("scsi0", "thick:vm-1-disk-0", "lvm")) is Rollback.NONE
    chained = Disk("scsi0", "thick:vm-1-disk-0.qcow2", "lvm", "qcow2", volume_chain=True)
    assert disk_rule(chained) is None
    assert can_snapshot([vm("n1", chained)]).reasons == (
        "n1: scsi0 on lvm storage with snapshot-as-volume-chain: not modelled by mk8s",
    )


def test_zfs_rolls_back_only_to_the_newest_snapshot() -> None:
    assert can_rollback([vm("n1", ZFS, "a", "b")], "b").ok
    decision = can_rollback([vm("n1", ZFS, "a", "b", "c")], "a")
    assert not decision.ok
    assert decision.reasons == (
        "n1: scsi0 on ZFS roll back only to the newest snapshot; 'a' is older than b, c "
        "(deleting those first loses them)",
    )


def test_lvm_thin_and_ceph_roll_back_to_any() -> None:
    assert can_rollback([vm("n1", THIN, "a", "b", "c"), vm("n2", CEPH, "a", "b")], "a").ok


def test_raw_on_a_directory_cannot_be_snapshotted() -> None:
    decision = can_snapshot([vm("n1", THIN), vm("n2", RAW_DIR)])
    assert decision.reasons == (
        "n2: scsi0 (local:103/vm-103-disk-0.raw, raw on dir) cannot be snapshotted "
        "(move it to ZFS, LVM-thin, Ceph or qcow2)",
    )
    assert can_snapshot([vm("n1", QCOW_DIR)]).ok


def test_locks_missing_snapshots_and_the_api_verdict_refuse() -> None:
    assert can_snapshot([vm("n1", THIN, lock="backup")]).reasons == ("n1: VM is locked (backup)",)
    assert can_snapshot([vm("n1", THIN, api_has_snapshot=False)]).reasons == (
        "n1: Proxmox reports the snapshot feature unavailable",
    )
    assert can_rollback([vm("n1", THIN, "a"), vm("n2", THIN)], "a").reasons == (
        "n2: has no snapshot 'a'",
    )


def test_a_partial_set_is_never_rolled_back() -> None:
    decision = can_rollback([vm("n1", THIN, "a")], "a", all_nodes=["n1", "n2", "n3"])
    assert not decision.ok
    assert decision.reasons[0].startswith("rolling back without n2, n3 would rewind only part")


# --- fakepve answers by the same rules ---


@pytest.fixture
def pve(tmp_path: Path) -> Iterator[tuple[ServedPve, Pve]]:
    host = f"127.0.0.{secrets.randbelow(100) + 20}"
    with serve_lab(host, 0, tmp_path / "pve") as served:
        lab = served.pve
        lab.storages["local-zfs"] = {
            "type": "zfspool",
            "active": 1,
            "content": "images,rootdir",
            "pool": "rpool/data",
            "files": set(),
        }
        lab.storages["local"]["content"] += ",images"
        for vmid, disk in (
            (101, "local-zfs:vm-101-disk-0,size=8G"),
            (102, "local-lvm:vm-102-disk-0,size=8G"),
            (103, "local:103/vm-103-disk-0.raw,size=8G"),
            (104, "local:104/vm-104-disk-0.qcow2,size=8G"),
        ):
            lab.add_vm(vmid, f"vm{vmid}", node="pve1", config={"scsi0": disk, "memory": 512})
        port = lab.port if hasattr(lab, "port") else int(lab.url.rsplit(":", 1)[1])
        api = ProxmoxAPI(
            host,
            port=port,
            user="root@pam",
            password="secret",
            verify_ssl=served.cafile,
            service="PVE",
        )  # type: ignore[attr-defined]
        yield served, Pve(api, lab.url, "PVE_TOKEN_ID", sleep=lambda s: None)


def facts(vmid: int) -> VmFacts:
    return VmFacts(vmid, f"vm{vmid}", "pve1", "running", False, ())


@pytest.mark.slow
def test_fakepve_feature_endpoint_and_the_reader(pve: tuple[ServedPve, Pve]) -> None:
    _, api = pve
    assert api.get("nodes/pve1/qemu/101/feature", feature="snapshot")["hasFeature"] == 1
    assert api.get("nodes/pve1/qemu/103/feature", feature="snapshot")["hasFeature"] == 0
    read = {vmid: read_vm(api, facts(vmid), f"vm{vmid}") for vmid in (101, 102, 103, 104)}
    assert read[101].disks == (Disk("scsi0", "local-zfs:vm-101-disk-0", "zfspool", "raw"),)
    assert read[104].disks[0].fmt == "qcow2" and read[104].api_has_snapshot
    assert can_snapshot([read[101], read[102], read[104]]).ok
    assert not can_snapshot([read[103]]).ok
    with pytest.raises(PveApiError, match="snapshot 'nope' does not exist"):
        api.get("nodes/pve1/qemu/101/feature", feature="snapshot", snapname="nope")


@pytest.mark.slow
def test_fakepve_refuses_an_older_zfs_rollback_as_pve_does(pve: tuple[ServedPve, Pve]) -> None:
    served, api = pve
    for name in ("s1", "s2"):
        snapshot(api, facts(101), name, description="t")
        snapshot(api, facts(102), name, description="t")
    zfs, thin = read_vm(api, facts(101), "vm101"), read_vm(api, facts(102), "vm102")
    assert zfs.snapshots == ("s1", "s2")
    assert not can_rollback([zfs], "s1").ok and can_rollback([thin], "s1").ok
    with pytest.raises(OperationFailedError, match="'s1' is not most recent snapshot on"):
        rollback(api, facts(101), "s1")
    rollback(api, facts(102), "s1")  # LVM-thin: any
    assert served.pve.vm(102).config["parent"] == "s1"
    rollback(api, facts(101), "s2")  # ZFS: the newest
    # snapshot of a snapshot: LVM-thin has only `current`
    assert (
        api.get("nodes/pve1/qemu/102/feature", feature="snapshot", snapname="s1")["hasFeature"] == 0
    )


@pytest.mark.slow
def test_fakepve_starts_a_vm_rolled_back_to_a_ram_snapshot(pve: tuple[ServedPve, Pve]) -> None:
    served, api = pve
    lab_vm = served.pve.vm(102)
    lab_vm.status = lab_vm.qmpstatus = "running"
    snapshot(api, facts(102), "with-ram", description="t", vmstate=True)
    snapshot(api, facts(102), "disk-only", description="t")
    rollback(api, facts(102), "disk-only", start=False)
    assert lab_vm.status == "stopped"
    rollback(api, facts(102), "with-ram", start=False)
    assert lab_vm.status == "running"


@pytest.mark.slow
def test_fakepve_feature_answers_in_pves_schema(pve: tuple[ServedPve, Pve]) -> None:
    from fakepve import schema

    method = schema.load().match("/nodes/pve1/qemu/100/feature").methods["GET"]
    assert "snapshot" in method["parameters"]["properties"]["feature"]["enum"]
    answer = pve[1].get("nodes/pve1/qemu/101/feature", feature="snapshot")
    assert set(answer) == set(method["returns"]["properties"]) == {"hasFeature", "nodes"}
    # Perl's has_feature returns 0/1 (QemuConfig.pm); the reader accepts numbers and booleans.
    assert answer == {"hasFeature": 1, "nodes": ["pve1"]}  # local-zfs: this node only
    shared = pve[1].get("nodes/pve1/qemu/102/feature", feature="snapshot")
    assert shared["nodes"] == ["pve1", "pve2", "pve3"]  # the lab's local-lvm is shared
    with pytest.raises(PveApiError):
        pve[1].get("nodes/pve1/qemu/101/feature", feature="bogus")
