"""The SSH edge: reaching nodes over Fabric/paramiko with pinned host keys.

Trust: host keys are never trusted on first use. Before the first SSH, each node's public host
key is read out of band (the Proxmox guest agent reads /etc/ssh/ssh_host_ed25519_key.pub inside
the VM: `GuestAgentHostKeys`) and pinned in a known_hosts file; every connection then uses
paramiko's RejectPolicy against that file only, and a key that differs from the pinned one is
refused (it is either a rebuilt VM or someone in the middle: the operator decides).

Commands that must hand a secret to a node get it on the channel's stdin (`NodeSession.run(...,
stdin=...)`), never on a command line; the `Journal` redacts every registered secret.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko
from fabric import Connection

from mk8s.edges import proxmox
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.model import Environment, NodeSpec
from mk8s.inventory.secrets import redact

HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key.pub"


@dataclass(frozen=True)
class Login:
    """Who mk8s logs in as on every node, and how long a connection attempt may take."""

    user: str
    key_file: str
    connect_timeout_s: int = 15


@dataclass(frozen=True)
class Target:
    """How to reach one node over SSH (the inventory IP, or a test address)."""

    node: NodeSpec
    host: str
    port: int = 22

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def targets_for(env: Environment) -> dict[str, Target]:
    return {n.name: Target(n, str(n.ip), env.ssh.port) for n in env.nodes}


# --- out-of-band host keys -------------------------------------------------------------------


class HostKeySource(Protocol):
    """Reads a node's SSH host public key without SSH (so nothing is trusted on first use)."""

    def host_key(self, node: NodeSpec) -> str:
        """`ssh-ed25519 AAAA...` as in /etc/ssh/ssh_host_ed25519_key.pub on the node."""
        ...


class GuestAgentHostKeys:
    """Host keys through the Proxmox guest agent: `GET .../agent/file-read?file=PATH`.

    `api` is a proxmoxer `ProxmoxAPI` (mk8s.edges.proxmox builds one from the inventory); the PVE
    API answers `{"content": ..., "truncated": false}` (PVE API: nodes/{node}/qemu/{vmid}/
    agent/file-read). The token needs VM.Monitor (PVE 8) / VM.GuestAgent.FileRead (PVE 9).
    """

    def __init__(
        self,
        api: Any,
        *,
        endpoint: str = "Proxmox",
        attempts: int = 30,
        pause_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self._endpoint = endpoint
        self._attempts = attempts
        self._pause_s = pause_s
        self._sleep = sleep

    def host_key(self, node: NodeSpec) -> str:
        """Retried: right after first boot the agent may not run yet (cloud-init installs it)
        and the key file may not exist yet (cloud-init's ssh module writes it)."""
        last = ""
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._pause_s)
            try:
                answer = (
                    self._api.nodes(node.pve_node)
                    .qemu(node.vmid)
                    .agent("file-read")
                    .get(file=HOST_KEY_PATH)
                )
            except Exception as exc:  # proxmoxer: ResourceException, requests errors
                last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self._unless_worth_waiting(node, exc, last)
                continue
            content = answer.get("content", "") if isinstance(answer, dict) else ""
            if content.strip():
                return parse_public_key(content, node.name)
            last = f"{HOST_KEY_PATH} is empty"
        raise OperationFailedError(
            f"{node.name}: cannot read its SSH host key through the guest agent after "
            f"{self._attempts} attempts ({last}); is qemu-guest-agent running?"
        )

    def _unless_worth_waiting(self, node: NodeSpec, exc: Exception, last: str) -> None:
        """Only a guest agent that is not up yet is worth waiting for (cloud-init installs it
        minutes after first boot). PVE says so with a 500 "QEMU guest agent is not running"
        (qemu-server; fakepve 0.5.0 server.py `_agent_call` models it), "VM N not running",
        or a 500 "... got timeout" from an agent that hangs. A refused or timed-out connection,
        401/403 or any other error will not heal by waiting: said at once (issue 12)."""
        where = f"{node.name}: Proxmox API at {self._endpoint}"
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            raise OperationFailedError(
                f"{where} refused the guest-agent file read ({last}); the "
                "token needs VM.GuestAgent.FileRead (PVE 9) or VM.Monitor (PVE 8)"
            ) from None
        text = str(exc)
        agent_not_up = status == 500 and (
            "guest agent is not running" in text or "not running" in text or "got timeout" in text
        )
        if agent_not_up:
            return
        if status is None and "Connection refused" in text:
            raise OperationFailedError(f"{where}: connection refused") from None
        if status is None and "timed out" in text.lower():
            raise OperationFailedError(f"{where}: no answer ({last})") from None
        raise OperationFailedError(f"{where}: reading the host key failed ({last})") from None


