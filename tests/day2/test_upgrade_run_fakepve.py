"""fakepve as the upgrade's Proxmox: disk-only snapshots with a guest-agent freeze, the VM lock
held for a task's whole duration, rollback that hard-stops and restores the config, the storage
rules, injected task failures. Each behaviour next to the broken case (sources: fakepve.py)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxmoxer import ProxmoxAPI

from mk8s.edges.proxmox import Pve, VmFacts, delete_snapshot, rollback, snapshot
from mk8s.errors import OperationFailedError
from tests.support.fakepve import ServedPve, serve_lab

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[ServedPve, Pve]]:
    host = f"127.0.0.{secrets.randbelow(100) + 20}"
    with serve_lab(host, 0, tmp_path / "pve") as served:
        pve = served.pve
        pve.storages["local-zfs"] = {
            "type": "zfspool",
            "active": 1,
            "content": "images,rootdir",
            "pool": "rpool/data",
            "files": set(),
        }
        for vmid, disk, agent in (
            (101, "local-zfs:vm-101-disk-0,size=8G", "1"),
            (102, "local-lvm:vm-102-disk-0,size=8G", "1"),
            (103, "local-lvm:vm-103-disk-0,size=8G", "1,freeze-fs=0"),
        ):
            pve.add_vm(
                vmid,
                f"vm{vmid}",
                node="pve1",
                config={"scsi0": disk, "memory": 2048, "agent": agent},
            )
            pve.vm(vmid).status = pve.vm(vmid).qmpstatus = "running"
        port = int(pve.url.rsplit(":", 1)[1])
        api = ProxmoxAPI(
            host,
            port=port,
            user="root@pam",
            password="secret",
            verify_ssl=served.cafile,  # type: ignore[attr-defined]
            service="PVE",
        )
        yield served, Pve(api, pve.url, "PVE_TOKEN_ID", sleep=lambda s: None)


def facts(vmid: int) -> VmFacts:
    return VmFacts(vmid, f"vm{vmid}", "pve1", "running", False, ())


def listed(api: Pve, vmid: int) -> dict[str, dict[str, object]]:
    return {
        str(s["name"]): s
        for s in api.get(f"nodes/pve1/qemu/{vmid}/snapshot")
        if s["name"] != "current"
    }


def test_a_disk_only_snapshot_of_a_running_vm_freezes_and_thaws_the_guest(
    lab: tuple[ServedPve, Pve],
) -> None:
    served, api = lab
    snapshot(api, facts(102), "pre-up", description="mk8s upgrade")
    vm = served.pve.vm(102)
    assert vm.agent_requests == [("fsfreeze-freeze", {}), ("fsfreeze-thaw", {})]
    assert not vm.agent_frozen  # thawed again
    assert listed(api, 102)["pre-up"]["vmstate"] == 0
    assert served.pve.snapshot_requests() == [(102, "pre-up")]


def test_no_freeze_when_disabled_or_with_ram_or_stopped(lab: tuple[ServedPve, Pve]) -> None:
    served, api = lab
    snapshot(api, facts(103), "off")  # agent: 1,freeze-fs=0
    assert served.pve.vm(103).agent_requests == []
    task = next(t for t in reversed(served.pve.tasklog) if t["type"] == "qmsnapshot")
    assert "skipping guest filesystem freeze - disabled in VM options" in task["log"]
    snapshot(api, facts(102), "ram", vmstate=True)
    assert served.pve.vm(102).agent_requests == []  # the RAM state is saved instead
    assert listed(api, 102)["ram"]["vmstate"] == 1
    served.pve.vm(101).status = "stopped"
    snapshot(api, facts(101), "cold")
    assert served.pve.vm(101).agent_requests == []


def test_the_vm_is_locked_for_the_whole_snapshot_task(lab: tuple[ServedPve, Pve]) -> None:
    served, api = lab
    served.pve.time_scale = 0.01
    served.pve.slow_tasks["qmsnapshot"] = 100  # one real second
    taking = threading.Thread(target=snapshot, args=(api, facts(102), "slow"))
    taking.start()
    try:
        deadline = time.monotonic() + 5
        while api.get("nodes/pve1/qemu/102/config").get("lock") != "snapshot":
            assert time.monotonic() < deadline, "the snapshot task never showed its lock"
            time.sleep(0.02)
        with pytest.raises(OperationFailedError, match=r"VM is locked \(snapshot\)"):
            rollback(api, facts(102), "slow")  # or any other snapshot task
    finally:
        taking.join(10)
    assert "lock" not in api.get("nodes/pve1/qemu/102/config")
    assert "slow" in listed(api, 102)


def test_rollback_hard_stops_the_vm_and_restores_its_config(lab: tuple[ServedPve, Pve]) -> None:
    served, api = lab
    snapshot(api, facts(102), "pre-up")
    served.pve.vm(102).config["memory"] = 4096  # a config change applied after the snapshot
    rollback(api, facts(102), "pre-up", start=False)
    vm = served.pve.vm(102)
    assert vm.status == "stopped"  # disk-only: no restart
    assert vm.config["memory"] == 2048 and vm.config["parent"] == "pre-up"
    assert served.pve.rollback_requests() == [(102, "pre-up")]


def test_zfs_refuses_all_but_the_newest_lvm_thin_any(lab: tuple[ServedPve, Pve]) -> None:
    served, api = lab
    for name in ("s1", "s2"):
        snapshot(api, facts(101), name)
        snapshot(api, facts(102), name)
    with pytest.raises(OperationFailedError, match="can't rollback, 's1' is not most recent"):
        rollback(api, facts(101), "s1", start=False)
    assert served.pve.vm(101).status == "running"  # refused before the stop, as PVE checks first
    rollback(api, facts(102), "s1", start=False)
    rollback(api, facts(101), "s2", start=False)


def test_injected_task_failures_leave_nothing_half_done(lab: tuple[ServedPve, Pve]) -> None:
    served, api = lab
    served.pve.fail_tasks("qmsnapshot", "zfs error: out of space")
    with pytest.raises(OperationFailedError, match="out of space"):
        snapshot(api, facts(101), "full")
    assert "full" not in listed(api, 101)
    assert "lock" not in api.get("nodes/pve1/qemu/101/config")
    snapshot(api, facts(101), "full")  # the next one works
    served.pve.fail_tasks("qmrollback", "storage offline")
    with pytest.raises(OperationFailedError, match="storage offline"):
        rollback(api, facts(101), "full", start=False)
    assert served.pve.vm(101).status == "running"
    delete_snapshot(api, facts(101), "full")
    assert listed(api, 101) == {}
