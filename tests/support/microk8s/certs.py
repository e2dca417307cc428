"""The node's API server certificate (`server.crt`) and the join fingerprint derived from it."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from pathlib import Path
from typing import Any


def load_site() -> None:
    """The wrappers start Python with -S (startup time counts per command); the few verbs that
    need site-packages (yaml, cryptography) load it on demand."""
    import site

    site.main()


def _template_ips(base: Path, name: str) -> list[str]:
    path = base / name / "certs" / "csr.conf.template"
    if not path.exists():
        return []
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.strip().startswith("IP.") and "=" in line
    ]


def write_server_cert(base: Path, name: str, node: dict[str, Any]) -> None:
    """A real self-signed certificate whose IP SANs are what MicroK8s signs server.crt for:
    127.0.0.1, the service IP, the host IPs, extraSANs and the template's IP.n lines
    (MK microk8s-resources/certs/csr.conf.template, `#MOREIPS`); 365 days (MK utils.sh)."""
    load_site()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ips = ["127.0.0.1", "10.152.183.1", node["ip"], *node["extra_sans"], *_template_ips(base, name)]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = base / name / "certs"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def check(base: Path, name: str) -> str:
    """First 12 hex of the SHA-256 of server.crt in DER (MK microk8s-resources/actions/common/
    utils.sh, `openssl x509 -outform der | sha256sum | cut -c1-12`)."""
    pem = (base / name / "certs" / "server.crt").read_text()
    body = "".join(ln for ln in pem.splitlines() if ln and not ln.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()[:12]
