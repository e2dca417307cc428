"""The pure half of drain/maintenance: golden plans, the gates (each broken state fails next to
the healthy one that passes), voters per Proxmox host, node order, the window fit."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mk8s.day2 import drain
from mk8s.day2.facts import VmState
from mk8s.day2.maintenance import fits
from mk8s.day2.plan import Plan
from mk8s.day2.window import WindowState
from mk8s.edges.kube_drain import Eviction, PodRef
from mk8s.edges.microk8s import Member
from mk8s.errors import UserError
from tests.day2.drain_facts import TAKEN, VOTERS, blocked, certs, healthy, with_node

GOLDEN = Path(__file__).parent / "golden_drain"


def golden(name: str, plan: Plan) -> None:
    path = GOLDEN / f"{name}.json"
    text = plan.to_json()
    if os.environ.get("MK8S_REGOLD"):
        path.write_text(text)
    assert json.loads(text) == json.loads(path.read_text()), f"regenerate: MK8S_REGOLD=1 ({path})"


def test_golden_drain_reboot() -> None:
    plan = drain.plan_drain("dev", "dev-k8s-3", "192.168.10.13", drain.Mode.REBOOT)
    golden("drain-reboot", plan)
    assert [s.key for s in plan.steps] == [
        "preflight", "dev-k8s-3:cordon", "dev-k8s-3:evict", "dev-k8s-3:reboot",
        "dev-k8s-3:gate", "dev-k8s-3:uncordon",
    ]  # fmt: skip


def test_golden_drain_stop() -> None:
    plan = drain.plan_drain("dev", "dev-k8s-3", "192.168.10.13", drain.Mode.STOP)
    golden("drain-stop", plan)
    assert [s.key.split(":")[-1] for s in plan.steps][3:5] == ["stop", "back"]


def test_golden_maintenance_and_host() -> None:
    nodes = [("dev-k8s-3", "192.168.10.13"), ("dev-k8s-1", "192.168.10.11")]
    golden("maintenance", drain.plan_maintenance("dev", nodes))
    host = drain.plan_host("dev", "pve3", ["dev-k8s-3"])
    golden("maintenance-pve3", host)
    keys = [s.key for s in host.steps]
    assert keys.index("dev-k8s-3:stop") > keys.index("dev-k8s-3:evict")


def test_healthy_cluster_passes_every_drain_gate() -> None:
    assert drain.failed(drain.drain_gates(healthy(), "dev-k8s-3")) == ()


@pytest.mark.parametrize(
    ("broken", "gate", "says"),
    [
        (lambda f: with_node(f, "dev-k8s-1", ready=False), "nodes-ready", "dev-k8s-1: not Ready"),
        (lambda f: with_node(f, "dev-k8s-2", ssh=False, api=False), "voters", "voter down: dev-k8s-2"),
        (lambda f: with_node(f, "dev-k8s-1", members=VOTERS[:2]), "voters", "disagree"),
        (lambda f: with_node(f, "dev-k8s-1", unschedulable=True), "cordons", "someone else"),
        (lambda f: with_node(f, "dev-k8s-3", unschedulable=None), "cordons", "not read"),
        (lambda f: blocked(f, "dev-k8s-3"), "pdbs", "PDB web blocks default/web-1"),
        (lambda f: with_node(f, "dev-k8s-3", vm=VmState("running", "pve3", "backup")), "vm-locks", "backup"),
        (lambda f: with_node(f, "dev-k8s-3", vm=None), "vm-locks", "not read"),
        (lambda f: with_node(f, "dev-k8s-3", certs=certs("dev-k8s-3", 10)), "certs", "need > 30"),
    ],
)  # fmt: skip
def test_each_broken_state_fails_its_gate(broken: object, gate: str, says: str) -> None:
    facts = broken(healthy())  # type: ignore[operator]
    bad = drain.failed(drain.drain_gates(facts, "dev-k8s-3"))
    assert bad[0].name == gate, [g.name for g in bad]
    assert says in bad[0].detail and bad[0].fix
    # and the per-node verdict, the one `invoke status` prints, agrees (certs are no part of it)
    assert {g.name for g in bad} <= {gate, "safe-to-drain dev-k8s-3"}


def test_our_own_cordon_is_no_gate_failure() -> None:
    facts = with_node(healthy(), "dev-k8s-3", unschedulable=True, cordoned_by="drain dev x")
    assert drain.failed(drain.drain_gates(facts, "dev-k8s-3")) == ()


def test_an_unknown_node_is_bad_input() -> None:
    with pytest.raises(UserError, match="--node nope: not a node of dev"):
        drain.drain_gates(healthy(), "nope")


def test_back_needs_ready_api_and_voters() -> None:
    assert drain.back_problems(healthy(), "dev-k8s-3") == []
    assert drain.back_problems(with_node(healthy(), "dev-k8s-3", ready=False), "dev-k8s-3") == [
        "dev-k8s-3: not Ready"
    ]
    down = with_node(healthy(), "dev-k8s-3", api=False)
    assert "dev-k8s-3: its API server does not answer" in drain.back_problems(down, "dev-k8s-3")


def test_a_host_with_two_voters_is_refused() -> None:
    facts = with_node(healthy(), "dev-k8s-2", vm=VmState("running", "pve1"))  # migrated
    with pytest.raises(UserError, match=r"holds 2 voters \(dev-k8s-1, dev-k8s-2\).*lose quorum"):
        drain.host_nodes(facts, "pve1")
    assert drain.host_nodes(healthy(), "pve1") == ["dev-k8s-1"]


def test_a_host_with_one_voter_and_a_learner_is_allowed() -> None:
    members = (*VOTERS[:2], Member("192.168.10.13:19001", "spare"))
    facts = healthy()
    for n in facts.nodes:
        facts = with_node(facts, n.name, members=members)
    facts = with_node(facts, "dev-k8s-3", vm=VmState("running", "pve1"))
    assert drain.host_nodes(facts, "pve1") == ["dev-k8s-3", "dev-k8s-1"]  # leader last


def test_an_unknown_host_is_bad_input() -> None:
    with pytest.raises(UserError, match="--pve-node pve9: no node of dev runs there"):
        drain.host_nodes(healthy(), "pve9")


def test_reboot_candidates_in_order_leader_and_endpoint_last() -> None:
    facts = healthy()
    for n in facts.nodes:
        facts = with_node(facts, n.name, reboot_required=True)
    assert drain.reboot_candidates(facts) == (["dev-k8s-3", "dev-k8s-1", "dev-k8s-2"], [])
    unknown = with_node(healthy(), "dev-k8s-1", reboot_required=None)
    assert drain.reboot_candidates(unknown) == ([], ["dev-k8s-1: reboot-required not read"])


def test_a_refused_eviction_becomes_a_blocker_naming_the_pdb() -> None:
    e = Eviction(PodRef("shop", "web-1"), 429, True, "web", "Cannot evict pod")
    b = drain.blocker_of(e)
    assert (b.namespace, b.pod, b.pdb) == ("shop", "web-1", "web")
    assert drain.describe_blocker(b) == "PDB shop/web keeps pod shop/web-1: Cannot evict pod"


def test_the_plan_must_fit_in_what_is_left_of_the_window() -> None:
    plan = drain.plan_maintenance("stage", [("a", "10.0.0.1"), ("b", "10.0.0.2")])
    end = TAKEN + timedelta(minutes=60)
    assert fits(plan, WindowState(True, False, end, None), TAKEN) is None
    late = end - timedelta(seconds=plan.expected_s - 1)
    why = fits(plan, WindowState(True, False, end, None), late)
    assert why is not None and "the window closes 06:00 UTC" in why
    assert (
        fits(plan, WindowState(True, True, None, None), datetime.max.replace(tzinfo=TAKEN.tzinfo))
        is None
    )
