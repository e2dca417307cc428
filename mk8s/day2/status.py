"""`invoke status`: the verdict on one read of the cluster (pure), and how it is shown.

Exit codes (what `Health` means):
- 0 healthy: every fact read and nothing wrong;
- 1 degraded: one line per problem (a fact that could not be read is a problem too);
- 3 unreachable: no node answers at all, neither over SSH nor with its API server on its own
  address, so nothing about the cluster itself can be told (Proxmox may still answer, and
  what it says is shown).
Notes (certificates under 60 days, reboot-required, a node behind its channel's newest
revision, evidence age) are printed but do not degrade.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from rich.table import Table

from mk8s.day2 import preflight
from mk8s.day2.certs import Level, judge
from mk8s.day2.facts import ClusterFacts, NodeFacts
from mk8s.day2.preflight import DrainVerdict, Policy
from mk8s.day2.snapshots import can_rollback
from mk8s.errors import OperationFailedError


class Health(IntEnum):
    HEALTHY = 0
    DEGRADED = 1
    UNREACHABLE = 3


@dataclass(frozen=True)
class Report:
    env: str
    health: Health
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    drain: tuple[DrainVerdict, ...]
    facts: ClusterFacts


def unreachable(facts: ClusterFacts) -> bool:
    return all(n.ssh is not True and n.api is not True for n in facts.nodes)


def _node_problems(n: NodeFacts) -> list[str]:
    out = []
    if n.vm is not None and n.vm.status != "running":
        out.append(f"{n.name}: VM is {n.vm.status} on {n.vm.pve_node}")
    if n.ssh is False:
        out.append(f"{n.name}: SSH not answering ({n.ssh_error or 'no reason given'})")
    if n.snap is not None and not n.snap.held:
        out.append(f"{n.name}: microk8s snap not held: snapd may refresh it at any time")
    if n.api is False:
        out.append(f"{n.name}: the API server does not answer on {n.ip}")
    if n.cni_ready is False:
        out.append(f"{n.name}: the CNI pod (calico-node) is not Ready")
    return out


def _gate_problems(facts: ClusterFacts, policy: Policy) -> list[str]:
    gates = (
        preflight.nodes_ready(facts),
        preflight.voters(facts),
        preflight.cordons(facts),
        preflight.vm_locks(facts),
        preflight.backup(facts, policy),
    )
    return [line for g in gates if not g.ok for line in g.detail.split("; ")]


def _cert_lines(facts: ClusterFacts) -> tuple[list[str], list[str]]:
    """Status alerts on the checklist's policy (fail < 15 days, warn < 60: mk8s.day2.certs)."""
    problems, notes = [], []
    for n in facts.nodes:
        if n.ssh is True and not n.certs:
            problems.append(f"{n.name}: certificates not read")
        for v in judge(n.certs, facts.taken_at):
            if v.level is Level.FAIL:
                problems.append(v.message)
            elif v.level is Level.WARN:
                notes.append(v.message)
    return problems, notes


def _notes(facts: ClusterFacts) -> list[str]:
    out = []
    for n in facts.nodes:
        if n.reboot_required:
            out.append(f"{n.name}: reboot required (`invoke maintenance` reboots it in the window)")
        if n.snap and n.snap.latest_revision and n.snap.revision != n.snap.latest_revision:
            out.append(
                f"{n.name}: revision {n.snap.revision}, {n.snap.channel} offers "
                f"{n.snap.latest_revision}"
            )
        if n.unschedulable and n.cordoned_by:
            out.append(f"{n.name}: cordoned by mk8s ({n.cordoned_by}): a run is on or was cut")
    versions = {n.kubelet_version for n in facts.nodes if n.kubelet_version}
    if len(versions) > 1:
        out.append(f"kubelet versions differ: {', '.join(sorted(versions))}")
    if facts.evidence_at is None:
        out.append(f"evidence: {facts.evidence_problem or 'none'}")
    else:
        age = facts.taken_at - facts.evidence_at
        out.append(f"evidence: newest conformance run {age.days} d {age.seconds // 3600} h old")
    return out


