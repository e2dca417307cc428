"""The upgrade's per-node gate and its failure policy: pure decisions over `ClusterFacts`.

Gate after `snap refresh` on node N (issue 14; shared/reference/microk8s-behaviour.md):
`microk8s status --wait-ready` is no per-node gate (it returns once *any* node is Ready,
canonical/microk8s@1.33 scripts/wrappers/common/utils.py `is_cluster_ready`), and membership is
not liveness, so N passes only on its own facts: its Node Ready with the target kubelet
version, the API answering on N's address, the target channel tracked, the CNI pod on N Ready,
and three voters listed alike by *every* node, each voter a node that answers.

Failure policy: the run stops at the first failed gate and touches no other node. Then
- N still tracks its old channel and is healthy there (a refused refresh: snapd undoes it and
  the snap stays on the old revision): uncordon N (mk8s' own cordon) and exit 1;
- otherwise N is on the new revision (or unknown) and unhealthy: exactly two ways out, never a
  `snap revert` or a disk rollback of one voter (its datastore would rewind alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from mk8s.day2.facts import ClusterFacts, NodeFacts

VOTERS = 3


def kubelet_prefix(channel: str) -> str:
    """1.33/stable -> v1.33. (the kubelet version a node on that channel reports)."""
    return f"v{channel.split('/', 1)[0]}."


def voter_problems(facts: ClusterFacts) -> list[str]:
    by_ip = {n.ip: n for n in facts.nodes}
    by_name = {n.name: n for n in facts.nodes}
    seen: dict[str, frozenset[str]] = {}
    out: list[str] = []
    for n in facts.nodes:
        if n.members is None:
            out.append(f"{n.name}: its datastore members could not be read")
            continue
        seen[n.name] = frozenset(m.host for m in n.members if m.role == "voter")
    views = set(seen.values())
    if len(views) > 1:
        listed = "; ".join(f"{k} sees {', '.join(sorted(v)) or 'none'}" for k, v in seen.items())
        out.append(f"the nodes disagree on the voters: {listed}")
    for voters in views:
        if len(voters) != VOTERS:
            out.append(f"{len(voters)} voters listed ({', '.join(sorted(voters))}), want {VOTERS}")
        for host in sorted(voters):
            node = by_ip.get(host) or by_name.get(host)
            if node is None:
                out.append(f"voter {host} is not a node of this environment")
            elif node.ssh is False or node.api is False:
                out.append(f"voter {node.name} is listed but does not answer (voter down)")
    return sorted(set(out))


def node_problems(node: NodeFacts, channel: str | None) -> list[str]:
    """What keeps `node` from passing its gate on `channel` (None: on whatever it runs)."""
    out = []
    if node.snap is None:
        out.append(f"{node.name}: snap state unknown (SSH: {node.ssh_error or 'no answer'})")
    elif channel is not None and node.snap.channel != channel:
        out.append(f"{node.name}: tracks {node.snap.channel}, want {channel}")
    if node.ready is not True:
        out.append(f"{node.name}: Node Ready is {node.ready}")
    if channel is not None:
        prefix = kubelet_prefix(channel)
        if not (node.kubelet_version or "").startswith(prefix):
            out.append(f"{node.name}: kubelet {node.kubelet_version}, want {prefix}x")
    if node.api is not True:
        out.append(f"{node.name}: the API does not answer on {node.ip}")
    if node.cni_ready is not True:
        out.append(f"{node.name}: the CNI pod on it is not Ready ({node.cni_ready})")
    return out


def gate_problems(facts: ClusterFacts, name: str, channel: str) -> list[str]:
    """The per-node gate after a refresh: N's own facts plus the voters agreed by all."""
    return node_problems(facts.node(name), channel) + voter_problems(facts)


def healthy_problems(facts: ClusterFacts, name: str) -> list[str]:
    """N is healthy on whatever it runs: Ready, API, CNI, voters (no version asked)."""
    return node_problems(facts.node(name), None) + voter_problems(facts)


def api_via_each_node(facts: ClusterFacts) -> list[str]:
    return [
        f"{n.name}: the API does not answer on {n.ip}" for n in facts.nodes if n.api is not True
    ]


class Verdict(StrEnum):
    HEALTHY_OLD = "healthy on the old revision"
    UNHEALTHY = "unhealthy after the step (on the new revision, or not known to be on the old)"


@dataclass(frozen=True)
class Failure:
    node: str
    outcome: Verdict
    problems: tuple[str, ...]


def classify(facts: ClusterFacts, name: str, old_channel: str, reason: Sequence[str]) -> Failure:
    """After a failed step on `name`: still on the old channel and healthy, or not."""
    node = facts.node(name)
    on_old = node.snap is not None and node.snap.channel == old_channel
    problems = healthy_problems(facts, name) if on_old else []
    if on_old and not problems:
        return Failure(name, Verdict.HEALTHY_OLD, tuple(reason))
    return Failure(name, Verdict.UNHEALTHY, tuple(reason) + tuple(problems))


def ways_out(env: str, node: str, snapshot: str, old_channel: str) -> tuple[str, ...]:
    """Exactly the two recoveries, each with what it costs (docs/upgrade.md "Recovery")."""
    return (
        f"{node} is unhealthy on the new revision. Two ways out; nothing else was touched:",
        f"  1. invoke upgrade --env {env} --recover rebuild-node: removes {node} from the "
        f"datastore on a healthy voter, restores its disk from snapshot {snapshot!r} (or "
        f"reinstalls it), installs {old_channel}, re-joins it as a new member and waits for "
        f"{VOTERS} voters. The cluster keeps running on the other nodes; {node}'s local data "
        "since the snapshot is lost.",
        f"  2. invoke upgrade --env {env} --recover rollback-cluster: stops EVERY VM, rolls every "
        f"VM back to {snapshot!r}, starts them and verifies. The whole cluster is down meanwhile "
        "and every change since the snapshot (workloads, secrets, PVC data on the nodes) is "
        f"lost; afterwards set microk8s.channel back to {old_channel} in the inventory.",
        f"Never `snap revert` or roll back {node} alone: a voter's datastore would rewind "
        "without the others.",
    )
