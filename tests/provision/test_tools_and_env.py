"""The tool mirror, the terraform subprocess environment, credentials and the SSH wait."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mk8s.edges import tools
from mk8s.edges.proxmox import credentials, provider_env
from mk8s.errors import OperationFailedError, UserError
from mk8s.provision.flow import ssh_banner, wait_for_ssh
from tests.provision.conftest import LAB, ROOT


def test_the_provider_is_in_the_offline_mirror_for_terraform_and_tofu() -> None:
    assert tools.missing() == [], "run scripts/deps.d/20-terraform.sh (or `invoke tools`)"
    t = tools.ensure_tools(ROOT, build=False)
    for registry in tools.REGISTRIES:
        binary = tools.provider_path(registry=registry)
        assert binary.exists() and binary.stat().st_mode & 0o111
    assert f'path    = "{t.mirror}"' in t.cli_config.read_text()
    version = subprocess.run([str(t.binary), "version"], capture_output=True, text=True)
    assert version.returncode == 0 and (
        "Terraform v" in version.stdout or "OpenTofu v" in version.stdout
    )


def test_versions_are_pinned_in_one_place_each() -> None:
    versions_tf = (ROOT / "terraform" / "versions.tf").read_text()
    script = (ROOT / "scripts" / "deps.d" / "20-terraform.sh").read_text()
    assert f'version = "{tools.PROVIDER_VERSION}"' in versions_tf
    assert f"PROVIDER_VERSION={tools.PROVIDER_VERSION}" in script
    assert f"OPENTOFU_VERSION={tools.OPENTOFU_VERSION}" in script


def test_terraform_runs_with_our_cli_config_and_no_inherited_settings(tmp_path: Path) -> None:
    t = tools.Tools(binary=Path("terraform"), cli_config=tmp_path / "cli.tfrc", mirror=tmp_path)
    env = t.env(
        {
            "TF_CLI_CONFIG_FILE": "/root/.terraformrc",
            "TF_PLUGIN_CACHE_DIR": "/shared/cache",
            "TF_LOG": "TRACE",
            "PATH": "/usr/bin",
        }
    )
    assert env["TF_CLI_CONFIG_FILE"] == str(tmp_path / "cli.tfrc")
    assert "TF_PLUGIN_CACHE_DIR" not in env and "TF_LOG" not in env
    assert env["PATH"] == "/usr/bin" and env["TF_IN_AUTOMATION"] == "1"


def test_credentials_come_from_the_named_variables_only() -> None:
    creds = credentials(LAB, {"PVE_TOKEN_ID": "mk8s@pve!ci", "PVE_TOKEN_SECRET": "s3cr3t"})
    assert (creds.user, creds.token_name, creds.token_id) == ("mk8s@pve", "ci", "mk8s@pve!ci")
    env = provider_env(
        LAB.model_copy(update={"proxmox": LAB.proxmox.model_copy(update={"ca_bundle": None})}),
        creds,
        environ={},
    )
    assert env == {
        "PROXMOX_VE_ENDPOINT": "https://127.0.0.61:8006/",
        "PROXMOX_VE_API_TOKEN": "mk8s@pve!ci=s3cr3t",
        "PROXMOX_VE_INSECURE": "false",
        "PROXMOX_VE_SSH_USERNAME": "root",
    }
    with pytest.raises(UserError) as err:
        credentials(LAB, {"PVE_TOKEN_ID": "not-a-token-id"})
    assert err.value.lines == (
        "PVE_TOKEN_ID must look like user@realm!tokenname",
        "PVE_TOKEN_SECRET is not set: export the PVE API token secret",
    )


def test_a_ca_bundle_reaches_the_provider_as_ssl_cert_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    env = LAB.model_copy(update={"proxmox": LAB.proxmox.model_copy(update={"ca_bundle": str(ca)})})
    creds = credentials(env, {"PVE_TOKEN_ID": "a@pam!b", "PVE_TOKEN_SECRET": "c"})
    out = provider_env(env, creds, tmp_path, environ={})
    assert out["SSL_CERT_FILE"] == str(ca.resolve())
    assert out["PROXMOX_VE_INSECURE"] == "false"


@pytest.fixture
def banner_server() -> Iterator[tuple[str, int]]:
    """A TCP server on loopback that greets like sshd (real socket, real bytes)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join()
    server.close()


def test_ssh_banner_is_read_from_the_socket(banner_server: tuple[str, int]) -> None:
    host, port = banner_server
    assert ssh_banner(host, port) == "SSH-2.0-OpenSSH_9.2p1 Debian"
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    assert ssh_banner("127.0.0.1", closed_port, timeout_s=0.5) is None


def test_waiting_for_ssh_names_the_nodes_that_never_answered() -> None:
    with pytest.raises(OperationFailedError) as err:
        wait_for_ssh(LAB.nodes[:1], 1, timeout_s=0.2, poll_s=0.05)
    assert err.value.lines == (
        "ssh: lab-k8s-1 (127.0.61.11:1) gave no SSH banner within 0s; check cloud-init on its "
        "console (cloud-init status --long)",
    )


def test_missing_tools_are_named_with_the_command_that_fixes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MK8S_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(OperationFailedError) as err:
        tools.ensure_tools(ROOT, build=False)
    assert err.value.lines == tuple(
        f"terraform tooling: bpg/proxmox {tools.PROVIDER_VERSION} is not in the mirror for "
        f"{registry}; run `invoke tools`"
        for registry in tools.REGISTRIES
    )


def test_the_module_is_staged_into_the_environment_workdir(tmp_path: Path) -> None:
    from mk8s.edges.terraform import Terraform

    mine, theirs, work = tmp_path / "mine", tmp_path / "theirs", tmp_path / "work"
    for module, files in ((mine, ("main.tf", "extra.tf")), (theirs, ("main.tf",))):
        module.mkdir()
        for name in files:
            (module / name).write_text(f"# {module.name}/{name}\n")
    (work).mkdir()
    (work / "terraform.tfvars.json").write_text("{}")
    tf = Terraform(
        tools=tools.Tools(Path("terraform"), tmp_path / "cli.tfrc", tmp_path),
        workdir=work,
        provider_env={},
    )

    tf.stage(mine)
    tf.stage(theirs)

    assert sorted(p.name for p in work.iterdir()) == [
        ".mk8s-module-files",
        "main.tf",
        "terraform.tfvars.json",
    ]
    assert (work / "main.tf").read_text() == "# theirs/main.tf\n"
    with pytest.raises(UserError, match="not a Terraform module"):
        tf.stage(tmp_path / "nowhere")
