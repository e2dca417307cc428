"""`invoke upgrade`: everything decided before anything is touched (pure, over recorded facts).

    plan = plan_upgrade(env, facts, UpgradeInputs(now=..., api_use=..., previous=...))

returns the `Plan` (kubeadm-style current/target rows per node, then numbered steps) or raises
`UpgradeRefusedError` with one line per refusal, each naming its fix. Facts it rests on
(shared/reference/microk8s-behaviour.md, "Snap refresh and revert"):
- a refresh stays inside the tracked channel; a minor change needs `--channel X.Y/stable`, and
  minors go one at a time, so a skip is refused with the path;
- custom flags the next minor removes break kubelite after the refresh (microk8s#2771, #2788):
  refused before (mk8s.day2.upgrade_refusals);
- a held snap is still refreshed when named with a channel (canonical/snapd@0d56083:
  tests/main/snap-refresh-hold/task.yaml, "Held snaps are refreshed in specific refreshes"), so
  there is no unhold step; `N:hold` holds it again rather than assume the hold survives;
- `snap revert` (or one VM's disk rollback) of a voter rewinds its datastore: the plan takes one
  snapshot set of every VM before the first node and has no per-node revert step.

Node order: strictly one node at a time; spares, then stand-bys, then voters; the kubeconfig
endpoint node next to last (the operator's API address answers until then) and the datastore
leader last (one leader election, after every other node runs the new version).

Step keys are the contract with the upgrade flow (its journal matches on them): `preflight`,
`snapshot-set`, `verify-snapshots`, per node `N:cordon` `N:evict` `N:refresh` `N:hold` `N:gate`
`N:uncordon` `N:conformance` `N:settle`, then `finish`.

Resume: the runner resumes only a plan with the same fingerprint, but a half-done upgrade
changes the facts a fresh plan is built on. So the flow passes the partial run's recorded plan
(`Journal.plan`) as `UpgradeInputs.resuming`: when it targets the same channel, the refusals are
checked again (the node mk8s itself cordoned may be mid-refresh) and that same plan is returned.
Without a partial run, nodes already on the target are skipped with a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mk8s.day2.facts import ClusterFacts, NodeFacts
from mk8s.day2.plan import Component, Kind, Plan, Step, StepSpec, make_plan
from mk8s.day2.upgrade_refusals import (
    ROLE_RANK,
    TASK,
    ApiUse,
    Channel,
    PreviousEvidence,
    Refusal,
    UpgradeRefusedError,
    channels,
    endpoint_refusals,
    health_refusals,
    ingress_for,
    path_refusals,
    previous_evidence,
    removed_apis,
    removed_flags,
    rendered_flags,
    revision_refusals,
    roles_of,
    window,
)
from mk8s.day2.upgrade_removals import FLAG_MINORS_READ
from mk8s.day2.window import window_state
from mk8s.inventory.model import Environment

STEPS_PER_NODE = ("cordon", "evict", "refresh", "hold", "gate", "uncordon", "conformance", "settle")
# Estimates for the printed plan (not measured): a refresh downloads and restarts kubelite.
EXPECTED_S = {
    "preflight": 60,
    "snapshot-set": 120,
    "verify-snapshots": 10,
    "cordon": 5,
    "evict": 300,
    "refresh": 600,
    "hold": 5,
    "gate": 300,
    "uncordon": 5,
    "conformance": 60,
    "settle": 60,  # upgrade_flow Settings.settle_s: the delay the run waits
    "finish": 10,
}
SETTLE_S = EXPECTED_S["settle"]


@dataclass(frozen=True)
class UpgradeInputs:
    """What the plan needs beside the node facts, each read by the flow (None = not read)."""

    now: datetime
    outside_window: bool = False
    previous: PreviousEvidence | None = None  # promotion.after's newest upgrade evidence
    api_use: Sequence[ApiUse] | None = None  # API versions objects/clients use
    # node -> service (kubelet, kube-apiserver, ...) -> flags in its args file on the node
    node_args: Mapping[str, Mapping[str, Sequence[str]]] | None = None
    # nodes where $SNAP_DATA/var/lock/no-arg-sanitisation exists (read with node_args)
    no_arg_sanitisation: frozenset[str] = frozenset()
    resuming: Mapping[str, Any] | None = None  # the partial run's plan (Journal.plan)


def snapshot_name(target: Channel) -> str:
    # Proxmox snapshot names take letters, digits, '-' and '_' (no dots).
    return f"mk8s-pre-{target.major}-{target.minor}"


def node_order(facts: ClusterFacts) -> list[str]:
    """Spares, stand-bys, voters; then the endpoint node; the leader last (see module doc)."""
    roles, _ = roles_of(facts)
    index = {n.name: i for i, n in enumerate(facts.nodes)}

    def rank(name: str) -> tuple[int, int]:
        if name == facts.leader:
            return (4, index[name])
        if name == facts.endpoint_node:
            return (3, index[name])
        return (ROLE_RANK.get(roles.get(name, "voter"), 2), index[name])

    return sorted(index, key=rank)


# ---- the plan --------------------------------------------------------------------------------


def refusals(
    env: Environment, facts: ClusterFacts, inputs: UpgradeInputs, *, resuming: bool = False
) -> list[Refusal]:
    """Every reason not to plan, in a stable order (empty: plan)."""
    target = _target(env)
    current, out = channels(facts)
    out += path_refusals(current, target)
    out += revision_refusals(facts, target)
    out += health_refusals(facts, resuming)
    out += roles_of(facts)[1]
    out += endpoint_refusals(env, facts)
    flags: dict[str, dict[str, list[str]]] = {}
    sources: list[Mapping[str, Mapping[str, Sequence[str]]]] = [rendered_flags(env)]
    sources.append(inputs.node_args or {})
    for source in sources:
        for node, services in source.items():
            for service, names in services.items():
                flags.setdefault(node, {}).setdefault(service, []).extend(names)
    out += removed_flags(flags, target.minor, unsanitised=inputs.no_arg_sanitisation)
    out += removed_apis(inputs.api_use, target.minor)
    out += ingress_for(env, target.minor)
    out += previous_evidence(env, str(target), inputs.previous)
    out += window(env, inputs.now, inputs.outside_window)
    return out


def _target(env: Environment) -> Channel:
    target = Channel.parse(env.microk8s.channel)
    assert target is not None  # the inventory model validated it
    return target


def node_steps(node: str, target: Channel) -> list[StepSpec]:
    t = str(target)
    detail: dict[str, tuple[Kind, str, str | None, str | None]] = {
        "cordon": (Kind.API, f"cordon {node}, annotated as mk8s' cordon", None, None),
        "evict": (
            Kind.API,
            f"evict {node}'s pods, PDBs honoured (never forced)",
            None,
            f"every evictable pod gone from {node}; a blocking PDB is named",
        ),
        "refresh": (
            Kind.COMMAND,
            f"refresh {node} to {t}",
            f"snap refresh microk8s --channel={t}",
            None,
        ),
        "hold": (Kind.COMMAND, f"hold {node}'s snap again", "snap refresh --hold microk8s", None),
        "gate": (
            Kind.WAIT,
            f"gate {node} on the new version",
            None,
            f"Node {node} Ready with kubelet v{target.track}.x, the API answering on {node}, "
            f"three voters agreed by every node, the CNI pod on {node} Ready",
        ),
        "uncordon": (Kind.API, f"uncordon {node} (only mk8s' own cordon)", None, None),
        "conformance": (
            Kind.CHECK,
            f"conformance subset after {node}",
            None,
            "the API through each node, cluster DNS, ingress through the LoadBalancer IP",
        ),
        "settle": (Kind.WAIT, f"settle after {node}", None, f"{SETTLE_S} s settle delay"),
    }
    return [
        StepSpec(
            f"{node}:{step}",
            kind,
            title,
            node=node,
            command=command,
            waits_for=waits,
            expected_s=EXPECTED_S[step],
        )
        for step in STEPS_PER_NODE
        for kind, title, command, waits in [detail[step]]
    ]


def components(facts: ClusterFacts, target: Channel, todo: Sequence[str]) -> list[Component]:
    rows = []
    for n in facts.nodes:
        snap = n.snap
        assert snap is not None  # refused otherwise
        moving = n.name in todo
        rows += [
            Component("microk8s channel", n.name, snap.channel, str(target)),
            Component(
                "microk8s revision",
                n.name,
                snap.revision,
                f"newest in {target}" if moving else snap.revision,
            ),
            Component(
                "kubelet",
                n.name,
                n.kubelet_version or "?",
                f"v{target.track}.x" if moving else n.kubelet_version or "?",
            ),
        ]
    return rows


def why(facts: ClusterFacts, name: str) -> str:
    """A node with what put it where in the order."""
    tags = [roles_of(facts)[0].get(name, "?")]
    tags += ["kubeconfig endpoint"] if name == facts.endpoint_node else []
    tags += ["leader"] if name == facts.leader else []
    return f"{name} ({', '.join(tags)})"


def path_text(facts: ClusterFacts, todo: Sequence[str], target: Channel) -> str:
    froms = {c for n in todo if (c := _channel_of(facts.node(n))) is not None}
    start = min(froms) if froms else target
    return f"{start} -> {target}" if start != target else str(target)


def _channel_of(node: NodeFacts) -> Channel | None:
    return Channel.parse(node.snap.channel) if node.snap is not None else None


def fresh_plan(env: Environment, facts: ClusterFacts, inputs: UpgradeInputs) -> Plan:
    target = _target(env)
    order = node_order(facts)
    todo = [n for n in order if (s := facts.node(n).snap) is not None and s.channel != str(target)]
    notes = [f"path: {path_text(facts, todo, target)}"]
    if todo:
        notes.append("order (one node at a time): " + ", ".join(why(facts, n) for n in todo))
    for name in order:
        if name not in todo:
            snap = facts.node(name).snap
            assert snap is not None
            notes.append(f"{name} is already on {snap.channel} revision {snap.revision}: skipped")
    if target.minor not in FLAG_MINORS_READ:
        notes.append(
            f"flags removed in Kubernetes {target.track} are not tabled (mk8s.day2."
            "upgrade_removals): read its CHANGELOG's Urgent Upgrade Notes before upgrading"
        )
    if inputs.node_args is None:
        notes.append(
            "removed flags were checked in mk8s' launch configuration only: the args files "
            "on the nodes were not read"
        )
    notes.append(window_state(env.maintenance, inputs.now).describe())
    if not todo:
        notes.insert(0, f"every node is on {target}: nothing to upgrade")
        return make_plan(TASK, env.name, [], components(facts, target, todo), notes)
    snap_name = snapshot_name(target)
    snapshots = tuple(f"{n.name}@{snap_name}" for n in facts.nodes)
    specs = [
        StepSpec(
            "preflight",
            Kind.CHECK,
            "preflight gates (each printed pass/fail with its fix)",
            expected_s=EXPECTED_S["preflight"],
        ),
        StepSpec(
            "snapshot-set",
            Kind.SNAPSHOT,
            "one disk-only snapshot of every VM (guest-agent freeze), before any node",
            snapshots=snapshots,
            expected_s=EXPECTED_S["snapshot-set"],
        ),
        StepSpec(
            "verify-snapshots",
            Kind.CHECK,
            "verify the snapshot set",
            waits_for=f"snapshot {snap_name} listed on every VM",
            snapshots=snapshots,
            expected_s=EXPECTED_S["verify-snapshots"],
        ),
    ]
    for name in todo:
        specs += node_steps(name, target)
    specs.append(
        StepSpec(
            "finish",
            Kind.CHECK,
            f"record the upgrade to {target} as evidence",
            expected_s=EXPECTED_S["finish"],
        )
    )
    return make_plan(TASK, env.name, specs, components(facts, target, todo), notes)


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """The inverse of `Plan.to_dict` (for a recorded plan)."""
    steps = tuple(
        Step(
            s["number"],
            s["key"],
            Kind(s["kind"]),
            s["title"],
            s.get("node"),
            s.get("command"),
            s.get("waits_for"),
            tuple(s.get("snapshots", ())),
            s.get("expected_s", 0),
        )
        for s in data["steps"]
    )
    rows = tuple(Component(**c) for c in data.get("components", ()))
    return Plan(data["task"], data["env"], steps, rows, tuple(data.get("notes", ())))


def recorded_plan(env: Environment, recorded: Mapping[str, Any] | None) -> Plan | None:
    """The partial run's plan when it is an upgrade of this env to the inventory's channel."""
    if recorded is None or recorded.get("task") != TASK or recorded.get("env") != env.name:
        return None
    try:
        plan = plan_from_dict(recorded)
    except (KeyError, TypeError, ValueError):
        return None  # unreadable: plan afresh, the runner then shows the difference
    targets = {c.target for c in plan.components if c.name == "microk8s channel"}
    if targets != {env.microk8s.channel} or plan.fingerprint() != recorded.get("fingerprint"):
        return None
    return plan


def plan_upgrade(env: Environment, facts: ClusterFacts, inputs: UpgradeInputs) -> Plan:
    """The upgrade plan, or `UpgradeRefusedError` naming every reason not to."""
    resumed = recorded_plan(env, inputs.resuming)
    found = refusals(env, facts, inputs, resuming=resumed is not None)
    if found:
        raise UpgradeRefusedError(env.name, found)
    return resumed if resumed is not None else fresh_plan(env, facts, inputs)
