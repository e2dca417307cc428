"""The lab: fakepve on the endpoint of inventory/lab.yaml, a real sshd answering for the PVE
hosts and for every node, and a scratch repository root with that inventory.

Function-scoped fakepve (each test starts from a fresh cluster); one sshd per session.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mk8s.build import build_dir
from mk8s.inventory import Environment
from mk8s.load import load_environment
from mk8s.tools import cache_dir
from tests.provision.sshd import LocalSshd, local_sshd
from tests.support.fakepve import LabPve, ServedPve, serve_lab

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
    sshd: LocalSshd

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


@pytest.fixture(scope="session")
def lab_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSshd]:
    host, _ = _endpoint(LAB)
    port = LAB.ssh.port
    addresses = [(host, port)] + [(str(n.ip), port) for n in LAB.nodes]
    with local_sshd(tmp_path_factory.mktemp("sshd"), addresses) as sshd:
        yield sshd


@pytest.fixture
def lab(tmp_path: Path, lab_sshd: LocalSshd, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    root = tmp_path / "repo"
    (root / "inventory").mkdir(parents=True)
    shutil.copy(ROOT / "inventory" / "lab.yaml", root / "inventory" / "lab.yaml")
    for shared in ("terraform", "scripts", "tasks.py"):
        (root / shared).symlink_to(ROOT / shared)
    # The provider records PVE host keys in ~/.ssh/known_hosts: keep that out of the real home.
    monkeypatch.setenv("MK8S_CACHE", str(cache_dir()))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PVE_TOKEN_ID", TOKEN_ID)
    monkeypatch.setenv("PVE_TOKEN_SECRET", TOKEN_SECRET)
    monkeypatch.setenv("PROXMOX_VE_SSH_USERNAME", lab_sshd.user)
    monkeypatch.setenv("PROXMOX_VE_SSH_PRIVATE_KEY", lab_sshd.private_key.read_text().strip())
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    host, port = _endpoint(LAB)
    with serve_lab(host, port, tmp_path / "pve") as served:
        served.pve.apitokens[TOKEN_ID] = TOKEN_SECRET
        ca = build_dir("lab", root) / "fakepve-ca.pem"
        ca.parent.mkdir(parents=True)
        shutil.copy(served.cafile, ca)  # type: ignore[attr-defined]
        yield Lab(root=root, served=served, sshd=lab_sshd)
