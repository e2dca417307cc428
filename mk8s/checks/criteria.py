"""The registry of exit criteria: the one table the suite, the gate, the report and the docs read.

Each criterion has a stable id (`phase1.loadbalancer`, `loadtest.p95`), the PRD phase whose exit
it belongs to, what it proves in the PRD's words (PRD "Implementation Phases" and the Checklist
Template's exit and success lines), the environment tiers that must prove it before the next
environment is built from the same inputs, and - where the PRD lets an environment go without
it - the inventory field that makes it not applicable.

`run` says which run measures it: the conformance suite (`nox -s conformance`) or the load test
(`invoke loadtest`). `measures` says what it looks at: the cluster, or (`checkout`) only files
of the operator's checkout, such as the runbooks; a checkout check is recorded and required like
the others, but never counts as proof of the cluster.

Pure data and pure functions; `python -m mk8s.checks.criteria --write docs/conformance.md`
refreshes the table in the runbook (tests/checks/test_criteria.py fails when it drifts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mk8s.inventory.model import Environment

Phase = Literal["phase1", "phase2", "phase3", "phase4"]
Run = Literal["conformance", "loadtest"]
Measures = Literal["cluster", "checkout"]
TierName = Literal["dev", "stage", "prod", "lab"]

EVERY_TIER: frozenset[TierName] = frozenset({"dev", "stage", "prod", "lab"})
PROD_ONLY: frozenset[TierName] = frozenset({"prod"})
TIER_ORDER: tuple[TierName, ...] = ("dev", "stage", "prod", "lab")


@dataclass(frozen=True)
class NotApplicable:
    """When the inventory lets an environment go without a criterion, and which field says so."""

    field: str  # dotted inventory path, as docs/inventory.md names it
    when: Callable[[Environment], bool]
    reason: str  # why the PRD allows it; the evidence records it beside the field


@dataclass(frozen=True)
class Criterion:
    id: str
    phase: Phase
    proves: str
    tiers: frozenset[TierName] = EVERY_TIER
    run: Run = "conformance"
    measures: Measures = "cluster"
    not_applicable: NotApplicable | None = None

    def required_in(self, env: Environment) -> bool:
        return env.effective_tier in self.tiers

    def na_reason(self, env: Environment) -> str | None:
        """The recorded reason this criterion does not apply to `env`, or None when it does."""
        na = self.not_applicable
        if na is None or not na.when(env):
            return None
        return f"not applicable: {na.field} - {na.reason}"


def _no_backup(env: Environment) -> bool:
    return env.backup is None


def _no_ha(env: Environment) -> bool:
    return not env.ha


def _no_rate_limit(env: Environment) -> bool:
    return env.ingress.rate_limit is None


def _no_monitoring(env: Environment) -> bool:
    return not env.monitoring.enabled


NO_BACKUP = NotApplicable("backup", _no_backup, "unset; PRD: dev may omit backup")
NO_HA = NotApplicable("ha", _no_ha, "false; a single node has no voters or peers to fail over to")
NO_RATE_LIMIT = NotApplicable(
    "ingress.rate_limit", _no_rate_limit, "null; PRD checklist: rate limiting off in dev"
)
NO_MONITORING = NotApplicable(
    "monitoring.enabled", _no_monitoring, "false; the environment runs no monitoring stack"
)


def _c(
    id: str,
    proves: str,
    *,
    tiers: frozenset[TierName] = EVERY_TIER,
    run: Run = "conformance",
    measures: Measures = "cluster",
    na: NotApplicable | None = None,
) -> Criterion:
    phase = "phase3" if run == "loadtest" else id.split(".", 1)[0]
    return Criterion(id, phase, proves, tiers, run, measures, na)  # type: ignore[arg-type]


# The ids are the ones the suite and the evidence have always used; never rename one (old
# evidence and the report's history refer to them), add a new id instead.
CRITERIA: tuple[Criterion, ...] = (
    # Phase 1 (Dev): "exit when LB, ingress, TLS staging, sample app OK".
    _c("phase1.nodes_ready", "Provision 3 VMs ... form cluster: every inventory node is Ready"),
    _c("phase1.ha_voters", "multi-node HA configuration: three reachable dqlite voters", na=NO_HA),
    _c("phase1.addons", "Install MicroK8s: the inventory's add-ons enabled and healthy"),
    _c("phase1.loadbalancer", "LB OK: Configure MetalLB with IP pool, the LB IP answers the app"),
    _c("phase1.ingress", "ingress OK: Deploy NGINX Ingress Controller, the app host routes"),
    _c("phase1.tls", "TLS staging OK: Setup Cert-Manager with staging Let's Encrypt"),
    _c("phase1.sample_app", "sample app OK: Validate basic workload deployment"),
    _c("phase1.pod_start", "Performance: pod cold start <20s"),
    _c("phase1.snap_channel", "Install MicroK8s: every node on the inventory's snap channel"),
    _c("phase1.services", "Install MicroK8s: the MicroK8s services active on every node"),
    _c("phase1.ports", "Firewall allow-list: the cluster ports listening, 10255 closed"),
    _c("phase1.swap_off", "Templates (hardening): swap off on every node"),
    _c("phase1.time_sync", "Templates: NTP, every node's clock synchronised"),
    # Phase 2 (Core): "exit when SCs defaulted, RBAC applied, dashboards live, runbooks drafted".
    _c("phase2.storage_default_class", "SCs defaulted: the inventory's class is the one default"),
    _c("phase2.pvc_persistence", "Configure persistent storage solution: data outlives its pod"),
    _c("phase2.rbac_matrix", "RBAC applied: the PRD's RBAC matrix, every role in every namespace"),
    _c("phase2.monitoring", "dashboards live: Setup monitoring stack", na=NO_MONITORING),
    _c(
        "phase2.runbooks",
        "runbooks drafted: Document operational procedures",
        measures="checkout",
    ),
    _c("phase2.network_policy", "Network policies: default deny-all; explicit allow-lists"),
    # Phase 3 (Staging): "exit when load test passes SLOs; backup/restore validated".
    _c("phase3.backup_restore", "backup/restore validated: within RTO 1h, RPO 15m", na=NO_BACKUP),
    _c("phase3.availability", "Availability: the app and API survive one node's loss", na=NO_HA),
    _c("phase3.firewall", "Security hardening: firewall allow-list, deny NodePort from WAN"),
    _c("phase3.unattended_upgrades", "Host patching: unattended security updates"),
    _c("phase3.ssh_password_off", "Security hardening: SSH keys only"),
    _c("loadtest.p95", "load test passes SLOs: p95 <200 ms", run="loadtest"),
    _c("loadtest.error_rate", "load test passes SLOs: the error-rate objective", run="loadtest"),
    _c("loadtest.throughput", "Performance: target RPS per service reached", run="loadtest"),
    _c(
        "loadtest.rate_limit_below",
        "Ingress rate limiting: traffic under the per-IP limit is not limited",
        run="loadtest",
        na=NO_RATE_LIMIT,
    ),
    _c(
        "loadtest.rate_limit_above",
        "Ingress rate limiting: traffic over the per-IP limit gets 429",
        run="loadtest",
        na=NO_RATE_LIMIT,
    ),
    # Phase 4 (Prod): "exit when on-call green, dashboards healthy, docs handed over";
    # "Production certificates and DNS", "Monitoring and alerting setup". Provable only in prod.
    _c("phase4.production_certificate", "Production certificates: from LE prod", tiers=PROD_ONLY),
    _c(
        "phase4.served_certificate",
        "Production certificates: what browsers are served verifies",
        tiers=PROD_ONLY,
    ),
    _c("phase4.dns", "Production ... DNS: the app host resolves to the cluster", tiers=PROD_ONLY),
    _c(
        "phase4.alerting",
        "Monitoring and alerting setup: on-call green",
        tiers=PROD_ONLY,
        na=NO_MONITORING,
    ),
)

_BY_ID = {c.id: c for c in CRITERIA}


class UnknownCriterionError(KeyError):
    pass


def by_id(criterion_id: str) -> Criterion:
    try:
        return _BY_ID[criterion_id]
    except KeyError:
        raise UnknownCriterionError(
            f"{criterion_id!r} is not an exit criterion of mk8s.checks.criteria"
        ) from None


def of_run(run: Run) -> tuple[Criterion, ...]:
    return tuple(c for c in CRITERIA if c.run == run)


def required(env: Environment, run: Run) -> tuple[Criterion, ...]:
    """What `env`'s tier must prove in a run of this kind (N/A ones included: they must be
    recorded as skipped with the registry's reason)."""
    return tuple(c for c in of_run(run) if c.required_in(env))


