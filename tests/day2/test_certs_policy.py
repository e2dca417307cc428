"""The certificate policy: warn < 60 days, fail < 15, SANs; each verdict proven by its break."""

from __future__ import annotations

from datetime import timedelta

import trustme
from cryptography import x509

from mk8s.day2.certs import CERT_FILES, CertFacts, Level, facts_of, judge, san_problems, worst
from mk8s.day2.certs_flow import _parse
from tests.day2.certmaker import NOW, kubeconfig_with, leaf

SERVER = CERT_FILES[0]
ADMIN = CERT_FILES[4]


def cert(days: float, *ips: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(leaf(trustme.CA(), "kubernetes", *ips, days=days))


def test_the_files_are_microk8s_1_33s() -> None:
    assert [(f.name, f.path) for f in CERT_FILES] == [
        ("server.crt", "/var/snap/microk8s/current/certs/server.crt"),
        ("front-proxy-client.crt", "/var/snap/microk8s/current/certs/front-proxy-client.crt"),
        ("ca.crt", "/var/snap/microk8s/current/certs/ca.crt"),
        ("kubelet.crt", "/var/snap/microk8s/current/certs/kubelet.crt"),
        ("admin kubeconfig", "/var/snap/microk8s/current/credentials/client.config"),
    ]


def test_thresholds_at_their_edges() -> None:
    verdicts = judge(
        [facts_of("n1", SERVER, cert(d)) for d in (365, 60.5, 59.9, 15.2, 14.9, -1)], NOW
    )
    assert [(v.level, v.days_left) for v in verdicts] == [
        (Level.OK, 365),
        (Level.OK, 60),
        (Level.WARN, 59),
        (Level.WARN, 15),
        (Level.FAIL, 14),
        (Level.FAIL, -1),
    ]
    assert verdicts[2].message.startswith(
        "n1: server.crt (/var/snap/microk8s/current/certs/server.crt): 59 days left (< 60)"
    )
    assert "14 days left (< 15)" in verdicts[4].message and "renew now" in verdicts[4].message
    assert "EXPIRED" in verdicts[5].message
    assert worst(verdicts) is Level.FAIL and worst(verdicts[:3]) is Level.WARN


def test_an_unreadable_certificate_fails_naming_why() -> None:
    missing = CertFacts("n2", "kubelet.crt", "/x/kubelet.crt", problem="cannot read it (exit 1)")
    [verdict] = judge([missing], NOW)
    assert verdict.level is Level.FAIL
    assert verdict.message == "n2: kubelet.crt (/x/kubelet.crt): cannot read it (exit 1)"


def test_a_server_cert_missing_a_node_ip_fails_naming_it() -> None:
    ips = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.152.183.1"]
    good = facts_of("n1", SERVER, cert(300, *ips))
    short = facts_of("n3", SERVER, cert(300, "10.0.0.11", "10.0.0.13", "10.152.183.1"))
    assert san_problems([good], ips) == []
    [problem] = san_problems([good, short], ips)
    assert problem.level is Level.FAIL
    assert problem.message.startswith("n3: server.crt lacks IP SAN(s) 10.0.0.12 (has ")


def test_the_admin_client_cert_is_read_from_the_kubeconfig_line() -> None:
    pem = leaf(trustme.CA(), "admin", days=10, cn="admin")
    line = kubeconfig_with(pem).splitlines()
    grep_output = next(ln for ln in line if "client-certificate-data" in ln) + "\n"
    facts = _parse("n1", ADMIN, grep_output)
    assert facts.problem is None and "CN=admin" in facts.subject
    assert facts.not_after is not None and (facts.not_after - NOW) < timedelta(days=11)
    broken = _parse("n1", ADMIN, "    token: abc\n")
    assert broken.problem is not None and "no client certificate" in broken.problem
    assert _parse("n1", SERVER, "garbage").problem == "not a PEM (ValueError)"
