"""`invoke drain` and `invoke maintenance`, the pure half: the plan for draining one node (or
every node of one Proxmox host), the gates it waits on, and what a refused eviction means.

One node, in this order (step keys are what the journal matches on):
  preflight      the drain gates for this node (Ready, voters, foreign cordons, PDBs, VM lock)
  N:cordon       spec.unschedulable + CORDON_ANNOTATION, so only this cordon is lifted later
  N:evict        policy/v1 evictions, PDBs honoured: wait while a PDB allows none, never force
  N:reboot       `reboot` over SSH                  (--reboot, the default)
  N:stop         shut the VM down through Proxmox   (--stop: host work; it comes back when
  N:back           the operator starts it, or at host boot with onboot=1)
  N:gate         this node Ready, three voters agreed by every node and reachable, its API
  N:uncordon     lift the mk8s cordon (a foreign one is never lifted)

`--pve-node pveX` drains every node on that host: all are cordoned and evicted, then stopped,
then they come back together (the host goes down once), so it is refused when the host holds
more than one voter: three voters keep quorum with two, not with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from mk8s.day2 import preflight
from mk8s.day2.facts import Blocker, ClusterFacts, NodeFacts
from mk8s.day2.plan import Kind, Plan, StepSpec, make_plan
from mk8s.day2.preflight import Gate
from mk8s.edges.kube_drain import Eviction, PodSelection
from mk8s.errors import UserError

VOTERS = 3
QUORUM = 2
REBOOT_COMMAND = "sudo reboot"  # /usr/sbin/reboot: systemd's; the MicroK8s model has it too
EVICT_S = 300  # budget for every pod on the node to be evicted and gone
BOOT_S = 600  # reboot until Ready + voters + API again
BACK_S = 4 * 3600  # --stop: the host work the operator does before the VM runs again
# A drain takes no snapshot, so preflight skips the backup gate and its RPO is never read.
DRAIN_POLICY = preflight.Policy(rpo_minutes=15)


class Mode(StrEnum):
    REBOOT = "reboot"
    STOP = "stop"


def cordon_owner(task: str, env: str, started: str) -> str:
    """The CORDON_ANNOTATION value: which mk8s run cordoned the node (for people; ownership is
    the annotation's presence, since one environment runs one day-2 operation at a time)."""
    return f"{task} {env} {started}"


# --- gates ---------------------------------------------------------------------------------


def _known(facts: ClusterFacts, name: str) -> NodeFacts:
    found = next((n for n in facts.nodes if n.name == name), None)
    if found is None:
        names = ", ".join(n.name for n in facts.nodes)
        raise UserError(f"--node {name}: not a node of {facts.env} ({names})")
    return found


def describe_blocker(b: Blocker) -> str:
    what = f"PDB {b.namespace}/{b.pdb}" if b.pdb else "the API"
    return f"{what} keeps pod {b.namespace}/{b.pod}: {b.message}"


def drain_gates(facts: ClusterFacts, node: str) -> tuple[Gate, ...]:
    """The preflight for draining `node`: the status helper's gates for one node (Ready,
    voters agreed and reachable, no foreign cordon, PDBs, VM lock, certificates, safe to
    drain), the same verdict `invoke status` prints."""
    return preflight.gates(facts, preflight.Scope(node), DRAIN_POLICY)


def back_problems(facts: ClusterFacts, node: str) -> list[str]:
    """After a reboot/start: this node Ready, its API answering, three voters agreed."""
    n = _known(facts, node)
    problems = []
    if n.ready is not True:
        problems.append(f"{node}: not Ready")
    if n.api is not True:
        problems.append(f"{node}: its API server does not answer")
    voters = preflight.voters(facts)  # agreed by every node, each answering SSH and its API
    return problems + ([] if voters.ok else [voters.detail])


def failed(gates: Sequence[Gate]) -> tuple[Gate, ...]:
    return tuple(g for g in gates if not g.ok)


# --- evictions -----------------------------------------------------------------------------


def blocker_of(e: Eviction) -> Blocker:
    return Blocker(e.pod.namespace, e.pod.name, e.pdb, e.message)


def unmanaged_blockers(selection: PodSelection) -> tuple[Blocker, ...]:
    """A pod no controller would recreate: evicting it deletes it for good (kubectl drain
    refuses it without --force; mk8s never forces)."""
    return tuple(
        Blocker(
            p.namespace, p.name, None, "no controller would recreate it (kubectl needs --force)"
        )
        for p in selection.unmanaged
    )


# --- plans ---------------------------------------------------------------------------------


def node_steps(node: str, ip: str, mode: Mode) -> list[StepSpec]:
    steps = [
        StepSpec(f"{node}:cordon", Kind.API, f"cordon {node} (marked as mk8s')", node=node),
        StepSpec(
            f"{node}:evict",
            Kind.API,
            f"evict {node}'s pods, PDBs honoured",
            node=node,
            waits_for="every evicted pod gone; a PDB that allows none holds the drain",
            expected_s=60,
        ),
    ]
    if mode is Mode.REBOOT:
        steps.append(
            StepSpec(
                f"{node}:reboot",
                Kind.COMMAND,
                f"reboot {node} over SSH",
                node=node,
                command=f"ssh {ip} {REBOOT_COMMAND}",
                expected_s=120,
            )
        )
    else:
        steps += stop_steps(node)
    steps += [
        StepSpec(
            f"{node}:gate",
            Kind.WAIT,
            f"{node} back",
            node=node,
            waits_for=f"{node} Ready, its API answering, {VOTERS} voters agreed by every node",
            expected_s=60,
        ),
        StepSpec(f"{node}:uncordon", Kind.API, f"uncordon {node} (mk8s' cordon only)", node=node),
    ]
    return steps


def stop_steps(node: str) -> list[StepSpec]:
    return [
        StepSpec(f"{node}:stop", Kind.API, f"shut {node}'s VM down through Proxmox", node=node),
        StepSpec(
            f"{node}:back",
            Kind.WAIT,
            f"{node}'s VM running again",
            node=node,
            waits_for=f"the VM started (by you, or at host boot with onboot=1), {BACK_S}s",
            expected_s=600,
        ),
    ]


def preflight_step(nodes: Sequence[str]) -> StepSpec:
    return StepSpec(
        "preflight",
        Kind.CHECK,
        f"drain gates for {', '.join(nodes)}",
        waits_for="each gate passes (printed with its fix)",
        expected_s=10,
    )


def plan_drain(env: str, node: str, ip: str, mode: Mode) -> Plan:
    return make_plan(
        "drain",
        env,
        [preflight_step([node]), *node_steps(node, ip, mode)],
        notes=(
            f"{node} is cordoned with the mk8s.io/cordoned-by annotation and uncordoned only "
            "if that annotation is still there; a drain that cannot finish lifts its own "
            "cordon and names the pods and PDBs that held it.",
        ),
    )


def plan_maintenance(env: str, nodes: Sequence[tuple[str, str]]) -> Plan:
    """Reboot `nodes` ((name, ip), in order) one at a time, each drained first."""
    specs = [preflight_step([n for n, _ in nodes])]
    for name, ip in nodes:
        specs += node_steps(name, ip, Mode.REBOOT)
    return make_plan("maintenance", env, specs)


def plan_host(env: str, pve_node: str, nodes: Sequence[str]) -> Plan:
    """Every node on one Proxmox host: drain each, stop each, wait all back, uncordon each."""
    specs = [preflight_step(nodes)]
    for name in nodes:
        specs += [
            StepSpec(f"{name}:cordon", Kind.API, f"cordon {name} (marked as mk8s')", node=name),
            StepSpec(f"{name}:evict", Kind.API, f"evict {name}'s pods", node=name, expected_s=60),
        ]
    for name in nodes:
        specs += stop_steps(name)
    for name in nodes:
        specs.append(
            StepSpec(
                f"{name}:gate",
                Kind.WAIT,
                f"{name} back",
                node=name,
                waits_for=f"{name} Ready, its API answering, {VOTERS} voters agreed",
                expected_s=60,
            )
        )
    specs += [
        StepSpec(f"{n}:uncordon", Kind.API, f"uncordon {n} (mk8s' cordon only)", node=n)
        for n in nodes
    ]
    return make_plan(
        "maintenance",
        env,
        specs,
        notes=(f"{pve_node} goes down once, with {', '.join(nodes)} on it.",),
    )


# --- which nodes -------------------------------------------------------------------------------


def order(facts: ClusterFacts, names: Sequence[str]) -> list[str]:
    """Stand-bys first, the datastore leader and the kubeconfig endpoint last (the leader's
    reboot forces an election; the endpoint's cuts the operator off while it is down)."""

    def rank(name: str) -> tuple[int, int, str]:
        return (name == facts.endpoint_node, name == facts.leader, name)

    return sorted(names, key=rank)


def reboot_candidates(facts: ClusterFacts) -> tuple[list[str], list[str]]:
    """(nodes whose /var/run/reboot-required exists, one line per node it could not be read)."""
    wanted = [n.name for n in facts.nodes if n.reboot_required]
    unknown = [
        f"{n.name}: reboot-required not read" for n in facts.nodes if n.reboot_required is None
    ]
    return order(facts, wanted), unknown


def host_nodes(facts: ClusterFacts, pve_node: str) -> list[str]:
    """Nodes whose VM runs on `pve_node` now (Proxmox's answer, not the inventory's: a VM may
    have been migrated). Refused when the host holds more than one voter, or none of ours."""
    unread = [n.name for n in facts.nodes if n.vm is None]
    if unread:
        raise UserError(f"--pve-node {pve_node}: VM host not read for {', '.join(unread)}")
    here = [n for n in facts.nodes if n.vm is not None and n.vm.pve_node == pve_node]
    if not here:
        hosts = sorted({n.vm.pve_node for n in facts.nodes if n.vm})
        raise UserError(
            f"--pve-node {pve_node}: no node of {facts.env} runs there ({', '.join(hosts)})"
        )
    agreed, problems = preflight.agreed_voters(facts)
    if agreed is None:
        raise UserError(f"--pve-node {pve_node}: voters unknown ({'; '.join(problems)})")
    voters_here = [n.name for n in here if n.ip in agreed or n.name in agreed]
    if len(voters_here) > 1:
        raise UserError(
            f"--pve-node {pve_node}: it holds {len(voters_here)} voters "
            f"({', '.join(voters_here)}); stopping the host would leave "
            f"{VOTERS - len(voters_here)} of {VOTERS} and lose quorum (needs {QUORUM}). "
            "Migrate one VM to another host first (docs/drain.md)"
        )
    return order(facts, [n.name for n in here])
