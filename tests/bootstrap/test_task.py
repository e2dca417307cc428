"""`invoke bootstrap`: a thin task; user errors are one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_pinned_keys_or_proxmox_credentials_it_stops_with_one_line(
    tmp_path: Path,
) -> None:
    inventory = tmp_path / "dev.yaml"
    inventory.write_text((ROOT / "inventory" / "dev.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVE_")}
    result = _invoke("bootstrap", "--env", str(inventory), env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: PVE_TOKEN_ID, PVE_TOKEN_SECRET: not set; needed once to read the nodes' "
        "SSH host keys through the Proxmox guest agent"
    ]


def test_unknown_node_is_refused(tmp_path: Path) -> None:
    result = _invoke("bootstrap", "--env", "dev", "--node", "nope", env=dict(os.environ))
    assert result.returncode == 2
    assert "--node nope: not a node of dev (dev-k8s-1, dev-k8s-2, dev-k8s-3)" in result.stderr
