"""Each node's certificates, made with trustme at MicroK8s' paths, and `refresh-certs`.

MK = canonical/microk8s@1.33. A node directory `<root>/<node>/` stands for $SNAP_DATA
(/var/snap/microk8s/current): certs/ and credentials/ below it, as on a real node
(tests/support/microk8s/fs/ maps the paths for `cat` and `grep` over SSH).
- ca.crt and front-proxy-ca.crt: 3650 days (MK microk8s-resources/actions/common/utils.sh
  produce_certs, `req -x509 -days 3650`); a joining control-plane node takes the cluster's CA
  (MK scripts/wrappers/join.py join_dqlite_master_node store_cert ca.crt/ca.key);
- server.crt and front-proxy-client.crt: 365 days (utils.sh gen_server_cert,
  gen_proxy_client_cert), SANs from csr.conf.template (DNS kubernetes.*, 127.0.0.1, the service
  IP, every host IP, `#MOREIPS`) plus the launch configuration's extraSANs;
- kubelet.crt and the admin client certificate: 3650 days (utils.sh sign_certificate).
The join check is the first 12 hex of the SHA-256 of server.crt in DER (utils.sh), so it
changes after `refresh-certs --cert server.crt`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import shutil
from pathlib import Path
from typing import Any

SERVICE_IP = "10.152.183.1"
DNS_SANS = (  # MK microk8s-resources/certs/csr.conf.template [ alt_names ]
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster",
    "kubernetes.default.svc.cluster.local",
)
LEAF_DAYS = 365
LONG_DAYS = 3650


def load_site() -> None:
    """The wrappers start Python with -S (startup time counts per command); the few verbs that
    need site-packages (yaml, cryptography, trustme) load it on demand."""
    import site

    site.main()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _template_ips(base: Path, name: str) -> list[str]:
    path = base / name / "certs" / "csr.conf.template"
    if not path.exists():
        return []
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.strip().startswith("IP.") and "=" in line
    ]


def node_ips(base: Path, name: str, node: dict[str, Any]) -> list[str]:
    """server.crt's IP SANs: 127.0.0.1, the service IP, the host IPs (MK utils.sh get_ips),
    extraSANs and the template's IP.n lines."""
    ips = ["127.0.0.1", SERVICE_IP, node["ip"], *node.get("other_ips", [])]
    ips += [s for s in node.get("extra_sans", []) if _is_ip(s)]
    return list(dict.fromkeys([*ips, *_template_ips(base, name)]))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _make_ca(cn: str) -> tuple[bytes, bytes]:
    """A self-signed CA for 3650 days (trustme's own CA has a fixed far-off expiry)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=LONG_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _issue(certs_dir: Path, ca: str, *identities: str, cn: str, days: int) -> bytes:
    import trustme

    authority = trustme.CA.from_pem(
        (certs_dir / f"{ca}.crt").read_bytes(), (certs_dir / f"{ca}.key").read_bytes()
    )
    now = _now()
    leaf = authority.issue_cert(
        *identities,
        common_name=cn,
        not_before=now,
        not_after=now + datetime.timedelta(days=days),
    )
    return leaf.cert_chain_pems[0].bytes()


def _write_server(base: Path, name: str, node: dict[str, Any]) -> None:
    d = base / name / "certs"
    dns = [*DNS_SANS, *(s for s in node.get("extra_sans", []) if not _is_ip(s))]
    pem = _issue(d, "ca", *dns, *node_ips(base, name, node), cn="127.0.0.1", days=LEAF_DAYS)
    (d / "server.crt").write_bytes(pem)


def _write_front_proxy(base: Path, name: str) -> None:
    d = base / name / "certs"
    pem = _issue(d, "front-proxy-ca", "front-proxy-client", cn="front-proxy-client", days=365)
    (d / "front-proxy-client.crt").write_bytes(pem)


def install_certs(base: Path, name: str, node: dict[str, Any]) -> None:
    """Everything `snap install` generates (MK utils.sh produce_certs, gen_server_cert,
    gen_proxy_client_cert; kubelet and admin client certificates signed by the CA)."""
    load_site()
    d = base / name / "certs"
    (base / name / "credentials").mkdir(parents=True, exist_ok=True)
    d.mkdir(parents=True, exist_ok=True)
    for ca, cn in (("ca", SERVICE_IP), ("front-proxy-ca", "front-proxy-ca")):
        cert, key = _make_ca(cn)
        (d / f"{ca}.crt").write_bytes(cert)
        (d / f"{ca}.key").write_bytes(key)
    _write_server(base, name, node)
    _write_front_proxy(base, name)
    _write_clients(base, name, node)


def _write_clients(base: Path, name: str, node: dict[str, Any]) -> None:
    d = base / name / "certs"
    kubelet = _issue(
        d, "ca", node["hostname"], node["ip"], cn=f"system:node:{node['hostname']}", days=LONG_DAYS
    )
    (d / "kubelet.crt").write_bytes(kubelet)
    admin = _issue(d, "ca", "admin", cn="admin", days=LONG_DAYS)
    (base / name / "credentials" / "client.config").write_text(kubeconfig(admin))


def kubeconfig(cert_pem: bytes) -> str:
    """credentials/client.config as utils.sh create_kubeconfig_x509 writes it."""
    data = base64.b64encode(cert_pem).decode()
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n"
        "    server: https://127.0.0.1:16443\n  name: microk8s-cluster\ncontexts:\n"
        "- context:\n    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\n"
        "current-context: microk8s\nkind: Config\npreferences: {}\nusers:\n- name: admin\n"
        f"  user:\n    client-certificate-data: {data}\n"
        "    client-key-data: UFJJVkFURSBLRVkgTUFURVJJQUw=\n"
    )


def copy_ca(base: Path, source: str, dest: str) -> None:
    """A control-plane join stores the cluster's ca.crt/ca.key; server.crt stays as it was."""
    for f in ("ca.crt", "ca.key"):
        shutil.copyfile(base / source / "certs" / f, base / dest / "certs" / f)