# --- docs/conformance.md ----------------------------------------------------------------------

BEGIN = "<!-- criteria:begin (generated by `python -m mk8s.checks.criteria`; do not edit) -->"
END = "<!-- criteria:end -->"


def _tiers(tiers: Iterable[TierName]) -> str:
    chosen = set(tiers)
    return ", ".join(t for t in TIER_ORDER if t in chosen)


def markdown_table(criteria: Sequence[Criterion] = CRITERIA) -> str:
    rows = [
        "| id | phase | run | proves (PRD) | required in | not applicable when |",
        "|---|---|---|---|---|---|",
    ]
    for c in criteria:
        run = c.run + (" (checkout only, not the cluster)" if c.measures == "checkout" else "")
        na = f"`{c.not_applicable.field}` {c.not_applicable.reason}" if c.not_applicable else "-"
        rows.append(f"| `{c.id}` | {c.phase} | {run} | {c.proves} | {_tiers(c.tiers)} | {na} |")
    return "\n".join([BEGIN, *rows, END])


def with_table(doc: str) -> str:
    """`doc` with its generated block replaced by the current table."""
    head, sep, rest = doc.partition(BEGIN)
    if not sep or END not in rest:
        raise ValueError(f"the document has no {BEGIN!r} ... {END!r} block")
    tail = rest.split(END, 1)[1]
    return head + markdown_table() + tail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mk8s.checks.criteria")
    parser.add_argument("--write", type=Path, help="refresh the table in this Markdown file")
    args = parser.parse_args(argv)
    if args.write is None:
        print(markdown_table())
        return 0
    path: Path = args.write
    path.write_text(with_table(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
