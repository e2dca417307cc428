"""Property: over random cluster states, a plan never disrupts two nodes at once, never plans
while a node is unhealthy, and orders spares/stand-bys first, the endpoint and leader last."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from mk8s.day2.facts import ClusterFacts, NodeFacts, VmState
from mk8s.day2.plan import Plan
from mk8s.day2.upgrade_plan import plan_upgrade
from mk8s.day2.upgrade_refusals import UpgradeRefusedError, health_problems
from mk8s.edges.microk8s import Member
from tests.day2.upgrade_scenarios import cluster, environment, green, inputs, snap

TARGET = "1.34/stable"
ENVS = {n: environment("stage", TARGET, extra_nodes=n - 3) for n in (3, 4, 5)}
RANK = {"spare": 0, "standby": 1, "voter": 2}
# mostly one minor below the target or on it; sometimes a skip or a newer node
CHANNELS = ["1.33/stable"] * 4 + ["1.34/stable"] * 4 + ["1.32/stable", "1.35/stable"]


@dataclass(frozen=True)
class State:
    size: int
    roles: tuple[str, ...]
    leader: int | None
    endpoint: int | None
    ready: tuple[bool | None, ...]
    vm: tuple[str, ...]
    cordoned: tuple[bool, ...]
    channels: tuple[str, ...]


@st.composite
def states(draw: st.DrawFn) -> State:
    size = draw(st.sampled_from([3, 4, 5]))

    def each(strategy: st.SearchStrategy[object]) -> tuple[object, ...]:
        return tuple(draw(strategy) for _ in range(size))

    mostly = st.sampled_from([True] * 6 + [False, None])
    return State(
        size,
        each(st.sampled_from(["voter", "voter", "standby", "spare"])),  # type: ignore[arg-type]
        draw(st.none() | st.integers(0, size - 1)),
        draw(st.none() | st.integers(0, size - 1)),
        each(mostly),  # type: ignore[arg-type]
        each(st.sampled_from(["running"] * 8 + ["stopped"])),  # type: ignore[arg-type]
        each(st.sampled_from([False] * 8 + [True])),  # type: ignore[arg-type]
        each(st.sampled_from(CHANNELS)),  # type: ignore[arg-type]
    )


def facts_for(s: State) -> ClusterFacts:
    env = ENVS[s.size]
    names = [n.name for n in env.nodes]
    roles = dict(zip(names, s.roles, strict=True))
    base = cluster(
        env,
        roles=roles,
        leader=None if s.leader is None else names[s.leader],
        endpoint=None if s.endpoint is None else names[s.endpoint],
    )
    nodes: list[NodeFacts] = []
    for i, n in enumerate(base.nodes):
        channel = s.channels[i]
        nodes.append(
            replace(
                n,
                snap=snap(channel),
                kubelet_version=snap(channel).version,
                ready=s.ready[i],
                vm=VmState(s.vm[i], "pve1"),
                unschedulable=s.cordoned[i],
            )
        )
    return replace(base, nodes=tuple(nodes))


def disrupted_intervals(plan: Plan) -> dict[str, tuple[int, int]]:
    """node -> (cordon step, uncordon step)."""
    out = {}
    for s in plan.steps:
        if s.key.endswith(":cordon"):
            start = s.number
            end = next(t.number for t in plan.steps if t.key == f"{s.node}:uncordon")
            assert s.node is not None
            out[s.node] = (start, end)
    return out


@settings(max_examples=300, deadline=None)
@given(states())
def test_one_node_at_a_time_and_never_while_one_is_unhealthy(s: State) -> None:
    env = ENVS[s.size]
    facts = facts_for(s)
    unhealthy = [n.name for n in facts.nodes if health_problems(n)]
    try:
        plan = plan_upgrade(env, facts, inputs(previous=green("dev", TARGET)))
    except UpgradeRefusedError as refused:
        minors = {int(c.split("/")[0].split(".")[1]) for c in s.channels}
        if unhealthy:
            assert "unhealthy" in refused.codes
            assert all(any(n in line for line in refused.lines) for n in unhealthy)
        if max(minors) > 34:
            assert "downgrade" in refused.codes
        elif min(minors) < 33:
            assert {"mixed-minor", "path-skip"} & set(refused.codes)
        path = {"downgrade", "mixed-minor", "path-skip"}
        assert set(refused.codes) <= {"unhealthy", "leader-unknown", "endpoint-unknown", *path}
        return
    assert not unhealthy
    assert set(s.channels) <= {"1.33/stable", TARGET}
    if facts.leader is None:  # planned only on member lists every node agrees on
        assert len({frozenset(n.members or ()) for n in facts.nodes}) == 1
    intervals = sorted(disrupted_intervals(plan).values())
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end < start  # a node's cordon..uncordon never overlaps another's
    # every node step of one node is contiguous (cordon..settle), after the verified snapshots
    order = [s.node for s in plan.steps if s.node]
    visited = list(dict.fromkeys(order))
    assert order == [n for n in visited for _ in range(8)]
    if visited:
        verify = next(s.number for s in plan.steps if s.key == "verify-snapshots")
        assert all(s.number > verify for s in plan.steps if s.node)
    # exactly the nodes not yet on the target, in rank order
    assert set(visited) == {
        n.name for n, c in zip(facts.nodes, s.channels, strict=True) if c != TARGET
    }
    names = [n.name for n in env.nodes]

    def rank(name: str) -> tuple[int, int]:
        if name == facts.leader:
            return (4, 0)
        if name == facts.endpoint_node:
            return (3, 0)
        return (RANK[s.roles[names.index(name)]], names.index(name))

    assert visited == sorted(visited, key=rank)


def test_the_property_can_fail_an_overlapping_plan() -> None:
    """The interval check is not vacuous: two nodes cordoned at once are caught."""
    env = ENVS[3]
    facts = cluster(env, leader="stage-k8s-1")
    plan = plan_upgrade(env, facts, inputs(previous=green("dev", TARGET)))
    steps = list(plan.steps)
    i = next(k for k, st_ in enumerate(steps) if st_.key == "stage-k8s-3:cordon")
    j = next(k for k, st_ in enumerate(steps) if st_.key == "stage-k8s-2:uncordon")
    steps[i], steps[j] = (
        replace(steps[j], number=steps[i].number),
        replace(steps[i], number=steps[j].number),
    )
    bad = replace(plan, steps=tuple(sorted(steps, key=lambda x: x.number)))
    intervals = sorted(disrupted_intervals(bad).values())
    assert any(a[1] > b[0] for a, b in itertools.pairwise(intervals))


def test_members_as_the_leader_lists_them_decide_roles() -> None:
    env = ENVS[4]
    facts = cluster(env, roles=dict.fromkeys([n.name for n in env.nodes], "voter"))
    leader_view = tuple(
        Member(f"{n.ip}:19001", "spare" if n.name == "stage-k8s-3" else "voter") for n in env.nodes
    )
    facts = replace(
        facts,
        nodes=tuple(
            replace(n, members=leader_view) if n.name == "stage-k8s-1" else n for n in facts.nodes
        ),
    )
    plan = plan_upgrade(env, facts, inputs(previous=green("dev", TARGET)))
    assert next(s.node for s in plan.steps if s.node) == "stage-k8s-3"
