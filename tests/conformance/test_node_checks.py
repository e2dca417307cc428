"""Node checks over real SSH (sshd per node, testinfra's paramiko backend with pinned host keys):
a conforming node passes every check, and each deliberate defect fails the right one."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
import yaml

from mk8s.checks import all_of, node
from mk8s.checks.node_facts import NodeShell, node_host, on_every_node
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.model import Environment
from tests.conformance.conftest import ROOT
from tests.support.microk8s.rig import BIN, Rig
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

pytestmark = pytest.mark.slow

DOUBLES = Path(__file__).parent / "node_doubles"
NAMES = ("lab-k8s-1", "lab-k8s-2", "lab-k8s-3")


@dataclass
class Lab:
    """Three sshd 'nodes' with the MicroK8s model and doubles of the other commands, real
    listeners on each node address, an inventory."""

    cluster: SshdCluster
    rig: Rig
    state: Path
    env: Environment
    known_hosts: Path
    listeners: dict[tuple[str, int], socket.socket]

    def shells(self) -> list[NodeShell]:
        return [NodeShell(n.name, str(n.ip), self.host(str(n.ip))) for n in self.env.nodes]

    def host(self, ip: str) -> object:
        key = Path(self.env.ssh.private_key_file)
        return node_host(ip, self.env.ssh.port, self.env.ssh.user, self.known_hosts, key)

    def defect(self, name: str, key: str, content: str = "") -> None:
        if key == "channel":  # snap and microk8s are the MicroK8s model's
            self.rig.set_node(name, channel=content)
            return
        (self.state / name).mkdir(exist_ok=True)
        (self.state / name / key).write_text(content)

    def close_port(self, ip: str, port: int) -> None:
        self.listeners.pop((ip, port)).close()


def lab_inventory(cluster: SshdCluster, key: Path) -> Environment:
    """The shipped dev inventory moved onto the sshd nodes' loopback subnet."""
    data = yaml.safe_load((ROOT / "inventory" / "dev.yaml").read_text())
    first = next(iter(cluster.nodes.values()))
    prefix = first.host.rsplit(".", 1)[0]
    data.update(name="lab", tier="lab")
    data["network"].update(
        subnet=f"{prefix}.0/24", gateway=f"{prefix}.1", dns_servers=[f"{prefix}.1"],
        metallb_range=f"{prefix}.50-{prefix}.69",
    )  # fmt: skip
    data["nodes"] = [
        {"name": n.name, "vmid": 1101 + i, "ip": n.host, "pve_node": f"pve{i + 1}"}
        for i, n in enumerate(cluster.nodes.values())
    ]
    data["ssh"].update(user="root", port=first.port, private_key_file=str(key))
    return parse_inventory(yaml.safe_dump(data))


@pytest.fixture
def lab(sshd_factory: SshdFactory, tmp_path: Path) -> Iterator[Lab]:
    state = tmp_path / "node-state"
    state.mkdir()
    rig = Rig(tmp_path / "model")
    cluster = sshd_factory(
        NAMES, path_dirs=[BIN, DOUBLES], env={"NODE_STATE": str(state), **rig.session_env()}
    )
    # The inventory flags long dot-less strings as literal secrets; a key path with a dot.
    key = tmp_path / "id.key"
    key.write_bytes(cluster.client_key.read_bytes())
    key.chmod(0o600)
    env = lab_inventory(cluster, key)
    rig.seed({n.name: str(n.ip) for n in env.nodes}, channel=env.microk8s.channel)
    rig.form(list(NAMES), {a: [] for a in env.microk8s.addons})
    (state / "subnet").write_text(str(env.network.subnet))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(cluster.known_hosts())
    listeners = {}
    for n in env.nodes:
        for port in node.expected_ports(env):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(n.ip), port))
            sock.listen()
            listeners[(str(n.ip), port)] = sock
    yield Lab(cluster, rig, state, env, known_hosts, listeners)
    for sock in listeners.values():
        sock.close()


Check = Callable[[Lab, NodeShell], node.Verdict]


def internal(env: Environment) -> tuple[str, str]:
    return str(env.network.pod_cidr), str(env.network.service_cidr)


CHECKS: dict[str, Check] = {
    "snap_channel": lambda lab, n: node.snap_channel(n.name, n.snap_list(),
                                                     lab.env.microk8s.channel),
    "services": lambda lab, n: node.services_active(n.name, n.service_states()),
    "ports": lambda lab, n: node.ports(n.name, n.ip, n.listening_tcp(),
                                       node.expected_ports(lab.env)),
    "swap_off": lambda lab, n: node.swap_off(n.name, n.swaps()),
    "time_sync": lambda lab, n: node.time_synchronised(n.name, n.ntp_synchronized()),
    "firewall": lambda lab, n: all_of([
        node.firewall(n.name, n.ufw_status(), str(lab.env.network.subnet),
                      node.expected_ports(lab.env), internal(lab.env)),
        node.edge_filter(n.name, n.edge_chain(), n.mangle_prerouting(),
                         str(lab.env.network.subnet), str(lab.env.network.pod_cidr)),
    ], "firewall"),
    "unattended_upgrades": lambda lab, n: node.unattended_upgrades(n.name, n.apt_periodic(),
                                                                   n.unattended_unit()),
    "ssh_password_off": lambda lab, n: node.ssh_password_off(n.name, n.sshd_effective()),
}  # fmt: skip


def verdicts(lab: Lab, only: str | None = None) -> dict[str, node.Verdict]:
    """Every node check over the lab's nodes (or only node `only`, to keep the tests quick)."""
    shells = [s for s in lab.shells() if only is None or s.name == only]
    per_node = on_every_node(shells, lambda s: {k: c(lab, s) for k, c in CHECKS.items()})
    return {name: all_of([v[name] for v in per_node], name) for name in CHECKS}


