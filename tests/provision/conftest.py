"""The lab: fakepve on the host of inventory/lab.yaml's endpoint, real sshds (the bootstrap suite's
tests/support/sshd.py) answering for the PVE hosts and for every node, and a scratch
repository root holding the lab inventory with the node addresses of those sshds.

Everything is per test: a fresh fake cluster and fresh sshds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mk8s.edges.tools import cache_dir
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.render.build import build_dir
from tests.support.fakepve import LabPve, ServedPve, serve_lab
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
LAB = load_environment("lab", ROOT)
TOKEN_ID = "root@pam!mk8s"
TOKEN_SECRET = "5a1e7c3d-2b4f-4e6a-9c8d-0f1e2d3c4b5a"


def _endpoint(env: Environment) -> tuple[str, int]:
    url = urlsplit(env.proxmox.endpoint)
    assert url.hostname is not None
    return url.hostname, url.port or 8006


@dataclass
class Lab:
    root: Path
    served: ServedPve
    sshd: SshdCluster

    @property
    def pve(self) -> LabPve:
        return self.served.pve

    def env(self) -> Environment:
        return load_environment("lab", self.root)

    def edit_inventory(self, **changes: object) -> Environment:
        """Rewrite the scratch inventory with top-level keys replaced; returns it loaded."""
        path = self.root / "inventory" / "lab.yaml"
        data = yaml.safe_load(path.read_text())
        data.update(changes)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.env()

    def our_vms(self) -> list[object]:
        names = {n.name for n in LAB.nodes}
        return [vm for vm in self.pve.vms if vm.name in names]

    def writes(self) -> list[tuple[str, str]]:
        """Every state-changing request the fake has seen (method, path)."""
        return [(m, p) for m, p, *_ in self.pve.requests if m in ("POST", "PUT", "DELETE")]


def lab_inventory(cluster: SshdCluster, endpoint: str) -> dict[str, object]:
    """inventory/lab.yaml with the network moved onto the sshds' 127.0.X.0/24 and the endpoint
    onto the port the fake got (so concurrent test runs on one machine do not collide)."""
    data: dict[str, object] = yaml.safe_load((ROOT / "inventory" / "lab.yaml").read_text())
    net = cluster.nodes["lab-k8s-1"].host.rsplit(".", 1)[0]
    pve_host = cluster.nodes["pve-host"]
    data["network"] = {
        **data["network"],  # type: ignore[dict-item]
        "subnet": f"{net}.0/24",
        "gateway": f"{net}.1",
        "dns_servers": [f"{net}.1"],
        "metallb_range": f"{net}.50-{net}.69",
    }
    data["nodes"] = [
        {**node, "ip": cluster.nodes[node["name"]].host}
        for node in data["nodes"]  # type: ignore[attr-defined]
    ]
    data["ssh"] = {**data["ssh"], "port": pve_host.port}  # type: ignore[dict-item]
    data["proxmox"] = {
        **data["proxmox"],  # type: ignore[dict-item]
        "endpoint": endpoint,
        "node_ssh": {pve: f"{pve_host.host}:{pve_host.port}" for pve in ("pve1", "pve2", "pve3")},
    }
    return data


@pytest.fixture
def lab(
    tmp_path: Path,
    sshd_factory: SshdFactory,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Lab]:
    # One sshd plays the PVE hosts (the provider uploads snippets over SSH), one each node.
    cluster = sshd_factory(["pve-host", *(n.name for n in LAB.nodes)])
    host, _ = _endpoint(LAB)
    with serve_lab(host, 0, tmp_path / "pve") as served:
        served.pve.apitokens[TOKEN_ID] = TOKEN_SECRET
        root = tmp_path / "repo"
        (root / "inventory").mkdir(parents=True)
        (root / "inventory" / "lab.yaml").write_text(
            yaml.safe_dump(lab_inventory(cluster, served.pve.url), sort_keys=False)
        )
        for shared in ("terraform", "scripts", "tasks.py"):
            (root / shared).symlink_to(ROOT / shared)
        ca = build_dir("lab", root) / "fakepve-ca.pem"
        ca.parent.mkdir(parents=True)
        shutil.copy(served.cafile, ca)  # type: ignore[attr-defined]
        # The provider records PVE host keys in ~/.ssh/known_hosts: keep it out of the real home.
        (tmp_path / "home").mkdir()
        monkeypatch.setenv("MK8S_CACHE", str(cache_dir()))
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("PVE_TOKEN_ID", TOKEN_ID)
        monkeypatch.setenv("PVE_TOKEN_SECRET", TOKEN_SECRET)
        monkeypatch.setenv("PROXMOX_VE_SSH_USERNAME", cluster.user)
        monkeypatch.setenv("PROXMOX_VE_SSH_PRIVATE_KEY", cluster.client_key.read_text().strip())
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        yield Lab(root=root, served=served, sshd=cluster)
