"""The TLS certificate verdict: chain to the expected issuer, host name, days left.

`fetch` (edge) does two handshakes with the server: one that accepts anything, to read the
certificate whatever is wrong with it, and one that verifies the chain against the trust store
(the system store, or the CA bundle given). `assess` (pure) turns those facts into a verdict
with one line per problem. Used by the conformance suite's TLS criterion.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from mk8s.inventory.model import Environment

MIN_DAYS_LEFT = 30
# The issuing organisation of each cert-manager ClusterIssuer mk8s configures. Staging's
# intermediates are named "(STAGING) ..." so a staging certificate never passes for prod.
ISSUER_ORGANISATION = {
    "letsencrypt-prod": "Let's Encrypt",
    "letsencrypt-staging": "(STAGING) Let's Encrypt",
}


@dataclass(frozen=True)
class CertFacts:
    subject_cn: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    issuer_cn: str | None
    issuer_org: str | None
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class TlsVerdict:
    host: str
    chain_ok: bool
    issuer_ok: bool
    host_ok: bool
    days_left: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def expected_issuer(env: Environment) -> str:
    return ISSUER_ORGANISATION[env.tls.issuer]


# --- pure -------------------------------------------------------------------------------------


def host_matches(host: str, facts: CertFacts) -> bool:
    """RFC 6125 matching on subjectAltName only: exact, or a left-most `*` label."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return str(ip) in facts.ip_addresses
    wanted = host.lower().rstrip(".")
    for name in facts.dns_names:
        name = name.lower().rstrip(".")
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted:
            label, rest = wanted.split(".", 1)
            if label and rest == name[2:]:
                return True
    return False


def assess(
    facts: CertFacts,
    chain_error: str | None,
    *,
    host: str,
    issuer_org: str | None,
    now: datetime,
    min_days: int = MIN_DAYS_LEFT,
) -> TlsVerdict:
    problems: list[str] = []
    if chain_error:
        problems.append(f"chain does not verify against the trust store: {chain_error}")
    issuer_ok = issuer_org is None or facts.issuer_org == issuer_org
    if not issuer_ok:
        cn = f" ({facts.issuer_cn})" if facts.issuer_cn else ""
        problems.append(f"issued by {facts.issuer_org!r}{cn}, expected {issuer_org!r}")
    host_ok = host_matches(host, facts)
    if not host_ok:
        names = ", ".join(facts.dns_names + facts.ip_addresses) or "none"
        problems.append(f"certificate does not cover {host} (names: {names})")
    days_left = (facts.not_after - now).total_seconds() / 86400
    if days_left < 0:
        problems.append(f"expired {-days_left:.0f} days ago ({facts.not_after:%Y-%m-%d})")
    elif days_left < min_days:
        problems.append(f"only {days_left:.0f} days left, at least {min_days} required")
    if facts.not_before > now:
        problems.append(f"not valid before {facts.not_before:%Y-%m-%d %H:%M} UTC")
    return TlsVerdict(
        host=host,
        chain_ok=chain_error is None,
        issuer_ok=issuer_ok,
        host_ok=host_ok,
        days_left=days_left,
        problems=tuple(problems),
    )


def cert_facts(der: bytes) -> CertFacts:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(i) for i in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return CertFacts(
        subject_cn=_attr(cert.subject, NameOID.COMMON_NAME),
        dns_names=dns,
        ip_addresses=ips,
        issuer_cn=_attr(cert.issuer, NameOID.COMMON_NAME),
        issuer_org=_attr(cert.issuer, NameOID.ORGANIZATION_NAME),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


# --- edge -------------------------------------------------------------------------------------


def fetch(
    host: str, port: int = 443, *, address: str | None = None, cafile: Path | None = None
) -> tuple[CertFacts, str | None]:
    """The server's certificate for SNI `host` and the chain verification error, if any."""
    target = (address or host, port)
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    der = _handshake(lax, target, host)
    assert der is not None  # CERT_NONE still returns the peer's certificate
    strict = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    strict.check_hostname = False  # the host is judged separately, with its own message
    try:
        _handshake(strict, target, host)
        error = None
    except ssl.SSLCertVerificationError as exc:
        error = exc.verify_message or str(exc)
    return cert_facts(der), error


def _handshake(context: ssl.SSLContext, target: tuple[str, int], sni: str) -> bytes | None:
    with (
        socket.create_connection(target, timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=sni) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def check(
    host: str,
    port: int = 443,
    *,
    address: str | None = None,
    cafile: Path | None = None,
    issuer_org: str | None = None,
    min_days: int = MIN_DAYS_LEFT,
    now: datetime | None = None,
) -> TlsVerdict:
    """Connect (to `address` when DNS is not to be trusted), then judge the certificate."""
    try:
        facts, chain_error = fetch(host, port, address=address, cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        return TlsVerdict(host, False, False, False, 0.0, (f"no TLS handshake with {host}: {exc}",))
    return assess(
        facts,
        chain_error,
        host=host,
        issuer_org=issuer_org,
        now=now or datetime.now(UTC),
        min_days=min_days,
    )


def check_environment(
    env: Environment,
    *,
    address: str | None = None,
    port: int = 443,
    cafile: Path | None = None,
    now: datetime | None = None,
) -> TlsVerdict:
    """The sample app's certificate as the PRD's TLS criterion states it: chain to the env's
    issuer, `app.<ingress.domain>` covered, at least 30 days left. `address`: the MetalLB IP to
    connect to when DNS should not decide (the host name is still sent as SNI)."""
    return check(
        f"app.{env.ingress.domain}",
        port,
        address=address,
        cafile=cafile,
        issuer_org=expected_issuer(env),
        now=now,
    )
