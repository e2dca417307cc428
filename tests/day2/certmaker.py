"""MicroK8s-shaped certificates made with trustme, and the node files that hold them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

# Real time: `invoke certs` judges against the clock, so certificates are made relative to it.
NOW = datetime.now(UTC).replace(microsecond=0)


def leaf(ca: trustme.CA, *identities: str, days: float, cn: str = "127.0.0.1") -> bytes:
    cert = ca.issue_cert(
        *identities,
        common_name=cn,
        not_before=NOW - timedelta(days=300),
        not_after=NOW + timedelta(days=days),
    )
    return cert.cert_chain_pems[0].bytes()


def kubeconfig_with(cert_pem: bytes) -> str:
    """credentials/client.config as create_kubeconfig_x509 writes it (utils.sh), key included."""
    data = base64.b64encode(cert_pem).decode()
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n"
        "    server: https://127.0.0.1:16443\n  name: microk8s-cluster\ncontexts:\n"
        "- context:\n    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\n"
        "current-context: microk8s\nkind: Config\npreferences: {}\nusers:\n- name: admin\n"
        f"  user:\n    client-certificate-data: {data}\n"
        "    client-key-data: UFJJVkFURSBLRVkgTUFURVJJQUw=\n"
    )


def write_node(
    root: Path,
    ca: trustme.CA,
    node_ip: str,
    all_ips: list[str],
    *,
    days: dict[str, float] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """The files of one node under `root` + /var/snap/microk8s/current/..."""
    days = {"server": 300, "front": 300, "kubelet": 3000, "admin": 3000, **(days or {})}
    snap = root / "var/snap/microk8s/current"
    (snap / "certs").mkdir(parents=True, exist_ok=True)
    (snap / "credentials").mkdir(parents=True, exist_ok=True)
    dns = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    files = {
        "certs/server.crt": leaf(ca, *dns, "127.0.0.1", *all_ips, days=days["server"]),
        "certs/front-proxy-client.crt": leaf(ca, "front-proxy-client", days=days["front"]),
        "certs/ca.crt": ca.cert_pem.bytes(),
        "certs/kubelet.crt": leaf(ca, node_ip, days=days["kubelet"], cn="system:node:x"),
    }
    for rel, pem in files.items():
        if rel.rsplit("/", 1)[1].removesuffix(".crt") not in skip:
            (snap / rel).write_bytes(pem)
    admin = leaf(ca, "admin", days=days["admin"], cn="admin")
    (snap / "credentials/client.config").write_text(kubeconfig_with(admin))
