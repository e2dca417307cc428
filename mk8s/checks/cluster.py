"""Cluster exit criteria (PRD phases 1-4), judged from facts read through the Kubernetes API.

Facts are plain dataclasses (no kubernetes client types) so the verdicts are pure; the edge
`mk8s.checks.kube_facts` builds them from live objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, ip_address

from mk8s.checks.verdict import Verdict, all_of, failed, passed
from mk8s.inventory.model import IPRange

# The PRD's TLS exit criterion: a certificate must stay valid this long (cert-manager renews
# 60 days before expiry by default here, so a healthy certificate is always well above it).
CERT_MIN_VALID_DAYS = 30
# With 3 voters one lost node must not take the API down; dqlite re-elects in seconds. A gap
# longer than this means clients saw an outage, not a blip.
MAX_API_GAP_S = 30.0


@dataclass(frozen=True)
class NodeFact:
    name: str
    ready: bool
    reason: str = ""


def nodes_ready(nodes: Sequence[NodeFact], expected_names: Sequence[str]) -> Verdict:
    """Every inventory node is registered and Ready."""
    expected = f"{len(expected_names)} nodes Ready ({', '.join(expected_names)})"
    by_name = {n.name: n for n in nodes}
    missing = [name for name in expected_names if name not in by_name]
    not_ready = [n for n in nodes if n.name in expected_names and not n.ready]
    ready = sum(1 for n in nodes if n.name in expected_names and n.ready)
    measured = f"{ready}/{len(expected_names)} Ready"
    problems = [f"node {name} not registered" for name in missing] + [
        f"node {n.name} not Ready ({n.reason or 'no Ready condition'})" for n in not_ready
    ]
    if problems:
        return failed(measured, expected, "; ".join(problems))
    return passed(measured, expected, f"all {ready} nodes Ready")


@dataclass(frozen=True)
class WorkloadFact:
    """A Deployment/DaemonSet/StatefulSet: how many replicas it wants and how many are ready."""

    namespace: str
    kind: str
    name: str
    desired: int
    ready: int

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


# Where each MicroK8s add-on runs (shared/reference/microk8s.md): the namespace whose workloads
# must all be ready, and (where the namespace is shared) the workload names that belong to it.
ADDON_WORKLOADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dns": ("kube-system", ("coredns",)),
    "metrics-server": ("kube-system", ("metrics-server",)),
    "hostpath-storage": ("kube-system", ("hostpath-provisioner",)),
    "metallb": ("metallb-system", ()),
    "ingress": ("ingress", ()),
    "cert-manager": ("cert-manager", ()),
    "dashboard": ("kubernetes-dashboard", ()),
    "observability": ("observability", ()),
    "registry": ("container-registry", ()),
}


def addons_healthy(
    wanted: Sequence[str],
    enabled: Sequence[str],
    workloads: Sequence[WorkloadFact],
    where: Mapping[str, tuple[str, tuple[str, ...]]] = ADDON_WORKLOADS,
) -> Verdict:
    """Each inventory add-on is enabled (microk8s status) and its workloads are all ready."""
    expected = f"enabled and ready: {', '.join(wanted)}"
    problems: list[str] = []
    healthy: list[str] = []
    for addon in wanted:
        if addon not in enabled:
            problems.append(f"add-on {addon} is not enabled")
            continue
        if addon not in where:
            healthy.append(addon)  # no workloads of its own (rbac, ha-cluster, helm...)
            continue
        namespace, names = where[addon]
        mine = [
            w
            for w in workloads
            if w.namespace == namespace and (not names or any(w.name.startswith(n) for n in names))
        ]
        if not mine:
            problems.append(f"add-on {addon}: no workloads in namespace {namespace}")
            continue
        unready = [w for w in mine if w.ready < w.desired or w.desired == 0]
        if unready:
            problems.extend(f"add-on {addon}: {w.ref} {w.ready}/{w.desired} ready" for w in unready)
        else:
            healthy.append(addon)
    measured = f"{len(healthy)}/{len(wanted)} healthy"
    if problems:
        return failed(measured, expected, "; ".join(problems))
    return passed(measured, expected, f"add-ons healthy: {', '.join(healthy)}")


def workload_available(ref: str, workloads: Sequence[WorkloadFact]) -> Verdict:
    """The named workload exists and every wanted replica is ready (and it wants at least one)."""
    expected = f"{ref}: all replicas ready"
    if not workloads:
        return failed("missing", expected, f"{ref} not found")
    w = workloads[0]
    measured = f"{w.ready}/{w.desired} ready"
    if w.desired == 0 or w.ready < w.desired:
        return failed(measured, expected, f"{w.ref}: {measured}")
    return passed(measured, expected, f"{w.ref}: {measured}")


# Where each monitoring stack runs; Grafana must be among its ready workloads ("dashboards live").
MONITORING_NAMESPACES = {"observability": "observability", "kube-prometheus-stack": "monitoring"}


def monitoring(namespace: str, workloads: Sequence[WorkloadFact], dashboards: int) -> Verdict:
    """ "Dashboards live": the stack's workloads all ready (Grafana and Prometheus among them)
    and Grafana has dashboards provisioned (ConfigMaps labelled `grafana_dashboard`)."""
    expected = f"all workloads in {namespace} ready, incl. grafana and prometheus; dashboards >= 1"
    if not workloads:
        return failed("no workloads", expected, f"no monitoring workloads in {namespace}")
    unready = [w for w in workloads if w.desired == 0 or w.ready < w.desired]
    problems = [f"{w.ref} {w.ready}/{w.desired} ready" for w in unready]
    for part in ("grafana", "prometheus"):
        if not any(part in w.name for w in workloads):
            problems.append(f"no {part} workload")
    if dashboards < 1:
        problems.append("no Grafana dashboards provisioned")
    measured = f"{len(workloads) - len(unready)}/{len(workloads)} ready, {dashboards} dashboards"
    if problems:
        return failed(measured, expected, f"{namespace}: " + "; ".join(problems))
    return passed(measured, expected, f"{namespace}: monitoring stack ready, dashboards live")


# What "runbooks drafted" (PRD phase 2) means here: DESIGN.md's runbooks in docs/, matched by
# the words of a file name (`restore-drill.md`, `disaster_recovery.md`, `dr.md`).
RUNBOOK_TOPICS: dict[str, str] = {
    "onboarding": r"onboard",
    "upgrade": r"upgrade",
    "drain": r"drain",
    "restore drill": r"restore",
    "disaster recovery": r"disaster|dr$",
    "troubleshooting": r"troubleshoot",
}


def runbooks(doc_names: Sequence[str]) -> Verdict:
    """A runbook exists in docs/ for every topic of RUNBOOK_TOPICS."""
    words = [
        word
        for name in doc_names
        if name.lower().endswith(".md")
        for word in re.split(r"[-_.]", name.lower().removesuffix(".md"))
    ]
    missing = [
        topic
        for topic, pattern in RUNBOOK_TOPICS.items()
        if not any(re.match(pattern, word) for word in words)
    ]
    expected = "runbooks: " + ", ".join(RUNBOOK_TOPICS)
    measured = f"{len(RUNBOOK_TOPICS) - len(missing)}/{len(RUNBOOK_TOPICS)} topics"
    if missing:
        return failed(measured, expected, "no runbook in docs/ for: " + ", ".join(missing))
    return passed(measured, expected, "a runbook exists for every topic")


def dns_resolves(
    host: str, resolved: Sequence[str], node_ips: Sequence[str], pool: IPRange
) -> Verdict:
    """The public name resolves, and only to addresses that serve the ingress (nodes or LB)."""
    expected = "resolves to node or MetalLB addresses"
    if not resolved:
        return failed("unresolved", expected, f"{host} does not resolve")
    measured = ", ".join(resolved)
    strays = [
        ip for ip in resolved if ip not in node_ips and not (_is_v4(ip) and IPv4Address(ip) in pool)
    ]
    if strays:
        return failed(measured, expected, f"{host} resolves to {', '.join(strays)}, not this env")
    return passed(measured, expected, f"{host} -> {measured}")


def _is_v4(ip: str) -> bool:
    try:
        return isinstance(ip_address(ip), IPv4Address)
    except ValueError:
        return False


def alerting(rule_groups: int, alertmanagers: Sequence[WorkloadFact]) -> Verdict:
    """Alert rules are loaded and an Alertmanager is running to route them."""
    expected = ">= 1 PrometheusRule, Alertmanager ready"
    measured = f"{rule_groups} rules, {len(alertmanagers)} alertmanager"
    problems = []
    if rule_groups < 1:
        problems.append("no PrometheusRule objects")
    if not alertmanagers:
        problems.append("no Alertmanager workload")
    problems += [f"{w.ref} {w.ready}/{w.desired} ready" for w in alertmanagers
                 if w.desired == 0 or w.ready < w.desired]  # fmt: skip
    if problems:
        return failed(measured, expected, "; ".join(problems))
    return passed(measured, expected, f"{rule_groups} alert rules, Alertmanager ready")


def loadbalancer(
    service: str, ingress_ips: Sequence[str], pool: IPRange, answered: bool | None, detail: str
) -> Verdict:
    """A LoadBalancer Service got an IP from the env's MetalLB range and it answers."""
    expected = f"an IP in {pool} that answers"
    if not ingress_ips:
        return failed("no ingress IP", expected, f"{service}: MetalLB assigned no IP")
    ip = ingress_ips[0]
    try:
        addr = ip_address(ip)
    except ValueError:
        return failed(ip, expected, f"{service}: ingress {ip!r} is not an IP address")
    if not isinstance(addr, IPv4Address) or addr not in pool:
        return failed(ip, expected, f"{service}: IP {ip} is outside the MetalLB range {pool}")
    if not answered:
        return failed(ip, expected, f"{service}: {ip} is in the pool but did not answer ({detail})")
    return passed(ip, expected, f"{service}: {ip} in {pool} answered ({detail})")


