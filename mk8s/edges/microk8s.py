"""Every MicroK8s and snap command mk8s runs on a node: one function per verb, its docstring the
command line, its result a typed outcome (the style of canonical/charm-microk8s microk8s.py).

Texts and exit codes are MicroK8s 1.33's (MK = canonical/microk8s@1.33, CA =
canonical/microk8s-cluster-agent@1.33; real pastes in shared/reference/microk8s-outputs.md).
Parsing is tolerant: real output carries trailing spaces, hostnames, missing lines and, now and
then, a traceback instead of any status.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol

import yaml

from mk8s.edges.snapd import (
    RefreshOutcome,
    RefreshResult,
    Snap,
    SnapInfo,
    SnapRead,
    classify_reboot_required,
    classify_refresh,
    classify_snap_list,
    parse_snap_info,
    parse_snap_list,
)

__all__ = [
    "RefreshOutcome",
    "RefreshResult",
    "Snap",
    "SnapInfo",
    "SnapRead",
    "parse_snap_info",
    "parse_snap_list",
]

DQLITE_PORT = 19001
CLUSTER_AGENT_PORT = 25000
# Tokens live only as long as one join needs; a TTL token is not consumed by a join that
# fails (CA pkg/snap/snap.go ConsumeClusterToken), so retries may reuse it.
TOKEN_TTL_S = 300


class Output(Protocol):
    @property
    def code(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class Shell(Protocol):
    """A command runner on one node (mk8s.edges.ssh NodeSession)."""

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        secret_output: bool = False,
        timeout: float | None = None,
    ) -> Any: ...


# --- status ------------------------------------------------------------------------------------

StatusState = Literal["running", "not-running", "stopped", "worker", "unreadable"]


@dataclass(frozen=True)
class Member:
    """One dqlite member as a node lists it: `host:19001` (host an IP or a hostname) and role."""

    address: str
    role: str

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def loopback(self) -> bool:
        return self.host.startswith("127.")


@dataclass(frozen=True)
class Status:
    """What `microk8s status --format yaml` told about one node."""

    state: StatusState
    members: tuple[Member, ...] = ()
    addons: Mapping[str, str] = field(default_factory=dict)  # name -> enabled|disabled
    ha_enabled: bool = False
    detail: str = ""  # the line that says why, for anything but running

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def members_known(self) -> bool:
        """False when the member list is empty: MicroK8s prints no nodes both for none and for
        a dqlite query that failed (MK common/utils.py get_dqlite_info returns [])."""
        return bool(self.members)

    @property
    def voters(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.role == "voter")

    @property
    def enabled_addons(self) -> frozenset[str]:
        return frozenset(n for n, s in self.addons.items() if s == "enabled")

    def role_of(self, *hosts: str) -> str | None:
        return next((m.role for m in self.members if m.host in hosts), None)


STOPPED_LINE = "microk8s is not running, try microk8s start"  # MK common/utils.py exit_if_stopped
WORKER_LINE = "This MicroK8s deployment is acting as a node in a cluster."  # is_cluster_locked


def _strip_prompt(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines()]
    for i, ln in enumerate(lines):
        if ln.startswith(("microk8s:", "high-availability:", "addons:")):
            return "\n".join(lines[i:])
    return "\n".join(lines)


def parse_status(stdout: str, stderr: str = "") -> Status:
    """`microk8s status --format yaml` in any of its shapes (MK scripts/wrappers/status.py):
    yaml (running or not), the stopped line, the worker lines, or unreadable."""
    text = stdout.strip()
    if STOPPED_LINE in text:
        return Status("stopped", detail=STOPPED_LINE)
    if WORKER_LINE in text:
        return Status("worker", detail="a worker node (joined with --worker): no datastore")
    if "Traceback (most recent call last)" in stdout + stderr or not text:
        last = [ln for ln in (stdout + stderr).splitlines() if ln.strip()][-1:]
        return Status("unreadable", detail=last[0].strip() if last else "no output")
    try:
        data = yaml.safe_load(_strip_prompt(text))
    except yaml.YAMLError:
        return Status("unreadable", detail=f"not YAML: {text.splitlines()[0][:80]}")
    if not isinstance(data, dict) or not isinstance(data.get("microk8s"), dict):
        return Status("unreadable", detail=f"no `microk8s:` section: {text.splitlines()[0][:80]}")
    running = str(data["microk8s"].get("running")).lower() == "true"
    ha = data.get("high-availability")
    ha = ha if isinstance(ha, dict) else {}
    members = tuple(
        Member(str(n["address"]).strip(), str(n.get("role", "")).strip())
        for n in ha.get("nodes") or []
        if isinstance(n, dict) and "address" in n
    )
    addons = {
        str(a["name"]): str(a.get("status", "")).strip()
        for a in data.get("addons") or []
        if isinstance(a, dict) and "name" in a
    }
    enabled = str(ha.get("enabled")).lower() == "true"
    detail = "" if running else str(ha.get("message") or "microk8s is not running")
    return Status("running" if running else "not-running", members, addons, enabled, detail)


def status(node: Shell, timeout: float = 120) -> Status:
    """microk8s status --format yaml"""
    res = node.run("microk8s status --format yaml", timeout=timeout)
    return parse_status(res.stdout, res.stderr)


# --- add-node ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """`<32 hex>/<check>` from add-node; check = 12 hex of server.crt's SHA-256 (MK utils.sh)."""

    token_check: str
    urls: tuple[str, ...]

    def url(self, address: str) -> str:
        return f"{address}:{CLUSTER_AGENT_PORT}/{self.token_check}"