def judge_status(facts: ClusterFacts, policy: Policy) -> Report:
    drain = preflight.drain_verdicts(facts)
    if unreachable(facts):
        names = ", ".join(n.name for n in facts.nodes)
        lines = (f"no node answers, neither over SSH nor with its API server: {names}",)
        return Report(facts.env, Health.UNREACHABLE, lines + facts.problems, (), drain, facts)
    cert_problems, cert_notes = _cert_lines(facts)
    problems = [
        *facts.problems,
        *(p for n in facts.nodes for p in _node_problems(n)),
        *_gate_problems(facts, policy),
        *cert_problems,
        *(f"{v.node}: not safe to drain: {v.reason}" for v in drain if not v.safe),
    ]
    unique = tuple(dict.fromkeys(problems))
    health = Health.DEGRADED if unique else Health.HEALTHY
    return Report(facts.env, health, unique, (*cert_notes, *_notes(facts)), drain, facts)


# --- rendering ---------------------------------------------------------------------------


def _yes(value: bool | None, yes: str = "yes", no: str = "NO") -> str:
    return "?" if value is None else yes if value else no


def _members(facts: ClusterFacts, n: NodeFacts) -> str:
    if n.members is None:
        return "?"
    voters = preflight.voter_hosts(n) or frozenset()
    views = {preflight.voter_hosts(o) for o in facts.nodes if o.members is not None}
    agree = "agrees" if len(views) == 1 else "DIFFERS"
    return f"{len(voters)} voters/{len(n.members)} ({agree})"


def _certs(facts: ClusterFacts, n: NodeFacts) -> str:
    """The certificate with the fewest days left (every one is in --json)."""
    dated = [
        (v.days_left, v.name) for v in judge(n.certs, facts.taken_at) if v.days_left is not None
    ]
    if not dated:
        return "?"
    days, name = min(dated)
    return f"{days} d ({name})"


def _snapshots(n: NodeFacts) -> str:
    if n.snapshots is None:
        return "?"
    marks = [
        f"{s}{'' if can_rollback([n.snapshots], s).ok else ' (no rollback)'}"
        for s in n.snapshots.snapshots
    ]
    return ", ".join(marks) or "none"


def _row(facts: ClusterFacts, n: NodeFacts, verdict: DrainVerdict) -> list[str]:
    vm = (
        f"{n.vm.status}@{n.vm.pve_node}" + (f" LOCK {n.vm.lock}" if n.vm.lock else "")
        if n.vm
        else "?"
    )
    snap = f"{n.snap.channel} r{n.snap.revision}{' held' if n.snap.held else ''}" if n.snap else "?"
    ready = f"{_yes(n.ready)} {n.kubelet_version or ''}".strip()
    return [
        n.name,
        vm,
        _yes(n.ssh),
        snap,
        ready,
        _members(facts, n),
        _yes(n.api),
        _yes(n.cni_ready),
        _certs(facts, n),
        _yes(n.reboot_required, "YES", "no"),
        _snapshots(n),
        "safe" if verdict.safe else f"NO: {verdict.reason}",
    ]


COLUMNS = ("node", "VM", "SSH", "snap", "Ready", "datastore", "API", "CNI", "certs", "reboot",
           "snapshots", "drain")  # fmt: skip


def table(report: Report) -> Table:
    t = Table(title=f"{report.env}: {report.health.name.lower()}", title_justify="left")
    for col in COLUMNS:
        t.add_column(col, overflow="fold")
    verdicts = {v.node: v for v in report.drain}
    for n in report.facts.nodes:
        t.add_row(*_row(report.facts, n, verdicts[n.name]))
    return t


def lines(report: Report, policy: Policy) -> list[str]:
    f = report.facts
    backup = preflight.backup(f, policy)
    out = [f"backup: {backup.detail or 'none'}"]
    out += [f"note: {n}" for n in report.notes]
    out += [f"problem: {p}" for p in report.problems]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(report: Report) -> str:
    data = {
        "env": report.env,
        "health": report.health.name.lower(),
        "exit_code": int(report.health),
        "problems": list(report.problems),
        "notes": list(report.notes),
        "drain": [asdict(v) for v in report.drain],
        "facts": asdict(report.facts),
    }
    return json.dumps(_plain(data), indent=2, sort_keys=True)


class ClusterUnreachableError(OperationFailedError):
    """`invoke status` found no node answering: exit 3."""

    exit_code = int(Health.UNREACHABLE)


def outcome(report: Report) -> OperationFailedError | None:
    """The error `invoke status` exits with (its lines are the problems), or None: healthy."""
    if report.health is Health.UNREACHABLE:
        return ClusterUnreachableError(*report.problems)
    if report.health is Health.DEGRADED:
        n = len(report.problems)
        return OperationFailedError(*report.problems, f"{report.env}: degraded ({n} problem(s))")
    return None
