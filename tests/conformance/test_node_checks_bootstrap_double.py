"""The node checks against the bootstrap capability's own `microk8s`/`snap` command doubles
(tests/support/doubles, faithful to the MicroK8s CLI sources): what bootstrap leaves behind,
the conformance suite must read as conforming, and a drifted node as not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mk8s.checks import node
from mk8s.checks.node_facts import NodeShell, node_host, on_every_node
from tests.conformance.test_node_checks import DOUBLES as MY_DOUBLES
from tests.support.sshd import SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

import tests.support.doubles.double as double

pytestmark = pytest.mark.slow

BOOTSTRAP_BIN = Path(double.__file__).parent / "bin"
NAMES = ("bs-k8s-1", "bs-k8s-2", "bs-k8s-3")
LAUNCH_CONFIG = "version: 0.2.0\naddons:\n  - name: dns\n"


def _lab(sshd_factory: SshdFactory, tmp_path: Path, formed: bool) -> list[NodeShell]:
    state = tmp_path / "double-state"
    cluster = sshd_factory(
        NAMES,
        # The bootstrap doubles (microk8s, snap) win; ours answer the other commands.
        path_dirs=[BOOTSTRAP_BIN, MY_DOUBLES],
        env={
            "MK8S_DOUBLE_STATE": str(state),
            "MK8S_DOUBLE_PYTHON": sys.executable,
            "NODE_STATE": str(tmp_path / "node-state"),
        },
    )
    ips = {name: cluster.nodes[name].host for name in NAMES}
    double.seed(state, ips, dict.fromkeys(NAMES, LAUNCH_CONFIG))
    if formed:
        double.form(state, list(NAMES), {"metallb": ["10.0.0.50-10.0.0.69"], "ingress": []})
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(cluster.known_hosts())
    port = cluster.nodes[NAMES[0]].port
    return [
        NodeShell(n, ips[n], node_host(ips[n], port, "root", known_hosts, cluster.client_key))
        for n in NAMES
    ]


def test_a_formed_cluster_reads_as_three_voters_on_the_channel(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    shells = _lab(sshd_factory, tmp_path, formed=True)
    ips = [s.ip for s in shells]
    status = shells[0].microk8s_status()
    assert node.ha_voters(shells[0].name, status, ips).passed, status
    assert {"dns", "metallb", "ingress"} <= set(node.parse_enabled_addons(status))
    channels = on_every_node(shells, lambda s: node.snap_channel(s.name, s.snap_list(),
                                                                 "1.33/stable"))  # fmt: skip
    assert all(v.passed for v in channels), channels


def test_an_unformed_cluster_and_a_drifted_channel_fail(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    shells = _lab(sshd_factory, tmp_path, formed=False)
    ips = [s.ip for s in shells]
    verdict = node.ha_voters(shells[0].name, shells[0].microk8s_status(), ips)
    assert not verdict.passed and verdict.measured == "1 voters"
    with double.locked(tmp_path / "double-state") as state:
        state["nodes"]["bs-k8s-2"]["channel"] = "1.32/stable"
    drifted = node.snap_channel("bs-k8s-2", shells[1].snap_list(), "1.33/stable")
    assert not drifted.passed and drifted.measured == "1.32/stable"
