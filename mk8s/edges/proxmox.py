"""The Proxmox VE edge (proxmoxer, API token): read facts, run tasks, wait for them.

Facts are plain data (`ClusterFacts`, `VmFacts`) so that the decisions made on them
(mk8s.provision.preflight, mk8s.provision.verify) are pure and tested on recorded facts.
Transient failures (HTTP 502/503/504, dropped connections) are retried with backoff within a
30 s budget; a refused connection or an authentication failure becomes one clear line at once
(naming the endpoint and the token variable, never its value); a POST is never re-sent blindly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI, ResourceException

from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.model import Environment
from mk8s.inventory.secrets import load_secrets_file

T = TypeVar("T")

RETRY_STATUS = frozenset({502, 503, 504})
ATTEMPTS = 5
REQUEST_TIMEOUT_S = 10  # one request; PVE answers API calls in well under a second
CALL_BUDGET_S = 30.0  # one call with its retries: then a clear line instead of a hang


@dataclass(frozen=True)
class Credentials:
    user: str  # user@realm
    token_name: str
    secret: str
    token_id_env: str

    @property
    def token_id(self) -> str:
        return f"{self.user}!{self.token_name}"

    @property
    def provider_token(self) -> str:
        """The form the bpg provider takes in PROXMOX_VE_API_TOKEN."""
        return f"{self.token_id}={self.secret}"


def secret_source(env: Environment) -> dict[str, str]:
    """Where `*_env` names resolve: the process environment over the inventory's secrets_file."""
    return {**load_secrets_file(env.secrets_file), **os.environ}


def credentials(env: Environment, environ: Mapping[str, str] | None = None) -> Credentials:
    """The API token named by the inventory, from the environment (never from the inventory)."""
    source = secret_source(env) if environ is None else environ
    pve = env.proxmox
    token_id = source.get(pve.token_id_env, "")
    secret = source.get(pve.token_secret_env, "")
    lines = []
    if not token_id:
        lines.append(
            f"{pve.token_id_env} is not set: export the PVE API token id (user@realm!name)"
        )
    elif "!" not in token_id or "@" not in token_id.split("!")[0]:
        lines.append(f"{pve.token_id_env} must look like user@realm!tokenname")
    if not secret:
        lines.append(f"{pve.token_secret_env} is not set: export the PVE API token secret")
    if lines:
        raise UserError(*lines)
    user, _, name = token_id.partition("!")
    return Credentials(user=user, token_name=name, secret=secret, token_id_env=pve.token_id_env)


def tls_verify(env: Environment, root: Path = Path()) -> bool | str:
    """requests' `verify`: the CA bundle when given (relative to the repo root), else on/off."""
    pve = env.proxmox
    if pve.ca_bundle:
        path = Path(pve.ca_bundle).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise UserError(f"proxmox.ca_bundle: {path} does not exist")
        return str(path.resolve())
    return pve.verify_tls


def provider_env(
    env: Environment, creds: Credentials, root: Path = Path(), environ: dict[str, str] | None = None
) -> dict[str, str]:
    """What the bpg provider reads from its environment. The token stays out of tfvars/state."""
    verify = tls_verify(env, root)
    out = {
        "PROXMOX_VE_ENDPOINT": env.proxmox.endpoint.rstrip("/") + "/",
        "PROXMOX_VE_API_TOKEN": creds.provider_token,
        "PROXMOX_VE_INSECURE": "false" if verify else "true",
    }
    if isinstance(verify, str):
        # The provider is a Go program: Go reads extra roots from SSL_CERT_FILE.
        out["SSL_CERT_FILE"] = verify
    # With token auth the provider needs an SSH user for snippet uploads (bpg docs, "SSH User").
    source = os.environ if environ is None else environ
    out["PROXMOX_VE_SSH_USERNAME"] = source.get("PROXMOX_VE_SSH_USERNAME", "root")
    return out


