"""Verification after apply, on VM facts recorded from the lab after a provision."""

from __future__ import annotations

import copy
from typing import Any

from mk8s.provision.verify import problems, props, size_bytes
from tests.provision.conftest import LAB
from tests.provision.recorded import recorded_answers, vm_facts


def edited(**configs: dict[str, Any]) -> dict[str, Any]:
    answers = copy.deepcopy(recorded_answers())
    for path, changes in configs.items():
        answers[path.replace("__", "/")].update(changes)
    return answers


def test_the_recorded_lab_matches_its_inventory() -> None:
    facts = vm_facts(LAB)
    assert problems(LAB, facts) == []
    assert facts["lab-k8s-1"] is not None
    assert facts["lab-k8s-1"].agent_ips == ("127.0.61.11",)


def test_each_difference_is_one_line() -> None:
    answers = edited(
        **{
            "nodes__pve2__qemu__6102__config": {
                "cores": 2,
                "memory": "8192",
                "net0": "virtio=BC:24:11:00:00:02,bridge=vmbr1,tag=120",
                "ipconfig0": "gw=127.0.61.1,ip=127.0.61.99/24",
            },
            "nodes__pve3__qemu__6103__config": {
                "scsi0": "local-lvm:vm-6103-disk-0,size=32G",
            },
        }
    )
    answers["nodes/pve1/qemu/6101/agent/network-get-interfaces"] = {
        "result": [
            {
                "name": "eth0",
                "ip-addresses": [{"ip-address": "10.9.9.9", "ip-address-type": "ipv4"}],
            }
        ]
    }
    assert problems(LAB, vm_facts(LAB, answers)) == [
        "lab-k8s-1 (vmid 6101): guest agent reports 10.9.9.9, expected 127.0.61.11 "
        "(cloud-init not applied? bpg#2139)",
        "lab-k8s-2 (vmid 6102): 2 cores, inventory says 4",
        "lab-k8s-2 (vmid 6102): 8192 MiB memory, inventory says 16384",
        "lab-k8s-2 (vmid 6102): net0 on bridge vmbr1, inventory says vmbr0",
        "lab-k8s-2 (vmid 6102): net0 VLAN 120, inventory says 110",
        "lab-k8s-2 (vmid 6102): ipconfig0 is 'gw=127.0.61.1,ip=127.0.61.99/24', "
        "inventory says ip=127.0.61.12/24,gw=127.0.61.1",
        "lab-k8s-3 (vmid 6103): scsi0 is 32 GiB, inventory says 100 GiB",
    ]


def test_a_missing_stopped_or_agentless_vm_is_reported() -> None:
    answers = copy.deepcopy(recorded_answers())
    resources = answers["cluster/resources?type=vm"]
    answers["cluster/resources?type=vm"] = [r for r in resources if r["vmid"] != 6103]
    for r in answers["cluster/resources?type=vm"]:
        if r["vmid"] == 6102:
            r["status"] = "stopped"
    del answers["nodes/pve1/qemu/6101/agent/network-get-interfaces"]
    answers_missing_agent = Broken(answers, "nodes/pve1/qemu/6101/agent/network-get-interfaces")
    assert problems(LAB, vm_facts(LAB, answers_missing_agent)) == [
        "lab-k8s-1 (vmid 6101): guest agent not answering (qemu-guest-agent in the template?)",
        "lab-k8s-2 (vmid 6102): stopped, expected running",
        "lab-k8s-3 (vmid 6103): no such VM on Proxmox",
    ]


class Broken(dict[str, Any]):
    """The recording, with one path answering as PVE does when the agent is not running."""

    def __init__(self, answers: dict[str, Any], broken: str) -> None:
        super().__init__(answers)
        self.broken = broken

    def __getitem__(self, key: str) -> Any:
        if key == self.broken:
            from proxmoxer import ResourceException

            raise ResourceException(500, "Internal Server Error", "QEMU guest agent is not running")
        return super().__getitem__(key)


def test_property_strings_and_sizes() -> None:
    assert props("virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=110") == {
        "virtio": "BC:24:11:00:00:01",
        "bridge": "vmbr0",
        "tag": "110",
    }
    assert props("local-lvm:vm-1-disk-0,size=100G")["file"] == "local-lvm:vm-1-disk-0"
    assert size_bytes("100G") == 100 * 1024**3
    assert size_bytes("3584M") == 3584 * 1024**2
