"""The sshd fixture itself: real OpenSSH, key-only, strict host keys, PATH doubles first."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.support.sshd import SshdFactory

pytestmark = pytest.mark.slow


def _ssh(argv: list[str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, command], capture_output=True, text=True, timeout=20, check=False)


def test_each_node_has_its_own_address_host_key_and_session_environment(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "snap"
    tool.write_text('#!/bin/sh\necho double-snap "$SSHD_NODE" "$MARK"\n')
    tool.chmod(0o755)
    cluster = sshd_factory(["a", "b"], path_dirs=[bin_dir], env={"MARK": "x y"})
    known = tmp_path / "known_hosts"
    known.write_text(cluster.known_hosts())
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    assert a.host != b.host and a.host_public_key != b.host_public_key
    out = _ssh(cluster.ssh_argv("b", known), "snap; echo $SSH_CONNECTION")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "double-snap b x y"
    assert lines[1].split()[2] == b.host  # the server address, as on a real machine


def test_password_auth_is_off_and_changed_host_key_is_refused(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    cluster = sshd_factory(["a"])
    known = tmp_path / "known_hosts"
    known.write_text(cluster.known_hosts())
    assert "PasswordAuthentication no" in cluster.nodes["a"].config.read_text()
    assert _ssh(cluster.ssh_argv("a", known), "true").returncode == 0
    cluster.rotate_host_key("a")
    out = _ssh(cluster.ssh_argv("a", known), "true")
    assert out.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in out.stderr


def test_stop_ends_listener_and_open_sessions(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    cluster = sshd_factory(["a"])
    known = tmp_path / "known_hosts"
    known.write_text(cluster.known_hosts())
    session = subprocess.Popen(
        [*cluster.ssh_argv("a", known), "sleep 60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # until the remote command runs
            if "sleep" in cluster.session_commands("a") or session.poll() is not None:
                break
            time.sleep(0.05)
        assert cluster.drop_connections("a") > 0
        assert session.wait(timeout=10) != 0  # the link dropped under it
    finally:
        session.kill()
    cluster.stop()
    assert _ssh(cluster.ssh_argv("a", known), "true").returncode != 0
