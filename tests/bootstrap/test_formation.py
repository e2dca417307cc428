"""Pure formation and add-on decisions, on recorded `microk8s` output."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mk8s.bootstrap import formation
from mk8s.bootstrap.formation import FactsError, FormationError, Member, NodeStatus
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.inventory.secrets import redact

ROOT = Path(__file__).resolve().parents[2]

# `microk8s status --format yaml` on a 3-node HA cluster, in the layout of
# MK scripts/wrappers/status.py print_yaml (1.28+), with a prompt and trailing spaces as pasted.
STATUS_HA = """\
mk8s@dev-k8s-1:~$ microk8s status --format yaml
microk8s:
  running: True
high-availability:
  enabled: True
  nodes:
    - address: 192.168.10.11:19001{trailing}
      role: voter
    - address: 192.168.10.12:19001
      role: voter
    - address: 192.168.10.13:19001
      role: voter
addons:
  - name: dns
    repository: core
    description: CoreDNS
    version: 1.10.1
    status: enabled
  - name: metallb
    repository: core
    description: Loadbalancer for your Kubernetes cluster
    version: 0.14.9
    status: disabled
""".format(trailing="   ")
STATUS_STOPPED = """\
microk8s:
  running: False
high-availability:
  message: microk8s is not running. Use microk8s inspect for a deeper inspection.