@dataclass(frozen=True)
class IngressFact:
    namespace: str
    name: str
    class_name: str | None
    # (host, backend service name) for every rule path.
    routes: tuple[tuple[str, str], ...]
    tls_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpProbe:
    """One HTTP request through the ingress: status (None when it did not connect) and body."""

    url: str
    status: int | None
    body: str = ""
    error: str = ""
    location: str = ""  # the Location header of a redirect


def ingress_routes(
    ingresses: Sequence[IngressFact],
    host: str,
    service: str,
    probe: HttpProbe,
    marker: str,
) -> Verdict:
    """An Ingress routes `host` to `service`, and a request for that host reaches the app.

    `marker` is text the sample app serves (so a default backend's 404 or another app's page
    does not count as reaching it).
    """
    expected = f"{host} -> service {service}, HTTP 200 with {marker!r}"
    routed = [i for i in ingresses if (host, service) in i.routes]
    if not routed:
        seen = sorted({f"{h}->{s}" for i in ingresses for h, s in i.routes}) or ["none"]
        return failed(
            "no route",
            expected,
            f"no Ingress routes {host} to service {service} (routes seen: {', '.join(seen)})",
        )
    ref = f"{routed[0].namespace}/{routed[0].name}"
    if probe.status is None:
        return failed(
            "no answer", expected, f"Ingress {ref} routes {host}, but {probe.url}: {probe.error}"
        )
    measured = f"HTTP {probe.status}"
    if probe.status != 200 or marker not in probe.body:
        return failed(
            measured,
            expected,
            f"Ingress {ref} routes {host}, but {probe.url} answered HTTP {probe.status}"
            + ("" if marker in probe.body else f" without {marker!r}"),
        )
    return passed(measured, expected, f"{probe.url} reached {service} through Ingress {ref}")


