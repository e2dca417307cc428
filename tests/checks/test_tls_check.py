"""The TLS check's verdict on real handshakes with a local server presenting trustme certificates.

Each case is a certificate a cluster could really serve: a good one, an expired one, one for
another host, one from another issuer, one that expires too soon.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from mk8s.checks.tls import TlsVerdict, check, check_environment, expected_issuer
from mk8s.inventory.load import load_environment

HOST = "app.stage.example.com"
ISSUER = "mk8s test issuer"


@contextmanager
def tls_server(leaf: trustme.LeafCert) -> Iterator[int]:
    """Serve handshakes on 127.0.0.3 with `leaf` until the block ends; yields the port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    listener = socket.create_server(("127.0.0.3", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # wait for the client to hang up
            except (OSError, ssl.SSLError):
                pass  # a client that rejects the certificate aborts the handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture(scope="module")
def issuer() -> trustme.CA:
    return trustme.CA(organization_name=ISSUER)


@pytest.fixture(scope="module")
def trust(issuer: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "ca.pem"
    issuer.cert_pem.write_to_path(str(path))
    return path


def verdict_for(leaf: trustme.LeafCert, trust: Path, host: str = HOST) -> TlsVerdict:
    with tls_server(leaf) as port:
        return check(host, port, address="127.0.0.3", cafile=trust, issuer_org=ISSUER)


def test_a_valid_certificate_from_the_expected_issuer_passes(
    issuer: trustme.CA, trust: Path
) -> None:
    verdict = verdict_for(issuer.issue_cert(HOST), trust)
    assert verdict.ok, verdict.problems
    assert verdict.chain_ok and verdict.issuer_ok and verdict.host_ok
    assert verdict.days_left > 30


def test_a_wildcard_certificate_covers_the_app_host(issuer: trustme.CA, trust: Path) -> None:
    verdict = verdict_for(issuer.issue_cert("*.stage.example.com"), trust)
    assert verdict.ok, verdict.problems


def test_an_expired_certificate_fails_on_its_dates_and_its_chain(
    issuer: trustme.CA, trust: Path
) -> None:
    now = datetime.now(UTC)
    leaf = issuer.issue_cert(
        HOST, not_before=now - timedelta(days=120), not_after=now - timedelta(days=2)
    )
    verdict = verdict_for(leaf, trust)
    assert not verdict.ok
    assert verdict.days_left < 0
    assert not verdict.chain_ok
    assert any("expired 2 days ago" in p for p in verdict.problems), verdict.problems


def test_a_certificate_with_under_30_days_left_fails(issuer: trustme.CA, trust: Path) -> None:
    now = datetime.now(UTC)
    leaf = issuer.issue_cert(
        HOST, not_before=now - timedelta(days=80), not_after=now + timedelta(days=10)
    )
    verdict = verdict_for(leaf, trust)
    assert verdict.chain_ok and verdict.host_ok and verdict.issuer_ok
    assert not verdict.ok
    assert any("days left, at least 30 required" in p for p in verdict.problems)


def test_a_certificate_for_another_host_fails_the_host_match_only(
    issuer: trustme.CA, trust: Path
) -> None:
    verdict = verdict_for(issuer.issue_cert("other.example.com"), trust)
    assert not verdict.ok
    assert not verdict.host_ok
    assert verdict.chain_ok and verdict.issuer_ok
    assert verdict.problems == (f"certificate does not cover {HOST} (names: other.example.com)",)


def test_a_certificate_from_another_issuer_fails_chain_and_issuer(trust: Path) -> None:
    stranger = trustme.CA(organization_name="Someone Else CA")
    verdict = verdict_for(stranger.issue_cert(HOST), trust)
    assert not verdict.ok
    assert not verdict.chain_ok
    assert not verdict.issuer_ok
    assert verdict.host_ok
    assert any("expected 'mk8s test issuer'" in p for p in verdict.problems)


def test_no_server_is_a_failed_verdict_not_an_exception(trust: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.3", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        verdict = check(HOST, port, address="127.0.0.3", cafile=trust, issuer_org=ISSUER)
    assert not verdict.ok
    assert verdict.problems[0].startswith(f"no TLS handshake with {HOST}")


def test_each_environment_expects_its_own_lets_encrypt_issuer(repo_root: Path) -> None:
    assert expected_issuer(load_environment("stage", repo_root)) == "(STAGING) Let's Encrypt"
    assert expected_issuer(load_environment("prod", repo_root)) == "Let's Encrypt"


def test_an_environment_is_checked_against_its_own_issuer(repo_root: Path, tmp_path: Path) -> None:
    """stage expects Let's Encrypt *staging*: a production-issued certificate is the wrong one."""
    stage = load_environment("stage", repo_root)
    staging_ca = trustme.CA(organization_name="(STAGING) Let's Encrypt")
    prod_ca = trustme.CA(organization_name="Let's Encrypt")
    bundle = tmp_path / "both.pem"
    bundle.write_bytes(staging_ca.cert_pem.bytes() + prod_ca.cert_pem.bytes())
    host = "app.stage.example.com"
    with tls_server(staging_ca.issue_cert(host)) as port:
        good = check_environment(stage, address="127.0.0.3", port=port, cafile=bundle)
    with tls_server(prod_ca.issue_cert(host)) as port:
        wrong = check_environment(stage, address="127.0.0.3", port=port, cafile=bundle)
    assert good.ok, good.problems
    assert wrong.chain_ok and not wrong.issuer_ok
    assert wrong.problems == ('issued by "Let\'s Encrypt", expected "(STAGING) Let\'s Encrypt"',)
