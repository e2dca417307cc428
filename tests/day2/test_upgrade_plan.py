"""The upgrade planner on recorded facts: golden plans per scenario, each refusal flipped alone.

Golden plans live in tests/day2/golden/upgrade-*.json (the plan's JSON) beside a readable
.txt (the tables `invoke upgrade --dry-run` prints). Regenerate after a deliberate change with
`MK8S_REGEN_GOLDEN=1 pytest tests/day2/test_upgrade_plan.py` and review the diff.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from rich.console import Console

from mk8s.day2 import upgrade_refusals
from mk8s.day2.evidence import Day2Latest
from mk8s.day2.facts import ClusterFacts, VmState
from mk8s.day2.operation import show_plan
from mk8s.day2.plan import Plan
from mk8s.day2.upgrade_plan import UpgradeInputs, plan_upgrade
from mk8s.day2.upgrade_refusals import (
    ApiUse,
    PreviousEvidence,
    UpgradeRefusedError,
    removed_flags,
    rendered_flags,
)
from mk8s.day2.upgrade_removals import FLAG_MINORS_READ
from mk8s.edges.microk8s import Member
from mk8s.inventory.model import Environment
from tests.day2.upgrade_scenarios import (
    OUTSIDE,
    PROD_WINDOW,
    cluster,
    environment,
    green,
    inputs,
    snap,
    with_node,
)

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("MK8S_REGEN_GOLDEN") == "1"


@dataclass(frozen=True)
class Scenario:
    env: Environment
    facts: ClusterFacts
    inputs: UpgradeInputs


def _stage_134() -> Scenario:
    env = environment("stage", "1.34/stable")
    return Scenario(env, cluster(env), inputs(previous=green("dev", "1.34/stable")))


def _leader_elsewhere() -> Scenario:
    env = environment("stage", "1.34/stable")
    facts = cluster(env, leader="stage-k8s-2", endpoint="stage-k8s-1")
    return Scenario(env, facts, inputs(previous=green("dev", "1.34/stable")))


def _standby_and_vip() -> Scenario:
    env = environment("stage", "1.34/stable", extra_nodes=2, api_vip="192.168.20.10")
    roles = {
        "stage-k8s-1": "voter",
        "stage-k8s-2": "voter",
        "stage-k8s-3": "standby",
        "stage-k8s-4": "voter",
        "stage-k8s-5": "spare",
    }
    facts = cluster(env, roles=roles, leader="stage-k8s-4", endpoint=None)
    return Scenario(env, facts, inputs(previous=green("dev", "1.34/stable")))


def _half_done() -> Scenario:
    env = environment("stage", "1.34/stable")
    channels = {
        "stage-k8s-1": "1.33/stable",
        "stage-k8s-2": "1.34/stable",
        "stage-k8s-3": "1.33/stable",
    }
    return Scenario(env, cluster(env, channels), inputs(previous=green("dev", "1.34/stable")))


def _all_done() -> Scenario:
    env = environment("stage", "1.34/stable")
    return Scenario(env, cluster(env, "1.34/stable"), inputs(previous=green("dev", "1.34/stable")))


def _prod_135_traefik() -> Scenario:
    env = environment("prod", "1.35/stable", controller="traefik")
    return Scenario(
        env,
        cluster(env, "1.34/stable", leader="prod-k8s-3"),
        inputs(PROD_WINDOW, previous=green("stage", "1.35/stable")),
    )


def _dev_ad_hoc() -> Scenario:
    env = environment("dev", "1.34/stable")
    return Scenario(env, cluster(env), inputs(OUTSIDE))


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "stage-1.33-to-1.34": _stage_134,
    "leader-not-endpoint": _leader_elsewhere,
    "standby-spare-vip": _standby_and_vip,
    "half-done": _half_done,
    "all-done": _all_done,
    "prod-1.34-to-1.35-traefik": _prod_135_traefik,
    "dev-ad-hoc": _dev_ad_hoc,
}


def readable(plan: Plan) -> str:
    out = Console(file=io.StringIO(), width=160, record=True, color_system=None)
    show_plan(plan, out, as_json=False)
    return "\n".join(line.rstrip() for line in out.export_text().splitlines()) + "\n"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_plan(name: str) -> None:
    s = SCENARIOS[name]()
    plan = plan_upgrade(s.env, s.facts, s.inputs)
    json_path, txt_path = GOLDEN / f"upgrade-{name}.json", GOLDEN / f"upgrade-{name}.txt"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        json_path.write_text(plan.to_json())
        txt_path.write_text(readable(plan))
    assert json.loads(json_path.read_text()) == plan.to_dict(), f"regenerate: {__doc__}"
    assert txt_path.read_text() == readable(plan)


def test_every_golden_file_belongs_to_a_scenario() -> None:
    names = {p.stem.removeprefix("upgrade-") for p in GOLDEN.glob("upgrade-*.*")}
    assert names == set(SCENARIOS)


def keys(plan: Plan) -> list[str]:
    return [s.key for s in plan.steps]


def node_sequence(plan: Plan) -> list[str]:
    return list(dict.fromkeys(s.node for s in plan.steps if s.node))


def test_the_step_keys_are_the_contract_with_the_flow() -> None:
    plan = plan_upgrade(*vars(_stage_134()).values())
    per_node = ["cordon", "evict", "refresh", "hold", "gate", "uncordon", "conformance", "settle"]
    expected = ["preflight", "snapshot-set", "verify-snapshots"]
    for n in ("stage-k8s-2", "stage-k8s-3", "stage-k8s-1"):
        expected += [f"{n}:{k}" for k in per_node]
    assert keys(plan) == [*expected, "finish"]
    refresh = next(s for s in plan.steps if s.key == "stage-k8s-2:refresh")
    assert refresh.command == "snap refresh microk8s --channel=1.34/stable"
    hold = next(s for s in plan.steps if s.key == "stage-k8s-2:hold")
    assert hold.command == "snap refresh --hold microk8s"
    assert all(s.waits_for for s in plan.steps if s.kind == "wait")


def test_order_spares_standbys_voters_endpoint_then_leader() -> None:
    plan = plan_upgrade(*vars(_standby_and_vip()).values())
    assert node_sequence(plan) == [
        "stage-k8s-5",  # spare
        "stage-k8s-3",  # standby
        "stage-k8s-1",  # voters, inventory order (the endpoint is the VIP: no node)
        "stage-k8s-2",
        "stage-k8s-4",  # the leader
    ]
    assert node_sequence(plan_upgrade(*vars(_leader_elsewhere()).values())) == [
        "stage-k8s-3",
        "stage-k8s-1",  # the kubeconfig endpoint, next to last
        "stage-k8s-2",  # the leader, last
    ]


def test_no_leader_known_but_members_agreed_plans_with_the_endpoint_last() -> None:
    """No reader names the dqlite leader (microk8s status does not): the member list every
    node agrees on gives the roles; the refusal beside it is "leader unknown, members disagree"."""
    s = _leader_elsewhere()
    plan = plan_upgrade(s.env, replace(s.facts, leader=None), s.inputs)
    assert node_sequence(plan) == ["stage-k8s-2", "stage-k8s-3", "stage-k8s-1"]


def test_nodes_already_on_the_target_are_skipped_with_a_note() -> None:
    plan = plan_upgrade(*vars(_half_done()).values())
    assert "stage-k8s-2" not in node_sequence(plan)
    assert any("stage-k8s-2 is already on 1.34/stable" in n for n in plan.notes)
    done = plan_upgrade(*vars(_all_done()).values())
    assert done.steps == () and "nothing to upgrade" in done.notes[0]


def test_a_resumed_run_gets_its_recorded_plan_back() -> None:
    """After node 2 was refreshed and node 3 cordoned mid-refresh, the same plan comes back."""
    s = _stage_134()
    first = plan_upgrade(s.env, s.facts, s.inputs)
    later = with_node(s.facts, "stage-k8s-2", snap=snap("1.34/stable"), kubelet_version="v1.34.2")
    later = with_node(
        later, "stage-k8s-3", unschedulable=True, cordoned_by="upgrade 20261201T2016", ready=False
    )
    resumed = replace(s.inputs, resuming=first.to_dict())
    assert plan_upgrade(s.env, later, resumed).fingerprint() == first.fingerprint()
    # without the recorded plan, node 3's state is a refusal, not a guess
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(s.env, later, s.inputs)
    assert refused.value.codes == ("unhealthy",)
    # a recorded plan to another channel is not resumed: planned afresh (the runner refuses it)
    other = replace(
        first, components=tuple(replace(c, target="1.35/stable") for c in first.components)
    )
    data = other.to_dict()
    assert plan_upgrade(s.env, s.facts, replace(s.inputs, resuming=data)).fingerprint() == (
        first.fingerprint()
    )


# ---- each refusal flipped alone ----------------------------------------------------------------

Flip = Callable[[Scenario], Scenario]


def _env(channel: str, **kw: object) -> Flip:
    return lambda s: replace(s, env=environment("stage", channel, **kw))  # type: ignore[arg-type]


def _node(name: str, **changes: object) -> Flip:
    return lambda s: replace(s, facts=with_node(s.facts, name, **changes))


def _facts(**changes: object) -> Flip:
    return lambda s: replace(s, facts=replace(s.facts, **changes))  # type: ignore[arg-type]


def _inputs(**changes: object) -> Flip:
    return lambda s: replace(s, inputs=replace(s.inputs, **changes))  # type: ignore[arg-type]


def _on(channel: str, *names: str) -> Flip:
    def flip(s: Scenario) -> Scenario:
        nodes = tuple(
            replace(n, snap=snap(channel)) if n.name in names else n for n in s.facts.nodes
        )
        return replace(s, facts=replace(s.facts, nodes=nodes))

    return flip


def _both(a: Flip, b: Flip) -> Flip:
    return lambda s: b(a(s))


FLIPS: dict[str, tuple[Flip, str, str]] = {
    "skip a minor": (
        _both(
            _env("1.35/stable", controller="traefik"), _inputs(previous=green("dev", "1.35/stable"))
        ),
        "path-skip",
        "1.33 -> 1.34 -> 1.35: raise microk8s.channel one minor at a time",
    ),
    "downgrade": (
        _both(_env("1.32/stable"), _inputs(previous=green("dev", "1.32/stable"))),
        "downgrade",
        "mk8s does not downgrade",
    ),
    "mixed minors": (_on("1.32/stable", "stage-k8s-3"), "mixed-minor", "stage-k8s-3 1.32"),
    "risk change": (
        _both(_env("1.33/candidate"), _inputs(previous=green("dev", "1.33/candidate"))),
        "risk-change",
        "not an upgrade",
    ),
    "unparsable channel": (
        _node("stage-k8s-2", snap=replace(snap("1.33/stable"), channel="latest/stable")),
        "channel-unknown",
        "stage-k8s-2 tracks 'latest/stable'",
    ),
    "behind in its channel": (
        _node("stage-k8s-3", snap=snap("1.33/stable", behind=True)),
        "revision",
        "stage-k8s-3 is on 1.33/stable revision 8148, not its newest 8160: refresh within the "
        "channel first",
    ),
    "newest revision unknown": (
        _node("stage-k8s-1", snap=snap("1.33/stable", latest_known=False)),
        "revision-unknown",
        "stage-k8s-1",
    ),
    "a node not Ready": (_node("stage-k8s-3", ready=False), "unhealthy", "stage-k8s-3: not Ready"),
    "a VM stopped": (
        _node("stage-k8s-2", vm=VmState("stopped", "pve2")),
        "unhealthy",
        "stage-k8s-2: VM stopped",
    ),
    "SSH down": (_node("stage-k8s-1", ssh=False), "unhealthy", "SSH unreachable"),
    "cordoned by someone": (
        _node("stage-k8s-2", unschedulable=True),
        "unhealthy",
        "cordoned by someone else",
    ),
    "leader unknown, members disagree": (
        lambda s: _node(
            "stage-k8s-1",
            members=(
                Member("192.168.20.11:19001", "voter"),
                Member("192.168.20.12:19001", "voter"),
                Member("192.168.20.13:19001", "spare"),
            ),
        )(_facts(leader=None)(s)),
        "leader-unknown",
        "leader is unknown and the nodes do not all list the same members",
    ),
    "a node missing from the datastore": (
        _node(
            "stage-k8s-1",
            members=(
                Member("192.168.20.11:19001", "voter"),
                Member("192.168.20.12:19001", "voter"),
            ),
        ),
        "roles-unknown",
        "stage-k8s-3 not in the datastore",
    ),
    "endpoint unknown": (_facts(endpoint_node=None), "endpoint-unknown", "192.168.20.11"),
    "API use unknown": (_inputs(api_use=None), "api-unknown", "API versions"),
    "a kubelet flag 1.34 removes": (
        _inputs(node_args={"stage-k8s-2": {"kubelet": ["--cloud-config=/etc/cloud.conf"]}}),
        "removed-flag",
        "kubelet flag --cloud-config (set on stage-k8s-2) is removed in Kubernetes 1.34 "
        "(kubernetes/kubernetes@008b365:CHANGELOG/CHANGELOG-1.34.md v1.34.0, #130161)",
    ),
    "an API 1.34 stops serving": (
        _inputs(api_use=(ApiUse("resource.k8s.io/v1alpha3", "resourceclaims", "ml/gpu-claim"),)),
        "removed-api",
        "resourceclaims.resource.k8s.io/v1alpha3 (ml/gpu-claim) is no longer served from "
        "Kubernetes 1.34",
    ),
    "1.35 with nginx": (
        _both(
            _both(
                _env("1.35/stable", controller="nginx"),
                _on("1.34/stable", *("stage-k8s-1", "stage-k8s-2", "stage-k8s-3")),
            ),
            _inputs(previous=green("dev", "1.35/stable")),
        ),
        "ingress",
        "set ingress.controller: traefik",
    ),
    "no evidence from dev": (
        _inputs(previous=None),
        "previous-evidence",
        "dev has no upgrade evidence",
    ),
    "dev's evidence at another channel": (
        _inputs(previous=green("dev", "1.33/stable")),
        "previous-evidence",
        "dev's last upgrade reached 1.33/stable, not 1.34/stable",
    ),
    "dev's upgrade red": (
        _inputs(previous=PreviousEvidence("dev", "1.34/stable", False)),
        "previous-evidence",
        "is not green",
    ),
    "outside the window": (_inputs(now=OUTSIDE), "window", "outside the window"),
}


@pytest.mark.parametrize("name", sorted(FLIPS))
def test_each_refusal_flipped_alone_names_itself(name: str) -> None:
    base = _stage_134()
    assert plan_upgrade(base.env, base.facts, base.inputs).steps  # the healthy case plans
    flip, code, text = FLIPS[name]
    s = flip(base)
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(s.env, s.facts, s.inputs)
    assert refused.value.codes == (code,), refused.value.lines
    assert text in refused.value.lines[0]
    assert refused.value.exit_code == 2
    assert refused.value.lines[0].startswith("stage: upgrade refused: ")


def test_outside_window_overrides_for_stage_never_for_prod() -> None:
    s = _stage_134()
    plan_upgrade(s.env, s.facts, replace(s.inputs, now=OUTSIDE, outside_window=True))
    p = _prod_135_traefik()
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(p.env, p.facts, replace(p.inputs, outside_window=True))
    assert refused.value.codes == ("window",)
    assert "--outside-window is refused for prod" in refused.value.lines[0]


def test_api_use_outside_the_removal_table_passes() -> None:
    s = _stage_134()
    used = (ApiUse("apps/v1", "deployments", "kube-system/coredns"),)
    assert plan_upgrade(s.env, s.facts, replace(s.inputs, api_use=used)).steps


def test_every_refusal_is_reported_at_once() -> None:
    s = _stage_134()
    s = _node("stage-k8s-3", ready=False)(_inputs(previous=None, now=OUTSIDE)(s))
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(s.env, s.facts, s.inputs)
    assert refused.value.codes == ("unhealthy", "previous-evidence", "window")


def test_flags_and_apis_the_target_keeps_pass() -> None:
    """The tables bite only on what the target removes: 1.35's flag is fine for a 1.34 target."""
    s = _stage_134()
    args = {"stage-k8s-1": {"kubelet": ["--pod-infra-container-image=pause:3.10", "--v=2"]}}
    used = (ApiUse("storagemigration.k8s.io/v1alpha1", "storageversionmigrations"),)
    assert plan_upgrade(s.env, s.facts, replace(s.inputs, node_args=args, api_use=used)).steps
    p = _prod_135_traefik()
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(p.env, p.facts, replace(p.inputs, api_use=used))
    assert refused.value.codes == ("removed-api",)