def test_a_conforming_node_passes_every_node_check(lab: Lab) -> None:
    results = verdicts(lab)
    failing = {k: str(v) for k, v in results.items() if not v.passed}
    assert failing == {}
    assert "1.33/stable" in results["snap_channel"].measured


DEFECTS = [
    # (what is wrong, defect file on node 2, its content, the check that must fail, its words)
    ("wrong channel", "channel", "1.32/stable", "snap_channel", "tracks 1.32/stable, not 1.33"),
    ("kubelite down", "inactive-snap.microk8s.daemon-kubelite", "", "services",
     "snap.microk8s.daemon-kubelite is inactive"),
    ("swap on", "swap-on", "", "swap_off", "swap active on /swap.img"),
    ("clock adrift", "ntp-unsynced", "", "time_sync", "NTPSynchronized=no"),
    ("ufw off", "ufw-inactive", "", "firewall", "ufw is not active"),
    ("API port not allowed", "ufw-no-16443", "", "firewall", "no ufw rule allows 16443/tcp"),
    ("NodePorts open to all", "ufw-nodeports-open", "", "firewall", "NodePorts 30000:32767/tcp"),
    ("default allow incoming", "ufw-default-allow", "", "firewall",
     "default incoming policy is allow, not deny"),
    ("API open to anyone", "ufw-api-anywhere", "", "firewall",
     "16443/tcp ALLOW from Anywhere: cluster port 16443 open beyond"),
    ("API open to anyone over IPv6", "ufw-api-anywhere-v6", "", "firewall",
     "16443/tcp ALLOW from Anywhere (v6): cluster port 16443 open beyond"),
    ("everything open on eth0", "ufw-eth0-open", "", "firewall",
     "Anywhere on eth0 ALLOW from Anywhere: cluster port 16443 open beyond"),
    ("no edge chain", "edge-missing", "", "firewall",
     "could not read `iptables -t mangle -S mk8s-edge` (exit 1: iptables: No chain/target/match"
     " by that name.); without mk8s-edge hostPorts 80/443 and NodePorts are open beyond"),
    ("hostPorts not dropped", "edge-no-hostports", "", "firewall",
     "hostPorts 80,443,10254/tcp not dropped"),
    ("edge chain lets anyone through", "edge-returns-anywhere", "", "firewall",
     "mk8s-edge lets through -s 0.0.0.0/0"),
    ("edge chain never jumped to", "edge-no-jump", "", "firewall",
     "PREROUTING does not jump to mk8s-edge"),
    ("no unattended upgrades", "unattended-off", "", "unattended_upgrades", "periodic=0"),
    ("passwords accepted", "ssh-password", "", "ssh_password_off",
     "passwordauthentication yes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "content", "check", "words"),
    [d[1:] for d in DEFECTS],
    ids=[d[0] for d in DEFECTS],
)
def test_each_defect_fails_exactly_its_check(
    lab: Lab, key: str, content: str, check: str, words: str
) -> None:
    lab.defect("lab-k8s-2", key, content)
    results = verdicts(lab, only="lab-k8s-2")
    failing = sorted(k for k, v in results.items() if not v.passed)
    assert failing == [check]
    assert words in results[check].message
    assert "lab-k8s-2" in results[check].message


# A command that fails and prints nothing: (defect, the checks that read it).
BROKEN = [
    ("broken-swaps", ["swap_off"]),
    ("broken-ufw", ["firewall"]),
    ("broken-iptables", ["firewall"]),
    ("broken-timedatectl", ["time_sync"]),
    ("broken-apt-config", ["unattended_upgrades"]),
    ("broken-sshd", ["ssh_password_off"]),
    ("broken-systemctl", ["services", "unattended_upgrades"]),
]


@pytest.mark.parametrize(("key", "checks"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_command_that_fails_silently_is_could_not_read(
    lab: Lab, key: str, checks: list[str]
) -> None:
    """Never PASS on nothing: `swapon` failing used to read as "no swap"."""
    lab.defect("lab-k8s-2", key)
    results = verdicts(lab, only="lab-k8s-2")
    failing = sorted(k for k, v in results.items() if not v.passed)
    assert failing == sorted(checks)
    for check in checks:
        assert "could not read" in results[check].measured
        assert "lab-k8s-2: could not read `" in results[check].message
        assert (
            "simulated failure on lab-k8s-2" in results[check].message
            or "Permission denied" in results[check].message
        )


def test_a_closed_port_fails_the_ports_check(lab: Lab) -> None:
    ip = str(lab.env.nodes[1].ip)
    lab.close_port(ip, 16443)
    results = verdicts(lab, only="lab-k8s-2")
    assert sorted(k for k, v in results.items() if not v.passed) == ["ports"]
    assert f"lab-k8s-2 ({ip}): port 16443 not listening" in results["ports"].message


def test_the_kubelet_read_only_port_open_fails_the_ports_check(lab: Lab) -> None:
    ip = str(lab.env.nodes[0].ip)
    sock = socket.socket()
    sock.bind((ip, 10255))
    sock.listen()
    try:
        verdict = verdicts(lab, only="lab-k8s-1")["ports"]
    finally:
        sock.close()
    assert not verdict.passed
    assert "port 10255 is open but must be closed" in verdict.message


def test_a_node_with_an_unpinned_host_key_is_refused(lab: Lab) -> None:
    """A rebuilt VM (or a man in the middle) answers with another key: no facts are read."""
    lab.cluster.rotate_host_key("lab-k8s-3")
    shell = lab.shells()[2]
    with pytest.raises(paramiko.SSHException):
        shell.snap_list()
