"""Proxmox misbehaving, as fakepve makes it: provision fails with one clear line and never
destroys or duplicates a VM; once the fault is gone, re-running converges."""

from __future__ import annotations

from collections import Counter

import pytest

from mk8s.edges import terraform
from mk8s.errors import OperationFailedError, UserError
from mk8s.provision.flow import provision
from tests.provision.conftest import TOKEN_ID, TOKEN_SECRET, Lab

pytestmark = pytest.mark.slow


def vm_names(lab: Lab) -> Counter[str]:
    return Counter(vm.name for vm in lab.pve.vms)


def test_missing_template_fails_preflight_and_creates_nothing(lab: Lab) -> None:
    lab.pve.vms.remove(lab.pve.vm(9000))

    with pytest.raises(OperationFailedError) as err:
        provision(lab.env(), lab.root)

    assert err.value.lines == (
        "preflight: template: no VM named or numbered 'ubuntu-2204-cloudinit'; fix: create the "
        "cloud-init template (docs/provision.md#template) or fix proxmox.template",
    )
    assert lab.writes() == []


def test_a_vmid_taken_by_a_foreign_vm_is_refused(lab: Lab) -> None:
    lab.pve.add_vm(6102, "billing-db", node="pve2", status="running", config={"tags": "prod"})

    with pytest.raises(OperationFailedError) as err:
        provision(lab.env(), lab.root)

    assert any(
        "vmid 6102 (lab-k8s-2): taken by foreign VM 'billing-db' on pve2" in line
        for line in err.value.lines
    ), err.value.lines
    assert lab.writes() == []
    assert lab.pve.vm(6102).name == "billing-db"


def test_a_clone_task_error_is_reported_and_a_rerun_converges_without_duplicates(
    lab: Lab,
) -> None:
    lab.pve.fail_tasks("qmclone", "clone failed: unable to write to storage: I/O error")

    with pytest.raises(OperationFailedError) as err:
        provision(lab.env(), lab.root, ssh_timeout_s=30)
    assert "terraform apply failed" in err.value.lines[0]
    assert any("I/O error" in line for line in err.value.lines), err.value.lines
    assert any("TASK ERROR" in t["log"][-1] for t in lab.pve.tasklog if t["type"] == "qmclone")
    assert len(lab.our_vms()) == 2  # the other clones went through

    report = provision(lab.env(), lab.root, ssh_timeout_s=30)

    assert [c.key for c in report.changes if c.action == "create" and c.type.endswith("_vm")]
    assert vm_names(lab) == Counter(
        {"ubuntu-2204-cloudinit": 1, "lab-k8s-1": 1, "lab-k8s-2": 1, "lab-k8s-3": 1}
    )


def test_a_vm_whose_first_start_failed_is_kept_and_converged_not_replaced(lab: Lab) -> None:
    lab.pve.fail_tasks("qmstart", "start failed: QEMU exited with code 1")

    with pytest.raises(OperationFailedError) as err:
        provision(lab.env(), lab.root, ssh_timeout_s=30)
    assert any("QEMU exited with code 1" in line for line in err.value.lines), err.value.lines
    (failed,) = [
        int(t["id"]) for t in lab.pve.tasklog if t["type"] == "qmstart" and t["exitstatus"] != "OK"
    ]
    assert lab.pve.vm(failed).status == "stopped"  # created, then its start failed: tainted
    name = lab.pve.vm(failed).name

    report = provision(lab.env(), lab.root, ssh_timeout_s=30)

    vm_changes = {c.key: c.action for c in report.changes if c.type.endswith("_vm")}
    assert vm_changes.pop(name) == "update"
    assert set(vm_changes.values()) == {"no-op"}
    assert lab.pve.vm(failed).status == "running"
    assert [t["type"] for t in lab.pve.tasklog].count("qmclone") == 3  # never re-cloned


def test_a_lock_timeout_during_apply_is_retried(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(terraform, "LOCK_BACKOFF_S", 0.0)
    lab.pve.fail_tasks(
        "qmclone", "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"
    )

    report = provision(lab.env(), lab.root, ssh_timeout_s=30)

    assert report.lock_retries == 1
    assert sorted(vm.vmid for vm in lab.our_vms()) == [6101, 6102, 6103]


def test_a_locked_vm_stops_provision_until_it_is_unlocked(lab: Lab) -> None:
    provision(lab.env(), lab.root, ssh_timeout_s=30)
    lab.pve.snapshot_lock(6101, "backup")

    with pytest.raises(OperationFailedError) as err:
        provision(lab.env(), lab.root)
    assert err.value.lines == (
        "preflight: vmid 6101 (lab-k8s-1): ours, but locked (backup); fix: wait for the backup "
        "task to finish, or `qm unlock 6101` if it died",
    )

    lab.pve.unlock(6101)
    report = provision(lab.env(), lab.root, ssh_timeout_s=30)
    assert not report.applied
    assert len(lab.our_vms()) == 3


def test_slow_tasks_are_waited_for(lab: Lab) -> None:
    lab.pve.time_scale = 0.05
    lab.pve.slow_tasks = {"qmclone": 20, "qmstart": 10, "qmresize": 5}  # 1 s, 0.5 s, 0.25 s

    provision(lab.env(), lab.root, ssh_timeout_s=30)

    clones = [t for t in lab.pve.tasklog if t["type"] == "qmclone"]
    assert len(clones) == 3 and all(t["exitstatus"] == "OK" for t in clones)
    assert all(vm.status == "running" for vm in lab.our_vms())
    polls = [p for m, p, *_ in lab.pve.requests if m == "GET" and "/tasks/UPID" in p]
    assert len(polls) > len(lab.pve.tasklog)  # running tasks were polled, not assumed done


def test_intermittent_server_errors_are_retried(lab: Lab) -> None:
    lab.pve.fail("GET", "/nodes", 503, "Service Unavailable", times=2)
    lab.pve.fail("GET", "/cluster/resources", 502, "Bad Gateway", times=1)

    provision(lab.env(), lab.root, ssh_timeout_s=30)

    assert len(lab.our_vms()) == 3
    asked = [p for m, p, *_ in lab.pve.requests if m == "GET" and p.endswith("/api2/json/nodes")]
    assert len(asked) >= 3


@pytest.mark.parametrize("how", ["wrong secret", "token revoked after a first run"])
def test_a_rejected_token_is_a_clear_auth_error(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "wrong secret":
        monkeypatch.setenv("PVE_TOKEN_SECRET", "00000000-0000-4000-8000-000000000000")
    else:
        provision(lab.env(), lab.root, ssh_timeout_s=30)
        del lab.pve.apitokens[TOKEN_ID]

    with pytest.raises(OperationFailedError) as err:
        provision(lab.env(), lab.root)

    (line,) = err.value.lines
    assert line.startswith(
        f"Proxmox API at {lab.pve.url} rejected the API token in PVE_TOKEN_ID (401 "
    )
    assert TOKEN_SECRET not in line and "00000000-0000" not in line


def test_missing_token_variables_are_named(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PVE_TOKEN_SECRET")

    with pytest.raises(UserError) as err:
        provision(lab.env(), lab.root)

    assert err.value.lines == ("PVE_TOKEN_SECRET is not set: export the PVE API token secret",)
