"""A real OpenSSH sshd on loopback addresses for the provision tests.

It plays two parts: the PVE hosts' SSH (the bpg provider uploads snippets with `tee` over SSH)
and the cluster nodes' SSH (provision waits for each node's banner). It runs as the current
user (root in CI), accepts one throwaway key and listens on every address given.
The bootstrap suite's tests/support/sshd.py is the fixture for node-level tests; this one only
needs banners and a shell.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class LocalSshd:
    user: str
    private_key: Path
    public_key: str
    addresses: tuple[tuple[str, int], ...]


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "mk8s-test", "-f", str(path)], check=True
    )


def _wait_listening(host: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def local_sshd(workdir: Path, addresses: Sequence[tuple[str, int]]) -> Iterator[LocalSshd]:
    if not Path(SSHD).exists():
        raise RuntimeError("sshd not found: install openssh-server (scripts/deps.d/provision.apt)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = workdir / "authorized_keys"
    public = client_key.with_suffix(".pub").read_text().strip()
    authorized.write_text(public + "\n")
    authorized.chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    lines = [
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized}",
        f"PidFile {workdir / 'sshd.pid'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "Subsystem sftp internal-sftp",
        f"LogLevel {os.environ.get('MK8S_TEST_SSHD_LOGLEVEL', 'ERROR')}",
        *(f"ListenAddress {host}:{port}" for host, port in addresses),
    ]
    config = workdir / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        for host, port in addresses:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"sshd exited: {err.strip()}")
            _wait_listening(host, port, deadline)
        time.sleep(0.2)
        if proc.poll() is not None:  # something else answered: a stale sshd on our addresses
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"sshd exited: {err.strip()}")
        yield LocalSshd(getpass.getuser(), client_key, public, tuple(addresses))
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
