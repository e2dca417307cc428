"""`status` end to end over the rig: sshd nodes running the MicroK8s model (tests/support/
microk8s, its certificates and reboot-required file read through its `fs` cat/grep), fakepve
holding the VMs on ZFS, and the real kube-apiserver holding the model's Nodes and calico-node
pods (tests/support/microk8s/kubelets.py), a PDB and a Velero Backup.

Read-only by construction, and proved here: fakepve's request log holds only GETs, the SSH
commands mk8s sent are only reads, the model's command log only `status`/`snap list`, and the
API is read with a ServiceAccount that may only get and list (a write would be refused and
show up as a problem line, and the healthy run has none).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from proxmoxer import ProxmoxAPI

from mk8s.day2 import cluster_facts, status
from mk8s.day2.cluster_facts import Sources
from mk8s.day2.preflight import Policy
from mk8s.day2.status import Health
from mk8s.edges.proxmox import Pve
from mk8s.edges.ssh import Journal, Login, NodeSession, Result, Target
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.model import Environment, NodeSpec
from tests.day2.test_certs_ssh import inventory as certs_lab_inventory
from tests.support.envtest import KubeApiServer, kube_apiserver
from tests.support.fakepve import ServedPve, serve_lab
from tests.support.microk8s.kubelets import Kubelets
from tests.support.microk8s.rig import BIN, FS, Rig
from tests.support.sshd import SshdCluster, sshd_factory

__all__ = ["kube_apiserver", "sshd_factory"]

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "tests" / "conformance" / "fixtures" / "crds.yaml"
NAMES = ("status-k8s-1", "status-k8s-2", "status-k8s-3")
GIB = 1024**3

# What a read-only status may send over SSH (the first word after any path mapping).
READ_COMMANDS = (
    "snap list microk8s",
    "snap info microk8s",
    "microk8s status --format yaml",
    "cat ",
    "grep -m1 ",
)


class RecordingSession(NodeSession):
    """The real NodeSession, noting each command mk8s sends."""

    sent: ClassVar[list[tuple[str, str]]] = []

    def run(self, command: str, **kw: Any) -> Result:
        RecordingSession.sent.append((self.name, command))
        return super().run(command, **kw)


def closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])  # closed again when the socket goes


def inventory(cluster: SshdCluster) -> dict[str, Any]:
    return certs_lab_inventory(cluster, NAMES)


# --- fakepve ----------------------------------------------------------------------------


@contextlib.contextmanager
def proxmox(tmp: Path) -> Iterator[tuple[ServedPve, Pve]]:
    host = f"127.0.0.{secrets.randbelow(100) + 20}"
    with serve_lab(host, 0, tmp / "pve") as served:
        lab = served.pve
        lab.storages["local-zfs"] = {
            "type": "zfspool",
            "active": 1,
            "content": "images,rootdir",
            "pool": "rpool/data",
            "files": set(),
            "total": 900 * GIB,
            "avail": 400 * GIB,
        }
        for i, _ in enumerate(NAMES):
            vmid = 1101 + i
            lab.add_vm(
                vmid,
                NAMES[i],
                node=f"pve{i + 1}",
                status="running",
                config={"scsi0": f"local-zfs:vm-{vmid}-disk-0,size=32G", "memory": 4096},
            )
        port = int(lab.url.rsplit(":", 1)[1])
        api = ProxmoxAPI(
            host, port=port, user="root@pam", password="secret", verify_ssl=served.cafile,
            service="PVE",
        )  # type: ignore[attr-defined]  # fmt: skip
        yield served, Pve(api, lab.url, "PVE_TOKEN_ID", sleep=lambda s: None)


# --- the API server ---------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(core: client.CoreV1Api, ns: str, name: str, node: str, labels: dict[str, str]) -> None:
    core.create_namespaced_pod(
        ns,
        {"metadata": {"name": name, "labels": labels},
         "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]}},
    )  # fmt: skip
    core.patch_namespaced_pod_status(
        name, ns,
        {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": _now()}]}},
    )  # fmt: skip


def set_pdb(api: Any, ns: str, allowed: int) -> None:
    """disruptionsAllowed as the disruption controller computes it (no controller here)."""
    client.PolicyV1Api(api).patch_namespaced_pod_disruption_budget_status(
        "sample-app", ns,
        {"status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2 - allowed,
                    "expectedPods": 2, "observedGeneration": 1}},
    )  # fmt: skip


def reader_kubeconfig(server: KubeApiServer, api: Any, ns: str, path: Path) -> None:
    """A ServiceAccount that may only get and list what status reads."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "status-reader"}})
    rbac.create_cluster_role(
        {"metadata": {"name": f"status-reader-{ns}"},
         "rules": [{"apiGroups": ["", "policy", "velero.io"],
                    "resources": ["nodes", "pods", "poddisruptionbudgets", "backups"],
                    "verbs": ["get", "list"]}]},
    )  # fmt: skip
    rbac.create_cluster_role_binding(
        {"metadata": {"name": f"status-reader-{ns}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": f"status-reader-{ns}"},
         "subjects": [{"kind": "ServiceAccount", "name": "status-reader", "namespace": ns}]},
    )  # fmt: skip
    token = core.create_namespaced_service_account_token(
        "status-reader", ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Config", "current-context": "r",
             "clusters": [{"name": "c", "cluster": {"server": server.url,
                                                    "certificate-authority": str(server.ca_file)}}],
             "users": [{"name": "r", "user": {"token": token}}],
             "contexts": [{"name": "r", "context": {"cluster": "c", "user": "r"}}]}
        )
    )  # fmt: skip
    path.chmod(0o600)


