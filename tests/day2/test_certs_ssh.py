"""`invoke certs` over real sshd nodes holding certificates made by trustme at MicroK8s' paths.

The nodes share this machine, so tests/day2/nodefs/ (first on the sessions' PATH) maps
/var/snap/... to each node's own directory for `cat` and `grep`; the commands mk8s sends are
exactly the ones it sends to a real node.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from mk8s.day2 import certs_flow
from mk8s.day2.certs import Level
from mk8s.edges.ssh import Target
from mk8s.errors import UserError
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.model import Environment
from tests.day2.certmaker import NOW, write_node
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

ROOT = Path(__file__).resolve().parents[2]
NODEFS = Path(__file__).resolve().parent / "nodefs"
NAMES = ("lab-k8s-1", "lab-k8s-2", "lab-k8s-3")
SERVICE_IP = "10.152.183.1"


def inventory(cluster: SshdCluster, names: Sequence[str] = NAMES) -> dict[str, Any]:
    """dev.yaml moved onto the sshd nodes' loopback subnet (the rig tests share it)."""
    data = yaml.safe_load((ROOT / "inventory" / "dev.yaml").read_text())
    prefix = cluster.nodes[names[0]].host.rsplit(".", 1)[0]
    data["name"] = "lab"
    data["tier"] = "dev"
    data["network"].update(
        subnet=f"{prefix}.0/24",
        gateway=f"{prefix}.1",
        dns_servers=[f"{prefix}.1"],
        metallb_range=f"{prefix}.50-{prefix}.69",
    )
    data["nodes"] = [
        {"name": n, "vmid": 1101 + i, "ip": cluster.nodes[n].host, "pve_node": f"pve{i + 1}"}
        for i, n in enumerate(names)
    ]
    data["ssh"].update(
        user="root", port=cluster.nodes[names[0]].port, private_key_file=str(cluster.client_key)
    )
    return data


class Lab:
    def __init__(self, factory: SshdFactory, root: Path) -> None:
        self.fs = root / "nodefs"
        self.cluster = factory(NAMES, path_dirs=[NODEFS], env={"NODE_FS": str(self.fs)})
        self.ca = trustme.CA(organization_name="microk8s lab")
        self.ips = [self.cluster.nodes[n].host for n in NAMES]
        self.data = inventory(self.cluster)
        self.env: Environment = parse_inventory(yaml.safe_dump(self.data), source="lab")
        self.work = root / "work"
        self.build = self.work / "build" / "lab"
        self.build.mkdir(parents=True)
        (self.build / "known_hosts").write_text(self.cluster.known_hosts())
        (self.work / "lab.yaml").write_text(yaml.safe_dump(self.data))
        for name, ip in zip(NAMES, self.ips, strict=True):
            self.node(name, ip)

    def node(self, name: str, ip: str, **kw: object) -> None:
        write_node(self.fs / name, self.ca, ip, [*self.ips, SERVICE_IP], **kw)  # type: ignore[arg-type]

    def check(self) -> certs_flow.CertReport:
        return certs_flow.check(self.env, self.build, NOW)

    def invoke(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "invoke",
                "--search-root",
                str(ROOT),
                "certs",
                "--env",
                str(self.work / "lab.yaml"),
            ],
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "COLUMNS": "250"},
        )

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.fs.rglob("*")):
            if path.is_file():
                h.update(str(path).encode() + path.read_bytes())
        return h.hexdigest()


@pytest.fixture
def lab(sshd_factory: SshdFactory, tmp_path: Path) -> Lab:
    return Lab(sshd_factory, tmp_path)


def levels(report: certs_flow.CertReport) -> dict[tuple[str, str], Level]:
    return {(v.node, v.name): v.level for v in report.verdicts}


@pytest.mark.slow
def test_healthy_nodes_pass_and_the_task_exits_0(lab: Lab) -> None:
    report = lab.check()
    assert report.level is Level.OK
    assert len(report.verdicts) == 15  # five certificates on each of three nodes
    assert set(levels(report).values()) == {Level.OK}
    before = lab.digest()
    done = lab.invoke()
    assert done.returncode == 0, done.stderr
    assert "lab: certificates ok" in done.stdout
    assert done.stdout.count("OK   ") == 15
    assert lab.digest() == before  # read-only