class MicroK8sError(RuntimeError):
    """A verb printed something mk8s cannot read; the message says which and what."""


def parse_add_node_json(text: str) -> Token:
    start = text.find("{")
    try:
        data: Any = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        data = None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or "/" not in token:
        raise MicroK8sError("`microk8s add-node --format json` printed no token")
    return Token(token, tuple(str(u) for u in data.get("urls") or []))


def add_node(node: Shell, ttl_s: int = TOKEN_TTL_S) -> Token:
    """microk8s add-node --token-ttl TTL --format json"""
    res = node.run(f"microk8s add-node --token-ttl {ttl_s} --format json", secret_output=True)
    if res.code != 0:
        raise MicroK8sError(f"`microk8s add-node` failed (exit {res.code})")
    return parse_add_node_json(res.stdout)


# --- join --------------------------------------------------------------------------------------


class JoinResult(Enum):
    """Every outcome of `microk8s join` (MK scripts/wrappers/join.py, CA pkg/api/v2/join.go)."""

    JOINED = "joined"
    TOKEN_INVALID = "invalid or expired token"
    ALREADY_KNOWN = "already known to dqlite"
    FINGERPRINT_CHANGED = "certificate fingerprint changed"
    AGENT_UNREACHABLE = "cluster agent unreachable (port 25000)"
    HOSTNAME_UNRESOLVED = "hostname does not resolve to the node IP"
    BIND_ADDRESS = "wrong dqlite bind address"
    REFUSED = "refused by the contacted node"
    BAD_CONNECTION = "bad connection string"
    LINK_LOST = "SSH link to the joining node lost mid-join"
    FAILED = "failed"


@dataclass(frozen=True)
class JoinOutcome:
    result: JoinResult
    reason: str  # MicroK8s' own line
    code: int


_JOIN_PATTERNS: tuple[tuple[str, JoinResult], ...] = (
    ("Invalid token", JoinResult.TOKEN_INVALID),
    ("is already known to dqlite", JoinResult.ALREADY_KNOWN),
    ("Could not verify the identity of", JoinResult.FINGERPRINT_CHANGED),
    ("ConnectionRefusedError", JoinResult.AGENT_UNREACHABLE),
    ("Please ensure the master node is reachable", JoinResult.AGENT_UNREACHABLE),
    ("does not resolve to the IP", JoinResult.HOSTNAME_UNRESOLVED),
    ("failed to find matching dqlite bind address", JoinResult.BIND_ADDRESS),
    ("This is not an HA MicroK8s cluster", JoinResult.REFUSED),
    ("has the same IP", JoinResult.REFUSED),
    ("Invalid connection:", JoinResult.BAD_CONNECTION),
)


def classify_join(code: int, stdout: str, stderr: str = "") -> JoinOutcome:
    """The outcome of one `microk8s join` from its exit code and text."""
    text = stdout + "\n" + stderr
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    failed = [ln for ln in lines if "failed" in ln.lower()]
    reason_line = (failed or lines or [""])[-1]
    if code == 0:
        return JoinOutcome(JoinResult.JOINED, reason_line, code)
    for needle, result in _JOIN_PATTERNS:
        if needle in text:
            line = next((ln for ln in lines if needle in ln), reason_line)
            return JoinOutcome(result, line, code)
    if re.search(r"Connection failed\. \(\d+\)\.", text):  # empty answer (microk8s#2190)
        return JoinOutcome(JoinResult.REFUSED, reason_line, code)
    return JoinOutcome(JoinResult.FAILED, reason_line or f"exit {code}, no output", code)


def join(node: Shell, url: str, timeout: float = 600) -> JoinOutcome:
    """microk8s join URL   (the URL, holding the token, goes over stdin, never argv)"""
    res = node.run('read -r url && exec microk8s join "$url"', stdin=url + "\n", timeout=timeout)
    return classify_join(res.code, res.stdout, res.stderr)


