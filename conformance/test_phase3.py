"""Phase 3 (Staging) exit: backup/restore validated, node loss survived, security hardening
(PRD). The SLO load test is Locust's (`invoke loadtest`), recorded by mk8s.promotion.evidence."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from conformance.conftest import Criterion
from conformance.test_phase1 import SAMPLE_NS, SAMPLE_SELECTOR
from mk8s.checks import all_of, cluster, drills, node
from mk8s.checks.node_facts import NodeShell, on_every_node
from mk8s.inventory.model import Environment

pytestmark = pytest.mark.phase3


def test_backup_restore(env: Environment, kube: Any, criterion: Any) -> None:
    if env.backup is None:
        pytest.skip(f"{env.name}: no backup configured in the inventory (PRD: dev may omit)")
    c: Criterion = criterion("phase3.backup_restore", unit="s")
    drill = drills.restore_drill(
        kube, f"mk8s-restore-drill-{secrets.token_hex(3)}", timeout_s=env.slo.rto_minutes * 120
    )
    c.check(cluster.backup_restore(drill, env.slo.rto_minutes))


def test_node_loss_availability(env: Environment, kube: Any, criterion: Any) -> None:
    """Power off one node (not the one the kubeconfig talks to) through the Proxmox API."""
    c: Criterion = criterion("phase3.availability", unit="s")
    victim = next(n for n in reversed(env.nodes) if n.ip != env.api_address)
    vm = drills.PveVm(drills.proxmox_api(env), victim.pve_node, victim.vmid)
    replicas = len(
        [p for p in drills.app_pods(kube, SAMPLE_NS, _selector()) if drills.pod_ready(p)]
    )
    drill = drills.node_loss_drill(kube, vm, victim, SAMPLE_NS, _selector(), replicas)
    c.check(cluster.availability(drill))


def _selector() -> str:
    return ",".join(f"{k}={v}" for k, v in SAMPLE_SELECTOR.items())


def test_firewall_rules_in_force(env: Environment, nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase3.firewall")
    subnet = str(env.network.subnet)
    wanted = node.expected_ports(env)
    internal = (str(env.network.pod_cidr), str(env.network.service_cidr))
    c.check(
        all_of(
            on_every_node(
                nodes, lambda n: node.firewall(n.name, n.ufw_status(), subnet, wanted, internal)
            ),
            f"ufw active, default deny, cluster ports from {subnet} only",
        )
    )


def test_unattended_upgrades_enabled(nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase3.unattended_upgrades")
    c.check(
        all_of(
            on_every_node(
                nodes,
                lambda n: node.unattended_upgrades(n.name, n.apt_periodic(), n.unattended_unit()),
            ),
            "enabled",
        )
    )


def test_ssh_password_login_off(nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase3.ssh_password_off")
    c.check(
        all_of(
            on_every_node(nodes, lambda n: node.ssh_password_off(n.name, n.sshd_effective())),
            "keys only",
        )
    )
