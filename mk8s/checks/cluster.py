"""Cluster exit criteria (PRD phases 1-4), judged from facts read through the Kubernetes API.

Facts are plain dataclasses (no kubernetes client types) so the verdicts are pure; the edge
`mk8s.checks.kube_facts` builds them from live objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, ip_address

from mk8s.checks.verdict import Verdict, all_of, failed, passed
from mk8s.inventory.model import IPRange

# The PRD's TLS exit criterion: a certificate must stay valid this long (cert-manager renews
# 60 days before expiry by default here, so a healthy certificate is always well above it).
CERT_MIN_VALID_DAYS = 30


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


def runbooks(doc_names: Sequence[str], source: str) -> Verdict:
    """A runbook exists for every topic of RUNBOOK_TOPICS in `source` (docs/ at a revision).

    A document check of the repository, never a fact about the cluster: the verdict says so
    in its own words, so evidence cannot pass it off as one."""
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
    expected = f"runbooks in {source}: " + ", ".join(RUNBOOK_TOPICS)
    measured = f"{len(RUNBOOK_TOPICS) - len(missing)}/{len(RUNBOOK_TOPICS)} topics in {source}"
    if missing:
        return failed(measured, expected, f"document check: no runbook in {source} for: "
                      + ", ".join(missing))  # fmt: skip
    return passed(
        measured, expected, f"document check (not a cluster fact): {source} has every runbook"
    )


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
    secret_name: str = ""


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


@dataclass(frozen=True)
class PvcRoundTrip:
    """Data written to the PVC by a pod on one node, read back by a pod on (maybe) another."""

    written: str | None
    read_back: str | None
    writer_node: str | None = None
    reader_node: str | None = None


# Tiers whose storage must survive a node (PRD: NFS or Ceph in stage/prod): the read-back
# must come from another node, or node-local storage passes too.
SHARED_STORAGE_TIERS = ("stage", "prod")


def pvc_keeps_data(pvc: PvcFact, wanted_class: str, trip: PvcRoundTrip, tier: str) -> Verdict:
    """A PVC on the default class binds, and data written by one pod is read by the next,
    on another node in stage/prod."""
    across = tier in SHARED_STORAGE_TIERS
    expected = f"Bound on {wanted_class}, data read back" + (" from another node" if across else "")
    if pvc.phase != "Bound":
        return failed(pvc.phase, expected, f"PVC {pvc.name} is {pvc.phase}, not Bound")
    if pvc.storage_class != wanted_class:
        return failed(
            f"class {pvc.storage_class}",
            expected,
            f"PVC {pvc.name} bound on {pvc.storage_class}, not the default {wanted_class}",
        )
    if across and (trip.writer_node is None or trip.writer_node == trip.reader_node):
        return failed(
            "same node",
            expected,
            f"PVC {pvc.name}: writer and reader both on {trip.writer_node or 'an unknown node'}; "
            f"{tier} storage must be read from another node",
        )
    if trip.written is None:
        return failed("no data written", expected, f"writer pod on PVC {pvc.name} did not finish")
    where = f" on {trip.reader_node}" if trip.reader_node else ""
    if trip.read_back != trip.written:
        return failed(
            "data lost",
            expected,
            f"PVC {pvc.name}: wrote checksum {trip.written[:12]}"
            f"{' on ' + trip.writer_node if trip.writer_node else ''}, read back "
            f"{(trip.read_back or 'nothing')[:12]}{where}",
        )
    moved = f" from {trip.writer_node} to {trip.reader_node}" if across else ""
    return passed("Bound, data kept", expected, f"PVC {pvc.name} Bound; data read back{moved}")


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


__all__ = [
    "AccessExpectation",
    "CertificateFact",
    "ConnectProbe",
    "HttpProbe",
    "IngressFact",
    "NodeFact",
    "PolicyFact",
    "PvcFact",
    "PvcRoundTrip",
    "WorkloadFact",
    "addons_healthy",
    "alerting",
    "all_of",
    "certificate",
    "default_storage_class",
    "dns_resolves",
    "monitoring",
    "nodes_ready",
    "pod_start",
    "pvc_keeps_data",
    "rbac_matrix",
    "runbooks",
    "workload_available",
]