REDIRECT_STATUSES = (301, 302, 307, 308)


def https_redirect(host: str, probe: HttpProbe) -> Verdict:
    """Plain HTTP for `host` answers a redirect to https://, as ingress-nginx's ssl-redirect
    does and mk8s' Traefik redirect router (Middleware redirect-https) does: never the app in
    clear text, never Traefik's 404 for a TLS-only router (issue 13)."""
    expected = f"http://{host} redirects to https://"
    if probe.status is None:
        return failed("no answer", expected, f"{probe.url}: {probe.error}")
    measured = f"HTTP {probe.status}"
    if probe.status in REDIRECT_STATUSES and probe.location.startswith("https://"):
        return passed(measured, expected, f"{probe.url} redirects to {probe.location}")
    where = f" to {probe.location}" if probe.location else ", no redirect to HTTPS"
    return failed(measured, expected, f"{probe.url} answered HTTP {probe.status}{where}")


@dataclass(frozen=True)
class CertificateFact:
    """A cert-manager Certificate as its status reports it."""

    namespace: str
    name: str
    dns_names: tuple[str, ...]
    issuer_kind: str
    issuer_name: str
    ready: bool
    ready_message: str
    not_after: datetime | None


def certificate(cert: CertificateFact | None, host: str, issuer: str, now: datetime) -> Verdict:
    """The host's certificate is Ready, from the env's ClusterIssuer, valid >= 30 more days."""
    expected = f"Ready, ClusterIssuer {issuer}, valid >= {CERT_MIN_VALID_DAYS} days"
    if cert is None:
        return failed("no certificate", expected, f"no Certificate covers {host}")
    ref = f"Certificate {cert.namespace}/{cert.name}"
    problems = []
    if cert.issuer_kind != "ClusterIssuer" or cert.issuer_name != issuer:
        problems.append(
            f"issued by {cert.issuer_kind} {cert.issuer_name}, not ClusterIssuer {issuer}"
        )
    if not cert.ready:
        problems.append(f"not Ready ({cert.ready_message or 'no Ready condition'})")
    days = (cert.not_after - now) / timedelta(days=1) if cert.not_after else None
    if days is None:
        problems.append("no notAfter in status")
    elif days < CERT_MIN_VALID_DAYS:
        problems.append(f"valid {days:.1f} more days, below {CERT_MIN_VALID_DAYS}")
    measured = f"{days:.1f}" if days is not None else "unknown"
    if problems:
        return failed(measured, expected, f"{ref} for {host}: " + "; ".join(problems), "days")
    return passed(
        measured, expected, f"{ref} for {host} Ready from {issuer}, {days:.0f} days left", "days"
    )


