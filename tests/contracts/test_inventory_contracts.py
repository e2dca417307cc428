"""Inventory-side promises of issue 12: stage and prod keep monitoring on; a secrets file others
can read is refused, naming the path, its mode and the chmod to run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mk8s.errors import InventoryError, UserError
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.secrets import load_secrets_file, require_private
from tests.contracts.support import ROOT


def _with_monitoring(env: str, enabled: bool) -> str:
    data = yaml.safe_load((ROOT / "inventory" / f"{env}.yaml").read_text())
    data["monitoring"] = {**data["monitoring"], "enabled": enabled}
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_stage_and_prod_refuse_monitoring_off(env: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(_with_monitoring(env, False))
    assert caught.value.lines == (f"monitoring.enabled: {env} must keep monitoring on",)


def test_dev_may_turn_monitoring_off() -> None:
    assert parse_inventory(_with_monitoring("dev", False)).monitoring.enabled is False


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secrets_file_readable_by_others_is_refused(mode: int, tmp_path: Path) -> None:
    secrets = tmp_path / "pve.env"
    secrets.write_text("PVE_TOKEN_SECRET=abc\n")
    secrets.chmod(mode)
    with pytest.raises(UserError) as caught:
        load_secrets_file(str(secrets))
    (line,) = caught.value.lines
    assert str(secrets) in line and f"{mode:04o}" in line and f"chmod 600 {secrets}" in line
    assert "abc" not in line


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_secrets_file_is_read(mode: int, tmp_path: Path) -> None:
    secrets = tmp_path / "pve.env"
    secrets.write_text("PVE_TOKEN_SECRET=abc\n")
    secrets.chmod(mode)
    assert load_secrets_file(str(secrets)) == {"PVE_TOKEN_SECRET": "abc"}


def test_kubeconfig_readable_by_group_is_refused(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    kubeconfig.chmod(0o640)
    with pytest.raises(UserError, match=r"kubeconfig .*0640.*chmod 600"):
        require_private(kubeconfig, "kubeconfig")


def test_the_kubeconfig_mk8s_writes_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from mk8s.bootstrap.flow import write_private

    old = os.umask(0)
    try:
        write_private(tmp_path / "build" / "kubeconfig", "apiVersion: v1\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "build" / "kubeconfig").stat().st_mode)
    assert mode == 0o600
    require_private(tmp_path / "build" / "kubeconfig", "kubeconfig")  # and mk8s reads it back
