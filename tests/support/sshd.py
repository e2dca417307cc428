"""Real OpenSSH `sshd` processes, one per node, each on its own 127.0.x.y address.

Tests that drive nodes over SSH (bootstrap, provision's wait-for-SSH, conformance's testinfra)
talk to these instead of VMs: the SSH layer (host keys, auth, sessions, dropped connections) is
the real thing; only the commands on PATH are doubles.

    from tests.support.sshd import SshdCluster, sshd_factory  # noqa: F401  (fixture)

    def test_x(sshd_factory):
        cluster = sshd_factory(["n1", "n2"], path_dirs=[doubles_bin], env={"STATE": "/tmp/s"})
        node = cluster.nodes["n1"]
        node.host, node.port, node.host_public_key   # "ssh-ed25519 AAAA..."
        cluster.client_key                            # private key file for the client
        cluster.known_hosts()                         # pinned lines for every node

What each sshd gives its sessions:
- key-only auth for one user (root by default: tests run as root), no passwords, no PAM;
- HOME = a throwaway directory (no dotfiles of the test machine are sourced);
- PATH = the given `path_dirs`, then the system directories; `SetEnv` in sshd_config overrides
  the default environment (sshd_config(5) SetEnv), so the doubles win over real commands;
- `SSHD_NODE=<name>` plus the given `env`, so a double knows which node it runs on (it can also
  read the server address from `SSH_CONNECTION`, as on a real machine).

Everything (host keys, client key, configs, logs) lives in a throwaway directory. `stop()` ends
the listener and every session process it spawned, found by parent pid (never by name).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = os.environ.get("MK8S_SSHD", "/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
START_TIMEOUT_S = 10.0


class SshdError(RuntimeError):
    """sshd could not be started (missing binary, bind failure): the log is in the message."""


def _keygen(path: Path, comment: str) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _public(path: Path) -> str:
    """`ssh-ed25519 AAAA...` (type and key, no comment) of a key pair's .pub file."""
    kind, b64, *_ = path.with_name(path.name + ".pub").read_text().split()
    return f"{kind} {b64}"


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (Linux)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may contain spaces/parens.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def _kill(pids: Sequence[int], sig: signal.Signals = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _quote(value: str) -> str:
    if any(c in value for c in ' \t"'):
        return '"' + value.replace('"', '\\"') + '"'
    return value


@dataclass
class SshdNode:
    """One node: an sshd on `host:port` with its own throwaway host key."""

    name: str
    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        """The private host key (throwaway, test only)."""
        return self.directory / "ssh_host_ed25519_key"

    @property
    def host_public_key(self) -> str:
        """`ssh-ed25519 AAAA...`: what /etc/ssh/ssh_host_ed25519_key.pub holds on a real node."""
        return _public(self.host_key)

    @property
    def host_public_key_file(self) -> str:
        """The .pub file's full text (with comment), as the guest agent would read it."""
        return self.host_key.with_name(self.host_key.name + ".pub").read_text()

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def known_hosts_line(self) -> str:
        return f"{self.known_hosts_name} {self.host_public_key}"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def config(self) -> Path:
        return self.directory / "sshd_config"


@dataclass
class SshdCluster:
    """Several sshd nodes sharing one client key, one user and one session environment."""

    root: Path
    names: Sequence[str]
    user: str = "root"
    path_dirs: Sequence[Path | str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    nodes: dict[str, SshdNode] = field(default_factory=dict)

    @property
    def client_key(self) -> Path:
        """Private key the client authenticates with (throwaway, test only)."""
        return self.root / "client_ed25519"

    @property
    def client_public_key(self) -> str:
        return _public(self.client_key)

    def known_hosts(self) -> str:
        """known_hosts text pinning every node's current host key."""
        return "".join(n.known_hosts_line() + "\n" for n in self.nodes.values())

    def connect_kwargs(self) -> dict[str, object]:
        """paramiko/Fabric `connect_kwargs` that use only the throwaway client key."""
        return {"key_filename": str(self.client_key), "look_for_keys": False, "allow_agent": False}

    def ssh_argv(self, name: str, known_hosts: Path) -> list[str]:
        """OpenSSH client argv to reach node `name` with strict host-key checking."""
        node = self.nodes[name]
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-p",
            str(node.port),
            f"{self.user}@{node.host}",
        ]

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> SshdCluster:
        if not Path(SSHD).is_file():
            raise SshdError(f"{SSHD} not found: install Debian's openssh-server")
        self.root.mkdir(parents=True, exist_ok=True)
        # sshd's privilege separation directory; the package creates it at boot only.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        _keygen(self.client_key, "mk8s-test-client")
        (self.root / "authorized_keys").write_text(self.client_public_key + "\n")
        # Random 127.0.X.0/24 per cluster so parallel test runs on one machine rarely collide;
        # a bind failure picks another X.
        for _attempt in range(5):
            third = random.randint(2, 250)
            try:
                self._start_all(third)
                return self
            except SshdError:
                self.stop()
                if _attempt == 4:
                    raise
        return self

    def _start_all(self, third: int) -> None:
        self.nodes = {}
        port = self.port or _free_port(f"127.0.{third}.10")
        for i, name in enumerate(self.names):
            directory = self.root / name
            directory.mkdir(exist_ok=True)
            node = SshdNode(name, f"127.0.{third}.{10 + i}", port, directory)
            _keygen(node.host_key, f"root@{name}")
            self.nodes[name] = node
            self._launch(node)
        for node in self.nodes.values():
            self._wait_listening(node)

    def _config_text(self, node: SshdNode) -> str:
        path = ":".join([*(str(p) for p in self.path_dirs), *SYSTEM_PATH])
        # A throwaway HOME: sessions must not source the test machine's dotfiles (root's
        # .bashrc may prepend to PATH, and costs ~150 ms per command).
        env = {"PATH": path, "HOME": str(self.root / "home"), "SSHD_NODE": node.name, **self.env}
        setenv = " ".join(_quote(f"{k}={v}") for k, v in env.items())
        return "\n".join(
            [
                f"ListenAddress {node.host}:{node.port}",
                f"HostKey {node.host_key}",
                f"PidFile {node.directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                f"AllowUsers {self.user}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                # No PAM: no login session machinery in a container; keys only anyway.
                "UsePAM no",
                # The throwaway files live under /tmp (world-writable parents).
                "StrictModes no",
                "PermitUserEnvironment no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "MaxStartups 100",
                "MaxSessions 100",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                # sshd honours only the first SetEnv line: everything goes on one.
                f"SetEnv {setenv}",
                "",
            ]
        )

    def _launch(self, node: SshdNode) -> None:
        node.config.write_text(self._config_text(node))
        # -D: stay in the foreground (we own the pid); -E: log to a file the test can show.
        node.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(node.config), "-E", str(node.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def _wait_listening(self, node: SshdNode) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert node.process is not None
            if node.process.poll() is not None:
                log = node.log.read_text() if node.log.exists() else ""
                raise SshdError(f"sshd for {node.name} exited {node.process.returncode}: {log}")
            if _listening(node.host, node.port):
                return
            time.sleep(0.05)
        raise SshdError(f"sshd for {node.name} not listening on {node.host}:{node.port}")

    def _stop_node(self, node: SshdNode) -> None:
        proc, node.process = node.process, None
        if proc is None or proc.poll() is not None:
            return
        sessions = _descendants(proc.pid)
        proc.terminate()
        _kill(sessions)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        for node in self.nodes.values():
            self._stop_node(node)

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        self._stop_node(node)
        self._launch(node)
        self._wait_listening(node)

    def rotate_host_key(self, name: str) -> str:
        """Give node `name` a new host key (a rebuilt VM, or a man in the middle); returns it."""
        node = self.nodes[name]
        _keygen(node.host_key, f"root@{name}")
        self.restart(name)
        return node.host_public_key

    def drop_connections(self, name: str) -> int:
        """Kill every open SSH session of node `name` (the listener stays): a dropped link."""
        node = self.nodes[name]
        if node.process is None:
            return 0
        # The whole tree: with privilege separation the process holding the socket is a
        # grandchild of the listener, and killing only the child leaves the link up.
        # Repeat until none is left: a session may be forking while we look.
        killed: set[int] = set()
        for _ in range(50):
            sessions = _descendants(node.process.pid)
            if not sessions:
                break
            _kill(sessions)
            killed.update(sessions)
            time.sleep(0.02)
        return len(killed)

    def session_commands(self, name: str) -> list[str]:
        """Command names of the processes running in node `name`'s sessions."""
        node = self.nodes[name]
        if node.process is None:
            return []
        names = []
        for pid in _descendants(node.process.pid):
            with contextlib.suppress(OSError):
                names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        return names


class SshdFactory:
    """Callable fixture object: `sshd_factory(names, ...) -> started SshdCluster`."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._clusters: list[SshdCluster] = []

    def __call__(
        self,
        names: Sequence[str],
        *,
        user: str = "root",
        path_dirs: Sequence[Path | str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> SshdCluster:
        cluster = SshdCluster(
            self._root / f"sshd{len(self._clusters)}",
            list(names),
            user=user,
            path_dirs=list(path_dirs),
            env=dict(env or {}),
            port=port,
        )
        self._clusters.append(cluster)
        return cluster.start()

    def stop_all(self) -> None:
        for cluster in self._clusters:
            cluster.stop()


@pytest.fixture
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFactory]:
    """Start sshd clusters on demand; every one is stopped (sessions included) at teardown."""
    factory = SshdFactory(tmp_path_factory.mktemp("sshd"))
    try:
        yield factory
    finally:
        factory.stop_all()
