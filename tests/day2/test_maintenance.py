"""`maintenance`: the window (frozen clocks), the plan that must fit in it, --pve-node's voter
rule, and a rolling reboot on the real kube-apiserver that never has two nodes down at once."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from mk8s.day2.facts import ClusterFacts, VmState
from mk8s.day2.maintenance import Rig, maintenance_plan, run_maintenance
from mk8s.day2.operation import Options
from mk8s.day2.wait import FakeClock
from mk8s.errors import UserError
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from tests.conftest import ROOT
from tests.day2.drain_facts import healthy, with_node
from tests.day2.drain_rig import World, make_world
from tests.support.envtest import KubeApiServer, kube_apiserver

__all__ = ["kube_apiserver"]

WED_0500 = datetime(2026, 12, 2, 5, 0, tzinfo=UTC).timestamp()  # a Wednesday
TUE_2005 = datetime(2026, 12, 1, 20, 5, tzinfo=UTC).timestamp()  # stage's window: Tue 20:00 1 h
TUE_2055 = datetime(2026, 12, 1, 20, 55, tzinfo=UTC).timestamp()
SUN_2210 = datetime(2026, 12, 6, 22, 10, tzinfo=UTC).timestamp()  # prod: first Sunday 22:00 2 h


def env(name: str) -> Environment:
    return load_environment(name, ROOT)


class Untouchable:
    """kube and power for the pure cases: any call is a test failure."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"maintenance touched {name} before deciding")


def rig(facts: ClusterFacts, t: float) -> Rig:
    nothing: object = Untouchable()
    return Rig(nothing, nothing, lambda: facts, clock=FakeClock(t))  # type: ignore[arg-type]


def all_need_reboot(facts: ClusterFacts) -> ClusterFacts:
    for n in facts.nodes:
        facts = with_node(facts, n.name, reboot_required=True)
    return facts


def test_outside_the_window_is_refused_naming_the_next_one() -> None:
    with pytest.raises(UserError, match="next one opens Tue 2026-12-08 20:00 UTC"):
        maintenance_plan(env("stage"), rig(all_need_reboot(healthy("stage")), WED_0500), None,
                         outside_window=False)  # fmt: skip


def test_inside_the_window_it_plans_every_node_that_needs_a_reboot() -> None:
    chosen = maintenance_plan(env("stage"), rig(all_need_reboot(healthy("stage")), TUE_2005),
                              None, outside_window=False)  # fmt: skip
    assert chosen is not None
    plan, nodes, _ = chosen
    assert nodes == ["stage-k8s-3", "stage-k8s-1", "stage-k8s-2"]  # leader, then the endpoint, last
    assert plan.task == "maintenance" and plan.steps[0].key == "preflight"


def test_a_plan_that_outlasts_the_window_is_refused() -> None:
    with pytest.raises(UserError, match="the window closes 21:00 UTC"):
        maintenance_plan(env("stage"), rig(all_need_reboot(healthy("stage")), TUE_2055), None,
                         outside_window=False)  # fmt: skip


def test_outside_window_is_never_for_prod() -> None:
    with pytest.raises(UserError, match="--outside-window is refused for prod"):
        maintenance_plan(env("prod"), rig(healthy("prod"), WED_0500), None, outside_window=True)
    chosen = maintenance_plan(env("prod"), rig(all_need_reboot(healthy("prod")), SUN_2210), None,
                              outside_window=False)  # fmt: skip
    assert chosen is not None


def test_outside_window_lets_stage_start_anyway() -> None:
    chosen = maintenance_plan(env("stage"), rig(all_need_reboot(healthy("stage")), WED_0500),
                              None, outside_window=True)  # fmt: skip
    assert chosen is not None


def test_nothing_to_reboot_is_no_plan() -> None:
    assert (
        maintenance_plan(env("dev"), rig(healthy(), WED_0500), None, outside_window=False) is None
    )


def test_unknown_reboot_required_is_no_pass() -> None:
    facts = with_node(healthy(), "dev-k8s-2", reboot_required=None)
    with pytest.raises(UserError, match="dev-k8s-2: reboot-required not read"):
        maintenance_plan(env("dev"), rig(facts, WED_0500), None, outside_window=False)


def test_pve_node_holding_two_voters_is_refused() -> None:
    facts = with_node(healthy(), "dev-k8s-3", vm=VmState("running", "pve2"))
    with pytest.raises(UserError, match="--pve-node pve2: it holds 2 voters"):
        maintenance_plan(env("dev"), rig(facts, WED_0500), "pve2", outside_window=False)
    chosen = maintenance_plan(env("dev"), rig(healthy(), WED_0500), "pve2", outside_window=False)
    assert chosen is not None and chosen[1] == ["dev-k8s-2"]


@pytest.fixture
def world(kube_apiserver: KubeApiServer, tmp_path: Path) -> World:
    return make_world(kube_apiserver, tmp_path / "build", t=WED_0500)


def run(world: World, pve_node: str | None = None) -> str:
    out = io.StringIO()
    run_maintenance(world.env, world.rig(), world.build, Options(), pve_node=pve_node,
                    out=Console(file=out, width=200))  # fmt: skip
    return out.getvalue()


@pytest.mark.slow
def test_a_rolling_reboot_takes_one_node_at_a_time(world: World) -> None:
    wanted = world.nodes[:2]
    for n in wanted:
        world.power.machines[n].reboot_required = True
    cordoned_at_reboot: list[list[str]] = []
    world.power.on_reboot = lambda _: cordoned_at_reboot.append(
        [n for n in world.nodes if world.cordon(n)[0]]
    )
    run(world)
    assert world.power.log == [f"reboot {n}" for n in wanted]
    assert cordoned_at_reboot == [[n] for n in wanted]  # never two nodes out at once
    assert all(world.cordon(n) == (False, None) for n in world.nodes)
    assert not any(m.reboot_required for m in world.power.machines.values())
    assert "dev: no node needs a reboot" in run(world)  # converged: nothing more to do
    assert len(world.power.log) == 2


@pytest.mark.slow
def test_a_host_drain_stops_its_node_and_waits_for_it(world: World) -> None:
    node = world.nodes[1]  # on pve2
    world.clock.actors.append(lambda: world.power.start(node))  # the host is back, VM onboot
    run(world, pve_node="pve2")
    assert world.power.log == [f"shutdown {node}", f"start {node}"]
    assert world.cordon(node) == (False, None) and world.pods(node) == []