class ProxmoxHostKeys:
    """`GuestAgentHostKeys` on a proxmoxer client built from the inventory and the token in
    the environment, created only when a key must actually be pinned (re-runs with every key
    pinned need no Proxmox credentials)."""

    def __init__(
        self, env: Environment, environ: Mapping[str, str] | None = None, **retry: Any
    ) -> None:
        self._env = env
        self._environ = proxmox.secret_source(env) if environ is None else environ
        self._retry = retry  # GuestAgentHostKeys' attempts / pause_s / sleep
        self._source: GuestAgentHostKeys | None = None

    def host_key(self, node: NodeSpec) -> str:
        if self._source is None:
            endpoint = self._env.proxmox.endpoint
            self._source = GuestAgentHostKeys(self._api(), endpoint=endpoint, **self._retry)
        return self._source.host_key(node)

    def _api(self) -> Any:
        pve = self._env.proxmox
        missing = [v for v in (pve.token_id_env, pve.token_secret_env) if not self._environ.get(v)]
        if missing:
            raise UserError(
                f"{', '.join(missing)}: not set; needed once to read the nodes' SSH host keys "
                "through the Proxmox guest agent"
            )
        return proxmox.client(self._env, proxmox.credentials(self._env, self._environ))


def parse_public_key(text: str, where: str) -> str:
    parts = text.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise OperationFailedError(
            f"{where}: {HOST_KEY_PATH} read through the guest agent is not a public key"
            " (is qemu-guest-agent running and cloud-init finished?)"
        )
    return f"{parts[0]} {parts[1]}"


def pin_host_keys(
    known_hosts: Path, targets: Sequence[Target], source: HostKeySource, *, dry_run: bool
) -> list[str]:
    """Pin the out-of-band host key of every node not pinned yet; returns what was pinned.

    A pinned entry is never replaced here: a changed key is refused at connect time and
    the operator removes the line after checking (docs/bootstrap.md, "Host key changed").
    """
    pinned = known_hosts.read_text() if known_hosts.exists() else ""
    names = {line.split(" ", 1)[0] for line in pinned.splitlines() if line.strip()}
    added = []
    for t in targets:
        if t.known_hosts_name in names:
            continue
        if dry_run:
            added.append(f"{t.node.name}: would pin its host key read through the guest agent")
            continue
        key = source.host_key(t.node)
        pinned += f"{t.known_hosts_name} {key}\n"
        added.append(f"{t.node.name}: pinned host key {key.split()[0]} (read out of band)")
    if added and not dry_run:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        tmp = known_hosts.with_name(known_hosts.name + ".tmp")
        tmp.write_text(pinned)
        tmp.replace(known_hosts)
    return added


# --- SSH sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def text(self) -> str:
        return (self.stdout + self.stderr).strip()


class NodeUnreachableError(OperationFailedError):
    """SSH failed (connection refused or dropped): the caller may retry."""


class HostKeyRefusedError(UserError):
    """The node's host key is not the pinned one."""