# --- remove-node, enable, config, refresh-certs ------------------------------------------------


def remove_node(node: Shell, name_or_ip: str, *, force: bool) -> Output:
    """microk8s remove-node NAME|IP [--force]

    Exit 1 after removing a member unknown to Kubernetes from dqlite (MK remove_node.py):
    the exit code is no verdict; the caller reads membership again."""
    flag = " --force" if force else ""
    res: Output = node.run(f"microk8s remove-node {shlex.quote(name_or_ip)}{flag}")
    return res


@dataclass(frozen=True)
class EnableOutcome:
    ok: bool
    already: bool
    reason: str


def enable(node: Shell, argv: list[str], timeout: float = 1200) -> EnableOutcome:
    """microk8s enable ADDON[:ARGS] [--flag ...]   (one add-on per command, MK common/utils.py)"""
    res = node.run(shlex.join(["microk8s", "enable", *argv]), timeout=timeout)
    lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit {res.code}"
    return EnableOutcome(res.code == 0, "is already enabled" in last, last)


def config(node: Shell) -> str:
    """microk8s config"""
    res = node.run("microk8s config", secret_output=True)
    if res.code != 0:
        raise MicroK8sError(f"`microk8s config` failed (exit {res.code})")
    return str(res.stdout)


def refresh_server_cert(node: Shell) -> Output:
    """microk8s refresh-certs --cert server.crt"""
    return refresh_cert(node, "server.crt")


RefreshableCert = Literal["server.crt", "front-proxy-client.crt"]


def refresh_cert(node: Shell, cert: RefreshableCert, timeout: float = 300) -> Output:
    """microk8s refresh-certs --cert server.crt|front-proxy-client.crt

    Backs up, reissues with an autogenerated CSR and restarts kubelite (server.crt also the
    cluster agent); exit 20 when reissuing failed and the backup was put back
    (MK scripts/wrappers/refresh_certs.py refresh_cert, reproduce_*_cert, restart)."""
    res: Output = node.run(f"microk8s refresh-certs --cert {cert}", timeout=timeout)
    return res


# --- snap -------------------------------------------------------------------------------------


def snap_list(node: Shell) -> Snap | None:
    """snap list microk8s   (None: not installed, snapd exits 1, or unreadable)"""
    return read_snap(node).snap


def read_snap(node: Shell) -> SnapRead:
    """snap list microk8s   (installed, not installed, or unknown: snapd/cmd_list.go)"""
    res = node.run("snap list microk8s")
    return classify_snap_list(res.code, res.stdout, res.stderr)


def snap_info(node: Shell) -> SnapInfo | None:
    """snap info microk8s   (the store's channels; None when snapd answered nothing)"""
    res = node.run("snap info microk8s", timeout=120)
    return parse_snap_info(res.stdout) if res.code == 0 else None


def latest_revision(node: Shell, channel: str) -> str | None:
    """The newest revision the store offers in CHANNEL, read through `snap info microk8s`."""
    info = snap_info(node)
    release = info.latest(channel) if info is not None else None
    return release.revision if release is not None else None


def snap_refresh(node: Shell, channel: str, timeout: float = 1800) -> RefreshOutcome:
    """snap refresh microk8s --channel=CHANNEL

    A hold does not stop it: holds block auto and general refreshes, a refresh naming the snap
    proceeds, and a user's hold remains afterwards (snapd cmd/snapd/cli/cmd_snap_op.go
    longRefreshHelp; overlord/snapstate/target.go filterHeldSnaps, autorefresh_gating.go
    resetGatingForRefreshed)."""
    res = node.run(f"snap refresh microk8s --channel={shlex.quote(channel)}", timeout=timeout)
    return classify_refresh(res.code, res.stdout, res.stderr)


def reboot_required(node: Shell) -> bool | None:
    """cat /var/run/reboot-required   (None: could not tell)"""
    res = node.run("cat /var/run/reboot-required")
    return classify_reboot_required(res.code, res.stderr)


def snap_install(node: Shell, channel: str) -> Output:
    """snap install microk8s --classic --channel=CHANNEL"""
    res: Output = node.run(f"snap install microk8s --classic --channel={shlex.quote(channel)}")
    return res


def snap_hold(node: Shell) -> Output:
    """snap refresh --hold microk8s"""
    res: Output = node.run("snap refresh --hold microk8s")
    return res


def cloud_init_status(node: Shell, *, wait: bool, timeout: float) -> Output:
    """cloud-init status [--wait]   (0 done, 1 error, 2 degraded: cloud-init docs)"""
    res: Output = node.run("cloud-init status" + (" --wait" if wait else ""), timeout=timeout)
    return res
