"""Out-of-band host keys: read through the Proxmox guest agent (fakepve), then pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakepve import FakeVm

from mk8s.edges import ssh
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment, NodeSpec

ROOT = Path(__file__).resolve().parents[2]
TOKEN_SECRET = "0b7a5a7e-2c39-4d3e-9a43-3d5a3a1f0c11"
ENVIRON = {"PVE_TOKEN_ID": "root@pam!mk8s", "PVE_TOKEN_SECRET": TOKEN_SECRET}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyForTestsOnly0000000000000000"


def _env(fakepve: Any, cafile: str) -> Environment:
    env = load_environment("dev", root=ROOT)
    pve = env.proxmox.model_copy(update={"endpoint": fakepve.url, "ca_bundle": cafile})
    return env.model_copy(update={"proxmox": pve})


def _vm(fakepve: Any, node: NodeSpec, content: str | None) -> FakeVm:
    vm = fakepve.add_vm(node.vmid, node.name, node=node.pve_node, status="running")
    if content is not None:
        vm.agent = {"files": {ssh.HOST_KEY_PATH: content}}
    return vm


def test_host_key_is_read_through_the_guest_agent_with_an_api_token(
    fakepve: Any, fakepve_cafile: str
) -> None:
    env = _env(fakepve, fakepve_cafile)
    fakepve.apitokens["root@pam!mk8s"] = "0b7a5a7e-2c39-4d3e-9a43-3d5a3a1f0c11"
    node = env.nodes[0]
    vm = _vm(fakepve, node, KEY + " root@dev-k8s-1\n")
    environ = {
        "PVE_TOKEN_ID": "root@pam!mk8s",
        "PVE_TOKEN_SECRET": "0b7a5a7e-2c39-4d3e-9a43-3d5a3a1f0c11",
    }
    source = ssh.ProxmoxHostKeys(env, environ)
    assert source.host_key(node) == KEY
    assert ("file-read", {"file": ssh.HOST_KEY_PATH}) in vm.agent_requests


def test_an_agent_that_is_not_up_yet_is_retried_then_named(
    fakepve: Any, fakepve_cafile: str
) -> None:
    env = _env(fakepve, fakepve_cafile)
    fakepve.apitokens["root@pam!mk8s"] = TOKEN_SECRET
    vm = _vm(fakepve, env.nodes[1], None)  # no agent answers yet
    naps: list[float] = []

    def boot_agent(seconds: float) -> None:  # the agent comes up, but the key is not there yet
        naps.append(seconds)
        vm.agent = {"files": {ssh.HOST_KEY_PATH: ""}}

    source = ssh.ProxmoxHostKeys(env, ENVIRON, attempts=3, pause_s=7, sleep=boot_agent)
    with pytest.raises(OperationFailedError) as exc:
        source.host_key(env.nodes[1])
    assert str(exc.value).startswith(
        "dev-k8s-2: cannot read its SSH host key through the guest agent after 3 attempts"
    )
    assert "is empty" in str(exc.value) and naps == [7, 7]
    vm.agent = {"files": {ssh.HOST_KEY_PATH: KEY + "\n"}}
    assert source.host_key(env.nodes[1]) == KEY


def test_a_file_that_is_not_a_public_key_is_refused(fakepve: Any, fakepve_cafile: str) -> None:
    env = _env(fakepve, fakepve_cafile)
    fakepve.apitokens["root@pam!mk8s"] = TOKEN_SECRET
    _vm(fakepve, env.nodes[2], "-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(OperationFailedError, match=r"dev-k8s-3: .* is not a public key"):
        ssh.ProxmoxHostKeys(env, ENVIRON, attempts=1).host_key(env.nodes[2])


def test_refused_permission_is_not_retried(fakepve: Any, fakepve_cafile: str) -> None:
    env = _env(fakepve, fakepve_cafile)
    fakepve.apitokens["root@pam!mk8s"] = TOKEN_SECRET
    _vm(fakepve, env.nodes[0], KEY)
    wrong = {**ENVIRON, "PVE_TOKEN_SECRET": "11111111-2222-3333-4444-555555555555"}
    naps: list[float] = []
    with pytest.raises(OperationFailedError, match=r"dev-k8s-1: Proxmox API at \S+ refused"):
        ssh.ProxmoxHostKeys(env, wrong, attempts=5, sleep=naps.append).host_key(env.nodes[0])
    assert naps == []


def test_missing_credentials_are_one_clear_line() -> None:
    env = load_environment("dev", root=ROOT)
    with pytest.raises(UserError, match="PVE_TOKEN_ID, PVE_TOKEN_SECRET: not set"):
        ssh.ProxmoxHostKeys(env, {}).host_key(env.nodes[0])


class _Keys:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def host_key(self, node: NodeSpec) -> str:
        self.asked.append(node.name)
        return KEY


def test_pinning_adds_missing_nodes_only_and_never_replaces(tmp_path: Path) -> None:
    env = load_environment("dev", root=ROOT)
    targets = list(ssh.targets_for(env).values())
    known = tmp_path / "known_hosts"
    known.write_text(
        "192.168.10.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldPinnedKey000000000000000000000\n"
    )
    keys = _Keys()
    added = ssh.pin_host_keys(known, targets, keys, dry_run=False)
    assert keys.asked == ["dev-k8s-2", "dev-k8s-3"] and len(added) == 2
    text = known.read_text()
    assert "OldPinnedKey" in text and text.count(KEY) == 2
    assert ssh.pin_host_keys(known, targets, keys, dry_run=False) == []
