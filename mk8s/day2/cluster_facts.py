"""Fill `ClusterFacts` read-only, through the edges: Proxmox, SSH on every node, the Kubernetes
API (through the kubeconfig and through each node's own address), the evidence directory.

Nothing here writes: Proxmox gets GETs, nodes get `snap list`, `microk8s status`, `cat` and
`grep`, the API server gets list/get/version (tests/day2/test_status_rig.py asserts the
request and command logs). Anything that cannot be read becomes `None` and one `problems`
line, never an exception: a status that crashes on the broken cluster it should describe is
no status. Per node, `microk8s status` is read on that node, so the members are as *that node*
lists them (membership is not liveness: shared/reference/microk8s-behaviour.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mk8s.day2 import cluster_kube
from mk8s.day2.certs_flow import KNOWN_HOSTS, read_node
from mk8s.day2.facts import ClusterFacts, NodeFacts, SnapFacts, StorageRoom, VmState
from mk8s.day2.snapshot_facts import read_vm
from mk8s.day2.snapshots import VmSnapFacts
from mk8s.edges import microk8s
from mk8s.edges.kube import default_kubeconfig
from mk8s.edges.proxmox import Pve, connect, read_vm_facts
from mk8s.edges.ssh import (
    HostKeyRefusedError,
    Journal,
    Login,
    NodeSession,
    NodeUnreachableError,
    Target,
    targets_for,
)
from mk8s.errors import UserError
from mk8s.inventory.model import Environment, NodeSpec
from mk8s.promotion.evidence import env_reports, latest_run

API_PORT = 16443
SSH_CONNECT_TIMEOUT_S = 5  # a node that does not answer in 5 s is reported, not waited for


def _node_url(node: NodeSpec) -> str:
    return f"https://{node.ip}:{API_PORT}"


@dataclass
class Sources:
    """Where each fact comes from; tests point them at the rig (fakepve, sshd, envtest)."""

    pve: Callable[[], Pve] | None = None  # None: connect(env) with the environment's token
    targets: Mapping[str, Target] | None = None  # None: the inventory's addresses
    session: Callable[[Target, Login, Path, Journal], NodeSession] = NodeSession
    kubeconfig: Path | None = None  # None: $KUBECONFIG, else build/ENV/kubeconfig
    node_url: Callable[[NodeSpec], str] = _node_url
    root: Path = Path()


@dataclass
class _Node:
    """What was read about one node so far (mutable while reading)."""

    vm: VmState | None = None
    snapshots: VmSnapFacts | None = None
    ssh: dict[str, Any] = field(default_factory=dict)


# --- Proxmox -----------------------------------------------------------------------------


def _read_proxmox(
    env: Environment, pve: Pve, got: dict[str, _Node], problems: list[str]
) -> tuple[StorageRoom, ...]:
    vms = read_vm_facts(pve, env)
    for spec in env.nodes:
        vm = vms.get(spec.name)
        if vm is None:
            problems.append(f"{spec.name}: VM {spec.vmid} not found in Proxmox")
            continue
        got[spec.name].vm = VmState(vm.status, vm.node, vm.lock)
        try:
            got[spec.name].snapshots = read_vm(pve, vm, spec.name)
        except UserError as exc:
            problems.append(f"{spec.name}: snapshot facts not read ({exc.lines[0]})")
    rooms = []
    for host in sorted({n.vm.pve_node for n in got.values() if n.vm}):
        try:
            listed = pve.get(f"nodes/{host}/storage")
        except UserError as exc:
            problems.append(f"Proxmox {host}: storages not read ({exc.lines[0]})")
            continue
        for s in listed or []:
            total = int(s.get("total") or 0)
            rooms.append(
                StorageRoom(host, str(s["storage"]), int(s.get("avail") or 0), total or None)
            )
    return tuple(rooms)


# --- SSH ---------------------------------------------------------------------------------


def _snap(
    session: NodeSession, problems: list[str], store: dict[str, str | None]
) -> SnapFacts | None:
    read = microk8s.read_snap(session)
    if read.snap is None:
        what = "not installed" if read.installed is False else read.detail or "unreadable"
        problems.append(f"{session.name}: `snap list microk8s`: {what}")
        return None
    snap = read.snap
    # `snap info` asks the store from the node: once per channel, not once per node; None
    # (an offline store) only leaves the revision check out
    if snap.channel not in store:
        store[snap.channel] = microk8s.latest_revision(session, snap.channel)
    latest = store[snap.channel]
    return SnapFacts(snap.channel, snap.revision, snap.version, snap.held, latest)


def _members(session: NodeSession, problems: list[str]) -> tuple[microk8s.Member, ...] | None:
    status = microk8s.status(session, timeout=60)
    if not status.running or not status.members_known:
        why = status.detail or "no members listed (an empty list is also a failed dqlite query)"
        problems.append(f"{session.name}: microk8s status: {status.state}: {why}")
        return None
    return status.members


def _read_ssh(
    session: NodeSession, problems: list[str], store: dict[str, str | None]
) -> dict[str, Any]:
    """The node's facts over SSH; a node that does not answer is `ssh: False` and its
    error, which status words as a problem (not here too, or it would be said twice)."""
    try:
        return {
            "ssh": True,
            "snap": _snap(session, problems, store),
            "members": _members(session, problems),
            "reboot_required": microk8s.reboot_required(session),
            "certs": tuple(read_node(session)),
        }
    except (NodeUnreachableError, HostKeyRefusedError) as exc:
        return {"ssh": False, "ssh_error": exc.lines[0] if exc.lines else str(exc)}
    finally:
        session.close()


# --- evidence ----------------------------------------------------------------------------


def _evidence(env: Environment, root: Path) -> tuple[datetime | None, str | None]:
    """The newest trusted conformance run's time, or why there is none (no run, unsigned,
    tampered): a fact about promotion, not a fault of the cluster."""
    base = env_reports(env.name, root, env.promotion.evidence_dir)
    field_name = f"{env.name}'s promotion.signers"
    latest = latest_run(env.name, "conformance", base, env.promotion.signers, field_name)
    if latest.run_id is None:
        return None, f"no conformance run of {env.name} in {base}"
    if latest.problem or latest.summary is None:
        return None, f"latest run {latest.run_id} {latest.problem or 'is unreadable'}"
    return latest.summary.created_at, None


# --- all of it ---------------------------------------------------------------------------


def _kube(
    env: Environment, build: Path, src: Sources, problems: list[str]
) -> tuple[cluster_kube.KubeRead, dict[str, bool], str | None]:
    from kubernetes import client, config

    path = src.kubeconfig or default_kubeconfig(build)
    base = client.Configuration()
    try:
        config.load_kube_config(config_file=str(path), client_configuration=base)  # type: ignore[no-untyped-call]
    except Exception as exc:  # missing file, bad YAML, no current context
        problems.append(f"kubeconfig {path}: not usable ({type(exc).__name__})")
        return cluster_kube.KubeRead(), {}, None
    with client.ApiClient(base) as api:
        kube = cluster_kube.read(api, [n.name for n in env.nodes], str(base.host))
    api_up = {n.name: cluster_kube.api_answers(base, src.node_url(n)) for n in env.nodes}
    endpoint = next((n.name for n in env.nodes if src.node_url(n) == base.host), None)
    return kube, api_up, endpoint


def read(env: Environment, build: Path, now: datetime, src: Sources | None = None) -> ClusterFacts:
    src = src or Sources()
    problems: list[str] = []
    got = {n.name: _Node() for n in env.nodes}
    storage: tuple[StorageRoom, ...] = ()
    try:
        pve = src.pve() if src.pve else connect(env, src.root)
        storage = _read_proxmox(env, pve, got, problems)
    except UserError as exc:  # no token, unreachable, refused: the edge words it
        problems.append(f"Proxmox: {exc.lines[0] if exc.lines else exc}")
    known_hosts = build / KNOWN_HOSTS
    login = Login(env.ssh.user, env.ssh.private_key_file, SSH_CONNECT_TIMEOUT_S)
    targets = src.targets or targets_for(env)
    store: dict[str, str | None] = {}  # channel -> its newest revision in the store
    for spec in env.nodes:
        if not known_hosts.is_file():
            got[spec.name].ssh = {"ssh": None, "ssh_error": f"no pinned host keys in {known_hosts}"}
            continue
        session = src.session(targets[spec.name], login, known_hosts, Journal(None))
        got[spec.name].ssh = _read_ssh(session, problems, store)
    if not known_hosts.is_file():
        problems.append(f"{known_hosts}: no pinned host keys (run `invoke bootstrap` first)")
    kube, api_up, endpoint = _kube(env, build, src, problems)
    problems.extend(kube.problems)
    if kube.nodes:
        problems.extend(
            f"{n.name}: no Node object in the API" for n in env.nodes if n.name not in kube.nodes
        )
    nodes = tuple(_node_facts(spec, got[spec.name], kube, api_up) for spec in env.nodes)
    evidence_at, evidence_problem = _evidence(env, src.root)
    return ClusterFacts(
        env=env.name,
        taken_at=now,
        nodes=nodes,
        disruption=kube.disruption,
        endpoint_node=endpoint,
        newest_backup=kube.newest_backup,
        evidence_at=evidence_at,
        problems=tuple(problems),
        storage=storage,
        evidence_problem=evidence_problem,
    )


def _node_facts(
    spec: NodeSpec, got: _Node, kube: cluster_kube.KubeRead, api_up: Mapping[str, bool]
) -> NodeFacts:
    k = kube.nodes.get(spec.name)
    return NodeFacts(
        name=spec.name,
        ip=str(spec.ip),
        vm=got.vm,
        snapshots=got.snapshots,
        ready=k.ready if k else None,
        kubelet_version=k.kubelet_version if k else None,
        unschedulable=k.unschedulable if k else None,
        cordoned_by=k.cordoned_by if k else None,
        api=api_up.get(spec.name),
        cni_ready=kube.cni_ready.get(spec.name),
        **got.ssh,
    )
