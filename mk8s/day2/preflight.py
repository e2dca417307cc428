"""The preflight gates of `upgrade` (whole cluster) and `drain` (one node), and the per-node
"safe to drain" verdict that `status` prints: pure functions over `ClusterFacts`.

Each gate returns a `Gate` (name, ok, detail, fix). A fact that was not read (`None`) fails the
gate that needs it: unknown never passes. The cluster rules they apply
(shared/reference/microk8s-behaviour.md, sources there):
- a 3-member dqlite cluster has 3 voters (canonical/go-dqlite@v2.0.0 app/roles.go) and keeps
  quorum with 2 of them; taking a node away when only 2 voters answer loses quorum;
- membership is not liveness: a powered-off voter stays listed as voter until the leader demotes
  it (canonical/microk8s#2400), so a voter counts only when its node answers (SSH and its API
  server on its own address); and a node only knows the members it lists itself, so every node's
  list is compared;
- a cordon without mk8s' annotation (`CORDON_ANNOTATION`) is someone else's: mk8s neither
  proceeds over it nor lifts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from mk8s.day2.certs import Level, judge
from mk8s.day2.facts import CORDON_ANNOTATION, ClusterFacts, NodeFacts, StorageRoom
from mk8s.day2.snapshots import can_snapshot
from mk8s.errors import UserError

VOTERS = 3
QUORUM = 2  # of 3 voters
MIN_CERT_DAYS = 30  # issue 14: "certificates valid > 30 days" before an upgrade or a drain
# mk8s' policy, not a Proxmox rule: ZFS and LVM-thin snapshots share the pool with the disks and
# grow with every block written after them, so a snapshot set needs headroom on its storage.
MIN_FREE_FRACTION = 0.10


@dataclass(frozen=True)
class Gate:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DrainVerdict:
    node: str
    safe: bool
    reason: str  # the first reason it is not safe, or why it is


@dataclass(frozen=True)
class Policy:
    rpo_minutes: int  # inventory slo.rpo_minutes
    min_cert_days: int = MIN_CERT_DAYS
    min_free_fraction: float = MIN_FREE_FRACTION


@dataclass(frozen=True)
class Scope:
    """The whole cluster (`upgrade`), or one node (`drain --node N`)."""

    node: str | None = None


CLUSTER = Scope()


def _gate(name: str, problems: Sequence[str], ok_detail: str, fix: str) -> Gate:
    if problems:
        return Gate(name, False, "; ".join(problems), fix)
    return Gate(name, True, ok_detail)


# --- nodes and voters ---------------------------------------------------------------------


def nodes_ready(facts: ClusterFacts) -> Gate:
    problems = []
    for n in facts.nodes:
        if n.ready is None:
            problems.append(f"{n.name}: Ready condition not read")
        elif not n.ready:
            problems.append(f"{n.name}: not Ready")
    return _gate(
        "nodes-ready",
        problems,
        f"all {len(facts.nodes)} nodes Ready",
        "bring the node back (`invoke status` says what it answers), then re-run",
    )


def reachable(node: NodeFacts) -> bool:
    """The node answers: over SSH, and its API server on its own address."""
    return node.ssh is True and node.api is True


def _node_of(facts: ClusterFacts, host: str) -> NodeFacts | None:
    return next((n for n in facts.nodes if host in (n.ip, n.name)), None)


def voter_hosts(node: NodeFacts) -> frozenset[str] | None:
    if node.members is None:
        return None
    return frozenset(m.host for m in node.members if m.role == "voter")


def agreed_voters(facts: ClusterFacts) -> tuple[frozenset[str] | None, list[str]]:
    """The voters every answering node lists, or None with the reasons they do not agree.

    A node that does not answer over SSH has no view to compare; if it is a voter, the
    liveness check names it (`reachable_voters`)."""
    problems: list[str] = []
    views: dict[str, frozenset[str]] = {}
    for n in facts.nodes:
        hosts = voter_hosts(n)
        if n.ssh is not True and hosts is None:
            continue
        if hosts is None or n.members == ():
            problems.append(f"{n.name}: datastore members not read")
        elif all(m.loopback and _node_of(facts, m.host) is None for m in n.members or ()):
            # a fresh install lists itself as 127.0.0.1:19001 (microk8s-behaviour.md); a
            # loopback address that is an inventory node's IP (the test rig) is a member
            problems.append(f"{n.name}: lists only 127.0.0.1, it is in no cluster")
        else:
            views[n.name] = hosts
    if len(set(views.values())) > 1:
        seen = ", ".join(f"{k} sees {', '.join(sorted(v)) or 'none'}" for k, v in views.items())
        problems.append(f"nodes disagree on the voters: {seen}")
    if not views and not problems:
        problems.append("no node answered with its datastore members")
    if problems:
        return None, problems
    return next(iter(views.values())), []


def reachable_voters(facts: ClusterFacts, voters: Iterable[str]) -> tuple[list[str], list[str]]:
    """(node names of voters that answer, one line per voter that does not)."""
    up, down = [], []
    for host in sorted(voters):
        node = _node_of(facts, host)
        if node is None:
            down.append(f"voter {host} is no node of the inventory")
        elif not reachable(node):
            why = []
            if node.ssh is not True:
                why.append(f"SSH {node.ssh_error or 'not answering'}")
            if node.api is not True:
                why.append("API not answering")
            down.append(f"voter down: {node.name} ({host}) is listed but {', '.join(why)}")
        else:
            up.append(node.name)
    return up, down


def voters(facts: ClusterFacts) -> Gate:
    agreed, problems = agreed_voters(facts)
    if agreed is not None:
        if len(agreed) != VOTERS:
            problems.append(
                f"{len(agreed)} voters ({', '.join(sorted(agreed))}), {VOTERS} needed for HA"
            )
        problems.extend(reachable_voters(facts, agreed)[1])
    return _gate(
        "voters",
        problems,
        f"{VOTERS} voters agreed by all {len(facts.nodes)} nodes, all reachable",
        "restore the missing voter (start its VM, `microk8s start`) or remove the dead member "
        "on a healthy voter (`microk8s remove-node IP --force`) and re-join a rebuilt node",
    )


# --- cordons, PDBs, VMs -------------------------------------------------------------------


def _foreign_cordon(n: NodeFacts) -> str | None:
    if n.unschedulable is None:
        return f"{n.name}: spec.unschedulable not read"
    if n.unschedulable and n.cordoned_by is None:
        return f"{n.name}: cordoned by someone else (no {CORDON_ANNOTATION} annotation)"
    return None


def cordons(facts: ClusterFacts) -> Gate:
    problems = [p for n in facts.nodes if (p := _foreign_cordon(n))]
    ours = [f"{n.name} ({n.cordoned_by})" for n in facts.nodes if n.unschedulable and n.cordoned_by]
    return _gate(
        "cordons",
        problems,
        "no foreign cordon" + (f"; mk8s' own: {', '.join(ours)}" if ours else ""),
        "ask who cordoned it and why; when it may go, `kubectl uncordon NODE`",
    )


def _blocker_lines(facts: ClusterFacts, names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        d = next((d for d in facts.disruption if d.node == name), None)
        if d is None:
            out.append(f"{name}: evictions not checked")
            continue
        for b in d.blockers:
            what = f"PDB {b.pdb}" if b.pdb else "eviction"
            out.append(f"{name}: {what} blocks {b.namespace}/{b.pod} ({b.message})")
    return out


def pdbs(facts: ClusterFacts, scope: Scope = CLUSTER) -> Gate:
    names = [scope.node] if scope.node else [n.name for n in facts.nodes]
    return _gate(
        "pdbs",
        _blocker_lines(facts, names),
        f"every pod on {', '.join(names)} may be evicted",
        "scale the workload up (or fix its unready pods) until its PDB allows a disruption; "
        "mk8s never forces an eviction",
    )


def vm_locks(facts: ClusterFacts) -> Gate:
    problems = []
    for n in facts.nodes:
        if n.vm is None:
            problems.append(f"{n.name}: VM state not read from Proxmox")
        elif n.vm.lock:
            problems.append(f"{n.name}: VM locked ({n.vm.lock})")
    return _gate(
        "vm-locks",
        problems,
        "no VM locked",
        "wait for the Proxmox task holding the lock (backup, migrate, snapshot) to end; "
        "a stale lock: `qm unlock VMID` on its host",
    )


# --- snapshots, backup, certificates ------------------------------------------------------


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def _room_line(room: StorageRoom, fraction: float) -> tuple[bool, str]:
    where = f"{room.storage} on {room.pve_node}"
    if not room.total_bytes:
        return False, f"{where}: {_gib(room.avail_bytes)} free, total size not read"
    share = room.avail_bytes / room.total_bytes
    line = f"{where}: {_gib(room.avail_bytes)} free of {_gib(room.total_bytes)} ({share:.0%})"
    if share < fraction:
        return False, f"{line}, under {fraction:.0%}"
    return True, line


def snapshot_room(facts: ClusterFacts, fraction: float) -> tuple[list[str], list[str]]:
    """(problems, what was read): free space of every storage holding a VM disk."""
    problems: list[str] = []
    read: list[str] = []
    wanted = sorted(
        {
            (n.vm.pve_node, d.volume.split(":", 1)[0])
            for n in facts.nodes
            if n.vm and n.snapshots
            for d in n.snapshots.disks
        }
    )
    for host, storage in wanted:
        room = next((r for r in facts.storage if (r.pve_node, r.storage) == (host, storage)), None)
        if room is None:
            problems.append(f"{storage} on {host}: free space not read")
            continue
        ok, line = _room_line(room, fraction)
        (read if ok else problems).append(line)
    return problems, read


def snapshots(facts: ClusterFacts, policy: Policy) -> Gate:
    problems = [f"{n.name}: snapshot facts not read" for n in facts.nodes if n.snapshots is None]
    vms = [n.snapshots for n in facts.nodes if n.snapshots is not None]
    problems.extend(can_snapshot(vms).reasons)
    short, read = snapshot_room(facts, policy.min_free_fraction)
    problems.extend(short)
    return _gate(
        "snapshots",
        problems,
        "every VM can be snapshotted; " + ("; ".join(read) or "no disks"),
        "move the disks to ZFS, LVM-thin or Ceph (or qcow2), free space on the storage, "
        "or wait for the VM's lock to clear",
    )


def backup(facts: ClusterFacts, policy: Policy) -> Gate:
    rpo = timedelta(minutes=policy.rpo_minutes)
    if facts.newest_backup is None:
        problems = ["no completed Velero backup found"]
        age = ""
    else:
        age_m = int((facts.taken_at - facts.newest_backup).total_seconds() // 60)
        age = f"newest backup {age_m} min old (RPO {policy.rpo_minutes} min)"
        problems = [age] if facts.taken_at - facts.newest_backup > rpo else []
    return _gate(
        "backup",
        problems,
        age,
        "run a backup now (`velero backup create --from-schedule SCHEDULE`) and check why the "
        "schedule fell behind",
    )


def certificates(facts: ClusterFacts, policy: Policy, scope: Scope = CLUSTER) -> Gate:
    days = policy.min_cert_days
    problems = []
    for n in facts.nodes:
        if scope.node and n.name != scope.node:
            continue
        if not n.certs:
            problems.append(f"{n.name}: certificates not read")
            continue
        for v in judge(n.certs, facts.taken_at, warn_days=days, fail_days=days):
            if v.level is Level.FAIL:
                problems.append(v.message.replace("renew now", f"need > {days}"))
    return _gate(
        "certs",
        problems,
        f"every certificate valid > {days} days",
        "renew first: `invoke certs --env ENV --refresh`",
    )


# --- the per-node verdict -----------------------------------------------------------------


def _voter_reason(facts: ClusterFacts, node: NodeFacts) -> str | None:
    agreed, problems = agreed_voters(facts)
    if agreed is None:
        return problems[0]
    up, _ = reachable_voters(facts, agreed)
    if node.name in up and len(up) - 1 < QUORUM:
        return f"it is one of {len(up)} reachable voters"
    if len(up) < QUORUM:
        return f"only {len(up)} reachable voters: the datastore has no quorum"
    return None


def _drain_reasons(facts: ClusterFacts, node: NodeFacts) -> list[str]:
    reasons = []
    if node.ssh is not True:
        reasons.append(f"it does not answer over SSH ({node.ssh_error or 'not read'})")
    for other in facts.nodes:
        if other.name != node.name and other.ready is not True:
            reasons.append(f"{other.name} is not Ready: one node down at a time")
    if (foreign := _foreign_cordon(node)) is not None:
        reasons.append(foreign.split(": ", 1)[1])
    if node.vm is None or node.vm.lock:
        reasons.append(f"VM locked ({node.vm.lock})" if node.vm else "VM state not read")
    reasons.extend(b.split(": ", 1)[1] for b in _blocker_lines(facts, [node.name]))
    if (voter := _voter_reason(facts, node)) is not None:
        reasons.append(voter)
    return reasons


def drain_verdict(facts: ClusterFacts, name: str) -> DrainVerdict:
    node = _known(facts, name)
    reasons = _drain_reasons(facts, node)
    if reasons:
        return DrainVerdict(name, False, "; ".join(reasons))
    return DrainVerdict(name, True, "others Ready, quorum holds without it, every pod evictable")


def drain_verdicts(facts: ClusterFacts) -> tuple[DrainVerdict, ...]:
    return tuple(drain_verdict(facts, n.name) for n in facts.nodes)


def _known(facts: ClusterFacts, name: str) -> NodeFacts:
    found = next((n for n in facts.nodes if n.name == name), None)
    if found is None:
        names = ", ".join(n.name for n in facts.nodes)
        raise UserError(f"--node {name}: not a node of {facts.env} ({names})")
    return found


def safe_to_drain(facts: ClusterFacts, name: str) -> Gate:
    v = drain_verdict(facts, name)
    return Gate(
        f"safe-to-drain {name}",
        v.safe,
        v.reason,
        "" if v.safe else "fix what the reason names (other gates give the commands)",
    )


# --- the entry point ----------------------------------------------------------------------


def gates(facts: ClusterFacts, scope: Scope, policy: Policy) -> tuple[Gate, ...]:
    """Every gate for `upgrade` (CLUSTER) or for `drain --node N` (Scope(N)), in print order.

    A drain takes no snapshot and loses no data, so it skips the snapshot and backup gates."""
    if scope.node is not None:
        _known(facts, scope.node)
        return (
            nodes_ready(facts),
            voters(facts),
            cordons(facts),
            pdbs(facts, scope),
            vm_locks(facts),
            certificates(facts, policy, scope),
            safe_to_drain(facts, scope.node),
        )
    return (
        nodes_ready(facts),
        voters(facts),
        cordons(facts),
        pdbs(facts),
        snapshots(facts, policy),
        vm_locks(facts),
        backup(facts, policy),
        certificates(facts, policy),
    )


def failed(results: Iterable[Gate]) -> tuple[Gate, ...]:
    return tuple(g for g in results if not g.ok)
