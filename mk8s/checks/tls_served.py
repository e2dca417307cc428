"""The TLS criteria as a browser meets them: the certificate served on 443 for the app host.

It passes only when all of these hold: the Certificate object is Ready from the env's
ClusterIssuer; that ClusterIssuer is an ACME issuer pointed at the env's ACME server (a
selfSigned or CA issuer of the same name does not count); the certificate served through the
LB IP for the app host verifies to the issuer's CA (Let's Encrypt's roots; a trustme CA in the
tests), covers the host, has >= 30 days left, and is byte-for-byte the one in the Certificate's
Secret (so the controller's fake default certificate, or a stale one, fails).
"""

from __future__ import annotations

import base64
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import tls
from mk8s.checks.cluster import CertificateFact, certificate
from mk8s.checks.verdict import Verdict, failed, passed

# cert-manager ClusterIssuer spec: exactly one of these issuer types is set
# (shared/upstream/crds/cert-manager-v1.17.1-clusterissuers.yaml, spec.properties).
ISSUER_TYPES = ("acme", "ca", "selfSigned", "vault", "venafi")


@dataclass(frozen=True)
class IssuerFact:
    name: str
    kind: str  # one of ISSUER_TYPES, or "unknown"
    acme_server: str | None
    ready: bool
    ready_message: str = ""


@dataclass(frozen=True)
class ServedCert:
    """What the TLS endpoint handed out: the leaf (DER) and its verification against the CA."""

    address: str
    der: bytes | None
    chain_error: str | None = None
    error: str = ""


# --- pure -------------------------------------------------------------------------------------


def issuer_problems(issuer: IssuerFact | None, name: str, server: str) -> list[str]:
    if issuer is None:
        return [f"ClusterIssuer {name} does not exist"]
    problems = []
    if issuer.kind != "acme":
        problems.append(f"ClusterIssuer {name} is a {issuer.kind} issuer, not ACME")
    elif issuer.acme_server != server:
        problems.append(f"ClusterIssuer {name} uses ACME server {issuer.acme_server}, not {server}")
    if not issuer.ready:
        problems.append(
            f"ClusterIssuer {name} not Ready ({issuer.ready_message or 'no condition'})"
        )
    return problems


def served_problems(
    served: ServedCert, secret_der: bytes | None, secret_ref: str, host: str, now: datetime
) -> tuple[list[str], float | None]:
    if served.der is None:
        return [f"no TLS handshake for {host} at {served.address}: {served.error}"], None
    facts = tls.cert_facts(served.der)
    verdict = tls.assess(facts, served.chain_error, host=host, issuer_org=None, now=now)
    problems = [f"served at {served.address}: {p}" for p in verdict.problems]
    if secret_der is None:
        problems.append(f"Secret {secret_ref} holds no certificate")
    elif secret_der != served.der:
        problems.append(
            f"served at {served.address}: {_describe(served.der)} is not the certificate in "
            f"Secret {secret_ref} ({_describe(secret_der)})"
        )
    return problems, verdict.days_left


def _describe(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return f"serial {cert.serial_number:x} issued by {cert.issuer.rfc4514_string()!r}"


def served_tls(
    cert: CertificateFact | None,
    issuer: IssuerFact | None,
    served: ServedCert,
    secret_der: bytes | None,
    *,
    host: str,
    issuer_name: str,
    acme_server: str,
    now: datetime,
) -> Verdict:
    """One verdict over the Certificate object, its ClusterIssuer and the served certificate."""
    expected = (
        f"served {host} cert verifies to the CA, equals its Secret, >= {tls.MIN_DAYS_LEFT} days; "
        f"Certificate Ready from ACME ClusterIssuer {issuer_name} ({acme_server})"
    )
    problems = []
    object_verdict = certificate(cert, host, issuer_name, now)
    if not object_verdict.passed:
        problems.append(object_verdict.message)
    problems += issuer_problems(issuer, issuer_name, acme_server)
    secret_ref = f"{cert.namespace}/{cert.secret_name}" if cert else "(no Certificate)"
    served_bad, days = served_problems(served, secret_der, secret_ref, host, now)
    problems += served_bad
    measured = f"{days:.1f}" if days is not None else "unknown"
    if problems:
        return failed(measured, expected, f"{host}: " + "; ".join(problems), "days")
    return passed(
        measured,
        expected,
        f"{host} at {served.address} serves Secret {secret_ref}'s certificate from "
        f"{issuer_name} ({acme_server}), {days:.0f} days left",
        "days",
    )


# --- edge -------------------------------------------------------------------------------------


def read_cluster_issuer(api: client.ApiClient, name: str) -> IssuerFact | None:
    try:
        obj: Any = client.CustomObjectsApi(api).get_cluster_custom_object(
            "cert-manager.io", "v1", "clusterissuers", name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    kind = next((t for t in ISSUER_TYPES if t in spec), "unknown")
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return IssuerFact(
        name=name,
        kind=kind,
        acme_server=(spec.get("acme") or {}).get("server"),
        ready=bool(ready and ready.get("status") == "True"),
        ready_message=f"{ready.get('reason', '')}: {ready.get('message', '')}" if ready else "",
    )


def read_secret_leaf(api: client.ApiClient, namespace: str, name: str) -> bytes | None:
    """The leaf (first PEM block of `tls.crt`) of a kubernetes.io/tls Secret, as DER."""
    try:
        secret: Any = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    pem = base64.b64decode((secret.data or {}).get("tls.crt", ""))
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return None
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def fetch_served(address: str, port: int, host: str, cafile: Path | None) -> ServedCert:
    """Connect to `address:port` with SNI `host`: the leaf, and whether it verifies to `cafile`
    (None: the system trust store)."""
    where = f"{address}:{port}"
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    try:
        der = _handshake(lax, (address, port), host)
    except (OSError, ssl.SSLError) as exc:
        return ServedCert(where, None, error=f"{exc.__class__.__name__}: {exc}")
    strict = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    strict.check_hostname = False  # host coverage is judged on its own, with its own message
    try:
        _handshake(strict, (address, port), host)
        chain_error = None
    except ssl.SSLCertVerificationError as exc:
        chain_error = exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        chain_error = f"{exc.__class__.__name__}: {exc}"
    return ServedCert(where, der, chain_error)


def _handshake(context: ssl.SSLContext, target: tuple[str, int], sni: str) -> bytes:
    with (
        socket.create_connection(target, timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=sni) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server sent no certificate")
    return der
