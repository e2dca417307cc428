"""`invoke check` and `invoke plan` as a user runs them: exit codes and what is printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def invoke(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("env", ["dev", "stage", "prod"])
def test_check_passes_for_shipped_inventories(env: str) -> None:
    result = invoke("check", "--env", env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{env}: OK (3 nodes, 1.33/stable)"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: [unclosed\n", "YAML syntax error at line 2, column 1"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: dev\n", "proxmox: required field is missing"),
    ],
)
def test_check_reports_bad_files_in_one_line_each_with_exit_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = invoke("check", "--env", str(bad))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_check_names_a_missing_inventory(tmp_path: Path) -> None:
    result = invoke("check", "--env", "nosuchenv", cwd=tmp_path)
    assert result.returncode == 2
    assert "inventory/nosuchenv.yaml: no such inventory file" in result.stderr


def test_plan_renders_then_reports_nothing_changed(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "dev.yaml").write_text((ROOT / "inventory" / "dev.yaml").read_text())
    first = invoke("plan", "--env", "dev", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "dev-k8s-1" in first.stdout and "192.168.10.50-192.168.10.69" in first.stdout
    assert "build/dev/terraform/terraform.tfvars.json" in first.stdout
    plan_json = json.loads((tmp_path / "build/dev/plan.json").read_text())
    assert plan_json["metallb_range"] == "192.168.10.50-192.168.10.69"
    second = invoke("plan", "--env", "dev", cwd=tmp_path)
    assert "up to date, nothing changed" in second.stdout


def test_task_list_has_help_for_every_task() -> None:
    result = invoke("--list")
    assert result.returncode == 0
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("  ") and ln.strip()]
    assert {"check", "plan"} <= {ln.split()[0] for ln in lines}
    for ln in lines:
        if not ln.startswith("    "):  # a continuation line of a wrapped help text
            assert len(ln.split()) > 1, f"task without help text: {ln.strip()}"


def test_plan_names_what_changed_in_the_inventory(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    dev = (ROOT / "inventory" / "dev.yaml").read_text()
    (inventory / "dev.yaml").write_text(dev)
    assert invoke("plan", "--env", "dev", cwd=tmp_path).returncode == 0
    (inventory / "dev.yaml").write_text(
        dev.replace("{cores: 4, memory_gib: 16", "{cores: 6, memory_gib: 16")
    )
    second = invoke("plan", "--env", "dev", cwd=tmp_path)
    assert "nodes.dev-k8s-1.cores: 4 -> 6" in second.stdout
    assert "~ build/dev/terraform/terraform.tfvars.json" in second.stdout
