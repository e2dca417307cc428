"""Fixtures for the bootstrap tests: a 3-node lab of real sshd's with the MicroK8s model.

`lab` gives an Environment whose node IPs are the sshd addresses (127.0.X.10-12), the nodes
as cloud-init leaves them (MicroK8s installed from each node's rendered launch
configuration, held), and `lab.bootstrap(...)` running mk8s.bootstrap.flow against them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from mk8s.bootstrap import flow as bootstrap_flow
from mk8s.bootstrap import formation
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.model import Environment, NodeSpec
from mk8s.render import launchconfig
from tests.support.microk8s.rig import BIN, Rig
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("lab-k8s-1", "lab-k8s-2", "lab-k8s-3")


def lab_environment(
    cluster: SshdCluster, names: tuple[str, ...] = NAMES, **over: Any
) -> Environment:
    """dev.yaml, moved onto the sshd addresses (subnet 127.0.X.0/24)."""
    data = yaml.safe_load((ROOT / "inventory" / "dev.yaml").read_text())
    first = cluster.nodes[names[0]].host
    prefix = first.rsplit(".", 1)[0]
    data["name"] = "lab"
    data["tier"] = over.pop("tier", "dev")
    data["network"].update(
        subnet=f"{prefix}.0/24",
        gateway=f"{prefix}.1",
        dns_servers=[f"{prefix}.1"],
        metallb_range=f"{prefix}.50-{prefix}.69",
    )
    data["network"].update(over.pop("network", {}))
    data["nodes"] = [
        {"name": n, "vmid": 1101 + i, "ip": cluster.nodes[n].host, "pve_node": f"pve{i + 1}"}
        for i, n in enumerate(names)
    ]
    data["ssh"].update(user="root", port=cluster.nodes[names[0]].port)
    data.update(over)
    return parse_inventory(yaml.safe_dump(data), source="lab")


class FixtureHostKeys:
    """Stands in for the guest agent: the key the VM really has, read without SSH."""

    def __init__(self, cluster: SshdCluster) -> None:
        self.cluster = cluster
        self.asked: list[str] = []

    def host_key(self, node: NodeSpec) -> str:
        self.asked.append(node.name)
        return self.cluster.nodes[node.name].host_public_key


@dataclass
class Lab:
    cluster: SshdCluster
    env: Environment
    rig: Rig
    out: Path
    host_keys: FixtureHostKeys
    outputs: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        """The model's directory: each node's files (certs, machine-id) under its name."""
        return self.rig.root

    def settings(self, **over: Any) -> bootstrap_flow.Settings:
        per_node = f"{self.state}/$SSHD_NODE"
        values: dict[str, Any] = {
            "user": "root",
            "key_file": str(self.cluster.client_key),
            "paths": bootstrap_flow.NodePaths(
                machine_id=f"{per_node}/machine-id",
                server_cert=f"{per_node}/certs/server.crt",
                csr_template=f"{per_node}/certs/csr.conf.template",
                addon_values=f"{per_node}/addon-values",
            ),
            "poll_s": 0.02,
            "backoff_s": 0.02,
            "join_attempts": 3,
            "ha_timeout_s": 20,
            "wait_timeout_s": 60,
        }
        values.update(over)
        return bootstrap_flow.Settings(**values)

    def bootstrap(self, env: Environment | None = None, **kwargs: Any) -> bootstrap_flow.Report:
        """Run mk8s.bootstrap.flow.bootstrap; its console output is kept in `outputs` (also on error)."""
        buf = io.StringIO()
        console = Console(file=buf, width=200, color_system=None)
        settings = kwargs.pop("settings", None) or self.settings()
        try:
            return bootstrap_flow.bootstrap(
                env or self.env,
                self.out,
                self.host_keys,
                console=console,
                settings=settings,
                **kwargs,
            )
        finally:
            self.outputs.append(buf.getvalue())

    def journal(self) -> list[dict[str, Any]]:
        return self.rig.journal()

    def mark(self) -> int:
        return len(self.journal())

    def commands_since(self, mark: int) -> list[list[str]]:
        return [e["argv"] for e in self.journal()[mark:]]


MUTATING = {"install", "refresh", "join", "remove-node", "leave", "enable", "disable",
            "refresh-certs", "add-node", "stop", "start"}  # fmt: skip


def mutations(commands: list[list[str]]) -> list[list[str]]:
    """Commands that change a node (add-node too: it writes a token)."""
    return [c for c in commands if len(c) > 1 and c[1] in MUTATING]


def make_lab(
    sshd_factory: SshdFactory,
    tmp_path: Path,
    names: tuple[str, ...] = NAMES,
    *,
    promote_delay_s: float = 0.0,
    launch_addons_delay_s: float = 0.0,
    **over: Any,
) -> Lab:
    rig = Rig(tmp_path / "model")
    cluster = sshd_factory(names, path_dirs=[BIN], env=rig.session_env())
    env = lab_environment(cluster, names, **over)
    rig.configure(promote_delay_s=promote_delay_s, launch_addons_delay_s=launch_addons_delay_s)
    rig.seed(
        {n.name: str(n.ip) for n in env.nodes},
        {n.name: launchconfig.text(env, n) for n in env.nodes},
        channel=env.microk8s.channel,
    )
    return Lab(cluster, env, rig, tmp_path / "build" / "lab", FixtureHostKeys(cluster))


@pytest.fixture
def lab(sshd_factory: SshdFactory, tmp_path: Path) -> Iterator[Lab]:
    """Three nodes as cloud-init leaves them: MicroK8s installed, not clustered."""
    yield make_lab(sshd_factory, tmp_path)


@pytest.fixture
def formed_lab(sshd_factory: SshdFactory, tmp_path: Path) -> Iterator[Lab]:
    """Three nodes already formed into an HA cluster with the env's add-ons (no SSH run yet:
    host keys are not pinned and no kubeconfig is written)."""
    lab = make_lab(sshd_factory, tmp_path)
    addons: dict[str, list[str]] = {
        formation.addon_argument(lab.env, n).split(":")[0]: []
        for n in formation.wanted_addons(lab.env)
    }
    lab.rig.form([n.name for n in lab.env.nodes], addons)
    yield lab
