"""Phase 3 (Staging) exit: backup/restore validated, node loss survived, security hardening
(PRD). The SLO load test is Locust's (`invoke loadtest`), recorded by mk8s.promotion.evidence."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from conformance.conftest import Criterion
from conformance.test_phase1 import SAMPLE_NS, SELECTOR
from mk8s.checks import Verdict, all_of, drills, node, resilience
from mk8s.checks import velero_facts as vf
from mk8s.checks.node_facts import NodeShell, on_every_node
from mk8s.inventory.model import Environment

pytestmark = pytest.mark.phase3


def test_backup_restore(env: Environment, kube: Any, criterion: Any) -> None:
    """The schedules' newest backup within the RPO, the location available and (stage/prod)
    outside the cluster, and a drill that restores equal data within the RTO and removes
    what it made."""
    c: Criterion = criterion("phase3.backup_restore", unit="s")  # N/A (skipped) without backup
    assert env.backup is not None
    net = env.network
    inside = [net.pod_cidr, net.service_cidr, net.metallb_range, *(n.ip for n in env.nodes)]
    freshness = resilience.freshness_problems(
        vf.read_backups(kube), [s.name for s in env.backup.schedules], env.slo.rpo_minutes,
        datetime.now(UTC),
    )  # fmt: skip
    location = resilience.location_problems(
        vf.read_locations(kube), env.backup.target.endpoint, env.backup.target.bucket,
        env.effective_tier, inside,
    )  # fmt: skip
    drill = drills.restore_drill(
        kube, f"mk8s-restore-drill-{secrets.token_hex(3)}", timeout_s=env.slo.rto_minutes * 120
    )
    c.check(resilience.backup_restore(drill, env.slo.rto_minutes, freshness, location))


def test_node_loss_availability(env: Environment, kube: Any, criterion: Any) -> None:
    """Power off a node hosting a sample-app replica (not the one the kubeconfig talks to)
    through the Proxmox API; with fewer than two Ready replicas there is nothing to measure."""
    c: Criterion = criterion("phase3.availability", unit="s")
    pods = drills.app_pods(kube, SAMPLE_NS, SELECTOR)
    victim = drills.pick_victim(env.nodes, pods, env.api_address)
    if victim is None:
        ready = sum(1 for p in pods if drills.pod_ready(p))
        c.check(resilience.availability(resilience.NodeLossDrill(
            "no node", ready, 0, 0.0, False, "not run", False, "not stopped")))  # fmt: skip
        return
    vm = drills.PveVm(drills.proxmox_api(env), victim.pve_node, victim.vmid)
    drill = drills.node_loss_drill(kube, vm, victim, SAMPLE_NS, SELECTOR)
    c.check(resilience.availability(drill))


def test_firewall_rules_in_force(env: Environment, nodes: list[NodeShell], criterion: Any) -> None:
    """ufw (default deny, cluster ports from the subnet only) and the mk8s-edge chain that
    holds hostPorts and NodePorts to the subnet, which ufw's INPUT never sees."""
    c: Criterion = criterion("phase3.firewall")
    subnet = str(env.network.subnet)
    wanted = node.expected_ports(env)
    internal = (str(env.network.pod_cidr), str(env.network.service_cidr))

    def judge(n: NodeShell) -> Verdict:
        return all_of(
            [
                node.firewall(n.name, n.ufw_status(), subnet, wanted, internal),
                node.edge_filter(n.name, n.edge_chain(), n.mangle_prerouting(), subnet,
                                 str(env.network.pod_cidr)),
            ],
            "firewall",
        )  # fmt: skip

    c.check(
        all_of(
            on_every_node(nodes, judge),
            f"ufw active, default deny, cluster ports, hostPorts and NodePorts from {subnet} only",
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