@pytest.mark.slow
def test_a_front_proxy_cert_under_15_days_fails_and_one_under_60_warns(lab: Lab) -> None:
    lab.node(NAMES[1], lab.ips[1], days={"front": 10.5, "server": 40})
    report = lab.check()
    assert levels(report)[(NAMES[1], "front-proxy-client.crt")] is Level.FAIL
    assert levels(report)[(NAMES[1], "server.crt")] is Level.WARN
    assert levels(report)[(NAMES[0], "front-proxy-client.crt")] is Level.OK
    done = lab.invoke()
    assert done.returncode == 1
    assert (
        f"FAIL {NAMES[1]}: front-proxy-client.crt "
        "(/var/snap/microk8s/current/certs/front-proxy-client.crt): 10 days left (< 15)"
    ) in done.stdout
    assert f"WARN {NAMES[1]}: server.crt" in done.stdout
    assert "error: lab: 1 certificate problem(s)" in done.stderr


@pytest.mark.slow
def test_only_warnings_exit_0(lab: Lab) -> None:
    lab.node(NAMES[2], lab.ips[2], days={"admin": 30})
    done = lab.invoke()
    assert done.returncode == 0, done.stderr
    assert "WARN lab-k8s-3: admin kubeconfig" in done.stdout
    assert "lab: certificates warn" in done.stdout


@pytest.mark.slow
def test_a_server_cert_without_a_node_ip_fails_naming_the_ip(lab: Lab) -> None:
    # As if lab-k8s-3 was joined before lab-k8s-2's address was in the SANs.
    write_node(lab.fs / NAMES[2], lab.ca, lab.ips[2], [lab.ips[0], lab.ips[2], SERVICE_IP])
    report = lab.check()
    [bad] = [v for v in report.verdicts if v.name == "server.crt SANs"]
    assert bad.node == NAMES[2] and f"lacks IP SAN(s) {lab.ips[1]}" in bad.message
    assert report.level is Level.FAIL


@pytest.mark.slow
def test_a_missing_kubelet_cert_fails(lab: Lab) -> None:
    (lab.fs / NAMES[0] / "var/snap/microk8s/current/certs/kubelet.crt").unlink()
    report = lab.check()
    [bad] = [v for v in report.verdicts if v.level is Level.FAIL]
    assert bad.node == NAMES[0] and bad.name == "kubelet.crt"
    assert "cannot read it (exit 1: " in bad.message and "No such file" in bad.message


@pytest.mark.slow
def test_a_token_kubeconfig_has_no_certificate_to_expire_but_a_missing_one_fails(lab: Lab) -> None:
    config = lab.fs / NAMES[1] / "var/snap/microk8s/current/credentials/client.config"
    config.write_text("users:\n- name: admin\n  user:\n    token: abc\n")
    config_gone = lab.fs / NAMES[2] / "var/snap/microk8s/current/credentials/client.config"
    config_gone.unlink()
    by_node = {v.node: v for v in lab.check().verdicts if v.name == "admin kubeconfig"}
    assert by_node[NAMES[1]].level is Level.OK
    assert by_node[NAMES[1]].message.endswith("no client certificate: it authenticates by token")
    assert by_node[NAMES[2]].level is Level.FAIL
    assert "cannot read it (exit 2: " in by_node[NAMES[2]].message


@pytest.mark.slow
def test_an_unreachable_node_fails_without_hiding_the_others(lab: Lab) -> None:
    lab.cluster.stop()  # every sshd down...
    lab.cluster.restart(NAMES[0])  # ...but the first
    lab.cluster.restart(NAMES[2])
    report = lab.check()
    [down] = [v for v in report.verdicts if v.name == "ssh"]
    assert down.node == NAMES[1] and down.level is Level.FAIL and "not checked" in down.message
    assert levels(report)[(NAMES[0], "server.crt")] is Level.OK


def test_without_pinned_host_keys_it_refuses(tmp_path: Path) -> None:
    env = parse_inventory((ROOT / "inventory" / "dev.yaml").read_text(), source="dev")
    with pytest.raises(UserError, match="no pinned host keys; run `invoke bootstrap --env dev`"):
        certs_flow.check(env, tmp_path, NOW, targets={"x": Target(env.nodes[0], "127.0.0.1")})


def test_the_task_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "certs", "--env", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: inventory/nope.yaml: no such inventory file"
    dev = str(ROOT / "inventory" / "dev.yaml")
    unpinned = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "certs", "--env", dev],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unpinned.returncode == 2
    assert unpinned.stderr.strip() == (
        "error: build/dev/known_hosts: no pinned host keys; run `invoke bootstrap --env dev` first"
    )
