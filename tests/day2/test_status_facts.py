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
