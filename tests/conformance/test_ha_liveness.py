"""phase1.ha_voters over real sshd with the MicroK8s model: three live voters, agreed on by
every node, each answering on SSH and on a real 19001 listener; every broken state fails with a
message naming what is wrong."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mk8s.checks import ha
from mk8s.checks.node_facts import NodeShell, node_host, read_ha_views
from mk8s.checks.verdict import Verdict
from tests.support.microk8s.rig import BIN, Rig
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

pytestmark = pytest.mark.slow

NAMES = ("ha-k8s-1", "ha-k8s-2", "ha-k8s-3", "ha-k8s-4")


@dataclass
class Lab:
    rig: Rig
    cluster: SshdCluster
    known_hosts: Path
    listeners: dict[str, socket.socket]
    names: tuple[str, ...]

    def shells(self) -> list[NodeShell]:
        port = self.cluster.nodes[self.names[0]].port
        return [
            NodeShell(n, self.cluster.nodes[n].host, node_host(self.cluster.nodes[n].host, port,
                      "root", self.known_hosts, self.cluster.client_key))
            for n in self.names
        ]  # fmt: skip

    def verdict(self) -> Verdict:
        views, dqlite = read_ha_views(self.shells())
        return ha.ha_voters(views, dqlite)

    def power_off(self, name: str) -> None:
        """The VM is off: no SSH, no 19001; dqlite still lists it (microk8s#2400)."""
        self.rig.power_off(name)
        self.cluster._stop_node(self.cluster.nodes[name])
        self.listeners.pop(name).close()


def make_lab(sshd_factory: SshdFactory, tmp_path: Path, names: tuple[str, ...]) -> Lab:
    rig = Rig(tmp_path / "model")
    cluster = sshd_factory(names, path_dirs=[BIN], env=rig.session_env())
    rig.seed({n: cluster.nodes[n].host for n in names})
    rig.form(list(names))
    listeners = {}
    for n in names:  # k8s-dqlite's port on the node address
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cluster.nodes[n].host, 19001))
        sock.listen()
        listeners[n] = sock
    known = tmp_path / "known_hosts"
    known.write_text(cluster.known_hosts())
    return Lab(rig, cluster, known, listeners, names)


@pytest.fixture
def lab(sshd_factory: SshdFactory, tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(sshd_factory, tmp_path, NAMES[:3])
    yield lab
    for sock in lab.listeners.values():
        sock.close()


def test_three_live_agreed_voters_pass(lab: Lab) -> None:
    verdict = lab.verdict()
    assert verdict.passed, verdict.message
    assert verdict.measured == "3 voters"


def test_a_powered_off_voter_fails_although_still_listed(lab: Lab) -> None:
    lab.power_off("ha-k8s-3")
    ip = lab.cluster.nodes["ha-k8s-3"].host
    assert (f"{ip}:19001", "voter") in lab.rig.members("ha-k8s-1")
    verdict = lab.verdict()
    assert not verdict.passed
    assert verdict.measured == "2 of 3 voters live"
    assert "voter ha-k8s-3" in verdict.message and "not answering over SSH" in verdict.message


def test_a_voter_with_dqlite_port_closed_fails(lab: Lab) -> None:
    lab.listeners.pop("ha-k8s-2").close()
    verdict = lab.verdict()
    assert not verdict.passed
    assert "voter ha-k8s-2" in verdict.message and "port 19001 closed" in verdict.message


def test_views_that_disagree_fail(lab: Lab) -> None:
    lab.rig.rebuild("ha-k8s-3")  # the rebuilt node lists only itself: it disagrees
    verdict = lab.verdict()
    assert not verdict.passed
    assert "the nodes disagree on the voters" in verdict.message
    assert "ha-k8s-3 sees 127.0.0.1" in verdict.message


def test_two_nodes_are_one_voter_and_fail(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    lab = make_lab(sshd_factory, tmp_path, NAMES[:2])
    verdict = lab.verdict()
    assert not verdict.passed
    assert "1 voters listed (ha-k8s-1)" in verdict.message


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ({"stopped": True}, "ha-k8s-2: microk8s is stopped"),
        ({"running": False}, "ha-k8s-2: microk8s is not-running"),
    ],
)
def test_a_stopped_or_down_voter_fails(lab: Lab, how: dict[str, bool], words: str) -> None:
    lab.rig.set_node("ha-k8s-2", **how)
    verdict = lab.verdict()
    assert not verdict.passed and words in verdict.message, verdict.message


def test_a_failed_dqlite_query_is_not_read_as_voters(lab: Lab) -> None:
    lab.rig.fault("ha-k8s-1", dqlite_query_fails=True)
    verdict = lab.verdict()
    assert not verdict.passed
    assert "ha-k8s-1: lists no datastore members (dqlite query failed)" in verdict.message