"""
# MK scripts/wrappers/add_token.py print_json (json.dumps indent=2).
ADD_NODE_JSON = """{
  "token": "0123456789abcdef0123456789abcdef/5f0e3c1b2a",
  "urls": [
    "192.168.10.11:25000/0123456789abcdef0123456789abcdef/5f0e3c1b2a"
  ]
}"""


@pytest.fixture
def dev() -> Environment:
    return load_environment("dev", root=ROOT)


def single(ip: str, *, running: bool = True) -> NodeStatus:
    return NodeStatus(running, (Member(ip, "voter"),))


def test_status_yaml_is_parsed_tolerantly() -> None:
    st = formation.parse_status_yaml(STATUS_HA)
    assert st.running and st.voters == 3 and st.highly_available
    assert st.role_of("192.168.10.12") == "voter"
    assert st.enabled_addons == {"dns"}
    stopped = formation.parse_status_yaml(STATUS_STOPPED)
    assert not stopped.running and stopped.members == ()


def test_status_garbage_is_a_clear_error() -> None:
    with pytest.raises(FactsError, match="no `microk8s:` section"):
        formation.parse_status_yaml("microk8s is not running, try microk8s start")


def test_add_node_token_with_fingerprint(dev: Environment) -> None:
    token = formation.parse_add_node_json("Infer...\n" + ADD_NODE_JSON)
    assert token == "0123456789abcdef0123456789abcdef/5f0e3c1b2a"
    assert formation.join_url(dev.first_node, token) == (
        "192.168.10.11:25000/0123456789abcdef0123456789abcdef/5f0e3c1b2a"
    )
    with pytest.raises(FactsError):
        formation.parse_add_node_json("Invalid token size.  It must be 32 characters long.")


def test_fresh_nodes_join_one_at_a_time_in_inventory_order(dev: Environment) -> None:
    statuses = {n.name: single(str(n.ip)) for n in dev.nodes}
    join = formation.next_join(dev, statuses)
    assert join is not None
    assert (join.node.name, join.remove_stale, join.wait_for) == ("dev-k8s-2", False, "voter")


def test_a_half_joined_node_is_removed_before_joining_again(dev: Environment) -> None:
    one, two, three = (str(n.ip) for n in dev.nodes)
    statuses = {
        "dev-k8s-1": NodeStatus(True, (Member(one, "voter"), Member(two, "spare"))),
        "dev-k8s-2": single(two),  # it never heard back: alone in its own dqlite
        "dev-k8s-3": single(three),
    }
    join = formation.next_join(dev, statuses)
    assert join is not None and join.node.name == "dev-k8s-2" and join.remove_stale


def test_formed_cluster_needs_nothing(dev: Environment) -> None:
    members = tuple(Member(str(n.ip), "voter") for n in dev.nodes)
    statuses = {n.name: NodeStatus(True, members) for n in dev.nodes}
    assert formation.next_join(dev, statuses) is None
    assert formation.ha_formed(dev, statuses["dev-k8s-1"])
    two_voters = (*members[:2], Member(members[2].ip, "spare"))
    assert not formation.ha_formed(dev, NodeStatus(True, two_voters))


def test_a_node_in_another_cluster_is_not_touched(dev: Environment) -> None:
    one, two, three = (str(n.ip) for n in dev.nodes)
    statuses = {
        "dev-k8s-1": single(one),
        "dev-k8s-2": NodeStatus(True, (Member(two, "voter"), Member("192.168.10.99", "voter"))),
        "dev-k8s-3": single(three),
    }
    with pytest.raises(FormationError, match=r"dev-k8s-2: is in another dqlite cluster"):
        formation.next_join(dev, statuses)


def test_first_node_must_run(dev: Environment) -> None:
    statuses = {n.name: single(str(n.ip), running=False) for n in dev.nodes}
    with pytest.raises(FormationError, match="dev-k8s-1: MicroK8s is not running"):
        formation.next_join(dev, statuses)


def test_nodes_beyond_three_only_need_to_be_members(dev: Environment) -> None:
    assert [formation.wanted_role(i) for i in range(5)] == [
        "voter",
        "voter",
        "voter",
        "member",
        "member",
    ]


def test_addons_have_their_arguments_and_skip_what_is_enabled(dev: Environment) -> None:
    status = NodeStatus(True, (), {"dns": "enabled", "ingress": "enabled", "rbac": "disabled"})
    cmds = formation.addon_commands(dev, status)
    assert cmds[0] == ["microk8s", "enable", "rbac"]
    assert ["microk8s", "enable", "metallb:192.168.10.50-192.168.10.69"] in cmds
    assert ["microk8s", "enable", "ingress"] not in cmds
    assert all(c[2] != "dns" and not c[2].startswith("dns:") for c in cmds)


def test_no_dashboard_on_prod_and_rbac_always() -> None:
    prod = load_environment("prod", root=ROOT)
    prod = prod.model_copy(
        update={
            "microk8s": prod.microk8s.model_copy(update={"addons": ["dns", "dashboard", "ingress"]})
        }
    )
    assert formation.wanted_addons(prod) == [
        "dns",
        "rbac",
        "ingress",
        "community",
        "argocd",
        "observability",
    ]


def test_gitops_brings_the_community_repository_then_argocd() -> None:
    stage = load_environment("stage", root=ROOT)
    assert stage.gitops.enabled
    wanted = formation.wanted_addons(stage)
    assert wanted.index("community") == wanted.index("argocd") - 1
    status = NodeStatus(True, (), {"community": "enabled"})
    cmds = formation.addon_commands(stage, status)
    assert ["microk8s", "enable", "argocd"] in cmds
    assert ["microk8s", "enable", "community"] not in cmds  # enabled already: converged
    off = stage.model_copy(update={"gitops": stage.gitops.model_copy(update={"enabled": False})})
    assert not {"community", "argocd"} & set(formation.wanted_addons(off))


def test_csr_template_gets_the_next_free_ip_number_before_moreips() -> None:
    template = (
        "[ alt_names ]\nDNS.1 = kubernetes\nIP.1 = 127.0.0.1\nIP.2 = 10.152.183.1\n#MOREIPS\n"
    )
    new = formation.csr_template_with(template, IPv4Address("192.168.10.5"))
    assert "IP.3 = 192.168.10.5\n#MOREIPS" in new
    assert formation.csr_template_with(new, IPv4Address("192.168.10.5")) == new


def test_shared_machine_ids_are_named() -> None:
    problems = formation.distinct_machine_ids({"a": "x1\n", "b": "x1", "c": "y"})
    assert len(problems) == 1 and problems[0].startswith("a, b: share machine-id")
    assert formation.distinct_machine_ids({"a": "1", "b": "2"}) == []


def test_redact_hides_every_secret() -> None:
    assert redact("join 1.2.3.4:25000/tok/chk", ["tok/chk", "tok"]) == ("join 1.2.3.4:25000/***")


@given(st.lists(st.sampled_from(["alone", "joined", "half"]), min_size=2, max_size=2))
def test_next_join_is_always_the_first_node_not_fully_joined(states: list[str]) -> None:
    """Any mix of joined / half-joined / fresh nodes: the next join is the first one in
    inventory order that is not fully joined, with stale removal exactly when dqlite lists it."""
    env = load_environment("dev", root=ROOT)
    one = str(env.nodes[0].ip)
    first_members = [Member(one, "voter")]
    statuses: dict[str, NodeStatus] = {}
    for node, state in zip(env.nodes[1:], states, strict=True):
        ip = str(node.ip)
        if state == "joined":
            first_members.append(Member(ip, "voter"))
            statuses[node.name] = NodeStatus(True, (Member(one, "voter"), Member(ip, "voter")))
        else:
            if state == "half":
                first_members.append(Member(ip, "spare"))
            statuses[node.name] = single(ip)
    statuses[env.nodes[0].name] = NodeStatus(True, tuple(first_members))
    join = formation.next_join(env, statuses)
    pending = [(n, s) for n, s in zip(env.nodes[1:], states, strict=True) if s != "joined"]
    if not pending:
        assert join is None
    else:
        node, state = pending[0]
        assert join is not None and join.node == node
        assert join.remove_stale == (state == "half")