class Journal:
    """build/ENV/bootstrap.log: every command mk8s ran and what came back, secrets redacted."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.secrets: list[str] = []

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def write(self, node: str, line: str) -> None:
        if self._path is None:
            return
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a") as f:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                f.write(f"{stamp} {node}: {self.redact(line)}\n")


class NodeSession:
    """One node over SSH with strict host-key checking against the pinned known_hosts."""

    def __init__(self, target: Target, login: Login, known_hosts: Path, journal: Journal) -> None:
        self.target = target
        self.name = target.node.name
        self._login = login
        self._known_hosts = known_hosts
        self._journal = journal
        self._conn: Connection | None = None

    def _open(self) -> Connection:
        if self._conn is not None:
            return self._conn
        conn = Connection(
            self.target.host,
            user=self._login.user,
            port=self.target.port,
            connect_timeout=self._login.connect_timeout_s,
            connect_kwargs={
                "key_filename": str(Path(self._login.key_file).expanduser()),
                "look_for_keys": False,
                "allow_agent": False,
            },
        )
        # Fabric's default client auto-adds unknown keys: replace it with one that knows only
        # the pinned keys and rejects everything else.
        client = paramiko.SSHClient()
        if self._known_hosts.exists():
            client.load_host_keys(str(self._known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.client = client
        try:
            conn.open()
        except paramiko.BadHostKeyException:
            raise HostKeyRefusedError(
                f"{self.name}: host key of {self.target.host} differs from the pinned one in "
                f"{self._known_hosts}; refusing to connect (rebuilt VM or man in the middle: "
                "check, then remove that line and re-run)"
            ) from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyRefusedError(
                    f"{self.name}: no pinned host key for {self.target.known_hosts_name}; "
                    "refusing to trust it on first use"
                ) from None
            raise NodeUnreachableError(
                f"{self.name}: SSH to {self.target.host} failed: {exc}"
            ) from None
        except OSError as exc:
            raise NodeUnreachableError(
                f"{self.name}: SSH to {self.target.host} failed: {exc}"
            ) from None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        secret_output: bool = False,
        timeout: float | None = None,
    ) -> Result:
        """Run `command` (with sudo unless we are root); never raises on a non-zero exit."""
        conn = self._open()
        # Through `sh -c` so that pipes, redirections and `read` run with root rights too.
        full = command if self._login.user == "root" else f"sudo -n sh -c {shlex.quote(command)}"
        try:
            if stdin is None:
                res = conn.run(full, hide=True, warn=True, in_stream=False, timeout=timeout)
                result = Result(int(res.exited), res.stdout, res.stderr)
            else:
                result = _run_with_stdin(conn, full, stdin, timeout)
        except Exception as exc:  # paramiko/invoke raise many kinds on a dropped link
            self.close()
            self._journal.write(
                self.name, f"$ {command} -> connection lost ({exc.__class__.__name__})"
            )
            raise NodeUnreachableError(f"{self.name}: connection lost during `{command}`") from None
        if result.code == -1:  # the channel closed without an exit status: a dropped link
            self.close()
            self._journal.write(self.name, f"$ {command} -> connection lost")
            raise NodeUnreachableError(f"{self.name}: connection lost during `{command}`")
        shown = "(output withheld: it holds a credential)" if secret_output else result.text
        self._journal.write(self.name, f"$ {command} -> {result.code}\n{shown}")
        return result


def _run_with_stdin(conn: Connection, command: str, stdin: str, timeout: float | None) -> Result:
    """Exec with `stdin` fed and closed, on the connection's paramiko transport.

    Used to hand secrets to a command without putting them on its command line. (Fabric's
    `in_stream` works too, but its stdin thread adds about a second per command.)
    """
    channel = conn.client.get_transport().open_session()
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        channel.sendall(stdin.encode())
        channel.shutdown_write()
        out = bytearray()
        while chunk := channel.recv(65536):
            out += chunk
        err = bytearray()
        while chunk := channel.recv_stderr(65536):
            err += chunk
        code = channel.recv_exit_status()
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))
    finally:
        channel.close()
