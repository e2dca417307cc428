"""Each preflight gate fails on the realistic broken cluster it must catch, naming itself, next
to the healthy cluster on which every gate passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mk8s.day2 import preflight
from mk8s.day2.facts import ClusterFacts
from mk8s.day2.preflight import CLUSTER, Policy, Scope
from mk8s.errors import UserError
from tests.day2 import recorded_cluster as rc

POLICY = Policy(rpo_minutes=rc.RPO_MINUTES)


def failing(facts: ClusterFacts, scope: Scope = CLUSTER) -> dict[str, str]:
    return {g.name: g.detail for g in preflight.gates(facts, scope, POLICY) if not g.ok}


def test_healthy_cluster_passes_every_gate() -> None:
    results = preflight.gates(rc.healthy(), CLUSTER, POLICY)
    assert [g.name for g in results] == [
        "nodes-ready",
        "voters",
        "cordons",
        "pdbs",
        "snapshots",
        "vm-locks",
        "backup",
        "certs",
    ]
    assert all(g.ok for g in results), [g for g in results if not g.ok]
    snaps = next(g for g in results if g.name == "snapshots")
    assert "local-zfs on pve1: 400.0 GiB free of 900.0 GiB (44%)" in snaps.detail


def test_healthy_node_scope_passes_and_says_safe() -> None:
    results = preflight.gates(rc.healthy(), Scope(rc.NAMES[1]), POLICY)
    assert all(g.ok for g in results), [g for g in results if not g.ok]
    assert results[-1].name == f"safe-to-drain {rc.NAMES[1]}"


FLIPS: list[tuple[Callable[[], ClusterFacts], set[str], str]] = [
    (rc.not_ready, {"nodes-ready"}, "stage-k8s-2: not Ready"),
    (rc.voter_down_listed, {"voters"}, "voter down: stage-k8s-3 (10.20.0.13) is listed"),
    (rc.members_disagree, {"voters"}, "nodes disagree on the voters"),
    (rc.foreign_cordon, {"cordons"}, "stage-k8s-2: cordoned by someone else"),
    (rc.pdb_allows_0, {"pdbs"}, "PDB sample-app blocks sample/web-2"),
    (rc.raw_dir_disk, {"snapshots"}, "cannot be snapshotted"),
    (rc.storage_full, {"snapshots"}, "local-zfs on pve2: 30.0 GiB free of 900.0 GiB (3%)"),
    # a locked VM refuses a snapshot too (PVE check_lock), so both gates name it
    (rc.vm_locked, {"vm-locks", "snapshots"}, "stage-k8s-2: VM locked (backup)"),
    (rc.stale_backup, {"backup"}, "newest backup 420 min old (RPO 15 min)"),
    (rc.cert_expired, {"certs"}, "stage-k8s-1: server.crt"),
    (rc.cert_soon, {"certs"}, "20 days left (< 30)"),
]


@pytest.mark.parametrize(("broken", "gates", "says"), FLIPS, ids=[f[0].__name__ for f in FLIPS])
def test_each_gate_flipped_alone_fails_naming_itself(
    broken: Callable[[], ClusterFacts], gates: set[str], says: str
) -> None:
    found = failing(broken())
    assert set(found) == gates
    assert any(says in detail for detail in found.values()), found


def test_unread_facts_never_pass() -> None:
    blind = rc.with_all(rc.healthy(), ready=None, members=None, unschedulable=None, vm=None)
    blind = dataclasses.replace(blind, disruption=(), newest_backup=None, storage=())
    blind = rc.with_all(blind, certs=(), snapshots=None)
    assert set(failing(blind)) == {
        "nodes-ready",
        "voters",
        "cordons",
        "pdbs",
        "snapshots",
        "vm-locks",
        "backup",
        "certs",
    }


def test_two_voters_is_not_ha() -> None:
    f = rc.with_all(
        rc.healthy(), members=(*rc.members(*rc.IPS[:2]), *rc.members(rc.IPS[2], role="spare"))
    )
    assert "2 voters" in failing(f)["voters"]


def test_loopback_only_member_is_in_no_cluster() -> None:
    f = rc.with_node(rc.healthy(), rc.NAMES[2], members=rc.members("127.0.0.1"))
    assert "lists only 127.0.0.1" in failing(f)["voters"]


def test_mk8s_own_cordon_passes() -> None:
    f = rc.with_node(
        rc.healthy(), rc.NAMES[0], unschedulable=True, cordoned_by="upgrade 20261202T0500"
    )
    assert "cordons" not in failing(f)


# --- the per-node verdict ------------------------------------------------------------------


def test_voter_down_makes_the_other_voters_unsafe() -> None:
    f = rc.voter_down_listed()
    for name in rc.NAMES[:2]:
        v = preflight.drain_verdict(f, name)
        assert not v.safe
        assert "it is one of 2 reachable voters" in v.reason
    assert preflight.drain_verdict(rc.healthy(), rc.NAMES[0]).safe


def test_pdb_makes_only_its_node_unsafe() -> None:
    verdicts = {v.node: v for v in preflight.drain_verdicts(rc.pdb_allows_0())}
    assert not verdicts[rc.NAMES[1]].safe
    assert "PDB sample-app blocks sample/web-2" in verdicts[rc.NAMES[1]].reason
    assert verdicts[rc.NAMES[0]].safe and verdicts[rc.NAMES[2]].safe


def test_another_node_not_ready_makes_every_other_unsafe() -> None:
    verdicts = {v.node: v for v in preflight.drain_verdicts(rc.not_ready())}
    assert "stage-k8s-2 is not Ready" in verdicts[rc.NAMES[0]].reason
    assert verdicts[rc.NAMES[1]].safe  # the sick node itself may be drained and repaired


def test_drain_scope_gates_one_node() -> None:
    found = failing(rc.pdb_allows_0(), Scope(rc.NAMES[1]))
    assert set(found) == {"pdbs", "safe-to-drain stage-k8s-2"}
    assert not failing(rc.pdb_allows_0(), Scope(rc.NAMES[0]))
    assert not failing(rc.stale_backup(), Scope(rc.NAMES[0]))  # a drain loses no data


def test_unknown_node_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--node nope: not a node of stage"):
        preflight.gates(rc.healthy(), Scope("nope"), POLICY)
