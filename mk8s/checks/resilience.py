"""Phase 3 resilience verdicts: the node-loss drill and backup/restore (PRD phase 3 exit).

Pure: the drills in `mk8s.checks.drills` observe, these judge. A drill that had nothing to
measure (no replicas to move, a victim that hosted none) fails as such; it never passes
because nothing went wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, ip_address
from urllib.parse import urlsplit

from mk8s.checks.verdict import Verdict, failed, passed
from mk8s.inventory.model import IPRange

# With 3 voters one lost node must not take the API down; dqlite re-elects in seconds. A gap
# longer than this means clients saw an outage, not a blip.
MAX_API_GAP_S = 30.0
# Losing a node keeps the app up only if another Ready replica is left while it moves.
MIN_READY_BEFORE = 2


@dataclass(frozen=True)
class NodeLossDrill:
    """What stopping one node observed: the app before, API gap, rescheduling, node return."""

    node: str
    ready_before: int  # Ready app pods before the stop
    on_victim: int  # of those, how many ran on the stopped node
    longest_api_gap_s: float
    rescheduled: bool
    reschedule_detail: str
    node_returned: bool
    return_detail: str = ""
    api_probe: str = ""  # what the gap monitor asked the API (must need the datastore)


def availability(drill: NodeLossDrill, max_gap_s: float = MAX_API_GAP_S) -> Verdict:
    """With one node stopped the API stays up, the app's pods move, and the node comes back.

    Only a drill that stopped a node hosting one of >= 2 Ready replicas measured anything."""
    expected = (
        f">= {MIN_READY_BEFORE} Ready replicas, one on the victim; API gap <= {max_gap_s:g}; "
        "replicas Ready elsewhere; node Ready again"
    )
    if drill.ready_before < MIN_READY_BEFORE or drill.on_victim < 1:
        return failed(
            "nothing to measure",
            expected,
            f"stopping {drill.node}: nothing to measure ({drill.ready_before} Ready app "
            f"replicas before the drill, {drill.on_victim} on {drill.node}; need "
            f">= {MIN_READY_BEFORE} with one on the victim)",
            "s",
        )
    problems = []
    if drill.longest_api_gap_s > max_gap_s:
        problems.append(
            f"API unreachable for {drill.longest_api_gap_s:.1f}s ({drill.api_probe or 'probe'})"
        )
    if not drill.rescheduled:
        problems.append(f"workloads not rescheduled ({drill.reschedule_detail})")
    if not drill.node_returned:
        problems.append(f"node {drill.node} did not return ({drill.return_detail})")
    measured = f"{drill.longest_api_gap_s:.1f}"
    if problems:
        return failed(measured, expected, f"stopping {drill.node}: " + "; ".join(problems), "s")
    return passed(
        measured,
        expected,
        f"stopped {drill.node} ({drill.on_victim} of {drill.ready_before} replicas on it): "
        f"longest API gap {drill.longest_api_gap_s:.1f}s, {drill.reschedule_detail}, node back",
        "s",
    )


# --- backup and restore ------------------------------------------------------------------------

# Velero labels each Backup a Schedule creates with the Schedule's name
# (vmware-tanzu/velero pkg/apis/velero/v1/labels_annotations.go, ScheduleNameLabel).
SCHEDULE_LABEL = "velero.io/schedule-name"
# In-cluster object storage names: a MinIO behind a Service is lost with the cluster.
CLUSTER_DOMAINS = (".svc", ".svc.cluster.local", ".cluster.local")


@dataclass(frozen=True)
class BackupFact:
    """A velero.io/v1 Backup: which schedule made it, its phase, when it completed."""

    name: str
    schedule: str | None
    phase: str
    created: datetime
    completed: datetime | None


@dataclass(frozen=True)
class LocationFact:
    """A velero.io/v1 BackupStorageLocation as its status reports it."""

    name: str
    phase: str  # Available | Unavailable | "" (never validated)
    bucket: str
    s3_url: str
    message: str = ""


@dataclass(frozen=True)
class RestoreDrill:
    """What a backup -> delete namespace -> restore -> verify drill observed."""

    backup_phase: str
    restore_phase: str
    checksum_before: str | None
    checksum_after: str | None
    rto_seconds: float | None
    errors: tuple[str, ...] = field(default_factory=tuple)
    leftovers: tuple[str, ...] = field(default_factory=tuple)  # what it could not remove


def freshness_problems(
    backups: Sequence[BackupFact], schedules: Sequence[str], rpo_minutes: int, now: datetime
) -> list[str]:
    """The newest Completed scheduled backup is at most the RPO old, and no schedule's
    latest backup failed."""
    problems = []
    scheduled = [b for b in backups if b.schedule in schedules]
    done = [b for b in scheduled if b.phase == "Completed" and b.completed is not None]
    if not done:
        problems.append(f"no completed backup from the schedules {', '.join(schedules)}")
    else:
        newest = max(done, key=lambda b: b.completed or b.created)
        age_min = (now - (newest.completed or newest.created)) / timedelta(minutes=1)
        if age_min > rpo_minutes:
            problems.append(
                f"newest completed scheduled backup {newest.name} is {age_min:.0f} min old, "
                f"above the RPO of {rpo_minutes} min"
            )
    for name in schedules:
        mine = sorted((b for b in scheduled if b.schedule == name), key=lambda b: b.created)
        if mine and mine[-1].phase in ("Failed", "PartiallyFailed", "FailedValidation"):
            problems.append(f"schedule {name}: latest backup {mine[-1].name} {mine[-1].phase}")
    return problems


def location_problems(
    locations: Sequence[LocationFact],
    endpoint: str,
    bucket: str,
    tier: str,
    inside: Sequence[IPv4Network | IPRange | IPv4Address],
) -> list[str]:
    """The default location is the inventory's target, Available, and (stage/prod) not
    served from inside the cluster it backs up (`inside`: pod/service CIDRs, node IPs,
    the MetalLB range)."""
    loc = next((x for x in locations if x.name == "default"), None)
    if loc is None:
        return ["no BackupStorageLocation default"]
    problems = []
    if loc.phase != "Available":
        problems.append(f"BackupStorageLocation {loc.name} is {loc.phase or 'never validated'}"
                        + (f" ({loc.message})" if loc.message else ""))  # fmt: skip
    if loc.s3_url.rstrip("/") != endpoint.rstrip("/") or loc.bucket != bucket:
        problems.append(
            f"BackupStorageLocation {loc.name} points at {loc.s3_url} bucket {loc.bucket}, "
            f"not the inventory's {endpoint} bucket {bucket}"
        )
    if tier in ("stage", "prod") and _in_cluster(loc.s3_url, inside):
        problems.append(
            f"BackupStorageLocation {loc.name} at {loc.s3_url} is inside the cluster it backs "
            "up: losing the cluster loses the backups"
        )
    return problems


def _in_cluster(url: str, inside: Sequence[IPv4Network | IPRange | IPv4Address]) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host.endswith(CLUSTER_DOMAINS) or host in ("localhost", "kubernetes"):
        return True
    try:
        ip = ip_address(host)
    except ValueError:
        return False
    return any(ip == x if isinstance(x, IPv4Address) else ip in x for x in inside)


def backup_restore(
    drill: RestoreDrill, rto_minutes: int, freshness: Sequence[str], location: Sequence[str]
) -> Verdict:
    """Schedules current (RPO), the location sound, the drill restored equal data within the
    RTO and removed what it created."""
    expected = (
        f"location available off-cluster; newest scheduled backup within RPO; drill Completed, "
        f"checksum equal, RTO <= {rto_minutes * 60}, nothing left behind"
    )
    problems = [*location, *freshness, *drill.errors]
    if drill.backup_phase != "Completed":
        problems.append(f"drill backup phase {drill.backup_phase}")
    if drill.restore_phase != "Completed":
        problems.append(f"drill restore phase {drill.restore_phase}")
    if drill.checksum_before is None or drill.checksum_after != drill.checksum_before:
        problems.append(
            f"checksum before {(drill.checksum_before or 'none')[:12]}, "
            f"after {(drill.checksum_after or 'none')[:12]}"
        )
    rto = drill.rto_seconds
    if rto is None:
        problems.append("restore never verified, no RTO")
    elif rto > rto_minutes * 60:
        problems.append(f"RTO {rto:.0f}s above {rto_minutes} min")
    problems += [f"drill left behind {x}" for x in drill.leftovers]
    measured = f"{rto:.0f}" if rto is not None else "unknown"
    if problems:
        return failed(measured, expected, "backup/restore: " + "; ".join(problems), "s")
    return passed(
        measured, expected, f"restored with equal checksum in {rto:.0f}s; backups current", "s"
    )