def pod_start(pod: str, seconds: float | None, limit_s: float, detail: str = "") -> Verdict:
    """A new pod went from creation to Ready within `slo.pod_start_s`."""
    expected = f"<= {limit_s:g}"
    if seconds is None:
        return failed("not Ready", expected, f"pod {pod} never became Ready {detail}".strip(), "s")
    measured = f"{seconds:.1f}"
    if seconds > limit_s:
        return failed(measured, expected, f"pod {pod} took {seconds:.1f}s to become Ready", "s")
    return passed(measured, expected, f"pod {pod} Ready in {seconds:.1f}s", "s")


def default_storage_class(classes: Sequence[tuple[str, bool]], wanted: str) -> Verdict:
    """Exactly one default StorageClass, and it is the inventory's `storage.default_class`."""
    defaults = [name for name, is_default in classes if is_default]
    measured = ", ".join(defaults) or "no default"
    expected = f"default StorageClass {wanted}"
    if wanted not in {name for name, _ in classes}:
        return failed(measured, expected, f"StorageClass {wanted} does not exist")
    if defaults != [wanted]:
        return failed(measured, expected, f"default StorageClass is {measured}, not only {wanted}")
    return passed(measured, expected, f"{wanted} is the only default StorageClass")


@dataclass(frozen=True)
class PvcFact:
    name: str
    phase: str
    storage_class: str | None


def pvc_keeps_data(
    pvc: PvcFact, wanted_class: str, written: str | None, read_back: str | None
) -> Verdict:
    """A PVC on the default class binds, and data written by one pod is read by the next."""
    expected = f"Bound on {wanted_class}, data read back after pod restart"
    if pvc.phase != "Bound":
        return failed(pvc.phase, expected, f"PVC {pvc.name} is {pvc.phase}, not Bound")
    if pvc.storage_class != wanted_class:
        return failed(
            f"class {pvc.storage_class}",
            expected,
            f"PVC {pvc.name} bound on {pvc.storage_class}, not the default {wanted_class}",
        )
    if written is None:
        return failed("no data written", expected, f"writer pod on PVC {pvc.name} did not finish")
    if read_back != written:
        return failed(
            "data lost",
            expected,
            f"PVC {pvc.name}: wrote checksum {written[:12]}, read back {(read_back or 'nothing')[:12]}",
        )
    return passed("Bound, data kept", expected, f"PVC {pvc.name} Bound; data survived pod restart")


@dataclass(frozen=True)
class PolicyFact:
    namespace: str
    name: str
    selects_all: bool
    policy_types: tuple[str, ...]
    has_ingress_rules: bool
    has_egress_rules: bool

    @property
    def is_default_deny(self) -> bool:
        return (
            self.selects_all
            and "Ingress" in self.policy_types
            and not self.has_ingress_rules
            and ("Egress" not in self.policy_types or not self.has_egress_rules)
        )


@dataclass(frozen=True)
class ConnectProbe:
    """One connection attempt from a probe pod: did it get through?"""

    source: str
    target: str
    connected: bool | None  # None: the probe itself did not run to completion
    detail: str = ""


def network_policy(
    namespace: str,
    policies: Sequence[PolicyFact],
    denied: ConnectProbe,
    allowed: ConnectProbe,
) -> Verdict:
    """A default-deny policy exists and is enforced: the denied path fails, the allowed works."""
    expected = "default-deny present; cross-namespace blocked; allowed path open"
    deny = [p for p in policies if p.namespace == namespace and p.is_default_deny]
    if not deny:
        return failed(
            "no default-deny", expected, f"namespace {namespace} has no default-deny policy"
        )
    problems = []
    if denied.connected is None:
        problems.append(f"probe {denied.source} -> {denied.target} did not run ({denied.detail})")
    elif denied.connected:
        problems.append(f"{denied.source} reached {denied.target}: policy not enforced")
    if allowed.connected is None:
        problems.append(
            f"probe {allowed.source} -> {allowed.target} did not run ({allowed.detail})"
        )
    elif not allowed.connected:
        problems.append(
            f"allowed path {allowed.source} -> {allowed.target} blocked ({allowed.detail})"
        )
    measured = (
        f"denied path {'open' if denied.connected else 'blocked'}, "
        f"allowed path {'open' if allowed.connected else 'blocked'}"
    )
    if problems:
        return failed(measured, expected, "; ".join(problems))
    return passed(measured, expected, f"{namespace}: {deny[0].name} enforced")


