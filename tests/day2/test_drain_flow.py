"""`drain` end to end on the real kube-apiserver (tests/day2/drain_rig.py): the healthy drain,
a PDB that blocks after the cordon, foreign cordons, --stop, and kills at every step boundary."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from mk8s.day2.drain import Mode
from mk8s.day2.drain_flow import DrainBlockedError
from mk8s.day2.journal import Journal, run_file
from mk8s.day2.maintenance import run_drain
from mk8s.day2.operation import Options
from mk8s.errors import OperationFailedError
from tests.day2.drain_rig import World, make_world, set_allowed
from tests.support import workloads
from tests.support.envtest import KubeApiServer, kube_apiserver

__all__ = ["kube_apiserver"]
pytestmark = pytest.mark.slow


class Killed(BaseException):
    """Stands for SIGKILL at a step boundary: nothing below catches a BaseException."""


@pytest.fixture
def world(kube_apiserver: KubeApiServer, tmp_path: Path) -> World:
    return make_world(kube_apiserver, tmp_path / "build")


def drain(
    world: World,
    node: str,
    mode: Mode = Mode.REBOOT,
    boundary: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200)
    rig = world.rig(boundary)
    run_drain(world.env, node, mode, rig, world.build, Options(dry_run=dry_run), out=console)
    return out.getvalue()


def test_a_healthy_drain_evicts_reboots_and_lifts_its_cordon(world: World) -> None:
    node = world.nodes[2]
    said = drain(world, node)
    assert world.pods(node) == []  # evicted (and the kubelet finished them)
    assert world.cordon(node) == (False, None)  # its own cordon lifted, mark gone
    assert world.power.log == [f"reboot {node}"]
    assert world.power.machines[node].boots == 2
    assert f"node {node} cordoned" in said and f"node {node} uncordoned" in said
    journal = Journal.load(run_file(world.build))
    assert journal is not None and journal.finished is not None


def test_dry_run_changes_nothing(world: World) -> None:
    node = world.nodes[0]
    said = drain(world, node, dry_run=True)
    assert "evict" in said and world.cordon(node) == (False, None)
    assert world.pods(node) == [f"web-{node}"] and world.power.log == []


def test_a_pdb_allowing_none_fails_preflight_and_changes_nothing(world: World) -> None:
    set_allowed(world, 0)
    node = world.nodes[0]
    with pytest.raises(OperationFailedError) as failed:
        drain(world, node)
    text = "\n".join(failed.value.lines)
    assert "preflight failed, nothing changed" in text
    assert f"PDB web blocks {world.namespace}/web-{node}" in text
    assert world.cordon(node) == (False, None) and world.power.log == []


def test_a_pdb_that_blocks_after_the_cordon_lifts_it_and_names_pod_and_pdb(world: World) -> None:
    node = world.nodes[1]

    def boundary(label: str) -> None:
        if label == "2:done":  # cordoned; now another pod of the app goes unready
            set_allowed(world, 0)

    with pytest.raises(DrainBlockedError) as blocked:
        drain(world, node, boundary=boundary)
    assert blocked.value.exit_code == 1
    text = "\n".join(blocked.value.lines)
    assert f"PDB {world.namespace}/web keeps pod {world.namespace}/web-{node}" in text
    assert "Cannot evict pod as it would violate the pod's disruption budget." in text
    assert f"node {node} uncordoned" in text and "nothing was forced" in text
    assert world.cordon(node) == (False, None)  # its own cordon lifted
    assert world.pods(node) == [f"web-{node}"]  # nothing evicted, nothing forced
    assert world.power.log == []  # and no reboot
    journal = Journal.load(run_file(world.build))
    assert journal is not None and journal.finished is not None  # undone: a re-run plans anew
    set_allowed(world, 1)
    drain(world, node)  # the PDB allows one again: the same command now drains
    assert world.pods(node) == [] and world.cordon(node) == (False, None)


def test_a_foreign_cordon_is_refused_and_left_alone(world: World) -> None:
    node = world.nodes[0]
    workloads.cordon_by_hand(world.admin, node)
    with pytest.raises(OperationFailedError) as failed:
        drain(world, node)
    assert f"{node}: cordoned by someone else" in "\n".join(failed.value.lines)
    assert world.cordon(node) == (True, None)  # still cordoned, not claimed
    assert world.pods(node) == [f"web-{node}"]


def test_a_foreign_cordon_after_preflight_is_left_alone(world: World) -> None:
    node = world.nodes[0]

    def boundary(label: str) -> None:
        if label == "1:done":
            workloads.cordon_by_hand(world.admin, node)

    with pytest.raises(DrainBlockedError) as failed:
        drain(world, node, boundary=boundary)
    assert "cordoned by someone else" in "\n".join(failed.value.lines)
    assert world.cordon(node) == (True, None)
    assert world.pods(node) == [f"web-{node}"]


def test_stop_waits_for_the_vm_to_run_again(world: World) -> None:
    node = world.nodes[2]
    world.clock.actors.append(lambda: world.power.start(node))  # the operator, after the work
    drain(world, node, Mode.STOP)
    assert world.power.log == [f"shutdown {node}", f"start {node}"]
    assert world.cordon(node) == (False, None) and world.pods(node) == []


def test_a_node_that_does_not_come_back_fails_and_lifts_the_cordon(world: World) -> None:
    node = world.nodes[2]
    with pytest.raises(DrainBlockedError) as failed:
        drain(world, node, Mode.STOP)  # nobody starts the VM
    assert f"timed out waiting for {node}'s VM to run again" in failed.value.lines[0]
    assert world.cordon(node) == (False, None)


def labels(world: World, node: str) -> list[str]:
    seen: list[str] = []
    drain(world, node, boundary=seen.append)
    return seen


def test_killed_at_every_step_boundary_then_rerun_converges(
    kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    first = make_world(kube_apiserver, tmp_path / "uninterrupted")
    boundaries = labels(first, first.nodes[2])
    assert len(boundaries) == 4 * 6
    for label in boundaries:
        world = make_world(kube_apiserver, tmp_path / label.replace(":", "-"))
        node = world.nodes[2]

        def kill(at: str, label: str = label) -> None:
            if at == label:
                raise Killed(label)

        with pytest.raises(Killed):
            drain(world, node, boundary=kill)
        drain(world, node)  # the same command again
        assert world.pods(node) == [], label
        assert world.cordon(node) == (False, None), label
        assert world.power.log == [f"reboot {node}"], label  # rebooted exactly once
        journal = Journal.load(run_file(world.build))
        assert journal is not None and journal.finished is not None, label
        assert [s["state"] for s in journal.steps] == ["done"] * 6, label
