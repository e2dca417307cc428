"""terraform/ as a module: formatted, valid, and `terraform test` (mocked provider) passes for
the variables rendered from the shipped dev, stage and prod inventories."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mk8s.edges.tools import Tools, ensure_tools
from mk8s.inventory.load import load_environment
from mk8s.render.build import build_dir, write_plan
from mk8s.render.plan import build_plan
from mk8s.render.terraform import TFVARS
from tests.provision.conftest import ROOT

pytestmark = pytest.mark.slow
MODULE = ROOT / "terraform"


@pytest.fixture(scope="module")
def tools() -> Tools:
    return ensure_tools(ROOT, build=False)


@pytest.fixture(scope="module")
def module_copy(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module with its tests, initialised from the offline mirror (terraform/ stays clean)."""
    work = tmp_path_factory.mktemp("module")
    for tf in MODULE.glob("*.tf"):
        shutil.copy(tf, work)
    shutil.copytree(MODULE / "tests", work / "tests")
    tf_run(tools, work, "init", "-input=false", "-no-color")
    return work


def tf_run(tools: Tools, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(tools.binary), f"-chdir={workdir}", *args],
        env=tools.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_module_is_formatted(tools: Tools) -> None:
    tf_run(tools, MODULE, "fmt", "-check", "-recursive", "-diff")


def test_module_is_valid(tools: Tools, module_copy: Path) -> None:
    assert (
        "The configuration is valid" in tf_run(tools, module_copy, "validate", "-no-color").stdout
    )


EXPECTED = {  # inventory facts the mocked apply must reproduce
    "dev": {"vlan": 110, "cores": 4, "memory_mib": 16384, "disk_gib": 100},
    "stage": {"vlan": 120, "cores": 8, "disk_gib": 200},
    "prod": {"vlan": 130, "cores": 8, "memory_mib": 32768, "disk_gib": 200},
}


@pytest.mark.parametrize("env_name", ["dev", "stage", "prod"])
def test_terraform_test_passes_for_each_rendered_environment(
    env_name: str, tools: Tools, module_copy: Path, tmp_path: Path
) -> None:
    env = load_environment(env_name, ROOT)
    out = build_dir(env_name, tmp_path)
    write_plan(build_plan(env), out)
    tfvars = out / TFVARS
    rendered = json.loads(tfvars.read_text())
    assert len(rendered["nodes"]) == 3
    for node in rendered["nodes"].values():
        assert {k: node[k] for k in EXPECTED[env_name]} == EXPECTED[env_name]
        assert node["tags"] == ["mk8s", f"env-{env_name}"]

    result = tf_run(
        tools,
        module_copy,
        "test",
        "-no-color",
        f"-var-file={tfvars}",
        "-var=template_vmid=9000",
    )
    assert "2 passed, 0 failed" in result.stdout
