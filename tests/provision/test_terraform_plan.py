"""Reading real Terraform JSON plans (recorded from lab runs): per-node summary and the
refusal of plans that would replace or delete a VM."""

from __future__ import annotations

from mk8s.edges.terraform import (
    _error_lines,
    _var_args,
    changes,
    pending,
    refusals,
    summarize,
    tainted_to_keep,
)
from tests.provision.recorded import recorded_plan


def test_a_converged_environment_plans_nothing() -> None:
    chs = changes(recorded_plan("noop"))
    assert len(chs) == 6
    assert pending(chs) == []
    assert refusals(chs) == []


def test_a_new_vmid_is_a_replace_and_is_refused_unless_allowed() -> None:
    chs = changes(recorded_plan("replace"))
    assert summarize(pending(chs)) == {"lab-k8s-1": {"vm": "replace"}}
    assert refusals(chs) == [
        "refusing: the plan would replace VM lab-k8s-1 (because of vm_id); this destroys the "
        "node's disk. Re-run with --allow-replace if that is intended."
    ]
    assert refusals(chs, allow_replace=True) == []


def test_a_dropped_node_is_a_delete_and_is_refused() -> None:
    chs = changes(recorded_plan("delete"))
    assert summarize(pending(chs)) == {"lab-k8s-3": {"user-data": "delete", "vm": "delete"}}
    assert [line.split(";")[0] for line in refusals(chs)] == [
        "refusing: the plan would delete VM lab-k8s-3"
    ]


def test_only_vms_are_protected_snippets_may_be_replaced() -> None:
    plan = {
        "resource_changes": [
            {
                "address": 'proxmox_virtual_environment_file.user_data["n1"]',
                "type": "proxmox_virtual_environment_file",
                "index": "n1",
                "change": {"actions": ["delete", "create"]},
            }
        ]
    }
    chs = changes(plan)
    assert chs[0].action == "replace"
    assert refusals(chs) == []


def test_variables_and_errors() -> None:
    assert _var_args({"template_vmid": 9000, "template_node": None, "x": "pve1"}) == [
        "-var=template_vmid=9000",
        "-var=x=pve1",
    ]
    text = "\n".join(
        [
            "╷",
            "│ Error: error waiting for VM clone: task failed",
            "│ ",
            '│   with proxmox_virtual_environment_vm.node["a"],',
            "╵",
        ]
    )
    assert _error_lines(text) == ["  Error: error waiting for VM clone: task failed"]


def test_a_tainted_vm_that_exists_and_is_ours_is_kept_not_replaced() -> None:
    def vm(key: str, vmid: int, reason: str) -> dict[str, object]:
        return {
            "address": f'proxmox_virtual_environment_vm.node["{key}"]',
            "type": "proxmox_virtual_environment_vm",
            "index": key,
            "action_reason": reason,
            "change": {"actions": ["delete", "create"], "before": {"vm_id": vmid}},
        }

    chs = changes(
        {
            "resource_changes": [
                vm("n1", 101, "replace_because_tainted"),
                vm("n2", 102, "replace_because_tainted"),  # not ours on Proxmox: still refused
                vm("n3", 103, "replace_because_cannot_update"),
            ]
        }
    )
    assert [c.key for c in tainted_to_keep(chs, ours={101, 103})] == ["n1"]