@pytest.fixture
def cluster_objects(kube_apiserver: KubeApiServer) -> Iterator[tuple[Any, str]]:
    """A sample app with its PDB and a Backup; removed afterwards."""
    from tests.support.upstream import create_crds

    api = kube_apiserver.api_client()
    core = client.CoreV1Api(api)
    create_crds(api, yaml.safe_load_all(CRDS.read_text()))
    ns = kube_apiserver.create_namespace(f"status-{secrets.token_hex(3)}")
    for name in ("kube-system", "velero"):
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": name}})
    for i, name in enumerate(NAMES):
        pod(core, ns, f"web-{i}", name, {"app": "web"})
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        ns, {"metadata": {"name": "sample-app"},
             "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}},
    )  # fmt: skip
    set_pdb(api, ns, 1)
    custom = client.CustomObjectsApi(api)
    backup = f"daily-{ns}"
    custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "backups",
        {"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": backup}, "spec": {}},
    )  # fmt: skip
    done = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    custom.patch_namespaced_custom_object_status(
        "velero.io", "v1", "velero", "backups", backup,
        {"status": {"phase": "Completed", "completionTimestamp": done}},
    )  # fmt: skip
    try:
        yield api, ns
    finally:
        custom.delete_namespaced_custom_object("velero.io", "v1", "velero", "backups", backup)
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.delete_cluster_role_binding(f"status-reader-{ns}")
        rbac.delete_cluster_role(f"status-reader-{ns}")
        api.close()


# --- the test ---------------------------------------------------------------------------


class Lab:
    def __init__(self, factory: Any, tmp: Path, server: KubeApiServer, pve: Pve, ns: str) -> None:
        self.rig = Rig(tmp / "model")
        self.cluster = factory(NAMES, path_dirs=[FS, BIN], env=self.rig.session_env())
        ips = {n: self.cluster.nodes[n].host for n in NAMES}
        self.rig.seed(ips)
        self.rig.form(list(NAMES))
        self.kubelets = Kubelets(self.rig, server.api_client())
        self.kubelets.sync()
        self.env: Environment = parse_inventory(yaml.safe_dump(inventory(self.cluster)), "lab")
        self.build = tmp / "build" / "lab"
        self.build.mkdir(parents=True)
        (self.build / "known_hosts").write_text(self.cluster.known_hosts())
        self.kubeconfig = tmp / "reader.kubeconfig"
        self.server, self.pve, self.tmp = server, pve, tmp
        self.down: set[str] = set()

    def target(self, spec: NodeSpec) -> Target:
        node = self.cluster.nodes[spec.name]
        port = closed_port(node.host) if spec.name in self.down else node.port
        return Target(spec, node.host, port)

    def url(self, spec: NodeSpec) -> str:
        """The API "on this node": the one API server, except for nodes that are down."""
        if spec.name in self.down:
            host = self.cluster.nodes[spec.name].host
            return f"https://{host}:{closed_port(host)}"
        return self.server.url

    def read(self) -> status.Report:
        self.kubelets.sync()

        def session(t: Target, login: Login, kh: Path, journal: Journal) -> NodeSession:
            return RecordingSession(t, login, kh, journal)

        src = Sources(
            pve=lambda: self.pve,
            targets={n.name: self.target(n) for n in self.env.nodes},
            session=session,
            kubeconfig=self.kubeconfig,
            node_url=self.url,
            root=self.tmp,
        )
        facts = cluster_facts.read(self.env, self.build, datetime.now(UTC), src)
        return status.judge_status(facts, Policy(rpo_minutes=self.env.slo.rpo_minutes))


