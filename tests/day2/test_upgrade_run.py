"""`invoke upgrade`'s flow on the world (tests/day2/upgrade_world.py: JSON cluster + served
fakepve): a green 1.32 -> 1.33, each injected failure with its documented outcome, and the
command/API logs that prove what was (and was never) touched."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mk8s.day2 import recover as rec
from mk8s.day2.journal import Journal, run_file
from mk8s.day2.operation import Options
from mk8s.day2.plan import Plan
from mk8s.day2.upgrade_flow import (
    HealthyOnOldError,
    Settings,
    UnhealthyError,
    build_actions,
    old_channels,
)
from mk8s.day2.upgrade_run import run_upgrade
from mk8s.day2.upgrade_standins import plan_steps, preflight
from mk8s.day2.wait import FakeClock
from mk8s.errors import OperationFailedError, UserError
from tests.day2.upgrade_world import World, connect, initial, locked, seed_pve
from tests.support.fakepve import LabPve, serve_lab

pytestmark = pytest.mark.slow
TARGET = "1.33/stable"
SNAP = "mk8s-up-1-33-test"
ORDER = ("n2", "n3", "n1")  # n1 is the leader and the kubeconfig endpoint: last


@dataclass
class Rig:
    world: World
    pve: LabPve
    build: Path
    state: Path

    def edit(self, **changes: Any) -> None:
        with locked(self.state) as s:
            for key, value in changes.items():
                if isinstance(value, dict) and isinstance(s.get(key), dict):
                    s[key].update(value)
                else:
                    s[key] = value

    def read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state.read_text())
        return data

    def log(self) -> list[tuple[str, str]]:
        return [(n, c) for n, c in self.read()["log"]]

    def plan(self) -> Plan:
        return plan_steps("lab", self.world.facts(), TARGET, SNAP)

    def upgrade(self, plan: Plan | None = None) -> list[str]:
        plan = plan or self.plan()
        settings = Settings(
            "lab", TARGET, SNAP, old_channels(plan), gate_timeout_s=60,
            conformance_timeout_s=20, settle_s=5, interval_s=2,
        )  # fmt: skip
        said: list[str] = []
        actions = build_actions(plan, self.world, settings, preflight, clock=FakeClock(1e9),
                                say=said.append)  # fmt: skip
        quiet = Console(file=(self.build / "out.txt").open("a"), width=200)
        run_upgrade(plan, actions, self.build, Options(), out=quiet, clock=FakeClock(1e9))
        return said


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    host = f"127.0.0.{secrets.randbelow(100) + 20}"
    with serve_lab(host, 0, tmp_path / "pve") as served:
        seed_pve(served.pve)
        state = tmp_path / "world.json"
        state.write_text(json.dumps(initial()))
        world = World(state, connect(served.pve.url, served.cafile))  # type: ignore[attr-defined]
        build = tmp_path / "build"
        build.mkdir()
        yield Rig(world, served.pve, build, state)


def node_commands(log: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, c) for n, c in log if not c.startswith("pve:")]


def assert_untouched(rig: Rig, *nodes: str) -> None:
    for n, c in rig.log():
        assert n not in nodes, f"{n} was touched: {c}"
    for n in nodes:
        node = rig.read()["nodes"][n]
        assert node["channel"] == "1.32/stable" and not node["unschedulable"]


def test_a_green_upgrade_moves_every_node_one_at_a_time(rig: Rig) -> None:
    said = rig.upgrade()
    state = rig.read()
    for name, node in state["nodes"].items():
        assert (node["channel"], node["kubelet"], node["held"]) == (TARGET, "v1.33.5", True), name
        assert node["unschedulable"] is False and node["cordoned_by"] is None
        assert [m[1] for m in node["members"]] == ["voter"] * 3
    # the snapshot set came first, of every VM, disk-only and with the guest frozen
    assert rig.pve.snapshot_requests() == [(101, SNAP), (102, SNAP), (103, SNAP)]
    for vmid in (101, 102, 103):
        assert rig.pve.vm(vmid).agent_requests[:2] == [
            ("fsfreeze-freeze", {}),
            ("fsfreeze-thaw", {}),
        ]
    assert any(line.startswith(f"snapshot {SNAP} of n1") for line in said)
    # strictly one node at a time, in order, each cordoned/refreshed/held/uncordoned
    per_node = [
        (n, c.split(" (")[0]) for n, c in rig.log() if c.startswith(("kube:", "snap refresh"))
    ]
    expected = []
    for n in ORDER:
        expected += [
            (n, "kube: cordon"),
            (n, f"snap refresh microk8s --channel={TARGET}"),
            (n, "snap refresh --hold microk8s"),
            (n, "kube: uncordon"),
        ]
    assert per_node == expected
    assert sorted(state["evictions"]) == ["default/web-n1", "default/web-n2", "default/web-n3"]
    assert rig.pve.rollback_requests() == []
    journal = Journal.load(run_file(rig.build))
    assert journal is not None and journal.finished is not None


def test_the_gate_waits_for_a_slow_node_and_names_it(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {"n2": "slow"}})
    said = rig.upgrade()
    waits = [line for line in said if line.startswith("waiting for n2 on 1.33/stable")]
    assert waits and "until 2001-09-09T01:" in waits[0] and "n2: Node Ready is False" in waits[0]
    assert rig.read()["nodes"]["n2"]["ready"] is True


@pytest.mark.parametrize(
    ("flip", "named"),
    [
        ({"nodes": {"n3": {"unschedulable": True, "cordoned_by": None}}}, "n3: cordoned by"),
        ({"nodes": {"n2": {"ready": False}}}, "n2: Node Ready is False"),
        ({"nodes": {"n1": {"cni": False}}}, "n1: the CNI pod on it is not Ready"),
    ],
)
def test_a_failed_preflight_gate_changes_nothing(
    rig: Rig, flip: dict[str, Any], named: str
) -> None:
    with locked(rig.state) as s:
        for node, values in flip["nodes"].items():
            s["nodes"][node].update(values)
    with pytest.raises(OperationFailedError) as failed:
        rig.upgrade()
    assert failed.value.lines[0] == "preflight: 1 gate(s) failed; nothing was changed"
    assert any(named in line for line in failed.value.lines[1:])
    assert rig.log() == [] and rig.pve.snapshot_requests() == []


def test_preflight_flags_a_voter_view_that_disagrees(rig: Rig) -> None:
    with locked(rig.state) as s:
        s["nodes"]["n3"]["members"] = [["n3", "voter"]]
    with pytest.raises(OperationFailedError, match="preflight") as failed:
        rig.upgrade()
    assert any("the nodes disagree on the voters" in line for line in failed.value.lines)
    assert rig.log() == []


def test_a_refused_refresh_leaves_the_node_healthy_on_the_old_revision(rig: Rig) -> None:
    rig.edit(faults={"refresh_refused": "n2"})
    with pytest.raises(HealthyOnOldError) as failed:
        rig.upgrade()
    lines = failed.value.lines
    assert lines[0] == "n2: snap refresh --channel=1.33/stable: world: refresh refused (injected)"
    assert "n2 is healthy on 1.32/stable; uncordoned it; no other node was touched" in lines[1]
    n2 = rig.read()["nodes"]["n2"]
    assert n2["channel"] == "1.32/stable" and n2["unschedulable"] is False
    assert_untouched(rig, "n3", "n1")
    assert not run_file(rig.build).exists()  # moved aside: the next run plans afresh
    assert list(rig.build.glob("day2/RUN.failed-*.json"))
    with locked(rig.state) as st:
        st["faults"] = {}
    rig.upgrade()  # fixed: a fresh run finishes (n2's pod was evicted already)
    assert {n["channel"] for n in rig.read()["nodes"].values()} == {TARGET}


def test_a_blocking_pdb_is_named_never_forced_and_the_node_uncordoned(rig: Rig) -> None:
    rig.edit(pdb_blocks={"default/web-n2": "web"})
    with pytest.raises(HealthyOnOldError) as failed:
        rig.upgrade()
    assert failed.value.lines[:2] == (
        "n2: eviction refused; the run never forces it:",
        "  default/web-n2: PDB web: Cannot evict pod as it would violate the pod's disruption "
        "budget.",
    )
    state = rig.read()
    assert state["nodes"]["n2"]["pods"] == ["default/web-n2"]  # still there: never deleted
    assert state["nodes"]["n2"]["unschedulable"] is False
    assert [c for _, c in rig.log() if c.startswith("snap")] == []
    assert_untouched(rig, "n3", "n1")


@pytest.mark.parametrize(
    ("fault", "seen"),
    [
        ("not_ready", "n2: Node Ready is False"),
        ("datastore_alone", "the nodes disagree on the voters"),
    ],
)
def test_unhealthy_after_the_refresh_offers_exactly_two_ways_out(
    rig: Rig, fault: str, seen: str
) -> None:
    rig.edit(faults={"after_refresh": {"n2": fault}})
    with pytest.raises(UnhealthyError) as failed:
        rig.upgrade()
    lines = failed.value.lines
    assert lines[0].startswith("timed out waiting for n2 on 1.33/stable: Node Ready, kubelet 1.33")
    assert "deadline 2001-09-09T01:47:40Z (60s) passed; last seen:" in lines[0] and seen in lines[0]
    ways = [line for line in lines if line.startswith("  ") and "invoke upgrade" in line]
    assert [w.split(":")[0].strip() for w in ways] == [
        "1. invoke upgrade --env lab --recover rebuild-node",
        "2. invoke upgrade --env lab --recover rollback-cluster",
    ]
    assert "lost" in ways[0] and "whole cluster is down" in ways[1]
    assert_untouched(rig, "n3", "n1")
    assert rig.read()["nodes"]["n2"]["unschedulable"] is True  # left for the recovery
    assert run_file(rig.build).exists()  # the journal stays: --recover reads it
    assert rig.pve.rollback_requests() == []


def _recover(rig: Rig, mode: str, answers: list[str]) -> tuple[str, ...]:
    def confirm(what: str) -> None:
        answers.append(what)

    return rec.recover(mode, rig.world, rig.build, "lab", confirm, clock=FakeClock(1e9),
                       say=lambda _: None, timeout_s=60)  # fmt: skip


def test_rebuild_node_removes_reinstalls_and_rejoins_without_any_rollback(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {"n2": "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()
    mark = len(rig.log())
    asked: list[str] = []
    closing = _recover(rig, rec.REBUILD, asked)
    assert asked == ["rebuild n2 (remove, reinstall 1.32/stable, re-join)"]
    done = rig.log()[mark:]
    assert done[0] == ("n1", "microk8s remove-node 127.0.0.2 --force")  # on a healthy voter
    assert [c for n, c in done if n == "n2"][:3] == [
        "snap remove --purge microk8s",
        "snap install microk8s --classic --channel=1.32/stable",
        "snap refresh --hold microk8s",
    ]
    assert not [c for _, c in rig.log() if "revert" in c]
    assert rig.pve.rollback_requests() == []  # never a single voter's disk
    n2 = rig.read()["nodes"]["n2"]
    assert n2["channel"] == "1.32/stable" and [m[1] for m in n2["members"]] == ["voter"] * 3
    assert closing[0].startswith("n2 rebuilt on 1.32/stable")
    assert not run_file(rig.build).exists()


def test_rollback_cluster_stops_all_then_rolls_every_vm_back(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {"n2": "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()
    asked: list[str] = []
    closing = _recover(rig, rec.ROLLBACK, asked)
    assert asked == [f"stop every VM and roll all of them back to {SNAP!r}"]
    assert sorted(rig.pve.rollback_requests()) == [(101, SNAP), (102, SNAP), (103, SNAP)]
    posts = [
        path.rsplit("/", 2)[-2:] for m, path, _ in rig.pve.requests
        if m == "POST" and ("/status/" in path or path.endswith("/rollback"))
    ]  # fmt: skip
    kinds = [p[1] if p[0] == "status" else "rollback" for p in posts]
    assert kinds == ["stop"] * 3 + ["rollback"] * 3 + ["start"] * 3  # all down before any goes back
    for node in rig.read()["nodes"].values():
        assert node["channel"] == "1.32/stable" and [m[1] for m in node["members"]] == ["voter"] * 3
    assert "set microk8s.channel back to 1.32/stable in the inventory" in closing[1]


def test_recoveries_need_confirmation_and_a_failed_run(rig: Rig) -> None:
    with pytest.raises(UserError, match="no unfinished upgrade to recover"):
        _recover(rig, rec.ROLLBACK, [])
    rig.edit(faults={"after_refresh": {"n2": "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()

    def refuse(what: str) -> None:
        raise UserError(f"{what} on lab: confirmation did not match; nothing done")

    with pytest.raises(UserError, match="confirmation did not match"):
        rec.recover(rec.ROLLBACK, rig.world, rig.build, "lab", refuse, clock=FakeClock(1e9))
    assert rig.pve.rollback_requests() == [] and run_file(rig.build).exists()
    with pytest.raises(UserError, match="--recover revert: must be one of"):
        rec.recover("revert", rig.world, rig.build, "lab", refuse)


def test_a_rollback_set_missing_on_one_vm_stops_nothing(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {"n2": "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()
    rig.pve.vm(103).snapshots.pop(SNAP)  # someone deleted n3's snapshot
    with pytest.raises(OperationFailedError, match="nothing was stopped") as failed:
        _recover(rig, rec.ROLLBACK, [])
    assert "n3: has no snapshot 'mk8s-up-1-33-test'" in failed.value.lines
    assert rig.pve.rollback_requests() == []
