"""`microk8s refresh-certs --cert X` on a test node, from canonical/microk8s@0950188f
scripts/wrappers/refresh_certs.py (behaviour, not code):

- `--cert` takes only ca.crt, server.crt, front-proxy-client.crt (click.Choice: exit 2 else);
- `refresh_cert`: prints "Taking a backup of the current certificates under
  $SNAP_DATA/certs-backup/", copies certs/ and credentials/ there (`take_backup`), prints
  "Creating new certificates", then reproduces the one certificate from the node's CA
  (`reproduce_server_cert` / `reproduce_front_proxy_client_cert` via utils.sh, 365 days:
  microk8s-resources/actions/common/utils.sh `-days 365`) and restarts kubelite ("Restarting
  service kubelite."), for server.crt the cluster agent too;
- a failure to produce prints "Failed to produce new certificates. Reverting.", restores the
  backup (`undo_refresh`) and exits 20; ca.crt is not modelled (mk8s refuses it before).

The node's files live under $NODE_FS/$SSHD_NODE (tests/day2/nodefs). server.crt's IP SANs are
the node's `csr-ips` file: what csr.conf renders from the host's addresses and the launch
configuration's extraSANs. Faults, files under the node's `faults/`: `refresh-fail` (the
generation fails), `drop-san` (an IP that the new server.crt lacks, as when the template
edits are not picked up: pitfalls #2576). Every call is appended to the node's `commands.log`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERTS = ("ca.crt", "server.crt", "front-proxy-client.crt")
DNS = ("kubernetes", "kubernetes.default", "kubernetes.default.svc")


def node_dir() -> Path:
    return Path(os.environ["NODE_FS"]) / os.environ["SSHD_NODE"]


def issue(snap: Path, cn: str, ips: list[str], dns: tuple[str, ...]) -> bytes:
    ca = x509.load_pem_x509_certificate((snap / "certs/ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((snap / "certs/ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=365))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


def main(argv: list[str]) -> int:
    node = node_dir()
    with (node / "commands.log").open("a") as log:
        log.write("microk8s " + " ".join(argv) + "\n")
    if argv[:1] != ["refresh-certs"] or len(argv) != 3 or argv[1] != "--cert":
        print(f"fake: microk8s {' '.join(argv)} is not modelled", file=sys.stderr)
        return 2
    cert = argv[2]
    if cert not in CERTS or cert == "ca.crt":
        print(f"Error: Invalid value for '-e' / '--cert': {cert!r}", file=sys.stderr)
        return 2
    snap = node / "var/snap/microk8s/current"
    backup = snap / "certs-backup"
    print(
        "Taking a backup of the current certificates under /var/snap/microk8s/current/certs-backup/"
    )
    backup.mkdir(exist_ok=True)
    for sub in ("certs", "credentials"):
        shutil.copytree(snap / sub, backup / sub, dirs_exist_ok=True)
    print("Creating new certificates")
    faults = node / "faults"
    if (faults / "refresh-fail").exists():
        print("Failed to produce new certificates. Reverting.")
        shutil.copytree(backup / "certs", snap / "certs", dirs_exist_ok=True)
        return 20
    if cert == "server.crt":
        dropped = (
            (faults / "drop-san").read_text().split() if (faults / "drop-san").exists() else []
        )
        ips = [ip for ip in (node / "csr-ips").read_text().split() if ip not in dropped]
        (snap / "certs/server.crt").write_bytes(issue(snap, "127.0.0.1", ips, DNS))
        print("Restarting service kubelite.")
        print("Restarting service cluster-agent.")
    else:
        (snap / "certs/front-proxy-client.crt").write_bytes(
            issue(snap, "front-proxy-client", [], ())
        )
        print("Restarting service kubelite.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
