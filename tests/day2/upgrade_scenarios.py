"""Recorded cluster states for the upgrade planner's tests (mk8s.day2.upgrade_plan).

The shapes follow mk8s.day2.facts as the status reader fills them: `snap list` channel,
revision and version, the store's newest revision in that channel, Node Ready and kubelet
version, and the datastore members as each node lists them (`host:19001` and role).
Revision and version numbers are test data, not claims about the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import IPv4Address

from mk8s.day2.facts import ClusterFacts, NodeFacts, SnapFacts, VmState
from mk8s.day2.upgrade_plan import UpgradeInputs
from mk8s.day2.upgrade_refusals import PreviousEvidence
from mk8s.edges.microk8s import Member
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment, NodeSpec

# Tuesday 20:15 UTC: inside stage's window (tue 20:00, 1 h); the first Sunday of December
# 2026 at 22:30 UTC: inside prod's (first Sunday 22:00, 2 h).
STAGE_WINDOW = datetime(2026, 12, 1, 20, 15, tzinfo=UTC)
PROD_WINDOW = datetime(2026, 12, 6, 22, 30, tzinfo=UTC)
OUTSIDE = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday morning

# channel -> (revision, kubelet version) used for nodes on it (test data).
REVISIONS = {
    "1.31/stable": ("7200", "v1.31.9"),
    "1.32/stable": ("7900", "v1.32.8"),
    "1.33/stable": ("8148", "v1.33.5"),
    "1.34/stable": ("8390", "v1.34.2"),
    "1.35/stable": ("8600", "v1.35.0"),
    "1.33/candidate": ("8160", "v1.33.6"),
}


def environment(
    name: str = "stage",
    channel: str | None = None,
    *,
    controller: str | None = None,
    extra_nodes: int = 0,
    api_vip: str | None = None,
) -> Environment:
    env = load_environment(name)
    update: dict[str, object] = {}
    if channel is not None:
        update["microk8s"] = env.microk8s.model_copy(update={"channel": channel})
    if controller is not None:
        update["ingress"] = env.ingress.model_copy(update={"controller": controller})
    if extra_nodes:
        last = env.nodes[-1]
        more = [
            NodeSpec(
                name=f"{env.name}-k8s-{len(env.nodes) + i}",
                vmid=last.vmid + i,
                ip=last.ip + i,
                pve_node=last.pve_node,
            )
            for i in range(1, extra_nodes + 1)
        ]
        update["nodes"] = [*env.nodes, *more]
    if api_vip is not None:
        update["network"] = env.network.model_copy(update={"api_vip": IPv4Address(api_vip)})
    return env.model_copy(update=update)


def snap(channel: str, *, behind: bool = False, latest_known: bool = True) -> SnapFacts:
    revision, version = REVISIONS[channel]
    latest = str(int(revision) + 12) if behind else revision
    return SnapFacts(channel, revision, version, True, latest if latest_known else None)


def node(spec: NodeSpec, channel: str = "1.33/stable", members: Sequence[Member] = ()) -> NodeFacts:
    s = snap(channel)
    return NodeFacts(
        name=spec.name,
        ip=str(spec.ip),
        vm=VmState("running", spec.pve_node),
        ssh=True,
        snap=s,
        ready=True,
        kubelet_version=s.version,
        unschedulable=False,
        members=tuple(members),
        api=True,
        cni_ready=True,
        reboot_required=False,
    )


def cluster(
    env: Environment,
    channels: Mapping[str, str] | str = "1.33/stable",
    *,
    roles: Mapping[str, str] | None = None,
    leader: str | None = "first",
    endpoint: str | None = "first",
) -> ClusterFacts:
    """Every node healthy; roles default to voters for the first three, then stand-bys."""
    names = [n.name for n in env.nodes]
    roles = roles or {n: ("voter" if i < 3 else "standby") for i, n in enumerate(names)}
    members = tuple(Member(f"{n.ip}:19001", roles[n.name]) for n in env.nodes)
    by_node = channels if isinstance(channels, Mapping) else dict.fromkeys(names, channels)
    return ClusterFacts(
        env=env.name,
        taken_at=STAGE_WINDOW,
        nodes=tuple(node(n, by_node[n.name], members) for n in env.nodes),
        leader=names[0] if leader == "first" else leader,
        endpoint_node=names[0] if endpoint == "first" else endpoint,
    )


def with_node(facts: ClusterFacts, name: str, **changes: object) -> ClusterFacts:
    nodes = tuple(replace(n, **changes) if n.name == name else n for n in facts.nodes)  # type: ignore[arg-type]
    return replace(facts, nodes=nodes)


def inputs(
    now: datetime = STAGE_WINDOW,
    *,
    previous: PreviousEvidence | None = None,
    **changes: object,
) -> UpgradeInputs:
    base = UpgradeInputs(now=now, previous=previous, api_use=())
    return replace(base, **changes)  # type: ignore[arg-type]


def green(env: str, channel: str) -> PreviousEvidence:
    return PreviousEvidence(env, channel, True, STAGE_WINDOW)
