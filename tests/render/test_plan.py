"""The Plan: deterministic, complete, and carrying the inventory's values to each consumer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mk8s.inventory.load import load_environment
from mk8s.render.build import write_plan
from mk8s.render.plan import build_plan, diff
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["dev", "stage", "prod"])
def test_rendering_is_deterministic(name: str) -> None:
    first = build_plan(load_environment(name, ROOT))
    second = build_plan(load_environment(name, ROOT))
    assert first.files == second.files


def test_tfvars_carry_every_node_with_its_size_network_and_tags() -> None:
    plan = build_plan(load_environment("prod", ROOT))
    tfvars = json.loads(plan.artifact("terraform/terraform.tfvars.json").content)
    assert sorted(tfvars["nodes"]) == ["prod-k8s-1", "prod-k8s-2", "prod-k8s-3"]
    node = tfvars["nodes"]["prod-k8s-2"]
    assert node["vmid"] == 1302
    assert node["ip"] == "192.168.30.12"
    assert node["cidr_prefix"] == 24
    assert node["gateway"] == "192.168.30.1"
    assert node["pve_node"] == "pve2"
    assert (node["cores"], node["memory_mib"], node["disk_gib"]) == (8, 32768, 200)
    assert (node["bridge"], node["vlan"]) == ("vmbr0", 130)
    assert node["tags"] == ["mk8s", "env-prod"]
    assert node["user_data"].startswith("#cloud-config\n")


def test_plan_json_hashes_every_other_artifact() -> None:
    plan = build_plan(load_environment("dev", ROOT))
    listed = json.loads(plan.artifact("plan.json").content)["artifacts"]
    assert set(listed) == {a.path for a in plan.artifacts} - {"plan.json"}
    for a in plan.artifacts:
        if a.path != "plan.json":
            assert listed[a.path] == a.sha256


def test_secret_values_never_reach_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"PVE_TOKEN_SECRET": "pve-secret-value", "CLOUDFLARE_API_TOKEN": "cf-secret-value"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    text = "".join(build_plan(load_environment("prod", ROOT)).files.values())
    for value in values.values():
        assert value not in text


def test_diff_against_a_previous_render(tmp_path: Path) -> None:
    env = load_environment("dev", ROOT)
    plan = build_plan(env)
    changes, _ = write_plan(plan, tmp_path)
    assert len(changes.added) == len(plan.artifacts) and not changes.changed
    again, facts = write_plan(plan, tmp_path)
    assert again.empty and facts == []
    stale = tmp_path / "cloud-init" / "dev-k8s-3.yaml"
    stale.write_text("edited by hand")
    assert diff({"cloud-init/dev-k8s-3.yaml": "edited by hand"}, plan).changed == (
        "cloud-init/dev-k8s-3.yaml",
    )
    repaired, _ = write_plan(plan, tmp_path)
    assert repaired.changed == ("cloud-init/dev-k8s-3.yaml",)
    assert stale.read_text() == plan.files["cloud-init/dev-k8s-3.yaml"]


def test_files_of_a_removed_node_are_removed(tmp_path: Path) -> None:
    four = load_environment("dev", ROOT).model_copy()
    write_plan(build_plan(four), tmp_path)
    (tmp_path / "kubeconfig").write_text("not the plan's")
    fewer = four.model_copy(update={"nodes": four.nodes[:2], "ha": False})
    changes, _ = write_plan(build_plan(fewer), tmp_path)
    assert changes.removed == ("cloud-init/dev-k8s-3.yaml", "launch-config/dev-k8s-3.yaml")
    assert not (tmp_path / "cloud-init" / "dev-k8s-3.yaml").exists()
    assert (tmp_path / "kubeconfig").exists(), "files the plan does not own are left alone"
