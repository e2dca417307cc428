"""Stand-ins for pieces other helpers of issue 14 build at the same time (one place, small).

- `plan_steps`: until `mk8s.day2.upgrade_plan.plan_upgrade` lands: the brief's step keys in
  the brief's order (stand-bys/spares first, the datastore leader and the kubeconfig endpoint
  last), without its refusals (skipped minors, downgrades, removed flags and APIs, windows).
- `preflight`: until `mk8s.day2.preflight` lands: the gates the facts already answer.
Both are replaced by imports when the real ones are on main; nothing else depends on them.
"""

from __future__ import annotations

from mk8s.day2.facts import ClusterFacts
from mk8s.day2.plan import Component, Kind, Plan, StepSpec, make_plan
from mk8s.day2.snapshots import can_snapshot
from mk8s.day2.upgrade_gates import node_problems, voter_problems


def node_order(facts: ClusterFacts) -> list[str]:
    """Not the leader nor the endpoint first; the leader, then the endpoint, last."""
    last = [n for n in (facts.leader, facts.endpoint_node) if n]
    first = [n.name for n in facts.nodes if n.name not in last]
    return first + [n for i, n in enumerate(last) if n not in last[:i]]


def plan_steps(env: str, facts: ClusterFacts, target: str, snapshot: str) -> Plan:
    specs = [
        StepSpec("preflight", Kind.CHECK, "preflight gates", expected_s=20),
        StepSpec(
            "snapshot-set",
            Kind.SNAPSHOT,
            "disk-only snapshot of every VM",
            snapshots=(snapshot,),
            expected_s=60,
        ),
        StepSpec("verify-snapshots", Kind.CHECK, "snapshot set present on every VM", expected_s=5),
    ]
    for n in node_order(facts):
        specs += [
            StepSpec(f"{n}:cordon", Kind.API, f"cordon {n}", node=n, expected_s=2),
            StepSpec(f"{n}:evict", Kind.API, f"evict {n} (PDBs honoured)", node=n, expected_s=120),
            StepSpec(
                f"{n}:refresh", Kind.COMMAND, f"refresh {n}", node=n,
                command=f"snap refresh microk8s --channel={target}", expected_s=300,
            ),
            StepSpec(
                f"{n}:hold", Kind.COMMAND, f"hold {n}", node=n,
                command="snap refresh --hold microk8s", expected_s=2,
            ),
            StepSpec(
                f"{n}:gate", Kind.WAIT, f"gate {n}", node=n,
                waits_for="Ready, kubelet, API, 3 voters, CNI", expected_s=120,
            ),
            StepSpec(f"{n}:uncordon", Kind.API, f"uncordon {n}", node=n, expected_s=2),
            StepSpec(f"{n}:conformance", Kind.CHECK, f"conformance after {n}", node=n,
                     expected_s=30),
            StepSpec(f"{n}:settle", Kind.WAIT, f"settle after {n}", node=n, expected_s=60),
        ]  # fmt: skip
    specs.append(StepSpec("finish", Kind.CHECK, "every node on the target; evidence"))
    components = [
        Component("microk8s", n.name, n.snap.channel if n.snap else "?", target)
        for n in facts.nodes
    ]
    return make_plan("upgrade", env, specs, components)


def preflight(facts: ClusterFacts) -> list[str]:
    out: list[str] = []
    for n in facts.nodes:
        out += [f"FAIL {p}" for p in node_problems(n, None)]
        if n.unschedulable and not (n.cordoned_by or "").startswith("upgrade "):
            out.append(f"FAIL {n.name}: cordoned by someone else (uncordon it or wait)")
        if n.vm is not None and n.vm.lock:
            out.append(f"FAIL {n.name}: VM locked ({n.vm.lock}); wait for the task to end")
    out += [f"FAIL datastore: {p}" for p in voter_problems(facts)]
    for d in facts.disruption:
        out += [
            f"FAIL {d.node}: PDB {b.pdb or '?'} allows 0 ({b.namespace}/{b.pod}); scale up or wait"
            for b in d.blockers
        ]
    vms = [n.snapshots for n in facts.nodes if n.snapshots is not None]
    out += [f"FAIL snapshots: {r}" for r in can_snapshot(vms).reasons]
    return sorted(set(out))
