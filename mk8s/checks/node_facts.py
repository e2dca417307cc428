"""Edge: read node facts over SSH with pytest-testinfra (paramiko backend, pinned host keys).

testinfra's paramiko backend accepts unknown host keys with a warning; mk8s pins them instead
(build/ENV/known_hosts, written when the VMs came up), so a node that answers with another
key is refused, not trusted.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paramiko
from testinfra.backend.paramiko import ParamikoBackend
from testinfra.host import Host

from mk8s.checks.ha import NodeView
from mk8s.checks.node import MICROK8S_SERVICES, Reading
from mk8s.edges.microk8s import DQLITE_PORT

T = TypeVar("T")


class PinnedParamikoBackend(ParamikoBackend):  # type: ignore[misc]
    """testinfra's paramiko backend with strict host-key checking against a known_hosts file."""

    def __init__(
        self, hostspec: str, known_hosts: Path, key_file: Path | None, timeout: int = 15
    ) -> None:
        super().__init__(hostspec, timeout=timeout)
        self.known_hosts = known_hosts
        self.key_file = key_file

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        ssh = paramiko.SSHClient()
        ssh.load_host_keys(str(self.known_hosts))
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        ssh.connect(
            hostname=self.host.name,
            port=int(self.host.port) if self.host.port else 22,
            username=self.host.user,
            key_filename=str(self.key_file) if self.key_file else None,
            look_for_keys=self.key_file is None,
            allow_agent=self.key_file is None,
            timeout=self.timeout,
        )
        return ssh


def node_host(ip: str, port: int, user: str, known_hosts: Path, key_file: Path | None) -> Host:
    """A testinfra Host for one node."""
    return Host(PinnedParamikoBackend(f"{user}@{ip}:{port}", known_hosts, key_file))


@dataclass(frozen=True)
class NodeShell:
    """Runs the read-only commands a node check needs, with sudo when not root."""

    name: str
    ip: str
    host: Any

    def _read(self, command: str, privileged: bool = False) -> Reading:
        """Run `command`; stdout, exit status and stderr, for the check to judge.

        A failed or silent command is the check's to call "could not read", so nothing
        here turns an error into an empty answer."""
        if privileged and self.host.backend.host.user != "root":
            command = f"sudo -n {command}"
        result = self.host.run(command)
        return Reading(command, str(result.stdout), int(result.rc), str(result.stderr))

    def _run(self, command: str, privileged: bool = False) -> str:
        return self._read(command, privileged).stdout

    def snap_list(self) -> Reading:
        return self._read("snap list microk8s")

    def service_states(self, units: tuple[str, ...] = MICROK8S_SERVICES) -> Reading:
        """One `systemctl is-active` for all units: it prints one state per unit, in order."""
        return self._read("systemctl is-active " + " ".join(map(shlex.quote, units)))

    def listening_tcp(self) -> Reading:
        return self._read("ss -Htln")

    def ufw_status(self) -> Reading:
        # verbose: only it prints the default policies ("Default: deny (incoming), ...").
        return self._read("ufw status verbose", privileged=True)

    def edge_chain(self) -> Reading:
        return self._read("iptables -t mangle -S mk8s-edge", privileged=True)

    def mangle_prerouting(self) -> Reading:
        return self._read("iptables -t mangle -S PREROUTING", privileged=True)

    def swaps(self) -> Reading:
        return self._read("cat /proc/swaps")

    def ntp_synchronized(self) -> Reading:
        return self._read("timedatectl show -p NTPSynchronized --value")

    def apt_periodic(self) -> Reading:
        return self._read("apt-config dump")

    def unattended_unit(self) -> Reading:
        return self._read("systemctl is-enabled unattended-upgrades")

    def sshd_effective(self) -> Reading:
        return self._read("sshd -T", privileged=True)

    def microk8s_status(self) -> str:
        return self._run("microk8s status --format yaml", privileged=True)

    def tcp_open(self, ip: str, port: int) -> bool:
        """Whether `ip:port` accepts a connection from this node (bash's /dev/tcp, 3 s)."""
        probe = f"exec 3<>/dev/tcp/{ip}/{port}"
        return bool(self.host.run(f"timeout 3 bash -c {shlex.quote(probe)}").rc == 0)


def read_ha_views(shells: Sequence[NodeShell]) -> tuple[list[NodeView], dict[str, bool]]:
    """Every node's own `microk8s status` (None when SSH fails) and, for each node, whether its
    dqlite port answers a peer (the first other node that answers SSH, as dqlite's peers do)."""

    def status(shell: NodeShell) -> str | None:
        try:
            return shell.microk8s_status()
        except Exception:  # paramiko/socket raise many kinds for a node that is off
            return None

    texts = on_every_node(shells, status)
    views = [NodeView.read(s.name, s.ip, t) for s, t in zip(shells, texts, strict=True)]
    answering = [s for s, t in zip(shells, texts, strict=True) if t is not None]

    def dqlite(shell: NodeShell) -> bool:
        peer = next((p for p in answering if p.name != shell.name), None)
        return peer is not None and peer.tcp_open(shell.ip, DQLITE_PORT)

    return views, dict(zip([s.name for s in shells], on_every_node(shells, dqlite), strict=True))


def on_every_node(shells: Sequence[NodeShell], read: Callable[[NodeShell], T]) -> list[T]:
    """`read` on every node at once (one SSH connection each), results in inventory order."""
    if not shells:
        return []
    with ThreadPoolExecutor(max_workers=len(shells)) as pool:
        return list(pool.map(read, shells))
