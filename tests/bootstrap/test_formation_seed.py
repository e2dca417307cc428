"""Formation decisions (mk8s.bootstrap.formation) on facts the MicroK8s model prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from mk8s.bootstrap import formation as seeding
from mk8s.bootstrap.formation import Action, FormationError, Node, Seed
from mk8s.edges import microk8s as mk
from mk8s.edges.microk8s import JoinOutcome, JoinResult
from tests.support.microk8s.rig import Rig

NODES = [Node(f"n{i}", f"10.9.0.{10 + i}") for i in range(1, 6)]


def rig_of(tmp_path: Path, count: int = 3) -> Rig:
    rig = Rig(tmp_path / "model")
    rig.seed({n.name: n.ip for n in NODES[:count]})
    return rig


def observe(rig: Rig, names: list[str]) -> dict[str, mk.Status | None]:
    seen: dict[str, mk.Status | None] = {}
    for name in names:
        _, out, err = rig.run(name, "microk8s", "status", "--format", "yaml")
        seen[name] = mk.parse_status(out, err)
    return seen


def join(rig: Rig, joiner: str, via: str) -> mk.JoinOutcome:
    _, out, _ = rig.run(via, "microk8s", "add-node", "--format", "json")
    url = mk.parse_add_node_json(out).url(rig.node(via)["ip"])
    code, out, err = rig.run(joiner, "microk8s", "join", url)
    return mk.classify_join(code, out, err)


def test_fresh_nodes_list_loopback_and_are_clusterless(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    seen = observe(rig, ["n1", "n2", "n3"])
    n1 = seen["n1"]
    assert n1 is not None and [m.address for m in n1.members] == ["127.0.0.1:19001"]
    assert all(seeding.clusterless(n, s) for n, s in zip(NODES, seen.values(), strict=False) if s)
    plan = seeding.plan(NODES[:3], seen)
    assert (plan.kind, plan.via, [n.name for n in plan.joins]) == (Seed.NEW, "n1", ["n2", "n3"])


def test_node_2_settles_as_a_spare_node_3_at_three_voters(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    rig.configure(promote_delay_s=0)
    assert join(rig, "n2", "n1").result is JoinResult.JOINED
    view = observe(rig, ["n1"])["n1"]
    assert view is not None
    # GD app/roles.go: below three members exactly one voter; the first join rebound n1.
    assert [(m.address, m.role) for m in view.members] == [
        ("10.9.0.11:19001", "voter"),
        ("10.9.0.12:19001", "spare"),
    ]
    assert seeding.settled(NODES[1], view)
    assert join(rig, "n3", "n1").result is JoinResult.JOINED
    view = observe(rig, ["n1"])["n1"]
    assert view is not None and len(view.voters) == 3
    assert seeding.settled(NODES[2], view) and seeding.formed(NODES[:3], view, "n1")


def test_node_3_is_not_settled_before_the_promotion(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    rig.configure(promote_delay_s=3600)
    join(rig, "n2", "n1")
    join(rig, "n3", "n1")
    view = observe(rig, ["n1"])["n1"]
    assert view is not None and len(view.voters) == 1
    assert not seeding.settled(NODES[2], view)
    assert not seeding.formed(NODES[:3], view, "n1")


def test_rebuilt_node_1_joins_the_cluster_nodes_2_and_3_hold(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    rig.form(["n1", "n2", "n3"])
    rig.rebuild("n1")
    plan = seeding.plan(NODES[:3], observe(rig, ["n1", "n2", "n3"]))
    assert plan.kind is Seed.EXISTING
    assert plan.via == "n2"  # a healthy voter, not the empty node 1
    assert [n.name for n in plan.joins] == ["n1"] and plan.stale == {"n1"}


def test_two_disjoint_clusters_are_refused_with_both_member_lists(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, 5)
    rig.form(["n1", "n2"])
    rig.form(["n3", "n4", "n5"])
    with pytest.raises(FormationError) as err:
        seeding.plan(NODES, observe(rig, [n.name for n in NODES]))
    text = str(err.value)
    assert "different clusters" in text
    assert "held by n1, n2" in text and "held by n3, n4, n5" in text
    # Never advise `leave` on the majority: the larger cluster is the one to keep.
    assert "likely the larger: n3, n4, n5" in text


def test_hostname_members_are_matched_by_inventory_name(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    rig.fault("n2", advertise_hostname=True)
    join(rig, "n2", "n1")
    view = observe(rig, ["n1"])["n1"]
    assert view is not None and "n2:19001" in [m.address for m in view.members]
    assert seeding.settled(NODES[1], view)
    plan = seeding.plan(NODES[:3], observe(rig, ["n1", "n2", "n3"]))
    assert [n.name for n in plan.joins] == ["n3"] and not plan.stale


@pytest.mark.parametrize(
    ("state", "fault", "says"),
    [
        ({"stopped": True}, {}, "n2: MicroK8s is stopped"),
        ({"worker": True}, {}, "n2: joined as a worker node"),
        ({}, {"status_traceback": 5}, "n2: `microk8s status` is unreadable: subprocess."),
        ({}, {"dqlite_query_fails": True}, "n2: lists no datastore members (the dqlite query"),
        ({"running": False}, {}, "n2: MicroK8s is not running"),
    ],
)
def test_unusable_nodes_are_named_as_what_they_are(
    tmp_path: Path, state: dict[str, bool], fault: dict[str, object], says: str
) -> None:
    rig = rig_of(tmp_path)
    rig.set_node("n2", **state)
    rig.fault("n2", **fault)
    with pytest.raises(FormationError) as err:
        seeding.plan(NODES[:3], observe(rig, ["n1", "n2", "n3"]))
    assert str(err.value).startswith(says), str(err.value)


def test_a_failed_dqlite_query_is_not_zero_voters(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    rig.form(["n1", "n2", "n3"])
    rig.fault("n1", dqlite_query_fails=True)
    status = observe(rig, ["n1"])["n1"]
    assert status is not None and status.running and not status.members_known


def test_a_silent_member_is_down_a_silent_joiner_is_a_problem(tmp_path: Path) -> None:
    rig = rig_of(tmp_path)
    rig.form(["n1", "n2", "n3"])
    seen = observe(rig, ["n2", "n3"])
    plan = seeding.plan(NODES[:3], {**seen, "n1": None})
    assert plan.down == ("n1",) and plan.via == "n2" and not plan.joins
    with pytest.raises(FormationError, match="n4: not reachable over SSH"):
        seeding.plan(NODES[:4], {**seen, "n1": None, "n4": None})


def test_dns_gates_the_first_join(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "model")
    rig.configure(launch_addons_delay_s=3600)
    rig.seed({"n1": NODES[0].ip}, {"n1": "version: 0.2.0\naddons:\n  - name: dns\n"})
    status = observe(rig, ["n1"])["n1"]
    assert status is not None and not seeding.ready_for_joins(status)
    rig.configure(launch_addons_delay_s=0)
    rig.set_node("n1", launch_addons_at=0)
    status = observe(rig, ["n1"])["n1"]
    assert status is not None and seeding.ready_for_joins(status)


# --- join outcomes ----------------------------------------------------------------------------


def outcome(result: JoinResult) -> JoinOutcome:
    return JoinOutcome(result, f"the {result.value} line", 6)


@pytest.mark.parametrize(
    ("result", "action"),
    [
        (JoinResult.JOINED, Action.SETTLE),
        (JoinResult.TOKEN_INVALID, Action.NEW_TOKEN),
        (JoinResult.ALREADY_KNOWN, Action.REMOVE_STALE),
        (JoinResult.FINGERPRINT_CHANGED, Action.REISSUE),
        (JoinResult.AGENT_UNREACHABLE, Action.RETRY_LATER),
        (JoinResult.HOSTNAME_UNRESOLVED, Action.STOP),
        (JoinResult.BIND_ADDRESS, Action.STOP),
        (JoinResult.REFUSED, Action.STOP),
        (JoinResult.BAD_CONNECTION, Action.STOP),
    ],
)
def test_every_join_outcome_has_its_action(result: JoinResult, action: Action) -> None:
    decision = seeding.decide_join(outcome(result), {}, limit=3)
    assert decision.action is action
    if action is Action.STOP:
        assert f"the {result.value} line" in decision.message and "fix:" in decision.message


def test_bounded_retries_then_stop_naming_port_25000() -> None:
    result = JoinResult.AGENT_UNREACHABLE
    assert seeding.decide_join(outcome(result), {Action.RETRY_LATER: 2}, 3).action is (
        Action.RETRY_LATER
    )
    last = seeding.decide_join(outcome(result), {Action.RETRY_LATER: 3}, 3)
    assert last.action is Action.STOP and "port 25000" in last.message
    again = seeding.decide_join(outcome(JoinResult.ALREADY_KNOWN), {Action.REMOVE_STALE: 1}, 3)
    assert again.action is Action.STOP and "already known" in again.message


def test_a_lone_node_is_formed_by_its_loopback_member(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, 1)
    view = observe(rig, ["n1"])["n1"]
    assert view is not None and seeding.formed(NODES[:1], view, "n1")
    assert not seeding.formed(NODES[:1], view, "n2")
