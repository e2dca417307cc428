"""Recorded cluster facts for the drain/maintenance tests: a healthy 3-voter cluster on three
Proxmox hosts, and one-field changes of it (the broken states the gates must catch)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from mk8s.day2.certs import CERT_FILES, CertFacts
from mk8s.day2.facts import Blocker, ClusterFacts, Disruption, NodeFacts, VmState
from mk8s.edges.microk8s import Member

NODES = (
    ("k8s-1", "192.168.10.11", "pve1"),
    ("k8s-2", "192.168.10.12", "pve2"),
    ("k8s-3", "192.168.10.13", "pve3"),
)  # names are prefixed with the environment's
VOTERS = tuple(Member(f"{ip}:19001", "voter") for _, ip, _ in NODES)
TAKEN = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)


def certs(node: str, days: int = 300) -> tuple[CertFacts, ...]:
    return tuple(
        CertFacts(node, f.name, f.path, not_after=TAKEN + timedelta(days=days), subject="CN=x")
        for f in CERT_FILES
    )


def healthy(env: str = "dev") -> ClusterFacts:
    nodes = tuple(
        NodeFacts(
            f"{env}-{name}",
            ip,
            vm=VmState("running", pve),
            ssh=True,
            ready=True,
            unschedulable=False,
            members=VOTERS,
            api=True,
            reboot_required=False,
            certs=certs(f"{env}-{name}"),
        )
        for name, ip, pve in NODES
    )
    return ClusterFacts(
        env,
        TAKEN,
        nodes,
        disruption=tuple(Disruption(n.name, ("default/web-1",)) for n in nodes),
        leader=f"{env}-k8s-1",
        endpoint_node=f"{env}-k8s-2",
    )


def with_node(facts: ClusterFacts, name: str, **changes: object) -> ClusterFacts:
    nodes = tuple(replace(n, **changes) if n.name == name else n for n in facts.nodes)  # type: ignore[arg-type]
    return replace(facts, nodes=nodes)


def blocked(facts: ClusterFacts, node: str) -> ClusterFacts:
    b = Blocker("default", "web-1", "web",
                "Cannot evict pod as it would violate the pod's disruption budget.")  # fmt: skip
    rest = tuple(d for d in facts.disruption if d.node != node)
    return replace(facts, disruption=(*rest, Disruption(node, (), (b,))))