class Pve:
    """A thin retrying wrapper around proxmoxer; every call names the endpoint in errors.

    Bounded (issue 12): one request waits at most REQUEST_TIMEOUT_S, one call CALL_BUDGET_S
    in all. A refused connection or a 401 is said at once (waiting will not help); 502/503/504
    and a dropped or timed-out connection are retried while the budget lasts, except a POST
    whose connection dropped: PVE may have started its task, so it is never re-sent blindly
    (PostOutcomeUnknownError; the caller looks at the VM first).
    """

    def __init__(
        self,
        api: Any,
        endpoint: str,
        token_id_env: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.endpoint = endpoint
        self.token_id_env = token_id_env
        self._sleep = sleep
        self._clock = clock
        self.retries = 0  # transient failures absorbed so far

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        delay = 0.5
        deadline = self._clock() + CALL_BUDGET_S
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return getattr(self._api(path), method)(**kwargs)
            except ResourceException as exc:
                if exc.status_code == 401:
                    raise OperationFailedError(
                        f"Proxmox API at {self.endpoint} rejected the API token in "
                        f"{self.token_id_env} (401 {_message(exc)}): check that the token exists, "
                        "has not expired or been revoked, and that the secret matches"
                    ) from None
                if exc.status_code in RETRY_STATUS and self._again(attempt, delay, deadline):
                    self._pause(delay)
                    delay *= 2
                    continue
                raise PveApiError(
                    self.endpoint, method.upper(), path, exc.status_code, _message(exc)
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._unreachable(exc, method, path, self._again(attempt, delay, deadline))
                self._pause(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _again(self, attempt: int, delay: float, deadline: float) -> bool:
        """Another attempt fits: one more pause and one more full request before the deadline."""
        return attempt < ATTEMPTS and self._clock() + delay + REQUEST_TIMEOUT_S <= deadline

    def _pause(self, delay: float) -> None:
        self.retries += 1
        self._sleep(delay)

    def _unreachable(self, exc: Exception, method: str, path: str, again: bool) -> None:
        """Raise unless this failure is worth another attempt."""
        where = f"Proxmox API at {self.endpoint}"
        if isinstance(exc, requests.exceptions.SSLError):
            raise OperationFailedError(
                f"{where}: TLS verification failed ({_short(exc)}); "
                "set proxmox.ca_bundle to the cluster's CA, or verify_tls: false for a lab"
            ) from None
        if _refused(exc):
            raise OperationFailedError(f"{where}: connection refused (is pveproxy running?)")
        sent = not isinstance(exc, requests.exceptions.ConnectTimeout)
        if method == "post" and sent:
            raise PostOutcomeUnknownError(self.endpoint, path, _short(exc))
        if not again:
            what = "no answer" if isinstance(exc, requests.Timeout) else "connection dropped"
            raise OperationFailedError(
                f"{where}: {what} ({method.upper()} /{path}) within {CALL_BUDGET_S:.0f} s"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self._call("get", path, **params)

    def post(self, path: str, **data: Any) -> Any:
        return self._call("post", path, **data)

    def put(self, path: str, **data: Any) -> Any:
        return self._call("put", path, **data)

    def delete(self, path: str, **params: Any) -> Any:
        return self._call("delete", path, **params)

    def wait_task(self, node: str, upid: str, timeout_s: float = 600, poll_s: float = 0.5) -> None:
        """Block until the task ends; its `TASK ERROR` becomes an OperationFailedError."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.get(f"nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                exit_status = status.get("exitstatus", "")
                if exit_status != "OK":
                    raise OperationFailedError(f"task {upid} on {node} failed: {exit_status}")
                return
            if time.monotonic() > deadline:
                raise OperationFailedError(
                    f"task {upid} on {node} still running after {timeout_s}s"
                )
            self._sleep(poll_s)


def _refused(exc: Exception) -> bool:
    """requests wraps the socket error a few levels deep; walk the causes to find it."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = (
            seen.__cause__
            or seen.__context__
            or next((a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)), None)
        )
    return False


class PostOutcomeUnknownError(OperationFailedError):
    """A POST was sent and its connection dropped before the answer: PVE may be running it."""

    def __init__(self, endpoint: str, path: str, detail: str) -> None:
        super().__init__(
            f"Proxmox API at {endpoint}: connection dropped after POST /{path} was sent "
            f"({detail}); not re-sent"
        )
        self.path = path


class PveApiError(OperationFailedError):
    def __init__(self, endpoint: str, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"Proxmox API at {endpoint}: {method} /{path}: {status} {message}")
        self.status = status
        self.message = message


def _message(exc: ResourceException) -> str:
    text = str(getattr(exc, "content", "") or exc.status_message or "").strip()
    return text.splitlines()[0] if text else str(exc.status_code)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."


def client(
    env: Environment, creds: Credentials, root: Path = Path(), verify: bool | str | None = None
) -> Any:
    """The raw proxmoxer client for the inventory's endpoint: the one place it is built."""
    url = urlsplit(env.proxmox.endpoint)
    return ProxmoxAPI(
        url.hostname,
        port=url.port or 8006,
        user=creds.user,
        token_name=creds.token_name,
        token_value=creds.secret,
        verify_ssl=tls_verify(env, root) if verify is None else verify,
        timeout=REQUEST_TIMEOUT_S,
        service="PVE",
    )


def connect(env: Environment, root: Path = Path(), creds: Credentials | None = None) -> Pve:
    creds = creds or credentials(env)
    return Pve(client(env, creds, root), env.proxmox.endpoint, creds.token_id_env)


# ----------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class VmFacts:
    vmid: int
    name: str
    node: str
    status: str
    template: bool
    tags: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    # IPv4 addresses the guest agent reports; None: agent not answering.
    agent_ips: tuple[str, ...] | None = None
    snapshots: tuple[str, ...] = ()

    @property
    def lock(self) -> str | None:
        value = self.config.get("lock")
        return str(value) if value else None


@dataclass(frozen=True)
class StorageFacts:
    name: str
    content: tuple[str, ...]
    avail_bytes: int
    shared: bool
    active: bool


@dataclass(frozen=True)
class ClusterFacts:
    version: str
    nodes: dict[str, bool]  # name -> online
    vms: tuple[VmFacts, ...]
    # pve node -> storage name -> facts (what the node sees)
    storages: dict[str, dict[str, StorageFacts]]

    def vm(self, vmid: int) -> VmFacts | None:
        return next((v for v in self.vms if v.vmid == vmid), None)


def split_tags(value: object) -> tuple[str, ...]:
    return tuple(sorted(t for t in str(value or "").replace(",", ";").split(";") if t))


def _vm_from_resource(r: dict[str, Any]) -> VmFacts:
    return VmFacts(
        vmid=int(r["vmid"]),
        name=str(r.get("name", "")),
        node=str(r.get("node", "")),
        status=str(r.get("status", "unknown")),
        template=bool(int(r.get("template") or 0)),
        tags=split_tags(r.get("tags")),
    )


def read_cluster_facts(pve: Pve, env: Environment) -> ClusterFacts:
    """Everything preflight decides on. VM configs are read for templates and for VMs that could
    collide with ours (same vmid or name, or any non-template VM: its ipconfig0 may hold our IP)."""
    version = str(pve.get("version").get("version", "0"))
    nodes = {str(n["node"]): n.get("status") == "online" for n in pve.get("nodes")}
    vms = []
    for r in pve.get("cluster/resources", type="vm"):
        if r.get("type", "qemu") != "qemu":
            continue
        vm = _vm_from_resource(r)
        config = pve.get(f"nodes/{vm.node}/qemu/{vm.vmid}/config") if nodes.get(vm.node) else {}
        vms.append(_with(vm, config=config))
    storages: dict[str, dict[str, StorageFacts]] = {}
    for node in sorted({n.pve_node for n in env.nodes}):
        if not nodes.get(node):
            continue
        storages[node] = {
            str(s["storage"]): StorageFacts(
                name=str(s["storage"]),
                content=tuple(sorted(str(s.get("content", "")).split(","))),
                avail_bytes=int(s.get("avail") or 0),
                shared=bool(int(s.get("shared") or 0)),
                active=bool(int(s.get("active", 1) or 0)),
            )
            for s in pve.get(f"nodes/{node}/storage")
        }
    return ClusterFacts(version=version, nodes=nodes, vms=tuple(vms), storages=storages)


def _with(vm: VmFacts, **changes: Any) -> VmFacts:
    data = {**vm.__dict__, **changes}
    return VmFacts(**data)


def read_vm_facts(pve: Pve, env: Environment) -> dict[str, VmFacts | None]:
    """Node name -> the VM with its vmid (config, agent IPs, snapshots), or None when absent."""
    present = {int(r["vmid"]): r for r in pve.get("cluster/resources", type="vm")}
    out: dict[str, VmFacts | None] = {}
    for node in env.nodes:
        r = present.get(node.vmid)
        if r is None:
            out[node.name] = None
            continue
        vm = _vm_from_resource(r)
        base = f"nodes/{vm.node}/qemu/{vm.vmid}"
        config = pve.get(f"{base}/config")
        snaps = tuple(
            str(s["name"]) for s in pve.get(f"{base}/snapshot") if s.get("name") != "current"
        )
        out[node.name] = _with(
            vm, config=config, agent_ips=_agent_ips(pve, base, vm), snapshots=snaps
        )
    return out


def _agent_ips(pve: Pve, base: str, vm: VmFacts) -> tuple[str, ...] | None:
    if vm.status != "running":
        return None
    try:
        data = pve.get(f"{base}/agent/network-get-interfaces")
    except PveApiError:
        return None  # "QEMU guest agent is not running": reported by verify
    ips = []
    for iface in (data or {}).get("result", []):
        for addr in iface.get("ip-addresses", []):
            if addr.get("ip-address-type") == "ipv4" and iface.get("name") != "lo":
                ips.append(str(addr["ip-address"]))
    return tuple(ips)


# ------------------------------------------------------------------ day-2 primitives


def vm_path(vm: VmFacts) -> str:
    return f"nodes/{vm.node}/qemu/{vm.vmid}"


# Worker types of the tasks these POSTs start, as `GET nodes/{node}/tasks` lists them
# (fakepve 0.5.0 errors.py TASK_TYPES, taken from PVE's qemu-server API).
TASK_TYPE = {
    "start": "qmstart",
    "stop": "qmstop",
    "shutdown": "qmshutdown",
    "reboot": "qmreboot",
    "reset": "qmreset",
    "suspend": "qmsuspend",
    "resume": "qmresume",
    "snapshot": "qmsnapshot",
    "rollback": "qmrollback",
}


def started_task(pve: Pve, vm: VmFacts, task_type: str, since: float) -> str | None:
    """The UPID of a `task_type` task on the VM started at or after `since` (epoch s)."""
    for task in pve.get(f"nodes/{vm.node}/tasks", vmid=vm.vmid, limit=20) or []:
        if task.get("type") == task_type and float(task.get("starttime") or 0) >= since:
            return str(task["upid"])
    return None


def post_task(
    pve: Pve,
    vm: VmFacts,
    path: str,
    task_type: str,
    done: Callable[[], bool],
    timeout_s: float = 600,
    **data: Any,
) -> None:
    """POST a task and wait for it. If the connection dropped after the POST went out, PVE may
    be running it: find its task, or see that `done()` already holds; never send it twice."""
    since = time.time() - 5  # PVE's clock may trail ours a little
    try:
        upid = pve.post(path, **data)
    except PostOutcomeUnknownError as exc:
        upid = started_task(pve, vm, task_type, since)
        if upid is None:
            if done():
                return
            raise OperationFailedError(
                f"{exc.lines[0]}; VM {vm.vmid} shows neither a {task_type} task nor the change: "
                "re-run to send it again"
            ) from None
    if upid:
        pve.wait_task(vm.node, str(upid), timeout_s)


def vm_status(pve: Pve, vm: VmFacts) -> str:
    return str(pve.get(f"{vm_path(vm)}/status/current").get("status", "unknown"))


def power(pve: Pve, vm: VmFacts, action: str, timeout_s: float = 600) -> None:
    """start | stop | shutdown | reboot | reset | suspend | resume, waiting for the task."""
    wanted = {"start": "running", "stop": "stopped", "shutdown": "stopped"}.get(action)
    post_task(
        pve,
        vm,
        f"{vm_path(vm)}/status/{action}",
        TASK_TYPE[action],
        lambda: wanted is not None and vm_status(pve, vm) == wanted,
        timeout_s,
    )


def snapshot(
    pve: Pve, vm: VmFacts, name: str, description: str = "", vmstate: bool = False
) -> None:
    def exists() -> bool:
        return any(s.get("name") == name for s in pve.get(f"{vm_path(vm)}/snapshot"))

    post_task(
        pve,
        vm,
        f"{vm_path(vm)}/snapshot",
        TASK_TYPE["snapshot"],
        exists,
        snapname=name,
        description=description,
        vmstate=int(vmstate),
    )


def rollback(pve: Pve, vm: VmFacts, name: str, start: bool = True) -> None:
    # Nothing on the VM tells a finished rollback from none: only its task can.
    post_task(
        pve,
        vm,
        f"{vm_path(vm)}/snapshot/{name}/rollback",
        TASK_TYPE["rollback"],
        lambda: False,
        start=int(start),
    )


def delete_snapshot(pve: Pve, vm: VmFacts, name: str) -> None:
    upid = pve.delete(f"{vm_path(vm)}/snapshot/{name}")
    if upid:
        pve.wait_task(vm.node, str(upid))
