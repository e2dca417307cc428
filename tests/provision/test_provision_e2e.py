"""`invoke provision --env lab` end to end: real terraform, the real bpg/proxmox provider built
into the offline mirror, fakepve as Proxmox, a real sshd answering for the nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mk8s.errors import UserError
from mk8s.provision.flow import destroy, provision
from mk8s.render.cloudinit import user_data
from tests.provision.conftest import ROOT, TOKEN_SECRET, Lab

pytestmark = pytest.mark.slow


def assert_matches_inventory(lab: Lab) -> None:
    env = lab.env()
    snippets = Path(lab.pve.storages["local"]["path"]) / "snippets"
    vms = {vm.name: vm for vm in lab.our_vms()}
    assert sorted(vms) == [n.name for n in env.nodes]
    for node in env.nodes:
        vm = vms[node.name]
        cfg = vm.config
        assert (vm.vmid, vm.node, vm.status) == (node.vmid, node.pve_node, "running")
        assert cfg["cores"] == env.size.cores
        assert int(cfg["memory"]) == env.size.memory_gib * 1024
        assert f"size={env.size.disk_gib}G" in cfg["scsi0"]
        assert "bridge=vmbr0" in cfg["net0"] and "tag=110" in cfg["net0"]
        assert "virtio" in cfg["net0"]
        assert cfg["ipconfig0"] == f"gw={env.network.gateway},ip={node.ip}/24"
        assert cfg["nameserver"] == str(env.network.dns_servers[0])
        assert cfg["onboot"] == 1
        assert cfg["agent"].startswith("enabled=1")
        assert sorted(cfg["tags"].split(";")) == ["env-lab", "mk8s"]
        snippet = f"mk8s-lab-{node.name}-user-data.yaml"
        assert cfg["cicustom"] == f"user=local:snippets/{snippet}"
        assert (snippets / snippet).read_text() == user_data(env, node)


def test_provision_builds_the_inventory_vms_and_a_rerun_changes_nothing(lab: Lab) -> None:
    report = provision(lab.env(), lab.root, ssh_timeout_s=30)

    assert report.applied
    assert {c.key for c in report.changes if c.action == "create"} == {
        "lab-k8s-1",
        "lab-k8s-2",
        "lab-k8s-3",
    }
    assert all(c.ok for c in report.checks)
    assert sorted(report.banners) == ["lab-k8s-1", "lab-k8s-2", "lab-k8s-3"]
    assert all(b.startswith("SSH-2.0-") for b in report.banners.values())
    assert report.outputs["nodes"]["lab-k8s-2"] == {
        "vmid": 6102,
        "ip": lab.sshd.nodes["lab-k8s-2"].host,
        "pve_node": "pve2",
    }
    assert_matches_inventory(lab)

    # The second run goes through the real CLI, as an operator would type it.
    writes_before = len(lab.writes())
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "provision", "--env", "lab"],
        cwd=lab.root,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "terraform: no changes" in result.stdout
    assert "lab: 3 VMs unchanged, verified, SSH up" in result.stdout
    assert lab.writes()[writes_before:] == []
    assert TOKEN_SECRET not in result.stdout + result.stderr
    assert_matches_inventory(lab)
    # Neither the rendered files nor the state, lock, plan or .terraform/ hold the token.
    for path in (lab.root / "build").rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert TOKEN_SECRET.encode() not in path.read_bytes(), path


def test_dry_run_shows_the_plan_and_creates_nothing(lab: Lab) -> None:
    report = provision(lab.env(), lab.root, dry_run=True)

    assert [c.action for c in report.changes if c.type.endswith("_vm")] == ["create"] * 3
    assert not report.applied
    assert lab.our_vms() == []
    assert lab.writes() == []


def test_a_plan_that_would_replace_or_delete_a_vm_is_refused(lab: Lab) -> None:
    provision(lab.env(), lab.root, ssh_timeout_s=30)
    nodes = [n.model_dump(mode="json") for n in lab.env().nodes]
    before = sorted((vm.vmid, vm.name) for vm in lab.pve.vms)

    # A new vmid forces a new VM in the provider: the real plan says replace.
    renumbered = [{**nodes[0], "vmid": 6111}, *nodes[1:]]
    with pytest.raises(UserError) as replaced:
        provision(lab.edit_inventory(nodes=renumbered), lab.root)
    assert any("would replace VM lab-k8s-1" in line for line in replaced.value.lines), (
        replaced.value
    )

    # Dropping a node from the inventory: the real plan says delete.
    with pytest.raises(UserError) as deleted:
        provision(lab.edit_inventory(nodes=nodes[:2], ha=False), lab.root)
    assert any("would delete VM lab-k8s-3" in line for line in deleted.value.lines), deleted.value

    assert sorted((vm.vmid, vm.name) for vm in lab.pve.vms) == before


def test_new_template_or_cloud_init_never_replaces_a_running_node(lab: Lab) -> None:
    provision(lab.env(), lab.root, ssh_timeout_s=30)
    template = lab.pve.vm(9000)
    lab.pve.add_vm(
        9001, "ubuntu-2404-cloudinit", node="pve1", template=True, config=dict(template.config)
    )
    data = lab.env().model_dump(mode="json")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINewOperatorKeyForRotationTest000 new@example.com"
    changed = lab.edit_inventory(
        proxmox={**data["proxmox"], "template": "ubuntu-2404-cloudinit"},
        ssh={**data["ssh"], "authorized_keys": [key]},
    )
    clones = [t["type"] for t in lab.pve.tasklog].count("qmclone")

    report = provision(changed, lab.root, ssh_timeout_s=30)

    by_part = {(c.key, c.type.rsplit("_", 1)[-1]): c.action for c in report.changes}
    assert {a for (_, part), a in by_part.items() if part == "vm"} == {"no-op"}
    assert {a for (_, part), a in by_part.items() if part == "file"} == {"replace"}
    assert [t["type"] for t in lab.pve.tasklog].count("qmclone") == clones
    snippets = Path(lab.pve.storages["local"]["path"]) / "snippets"
    assert key in (snippets / "mk8s-lab-lab-k8s-1-user-data.yaml").read_text()


def test_allow_replace_lets_an_intended_replacement_through(lab: Lab) -> None:
    provision(lab.env(), lab.root, ssh_timeout_s=30)
    nodes = [n.model_dump(mode="json") for n in lab.env().nodes]
    renumbered = lab.edit_inventory(nodes=[{**nodes[0], "vmid": 6111}, *nodes[1:]])

    report = provision(renumbered, lab.root, allow_replace=True, ssh_timeout_s=30)

    assert [(c.key, c.action) for c in report.changes if c.action != "no-op"] == [
        ("lab-k8s-1", "replace")
    ]
    assert sorted(vm.vmid for vm in lab.our_vms()) == [6102, 6103, 6111]


def test_destroy_removes_only_this_environments_vms(lab: Lab) -> None:
    provision(lab.env(), lab.root, ssh_timeout_s=30)
    lab.pve.add_vm(777, "someone-elses-vm", node="pve1", status="running")

    gone = destroy(lab.env(), lab.root)

    assert gone == ["lab-k8s-1", "lab-k8s-2", "lab-k8s-3"]
    assert sorted(vm.vmid for vm in lab.pve.vms) == [777, 9000]
    assert list((Path(lab.pve.storages["local"]["path"]) / "snippets").iterdir()) == []
    assert destroy(lab.env(), lab.root) == []


def test_destroy_refuses_a_vm_in_the_state_that_is_not_tagged_for_the_environment(
    lab: Lab,
) -> None:
    provision(lab.env(), lab.root, ssh_timeout_s=30)
    lab.pve.vm(6102).config["tags"] = "mk8s;env-prod"

    with pytest.raises(UserError, match="VM 6102 in the state is not tagged env-lab"):
        destroy(lab.env(), lab.root)
    assert len(lab.our_vms()) == 3