@dataclass(frozen=True)
class AccessExpectation:
    """One cell of the RBAC matrix: may `group` do `verb` on `resource` in `namespace`?"""

    role: str
    group: str
    verb: str
    resource: str
    api_group: str = ""
    namespace: str | None = None
    allowed: bool = True

    def describe(self) -> str:
        where = f"in {self.namespace}" if self.namespace else "cluster-wide"
        res = f"{self.resource}.{self.api_group}" if self.api_group else self.resource
        return f"{self.role} ({self.group}) {self.verb} {res} {where}"


def rbac_matrix(cells: Sequence[tuple[AccessExpectation, bool]]) -> Verdict:
    """Every SubjectAccessReview answered as the matrix says."""
    expected = f"{len(cells)} access decisions as the matrix"
    wrong = [
        f"{cell.describe()}: {'allowed' if got else 'denied'}, expected "
        f"{'allowed' if cell.allowed else 'denied'}"
        for cell, got in cells
        if got != cell.allowed
    ]
    measured = f"{len(cells) - len(wrong)}/{len(cells)} as expected"
    if not cells:
        return failed("0 checked", expected, "the RBAC matrix is empty")
    if wrong:
        return failed(measured, expected, "; ".join(wrong))
    return passed(measured, expected, f"all {len(cells)} RBAC decisions as expected")


@dataclass(frozen=True)
class RestoreDrill:
    """What a backup -> delete namespace -> restore -> verify drill observed."""

    backup_phase: str
    restore_phase: str
    checksum_before: str | None
    checksum_after: str | None
    rto_seconds: float | None
    errors: tuple[str, ...] = field(default_factory=tuple)


def backup_restore(drill: RestoreDrill, rto_minutes: int) -> Verdict:
    """Backup and restore Completed, data identical, restore within the inventory RTO."""
    expected = f"Completed, checksum equal, RTO <= {rto_minutes * 60}"
    problems = list(drill.errors)
    if drill.backup_phase != "Completed":
        problems.append(f"backup phase {drill.backup_phase}")
    if drill.restore_phase != "Completed":
        problems.append(f"restore phase {drill.restore_phase}")
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
    measured = f"{rto:.0f}" if rto is not None else "unknown"
    if problems:
        return failed(measured, expected, "restore drill: " + "; ".join(problems), "s")
    return passed(measured, expected, f"restored with equal checksum in {rto:.0f}s", "s")


@dataclass(frozen=True)
class NodeLossDrill:
    """What stopping one node observed: API gap, rescheduling, node return."""

    node: str
    longest_api_gap_s: float
    rescheduled: bool
    reschedule_detail: str
    node_returned: bool
    return_detail: str = ""


def availability(drill: NodeLossDrill, max_gap_s: float = MAX_API_GAP_S) -> Verdict:
    """With one node stopped the API stays up, workloads move, and the node comes back."""
    expected = f"API gap <= {max_gap_s:g}, workloads rescheduled, node Ready again"
    problems = []
    if drill.longest_api_gap_s > max_gap_s:
        problems.append(f"API unreachable for {drill.longest_api_gap_s:.1f}s")
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
        f"stopped {drill.node}: longest API gap {drill.longest_api_gap_s:.1f}s, "
        f"{drill.reschedule_detail}, node back",
        "s",
    )


__all__ = [
    "AccessExpectation",
    "CertificateFact",
    "ConnectProbe",
    "HttpProbe",
    "IngressFact",
    "NodeFact",
    "NodeLossDrill",
    "PolicyFact",
    "PvcFact",
    "RestoreDrill",
    "WorkloadFact",
    "addons_healthy",
    "alerting",
    "all_of",
    "availability",
    "backup_restore",
    "certificate",
    "default_storage_class",
    "dns_resolves",
    "ingress_routes",
    "loadbalancer",
    "monitoring",
    "network_policy",
    "nodes_ready",
    "pod_start",
    "pvc_keeps_data",
    "rbac_matrix",
    "runbooks",
    "workload_available",
]
