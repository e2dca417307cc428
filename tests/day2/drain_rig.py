"""A drain rig on the real kube-apiserver: three Nodes of the test's own, pods and PDBs
(tests/support/workloads.py), a facts reader over what the API server holds, and a `Power`
that plays the machines.

What `FakePower` models (and the claim it makes about the real system):
- a reboot drops SSH (the boot id cannot be read for a while) and the kubelet stops posting
  Ready, then the node comes back with a new /proc/sys/kernel/random/boot_id (Linux draws a
  new random UUID per boot) and posts Ready again;
- a Proxmox shutdown stops the VM (status "stopped"); it runs again only when someone starts
  it (`start`, the operator or the host's onboot), with a new boot id.
The datastore members are recorded facts (three voters by IP), not modelled here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from mk8s.day2.facts import CORDON_ANNOTATION, ClusterFacts, NodeFacts, VmState
from mk8s.day2.maintenance import Rig
from mk8s.day2.wait import FakeClock
from mk8s.edges.kube import KubeApi
from mk8s.edges.microk8s import Member
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from tests.conftest import ROOT
from tests.day2.drain_facts import certs
from tests.support import workloads
from tests.support.envtest import KubeApiServer


@dataclass
class Machine:
    ip: str
    pve: str
    boots: int = 1
    running: bool = True
    down_polls: int = 0  # boot id reads that fail before it is back
    reboot_required: bool = False


@dataclass
class FakePower:
    admin: Any
    machines: dict[str, Machine]
    log: list[str] = field(default_factory=list)
    on_reboot: Callable[[str], None] | None = None

    def boot_id(self, node: str) -> str:
        m = self.machines[node]
        if not m.running:
            raise OSError(f"{node}: no route to host (VM stopped)")
        if m.down_polls:
            m.down_polls -= 1
            if not m.down_polls:  # back: the kubelet posts Ready again
                m.boots += 1
                m.reboot_required = False
                workloads.set_node_ready(self.admin, node, True)
            raise OSError(f"{node}: connection refused (rebooting)")
        return f"boot-{node}-{m.boots}"

    def reboot(self, node: str) -> None:
        self.log.append(f"reboot {node}")
        if self.on_reboot:
            self.on_reboot(node)
        self.machines[node].down_polls = 2
        workloads.set_node_ready(self.admin, node, False)

    def shutdown(self, node: str) -> None:
        self.log.append(f"shutdown {node}")
        self.machines[node].running = False
        workloads.set_node_ready(self.admin, node, False)

    def start(self, node: str) -> None:
        m = self.machines[node]
        if not m.running:
            self.log.append(f"start {node}")
            m.running, m.boots = True, m.boots + 1
            workloads.set_node_ready(self.admin, node, True)

    def running(self, node: str) -> bool:
        return self.machines[node].running


class TimeClock(FakeClock):
    """A frozen clock that moves when slept on; while it moves the world acts (the kubelet
    finishes evicted pods, the operator starts stopped VMs)."""

    def __init__(self, t: float, actors: list[Callable[[], None]]) -> None:
        super().__init__(t)
        self.actors = actors

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        for act in self.actors:
            act()


def _node_facts(
    name: str, m: Machine, seen: dict[str, Any], members: tuple[Member, ...]
) -> NodeFacts:
    conditions = (seen.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    annotations = (seen.get("metadata") or {}).get("annotations") or {}
    return NodeFacts(
        name,
        m.ip,
        vm=VmState("running" if m.running else "stopped", m.pve),
        ssh=m.running and not m.down_polls,
        ready=ready,
        unschedulable=bool((seen.get("spec") or {}).get("unschedulable")),
        cordoned_by=annotations.get(CORDON_ANNOTATION),
        members=members if m.running else None,
        api=ready and m.running,
        reboot_required=m.reboot_required,
        certs=certs(name),
    )


@dataclass
class World:
    env: Environment
    api: KubeApi
    admin: Any
    namespace: str
    power: FakePower
    clock: TimeClock
    build: Path
    nodes: list[str]

    def facts(self) -> ClusterFacts:
        members = tuple(Member(f"{m.ip}:19001", "voter") for m in self.power.machines.values())
        nodes = tuple(
            _node_facts(name, m, self.api.node(name) or {}, members)
            for name, m in self.power.machines.items()
        )
        return ClusterFacts(self.env.name, datetime.fromtimestamp(self.clock.now(), UTC), nodes)

    def rig(self, boundary: Callable[[str], None] | None = None) -> Rig:
        return Rig(self.api, self.power, self.facts, lease_api=self.api, clock=self.clock,
                   boundary=boundary)  # fmt: skip

    def pods(self, node: str) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.api.node_pods(node))

    def cordon(self, node: str) -> tuple[bool, str | None]:
        seen = self.api.node(node) or {}
        return (
            bool((seen.get("spec") or {}).get("unschedulable")),
            ((seen.get("metadata") or {}).get("annotations") or {}).get(CORDON_ANNOTATION),
        )


def _unschedulable(admin: Any, node: str) -> bool:
    core: Any = client.CoreV1Api(admin)
    return bool(core.read_node(node).spec.unschedulable)


def make_world(server: KubeApiServer, build: Path, env_name: str = "dev", t: float = 0) -> World:
    """Three fresh Nodes named after this world, one web pod on each under a PDB allowing 1."""
    suffix = secrets.token_hex(3)
    base = load_environment(env_name, ROOT)
    nodes = [n.model_copy(update={"name": f"d{suffix}-{i}"}) for i, n in enumerate(base.nodes, 1)]
    env = base.model_copy(update={"nodes": nodes})
    admin = server.api_client()
    namespace = server.create_namespace(f"drain-{suffix}")
    machines = {}
    for n in nodes:
        workloads.register_node(admin, n.name)
        workloads.run_pod(admin, namespace, n.name, name=f"web-{n.name}")
        machines[n.name] = Machine(str(n.ip), n.pve_node)
    workloads.pdb(admin, namespace, "web", allowed=1, healthy=3)
    power = FakePower(admin, machines)
    kubelet = workloads.Kubelet(admin)

    def kubelets_and_controllers() -> None:
        # The kubelet finishes evicted pods; the ReplicaSet controller starts a replacement on
        # a schedulable node (the scheduler's part); once it is Ready the disruption controller
        # recomputes the PDB (allows 1 again: 3 healthy, minAvailable 2).
        finished = [p for n in nodes for p in kubelet.finish(n.name)]
        for _ in finished:
            free = [n.name for n in nodes if not _unschedulable(admin, n.name)]
            workloads.run_pod(admin, namespace, free[0])
        if finished:
            workloads.set_pdb_allowed(admin, namespace, "web", 1, healthy=3)

    clock = TimeClock(t, [kubelets_and_controllers])
    build.mkdir(parents=True, exist_ok=True)
    return World(env, KubeApi(server.kubeconfig), admin, namespace, power, clock, build,
                 [n.name for n in nodes])  # fmt: skip


def set_allowed(world: World, allowed: int) -> None:
    workloads.set_pdb_allowed(world.admin, world.namespace, "web", allowed, healthy=3)