def test_a_flag_microk8s_strips_itself_is_refused_only_where_sanitisation_is_off() -> None:
    """MicroK8s 1.35's kubelite wrapper deletes --pod-infra-container-image from the args file
    at start (sanitise_args_kubelet) unless var/lock/no-arg-sanitisation exists."""
    p = _prod_135_traefik()
    args = {"prod-k8s-2": {"kubelet": ["--pod-infra-container-image=pause:3.10"]}}
    assert plan_upgrade(p.env, p.facts, replace(p.inputs, node_args=args)).steps
    off = replace(p.inputs, node_args=args, no_arg_sanitisation=frozenset({"prod-k8s-2"}))
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(p.env, p.facts, off)
    assert refused.value.codes == ("removed-flag",)
    assert "sanitisation is off there" in refused.value.lines[0]
    assert "(set on prod-k8s-2)" in refused.value.lines[0]


def test_mk8s_own_launch_configuration_sets_no_removed_flag() -> None:
    env = environment("stage", "1.35/stable", controller="traefik")
    flags = rendered_flags(env)
    assert flags["stage-k8s-1"]["kube-apiserver"] == ("--service-cluster-ip-range",)
    assert list(removed_flags(flags, 35)) == []
    planted = {"stage-k8s-3": {"kubelet": ("--cloud-config=/etc/cloud.conf",)}}
    assert [r.code for r in removed_flags({**flags, **planted}, 34)] == ["removed-flag"]


