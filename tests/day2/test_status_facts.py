"""The reader never crashes on a cluster it cannot read: each source that fails is `None` for
its facts and one problem line (the rig test covers a cluster that answers)."""

from __future__ import annotations

from pathlib import Path

from mk8s.day2 import cluster_facts
from mk8s.day2.cluster_facts import Sources
from mk8s.edges.proxmox import Pve
from mk8s.errors import OperationFailedError
from mk8s.inventory.load import load_environment
from tests.day2.recorded_cluster import NOW

ROOT = Path(__file__).resolve().parents[2]


def no_pve() -> Pve:
    raise OperationFailedError("cannot reach Proxmox at https://pve.example:8006: refused")


def test_nothing_readable_is_problems_and_unknowns_not_a_crash(tmp_path: Path) -> None:
    env = load_environment("dev", ROOT)
    facts = cluster_facts.read(
        env,
        tmp_path / "build",
        NOW,
        Sources(pve=no_pve, kubeconfig=tmp_path / "nope", root=tmp_path),
    )
    assert [n.name for n in facts.nodes] == [n.name for n in env.nodes]
    for n in facts.nodes:
        assert (n.vm, n.ssh, n.ready, n.members, n.api, n.snapshots) == (None,) * 6
    text = "\n".join(facts.problems)
    assert "Proxmox: cannot reach Proxmox" in text
    assert "no pinned host keys" in text
    assert f"kubeconfig {tmp_path / 'nope'}: not usable" in text
    assert facts.evidence_problem is not None
    assert facts.evidence_problem.startswith("no conformance run of dev")


def test_invoke_status_exits_3_when_nothing_answers_and_json_says_so(tmp_path: Path) -> None:
    """No pinned host keys, no kubeconfig, no Proxmox token: nothing is contacted at all."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PVE_", "PROXMOX"))}
    env.update(KUBECONFIG=str(tmp_path / "absent"), COLUMNS="250")
    argv = [
        sys.executable,
        "-m",
        "invoke",
        "--search-root",
        str(ROOT),
        "status",
        "--env",
        str(ROOT / "inventory" / "dev.yaml"),
    ]
    shown = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert shown.returncode == 3, shown.stdout + shown.stderr
    assert "no node answers, neither over SSH nor with its API server" in shown.stderr
    as_json = subprocess.run(
        [*argv, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert as_json.returncode == 3
    data = json.loads(as_json.stdout)
    assert data["health"] == "unreachable" and data["exit_code"] == 3
    assert [n["ssh"] for n in data["facts"]["nodes"]] == [None, None, None]


def test_a_pdb_blocks_when_it_allows_0_or_its_status_lags_its_spec() -> None:
    """The two 429s of the eviction subresource, as read from the PDB without evicting."""
    from types import SimpleNamespace as O

    from mk8s.day2.cluster_kube import _refusal

    def pdb(generation: int, observed: int, allowed: int) -> object:
        return O(
            metadata=O(generation=generation),
            status=O(observed_generation=observed, disruptions_allowed=allowed),
        )

    assert _refusal(pdb(1, 1, 1)) is None
    assert _refusal(pdb(1, 1, 0)) == "allows 0 disruptions"
    assert _refusal(pdb(2, 1, 1)) == "its status is still being processed by the server"
    assert _refusal(O(metadata=O(generation=1), status=None)) is not None
