"""Preflight verdicts on recorded API facts (lab cluster after a provision, plus a foreign VM
777 holding lab-k8s-3's IP, and lab-k8s-1 locked by a backup)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mk8s.edges.proxmox import VmFacts
from mk8s.provision.preflight import Check, checks, failures, find_template
from tests.provision.conftest import LAB
from tests.provision.recorded import cluster_facts, recorded_answers


def verdicts(answers: dict[str, Any] | None = None) -> dict[str, Check]:
    return {c.name: c for c in checks(LAB, cluster_facts(LAB, answers))}


def healthy() -> dict[str, Any]:
    """The recording without the two problems it was made with."""
    answers = copy.deepcopy(recorded_answers())
    del answers["nodes/pve1/qemu/6101/config"]["lock"]
    answers["cluster/resources?type=vm"] = [
        r for r in answers["cluster/resources?type=vm"] if r["vmid"] != 777
    ]
    return answers


def test_recorded_problems_are_each_reported_with_a_fix() -> None:
    assert failures(checks(LAB, cluster_facts(LAB))) == [
        "preflight: vmid 6101 (lab-k8s-1): ours, but locked (backup); fix: wait for the backup "
        "task to finish, or `qm unlock 6101` if it died",
        "preflight: ip 127.0.61.13: configured on foreign VM 777 (billing-db), wanted by "
        "lab-k8s-3; fix: pick another IP in the inventory or reconfigure that VM",
    ]


def test_a_healthy_cluster_passes_every_check() -> None:
    results = verdicts(healthy())
    assert all(c.ok for c in results.values()), [c for c in results.values() if not c.ok]
    assert results["template"].detail == "ubuntu-2204-cloudinit (vmid 9000 on pve1)"
    assert results["vmid 6102 (lab-k8s-2)"].detail == "ours (running on pve2)"
    assert results["datastore local-lvm on pve1"].detail.endswith(
        "300 GiB needed (shared, all nodes)"
    )


def test_template_is_resolved_by_name_or_vmid() -> None:
    facts = cluster_facts(LAB, healthy())
    by_name = find_template(LAB, facts)
    by_id = find_template(
        LAB.model_copy(update={"proxmox": LAB.proxmox.model_copy(update={"template": 9000})}), facts
    )
    assert isinstance(by_name, VmFacts) and by_name.vmid == 9000 and by_name.node == "pve1"
    assert by_id == by_name


def test_old_pve_is_refused() -> None:
    answers = healthy()
    answers["version"] = {**answers["version"], "version": "7.4-3"}
    assert verdicts(answers)["PVE version"] == Check(
        "PVE version", False, "7.4-3", "upgrade Proxmox VE to 8.x or later"
    )


def test_template_without_cloudinit_drive_or_not_a_template() -> None:
    answers = healthy()
    del answers["nodes/pve1/qemu/9000/config"]["ide2"]
    assert verdicts(answers)["template"].detail == "template 9000 has no cloud-init drive"
    for r in answers["cluster/resources?type=vm"]:
        if r["vmid"] == 9000:
            r["template"] = 0
    assert "is a VM, not a template" in verdicts(answers)["template"].detail


@pytest.mark.parametrize(
    ("status", "detail"), [("offline", "offline"), (None, "not a member of the cluster")]
)
def test_target_nodes_must_be_online_members(status: str | None, detail: str) -> None:
    answers = healthy()
    nodes = [n for n in answers["nodes"] if n["node"] != "pve2"]
    if status:
        nodes.append({"node": "pve2", "status": status})
    answers["nodes"] = nodes
    check = verdicts(answers)["node pve2"]
    assert (check.ok, check.detail) == (False, detail)


def test_storage_room_and_snippets_content() -> None:
    answers = healthy()
    for node in ("pve1", "pve2", "pve3"):
        for s in answers[f"nodes/{node}/storage"]:
            if s["storage"] == "local-lvm":
                s["avail"] = 250 * 1024**3
            if s["storage"] == "local":
                s["content"] = "iso,vztmpl,backup"
    results = verdicts(answers)
    room = results["datastore local-lvm on pve2"]
    assert (room.ok, room.detail) == (False, "250 GiB free, 300 GiB needed (shared, all nodes)")
    snippets = results["snippets on local@pve3"]
    assert not snippets.ok
    assert snippets.hint == "pvesm set local --content backup,iso,vztmpl,snippets (bpg#1540)"


def test_a_foreign_vm_with_our_name_is_refused() -> None:
    answers = healthy()
    answers["cluster/resources?type=vm"].append(
        {"vmid": 901, "name": "lab-k8s-2", "node": "pve1", "status": "stopped", "type": "qemu"}
    )
    answers["nodes/pve1/qemu/901/config"] = {"name": "lab-k8s-2"}
    check = verdicts(answers)["name lab-k8s-2"]
    assert (check.ok, check.detail) == (False, "already used by VM 901 on pve1")


def test_prod_nodes_must_be_on_distinct_hosts() -> None:
    prod = LAB.model_copy(update={"tier": "prod"})
    facts = cluster_facts(prod, healthy())
    assert {c.name: c.ok for c in checks(prod, facts)}["prod placement"] is True
    crowded = prod.model_copy(
        update={"nodes": [n.model_copy(update={"pve_node": "pve1"}) for n in prod.nodes]}
    )
    placement = {c.name: c for c in checks(crowded, facts)}["prod placement"]
    assert (placement.ok, placement.detail) == (False, "1 hosts for 3 nodes")
