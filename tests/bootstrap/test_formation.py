"""Pure add-on, certificate and machine-id decisions of mk8s.bootstrap.formation (formation
itself: test_formation_seed.py on the model's facts, test_formation_ssh.py over sshd)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mk8s.bootstrap import formation
from mk8s.edges.microk8s import Status
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.inventory.secrets import redact

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev() -> Environment:
    return load_environment("dev", root=ROOT)


def test_addons_have_their_arguments_and_skip_what_is_enabled(dev: Environment) -> None:
    status = Status("running", (), {"dns": "enabled", "ingress": "enabled", "rbac": "disabled"})
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
    status = Status("running", (), {"community": "enabled"})
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