def reissue(base: Path, name: str, node: dict[str, Any], cert: str) -> None:
    load_site()
    if cert == "server.crt":
        _write_server(base, name, node)
    else:
        _write_front_proxy(base, name)


def backup(base: Path, name: str) -> None:
    """MK refresh_certs.py take_backup: certs/ copied to certs-backup/."""
    target = base / name / "certs-backup"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base / name / "certs", target)


def check(base: Path, name: str) -> str:
    """First 12 hex of the SHA-256 of server.crt in DER (MK microk8s-resources/actions/common/
    utils.sh, `openssl x509 -outform der | sha256sum | cut -c1-12`)."""
    pem = (base / name / "certs" / "server.crt").read_text()
    body = "".join(ln for ln in pem.splitlines() if ln and not ln.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()[:12]


REFRESHABLE = {"server.crt": ("kubelite", "cluster-agent"), "front-proxy-client.crt": ("kubelite",)}
CHECKED = {"ca.crt": "CA", "server.crt": "server", "front-proxy-client.crt": "front proxy client"}


def cmd_refresh_certs(state: dict[str, Any], name: str, argv: list[str]) -> int:
    """MK scripts/wrappers/refresh_certs.py: `--check` prints days left per certificate;
    `--cert server.crt|front-proxy-client.crt` backs up, reissues with the node's SANs and
    restarts the services (`Restarting service X.`). Returns the exit code."""
    from tests.support.microk8s import model, snapcmd

    load_site()
    base = model.root()
    if argv[:1] in (["-c"], ["--check"]):
        from cryptography import x509

        for f, label in CHECKED.items():
            loaded = x509.load_pem_x509_certificate((base / name / "certs" / f).read_bytes())
            days = (loaded.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days
            print(f"The {label} certificate will expire in {days} days.")
        return 0
    cert = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-e", "--cert")), "")
    if cert not in REFRESHABLE:
        print(f"model: microk8s refresh-certs {' '.join(argv)} is not modelled")
        return 2
    print(
        "Taking a backup of the current certificates under /var/snap/microk8s/current/certs-backup/"
    )
    backup(base, name)
    print("Creating new certificates")
    reissue(base, name, state["nodes"][name], cert)
    model.event(name, "reissued", cert=cert)
    for service in REFRESHABLE[cert]:
        print(f"Restarting service {service}.", flush=True)
        if service == "kubelite":
            snapcmd.restart_kubelite(state, name)
        else:
            model.event(name, f"restart {service}")
    return 0