def test_previous_evidence_from_the_evidence_reader() -> None:
    none = PreviousEvidence.from_latest("dev", "1.34/stable", Day2Latest())
    assert (
        not none.green and none.reason is not None and "dev has no upgrade evidence" in none.reason
    )
    bad = PreviousEvidence.from_latest(
        "dev", "1.34/stable", Day2Latest(run_id="20261130T200000Z", problem="is not signed")
    )
    s = _stage_134()
    with pytest.raises(UpgradeRefusedError) as refused:
        plan_upgrade(s.env, s.facts, replace(s.inputs, previous=bad))
    assert refused.value.codes == ("previous-evidence",)
    assert "20261130T200000Z) is not signed" in refused.value.lines[0]


def test_a_target_whose_flags_were_not_read_says_so() -> None:
    env = environment("stage", "1.34/stable")
    plan = plan_upgrade(env, cluster(env), inputs(previous=green("dev", "1.34/stable")))
    assert not any("are not tabled" in n for n in plan.notes)
    older = environment("stage", "1.33/stable")
    plan = plan_upgrade(
        older, cluster(older, "1.32/stable"), inputs(previous=green("dev", "1.33/stable"))
    )
    assert 33 not in FLAG_MINORS_READ
    assert any("flags removed in Kubernetes 1.33 are not tabled" in n for n in plan.notes)


def test_every_refusal_code_has_a_flip() -> None:
    """A new refusal without its broken-state test fails here."""
    source = inspect.getsource(upgrade_refusals)
    codes = set(re.findall(r'Refusal\(\s*"([a-z-]+)"', source))
    assert len(codes) >= 15
    assert codes == {code for _, code, _ in FLIPS.values()}
