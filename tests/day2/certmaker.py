"""MicroK8s-shaped certificates made with trustme, and the node files that hold them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from tests.support.microk8s import certs as model_certs

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
    """credentials/client.config with this client certificate (the model's writer)."""
    return model_certs.kubeconfig(cert_pem)


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
