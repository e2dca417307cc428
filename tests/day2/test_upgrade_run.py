"""`invoke upgrade`'s flow on the world (tests/day2/upgrade_world.py: JSON cluster + served
fakepve): a green 1.32 -> 1.33, each injected failure with its documented outcome, and the
command/API logs that prove what was (and was never) touched."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mk8s.day2 import recover as rec
from mk8s.day2.journal import Journal, run_file
from mk8s.day2.upgrade_flow import HealthyOnOldError, UnhealthyError
from mk8s.day2.wait import FakeClock
from mk8s.edges import proxmox
from mk8s.errors import OperationFailedError, UserError
from tests.day2.upgrade_world import Run, World, connect, initial, locked, seed_pve
from tests.support.fakepve import LabPve, serve_lab

pytestmark = pytest.mark.slow
TARGET = "1.33/stable"
SNAP = "mk8s-pre-1-33"
N1, N2, N3 = "dev-k8s-1", "dev-k8s-2", "dev-k8s-3"
VMIDS = (1101, 1102, 1103)
ORDER = (N2, N3, N1)  # -1 leads and is the endpoint: last


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

    def upgrade(self, boundary: Callable[[str], None] | None = None) -> list[str]:
        said: list[str] = []
        Run(self.world, self.build, clock=FakeClock(1e9), say=said.append, boundary=boundary)()
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
    assert rig.pve.snapshot_requests() == [(v, SNAP) for v in VMIDS]
    for vmid in VMIDS:
        assert rig.pve.vm(vmid).agent_requests[:2] == [
            ("fsfreeze-freeze", {}),
            ("fsfreeze-thaw", {}),
        ]
    assert any(line.startswith(f"snapshot {SNAP} of {N1}") for line in said)
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
    assert sorted(state["evictions"]) == [f"default/web-{n}" for n in (N1, N2, N3)]
    assert rig.pve.rollback_requests() == []
    journal = Journal.load(run_file(rig.build))
    assert journal is not None and journal.finished is not None


def test_the_gate_waits_for_a_slow_node_and_names_it(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {N2: "slow"}})
    said = rig.upgrade()
    waits = [line for line in said if line.startswith(f"waiting for {N2} on 1.33/stable")]
    assert waits and "until 2001-09-09T01:" in waits[0] and f"{N2}: Node Ready is False" in waits[0]
    assert rig.read()["nodes"][N2]["ready"] is True


def _members_of_one(node: str) -> dict[str, Any]:
    return {"members": [[node, "voter"]]}


@pytest.mark.parametrize(
    ("flip", "named"),
    [
        ({N3: {"unschedulable": True, "cordoned_by": None}}, "cordons: dev-k8s-3: cordoned by"),
        ({N2: {"ready": False}}, "nodes-ready: dev-k8s-2: not Ready"),
        ({N3: _members_of_one(N3)}, "voters: "),
    ],
)
def test_a_gate_failing_between_plan_and_preflight_changes_nothing(
    rig: Rig, flip: dict[str, dict[str, Any]], named: str
) -> None:
    def meanwhile(label: str) -> None:  # the cluster changes after the plan was made
        if label == "1:started":
            with locked(rig.state) as s:
                for node, values in flip.items():
                    s["nodes"][node].update(values)

    with pytest.raises(OperationFailedError) as failed:
        rig.upgrade(meanwhile)
    first, *rest = failed.value.lines
    assert first.startswith("preflight: 1 gate(s) failed (") and first.endswith(
        "); nothing was changed"
    )
    assert len(rest) == 1 and rest[0].startswith(f"FAIL {named}") and "(fix: " in rest[0]
    assert rig.log() == [] and rig.pve.snapshot_requests() == []


def test_an_unhealthy_cluster_is_refused_at_the_plan(rig: Rig) -> None:
    with locked(rig.state) as s:
        s["nodes"][N2]["ready"] = False
    with pytest.raises(UserError, match="dev-k8s-2: not Ready") as refused:
        rig.upgrade()
    assert refused.value.exit_code == 2
    assert rig.log() == [] and rig.pve.snapshot_requests() == []
    assert not run_file(rig.build).exists()  # nothing journalled either


def test_a_refused_refresh_leaves_the_node_healthy_on_the_old_revision(rig: Rig) -> None:
    rig.edit(faults={"refresh_refused": N2})
    with pytest.raises(HealthyOnOldError) as failed:
        rig.upgrade()
    lines = failed.value.lines
    assert (
        lines[0]
        == "dev-k8s-2: snap refresh --channel=1.33/stable: world: refresh refused (injected)"
    )
    assert (
        "dev-k8s-2 is healthy on 1.32/stable; uncordoned it; no other node was touched" in lines[1]
    )
    n2 = rig.read()["nodes"][N2]
    assert n2["channel"] == "1.32/stable" and n2["unschedulable"] is False
    assert_untouched(rig, N3, N1)
    assert not run_file(rig.build).exists()  # moved aside: the next run plans afresh
    assert list(rig.build.glob("day2/RUN.failed-*.json"))
    with locked(rig.state) as st:
        st["faults"] = {}
    rig.upgrade()  # fixed: a fresh run finishes (n2's pod was evicted already)
    assert {n["channel"] for n in rig.read()["nodes"].values()} == {TARGET}


def test_a_blocking_pdb_is_named_never_forced_and_the_node_uncordoned(rig: Rig) -> None:
    # the PDB allowed a disruption at preflight; another pod went unready since
    rig.edit(late_pdb_blocks={"default/web-dev-k8s-2": "web"})
    with pytest.raises(HealthyOnOldError) as failed:
        rig.upgrade()
    assert failed.value.lines[:2] == (
        "dev-k8s-2: eviction refused; the run never forces it:",
        "  default/web-dev-k8s-2: PDB web: Cannot evict pod as it would violate the pod's disruption "
        "budget.",
    )
    state = rig.read()
    assert state["nodes"][N2]["pods"] == ["default/web-dev-k8s-2"]  # still there: never deleted
    assert state["nodes"][N2]["unschedulable"] is False
    assert [c for _, c in rig.log() if c.startswith("snap")] == []
    assert_untouched(rig, N3, N1)


@pytest.mark.parametrize(
    ("fault", "seen"),
    [
        ("not_ready", "dev-k8s-2: Node Ready is False"),
        ("datastore_alone", "the nodes disagree on the voters"),
    ],
)
def test_unhealthy_after_the_refresh_offers_exactly_two_ways_out(
    rig: Rig, fault: str, seen: str
) -> None:
    rig.edit(faults={"after_refresh": {N2: fault}})
    with pytest.raises(UnhealthyError) as failed:
        rig.upgrade()
    lines = failed.value.lines
    assert lines[0].startswith(
        "timed out waiting for dev-k8s-2 on 1.33/stable: Node Ready, kubelet 1.33"
    )
    assert "deadline 2001-09-09T01:47:40Z (60s) passed; last seen:" in lines[0] and seen in lines[0]
    ways = [line for line in lines if line.startswith("  ") and "invoke upgrade" in line]
    assert [w.split(":")[0].strip() for w in ways] == [
        "1. invoke upgrade --env dev --recover rebuild-node",
        "2. invoke upgrade --env dev --recover rollback-cluster",
    ]
    assert "lost" in ways[0] and "whole cluster is down" in ways[1]
    assert_untouched(rig, N3, N1)
    assert rig.read()["nodes"][N2]["unschedulable"] is True  # left for the recovery
    assert run_file(rig.build).exists()  # the journal stays: --recover reads it
    assert rig.pve.rollback_requests() == []


def _recover(rig: Rig, mode: str, answers: list[str]) -> tuple[str, ...]:
    def confirm(what: str) -> None:
        answers.append(what)

    return rec.recover(mode, rig.world, rig.build, "dev", confirm, clock=FakeClock(1e9),
                       say=lambda _: None, timeout_s=60)  # fmt: skip


def test_rebuild_node_removes_reinstalls_and_rejoins_without_any_rollback(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {N2: "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()
    mark = len(rig.log())
    asked: list[str] = []
    closing = _recover(rig, rec.REBUILD, asked)
    assert asked == ["rebuild dev-k8s-2 (remove, reinstall 1.32/stable, re-join)"]
    done = rig.log()[mark:]
    assert done[0] == (N1, "microk8s remove-node 192.168.10.12 --force")  # on a healthy voter
    assert [c for n, c in done if n == N2][:3] == [
        "snap remove --purge microk8s",
        "snap install microk8s --classic --channel=1.32/stable",
        "snap refresh --hold microk8s",
    ]
    assert not [c for _, c in rig.log() if "revert" in c]
    assert rig.pve.rollback_requests() == []  # never a single voter's disk
    n2 = rig.read()["nodes"][N2]
    assert n2["channel"] == "1.32/stable" and [m[1] for m in n2["members"]] == ["voter"] * 3
    assert closing[0].startswith("dev-k8s-2 rebuilt on 1.32/stable")
    assert not run_file(rig.build).exists()


def test_rollback_cluster_stops_all_then_rolls_every_vm_back(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {N2: "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()
    asked: list[str] = []
    closing = _recover(rig, rec.ROLLBACK, asked)
    assert asked == [f"stop every VM and roll all of them back to {SNAP!r}"]
    assert sorted(rig.pve.rollback_requests()) == [(v, SNAP) for v in VMIDS]
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
    rig.edit(faults={"after_refresh": {N2: "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()

    def refuse(what: str) -> None:
        raise UserError(f"{what} on dev: confirmation did not match; nothing done")

    with pytest.raises(UserError, match="confirmation did not match"):
        rec.recover(rec.ROLLBACK, rig.world, rig.build, "dev", refuse, clock=FakeClock(1e9))
    assert rig.pve.rollback_requests() == [] and run_file(rig.build).exists()
    with pytest.raises(UserError, match="--recover revert: must be one of"):
        rec.recover("revert", rig.world, rig.build, "dev", refuse)


def test_a_rollback_set_missing_on_one_vm_stops_nothing(rig: Rig) -> None:
    rig.edit(faults={"after_refresh": {N2: "not_ready"}})
    with pytest.raises(UnhealthyError):
        rig.upgrade()
    rig.pve.vm(1103).snapshots.pop(SNAP)  # someone deleted dev-k8s-3's snapshot
    with pytest.raises(OperationFailedError, match="nothing was stopped") as failed:
        _recover(rig, rec.ROLLBACK, [])
    assert "dev-k8s-3: has no snapshot 'mk8s-pre-1-33'" in failed.value.lines
    assert rig.pve.rollback_requests() == []


def test_a_same_named_snapshot_from_another_run_is_refused(rig: Rig) -> None:
    # an earlier attempt at 1.33 left its set (it may be the only way back): never reused
    vm = rig.world._vm(N3)
    proxmox.snapshot(rig.world.pve, vm, SNAP, description="mk8s upgrade to 1.33/stable, run old")
    with pytest.raises(OperationFailedError, match="already exists on dev-k8s-3 from another run"):
        rig.upgrade()
    assert rig.pve.snapshot_requests() == [(1103, SNAP)]  # only the old one: none taken
    assert rig.log() == []  # no node touched