def test_status_over_the_rig_healthy_then_voter_down_then_unreachable(
    sshd_factory: Any,
    kube_apiserver: KubeApiServer,
    cluster_objects: tuple[Any, str],
    tmp_path: Path,
) -> None:
    api, ns = cluster_objects
    with proxmox(tmp_path) as (served, pve):
        lab = Lab(sshd_factory, tmp_path, kube_apiserver, pve, ns)
        try:
            run_phases(lab, served, api, ns)
        finally:
            lab.kubelets.cleanup()


def run_phases(lab: Lab, served: ServedPve, api: Any, ns: str) -> None:
    reader_kubeconfig(lab.server, api, ns, lab.kubeconfig)
    lab.rig.reboot_required(NAMES[1])
    mark = lab.rig.mark()
    RecordingSession.sent.clear()
    served.pve.requests.clear()

    healthy = lab.read()
    assert healthy.health is Health.HEALTHY, healthy.problems
    n1 = healthy.facts.node(NAMES[0])
    assert n1.vm is not None and (n1.vm.status, n1.vm.pve_node) == ("running", "pve1")
    assert n1.snap is not None and n1.snap.channel == "1.33/stable" and n1.snap.held
    assert n1.members is not None and {m.role for m in n1.members} == {"voter"}
    assert len(n1.members) == 3 and n1.ready and n1.api and n1.cni_ready
    assert {c.name for c in n1.certs} >= {"server.crt", "front-proxy-client.crt", "ca.crt"}
    assert n1.snapshots is not None and n1.snapshots.api_has_snapshot
    assert healthy.facts.newest_backup is not None
    assert all(v.safe for v in healthy.drain)
    assert n1.snap.revision and n1.snap.latest_revision == n1.snap.revision
    assert n1.kubelet_version == n1.snap.version
    assert healthy.facts.node(NAMES[1]).reboot_required and not n1.reboot_required
    assert f"{NAMES[1]}: reboot required" in " ".join(healthy.notes)

    # read-only, from every side
    assert {m for m, _, _ in served.pve.requests} == {"GET"}, served.pve.requests
    asked = [c for _, c in RecordingSession.sent]
    assert asked.count("snap info microk8s") == 1  # the store, once per channel
    sent = set(asked)
    assert all(c.startswith(READ_COMMANDS) for c in sent), sent
    assert all(argv[:2] in (["microk8s", "status"], ["snap", "list"], ["snap", "info"])
               for argv in lab.rig.commands_since(mark)), lab.rig.commands_since(mark)  # fmt: skip

    # the third node's VM is off: still a listed voter on the others (microk8s#2400)
    lab.rig.power_off(NAMES[2])
    lab.down.add(NAMES[2])
    set_pdb(api, ns, 0)
    degraded = lab.read()
    assert degraded.health is Health.DEGRADED
    text = "\n".join(degraded.problems)
    assert f"voter down: {NAMES[2]}" in text, text
    assert "API not answering" in text  # the probe through the node's own address
    assert sum(f"{NAMES[2]}: SSH not answering" in p for p in degraded.problems) == 1
    assert f"{NAMES[2]}: not Ready" in text  # the kubelet stopped posting: Unknown
    assert f"{NAMES[0]}: not safe to drain:" in text and "it is one of 2 reachable voters" in text
    assert f"PDB sample-app blocks {ns}/web-1" in text

    lab.down.update(NAMES)
    gone = lab.read()
    assert gone.health is Health.UNREACHABLE, [(n.name, n.ssh, n.api) for n in gone.facts.nodes]
    assert status.outcome(gone) is not None and status.outcome(gone).exit_code == 3  # type: ignore[union-attr]
