"""Snapshot, rollback and power primitives, and destroy's confirmation, against fakepve."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mk8s.errors import UserError
from mk8s.provision.flow import power, provision, rollback, snapshot
from tests.provision.conftest import ROOT, Lab

pytestmark = pytest.mark.slow


def test_snapshot_then_rollback_restores_the_config_and_leaves_vms_running(lab: Lab) -> None:
    env = lab.env()
    provision(env, lab.root, ssh_timeout_s=30)

    assert snapshot(env, "pre-upgrade", root=lab.root) == ["lab-k8s-1", "lab-k8s-2", "lab-k8s-3"]
    assert snapshot(env, "pre-upgrade", root=lab.root) == []  # already there: nothing to do
    assert all("pre-upgrade" in vm.snapshots for vm in lab.our_vms())

    lab.pve.vm(6102).config["description"] = "changed after the snapshot"
    lab.pve.vm(6102).config["cores"] = 2
    # One node alone would rewind only its copy of the datastore: refused, nothing sent.
    with pytest.raises(UserError, match="without lab-k8s-1, lab-k8s-3 would rewind only part"):
        rollback(env, "pre-upgrade", ["lab-k8s-2"], root=lab.root)
    assert lab.pve.vm(6102).config["cores"] == 2
    assert rollback(env, "pre-upgrade", root=lab.root) == ["lab-k8s-1", "lab-k8s-2", "lab-k8s-3"]

    vm = lab.pve.vm(6102)
    assert vm.config["cores"] == 4 and vm.status == "running"
    with pytest.raises(UserError, match="snapshot 'nope' missing on lab-k8s-1"):
        rollback(env, "nope", ["lab-k8s-1"], root=lab.root)


def test_power_actions_act_only_where_needed(lab: Lab) -> None:
    env = lab.env()
    provision(env, lab.root, ssh_timeout_s=30)

    assert power(env, "stop", ["lab-k8s-3"], root=lab.root) == ["lab-k8s-3"]
    assert lab.pve.vm(6103).status == "stopped"
    assert power(env, "stop", ["lab-k8s-3"], root=lab.root) == []
    assert power(env, "start", root=lab.root) == ["lab-k8s-3"]
    assert all(vm.status == "running" for vm in lab.our_vms())
    with pytest.raises(UserError, match="no node named lab-k8s-9 in lab"):
        power(env, "stop", ["lab-k8s-9"], root=lab.root)


def test_cli_dry_run_shows_preflight_and_plan_tables_and_applies_nothing(lab: Lab) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "provision", "--env", "lab", "--dry-run"],
        cwd=lab.root,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight" in result.stdout and "template" in result.stdout
    assert "terraform plan: 3 node(s) change" in result.stdout
    assert result.stdout.count("create") >= 6  # vm and user-data for each node
    assert result.stdout.rstrip().endswith("dry run: nothing applied")
    assert lab.our_vms() == []


def test_destroy_without_a_terminal_or_yes_is_refused(lab: Lab) -> None:
    """Piped stdin is no terminal: an answer there is not a confirmation (tests/contracts has
    the typed-name cases)."""
    provision(lab.env(), lab.root, ssh_timeout_s=30)

    result = subprocess.run(
        [sys.executable, "-m", "invoke", "destroy", "--env", "lab"],
        cwd=lab.root,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        input="dev\n",
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "needs confirmation and there is no terminal to ask on: pass --yes" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(lab.our_vms()) == 3
