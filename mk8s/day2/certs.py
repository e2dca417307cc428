"""Certificates on MicroK8s nodes: which files, and the pure policy over their parsed facts.

Files (canonical/microk8s@v1.33, $SNAP_DATA = /var/snap/microk8s/current):
- `certs/server.crt`, `certs/front-proxy-client.crt`: signed per node for 365 days
  (microk8s-resources/actions/common/utils.sh: `gen_server_cert`, `gen_proxy_client_cert`,
  `-days 365`); `refresh-certs --cert server.crt|front-proxy-client.crt` renews them
  (scripts/wrappers/refresh_certs.py: `reproduce_server_cert`, which restarts kubelite and the
  cluster agent; `reproduce_front_proxy_client_cert`, which restarts kubelite);
- `certs/ca.crt`: the cluster CA, 3650 days (utils.sh `produce_certs`, `-days 3650`);
  replacing it (`refresh-certs --cert ca.crt`) re-issues everything and workers must re-join;
- `certs/kubelet.crt`: the node's kubelet client certificate, CN `system:node:<hostname>`,
  signed by the CA (utils.sh `create_user_certificates` through `sign_certificate`);
- `credentials/client.config`: the admin kubeconfig, whose `client-certificate-data` is
  `certs/client.crt` (CN admin, O system:masters) embedded (utils.sh `create_user_kubeconfigs`
  → `create_kubeconfig_x509`, which base64-encodes the certificate into the file).
`refresh-certs --check` reports only ca.crt, server.crt and front-proxy-client.crt
(refresh_certs.py: `certs`), which is why mk8s reads every file itself.

Policy (PRD checklist "Cert rotation": renew ~60 days before expiry, alert under 15 days):
under 60 days left is a warning (renew now), under 15 a failure. The SANs of every node's
`server.crt` must still hold every address a client may use (`render.launchconfig.sans`: every
node IP, the API VIP, the service CIDR's first IP), or a kubeconfig pointing at a missing
address breaks after a refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509

SNAP_DATA = "/var/snap/microk8s/current"
WARN_DAYS = 60
FAIL_DAYS = 15


@dataclass(frozen=True)
class CertFile:
    name: str  # what we call it in output
    path: str  # on the node
    embedded_in_kubeconfig: bool = False


CERT_FILES: tuple[CertFile, ...] = (
    CertFile("server.crt", f"{SNAP_DATA}/certs/server.crt"),
    CertFile("front-proxy-client.crt", f"{SNAP_DATA}/certs/front-proxy-client.crt"),
    CertFile("ca.crt", f"{SNAP_DATA}/certs/ca.crt"),
    CertFile("kubelet.crt", f"{SNAP_DATA}/certs/kubelet.crt"),
    CertFile("admin kubeconfig", f"{SNAP_DATA}/credentials/client.config", True),
)


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CertFacts:
    """One certificate as read on one node (or why it could not be read)."""

    node: str
    name: str
    path: str
    not_after: datetime | None = None
    subject: str = ""
    ip_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()
    problem: str | None = None  # missing file, unparsable PEM, no client cert in kubeconfig
    not_applicable: str | None = None  # e.g. a kubeconfig that authenticates by token


@dataclass(frozen=True)
class CertVerdict:
    node: str
    name: str
    level: Level
    days_left: int | None
    message: str


def facts_of(node: str, file: CertFile, cert: x509.Certificate) -> CertFacts:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        ips, names = (), ()
    return CertFacts(
        node,
        file.name,
        file.path,
        cert.not_valid_after_utc,
        cert.subject.rfc4514_string(),
        ips,
        names,
    )


def judge(
    facts: Iterable[CertFacts],
    now: datetime,
    warn_days: int = WARN_DAYS,
    fail_days: int = FAIL_DAYS,
) -> list[CertVerdict]:
    out = []
    for f in facts:
        where = f"{f.node}: {f.name} ({f.path})"
        if f.not_applicable is not None:
            out.append(CertVerdict(f.node, f.name, Level.OK, None, f"{where}: {f.not_applicable}"))
            continue
        if f.problem is not None or f.not_after is None:
            out.append(CertVerdict(f.node, f.name, Level.FAIL, None, f"{where}: {f.problem}"))
            continue
        left = f.not_after - now
        days = left.days  # whole days, rounded down, like `refresh-certs --check`
        until = f"expires {f.not_after:%Y-%m-%d %H:%M} UTC"
        if left.total_seconds() <= 0:
            out.append(CertVerdict(f.node, f.name, Level.FAIL, days, f"{where}: EXPIRED, {until}"))
        elif days < fail_days:
            out.append(
                CertVerdict(
                    f.node,
                    f.name,
                    Level.FAIL,
                    days,
                    f"{where}: {days} days left (< {fail_days}), {until}: renew now",
                )
            )
        elif days < warn_days:
            out.append(
                CertVerdict(
                    f.node,
                    f.name,
                    Level.WARN,
                    days,
                    f"{where}: {days} days left (< {warn_days}), {until}: renew soon",
                )
            )
        else:
            out.append(CertVerdict(f.node, f.name, Level.OK, days, f"{where}: {days} days left"))
    return out


def san_problems(facts: Iterable[CertFacts], wanted_ips: Sequence[str]) -> list[CertVerdict]:
    """Every node's server.crt must still name every address in `wanted_ips`."""
    out = []
    for f in facts:
        if f.name != "server.crt" or f.problem is not None:
            continue
        missing = [ip for ip in wanted_ips if ip not in f.ip_sans]
        if missing:
            out.append(
                CertVerdict(
                    f.node,
                    "server.crt SANs",
                    Level.FAIL,
                    None,
                    f"{f.node}: server.crt lacks IP SAN(s) {', '.join(missing)} "
                    f"(has {', '.join(f.ip_sans) or 'none'}); clients using them fail TLS",
                )
            )
    return out


def worst(verdicts: Iterable[CertVerdict]) -> Level:
    levels = {v.level for v in verdicts}
    return Level.FAIL if Level.FAIL in levels else Level.WARN if Level.WARN in levels else Level.OK
