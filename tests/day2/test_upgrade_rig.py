"""`invoke upgrade` end to end over the rig: sshd nodes running the MicroK8s model (tests/support/
microk8s: channels, revisions, held, a refresh that restarts kubelite or breaks it), fakepve
holding the VMs on ZFS, and the real kube-apiserver holding the model's Nodes and calico-node
pods (tests/support/microk8s/kubelets.py, synced in the background).

The path is the task's own (mk8s.day2.upgrade_run.upgrade, what `invoke_upgrade` calls) on
`LiveEdges`: facts through mk8s.day2.cluster_facts over SSH, cordons and evictions through the
kube edge, snapshots through Proxmox, `snap refresh` on the node. Only the waits are shortened,
through `Settings` (`tune`). The conformance subset is served, not stubbed: a CoreDNS Deployment
with kube-dns endpoints in the API server, and an ingress Service whose LoadBalancer IP is a
loopback address with an HTTP server on port 80 (a 404, as nginx's default backend answers).

As in tests/day2/test_status_rig.py, every node's "own" API address is the one API server, so
the kubeconfig endpoint is the first node (cluster_facts takes the first node whose URL is the
kubeconfig's); with three voters and no leader known, the order is node 2, node 3, node 1.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from proxmoxer import ProxmoxAPI
from rich.console import Console

from mk8s.day2 import cluster_facts
from mk8s.day2.cluster_facts import Sources
from mk8s.day2.facts import CORDON_ANNOTATION
from mk8s.day2.operation import Options
from mk8s.day2.upgrade_edges import LiveEdges
from mk8s.day2.upgrade_run import upgrade
from mk8s.edges.kube import KubeApi
from mk8s.edges.proxmox import Pve
from mk8s.edges.ssh import Target
from mk8s.errors import OperationFailedError
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from tests.day2.test_certs_ssh import inventory as lab_inventory
from tests.support.envtest import KubeApiServer, kube_apiserver
from tests.support.fakepve import ServedPve, serve_lab
from tests.support.microk8s.kubelets import Kubelets
from tests.support.microk8s.rig import BIN, FS, Rig
from tests.support.sshd import SshdCluster, sshd_factory

__all__ = ["kube_apiserver", "sshd_factory"]

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "tests" / "conformance" / "fixtures" / "crds.yaml"
GIB = 1024**3
OLD, NEW = "1.32/stable", "1.33/stable"
STORE = {OLD: ("7964", "v1.32.9"), NEW: ("8205", "v1.33.5")}
# Short waits for the rig; the settle is kept above the kubelets' sync period.
TUNE = {"gate_timeout_s": 60.0, "conformance_timeout_s": 30.0, "settle_s": 0.5,
        "refresh_timeout_s": 120.0, "interval_s": 0.3}  # fmt: skip


def inventory(cluster: SshdCluster, names: tuple[str, ...]) -> dict[str, Any]:
    data = lab_inventory(cluster, names)
    data["microk8s"]["channel"] = NEW  # the trigger: the inventory raised to the next minor
    return data


@contextlib.contextmanager
def proxmox(tmp: Path, names: tuple[str, ...]) -> Iterator[tuple[ServedPve, Pve]]:
    host = f"127.0.0.{secrets.randbelow(100) + 20}"
    with serve_lab(host, 0, tmp / "pve") as served:
        lab = served.pve
        lab.storages["local-zfs"] = {
            "type": "zfspool", "active": 1, "content": "images,rootdir", "pool": "rpool/data",
            "files": set(), "total": 900 * GIB, "avail": 400 * GIB,
        }  # fmt: skip
        for i, name in enumerate(names):
            vmid = 1101 + i
            lab.add_vm(
                vmid, name, node=f"pve{i + 1}", status="running",
                config={"scsi0": f"local-zfs:vm-{vmid}-disk-0,size=32G", "memory": 4096,
                        "agent": "1"},
            )  # fmt: skip
        port = int(lab.url.rsplit(":", 1)[1])
        cafile = served.cafile  # type: ignore[attr-defined]  # set by serve_lab
        api = ProxmoxAPI(host, port=port, user="root@pam", password="secret", verify_ssl=cafile,
                         service="PVE")  # fmt: skip
        yield served, Pve(api, lab.url, "PVE_TOKEN_ID", sleep=lambda s: None)


# --- what the conformance subset probes, served ------------------------------------------


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's name
        self.send_response(404)  # nginx's default backend: the controller answered
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def ingress_lb() -> Iterator[str]:
    ip = f"127.0.0.{secrets.randbelow(50) + 150}"
    server = http.server.ThreadingHTTPServer((ip, 80), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ip
    finally:
        server.shutdown()
        server.server_close()


def _ensure_ns(core: Any, name: str) -> None:
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": name}})


@contextlib.contextmanager
def served_cluster(api: Any, lb_ip: str) -> Iterator[None]:
    """CoreDNS available with endpoints, the ingress Service with its LB IP, a fresh Backup."""
    from tests.support.upstream import create_crds

    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    create_crds(api, yaml.safe_load_all(CRDS.read_text()))
    for ns in ("kube-system", "ingress", "velero"):
        _ensure_ns(core, ns)
    labels = {"k8s-app": "kube-dns"}
    with contextlib.suppress(ApiException):
        apps.delete_namespaced_deployment("coredns", "kube-system")
    apps.create_namespaced_deployment(
        "kube-system",
        {"metadata": {"name": "coredns"},
         "spec": {"selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "c", "image": "coredns"}]}}}},
    )  # fmt: skip
    apps.patch_namespaced_deployment_status(
        "coredns", "kube-system",
        {"status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1}},
    )  # fmt: skip
    with contextlib.suppress(ApiException):
        core.delete_namespaced_endpoints("kube-dns", "kube-system")
    core.create_namespaced_endpoints(
        "kube-system",
        {"metadata": {"name": "kube-dns"},
         "subsets": [{"addresses": [{"ip": "10.1.0.10"}], "ports": [{"port": 53}]}]},
    )  # fmt: skip
    svc = f"lb-{secrets.token_hex(3)}"
    core.create_namespaced_service(
        "ingress",
        {"metadata": {"name": svc},
         "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"a": "b"}}},
    )  # fmt: skip
    core.patch_namespaced_service_status(
        svc, "ingress", {"status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}}
    )
    backup = f"daily-{secrets.token_hex(3)}"
    custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "backups",
        {"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": backup}, "spec": {}},
    )  # fmt: skip
    done = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 300))
    custom.patch_namespaced_custom_object_status(
        "velero.io", "v1", "velero", "backups", backup,
        {"status": {"phase": "Completed", "completionTimestamp": done}},
    )  # fmt: skip
    try:
        yield
    finally:
        core.delete_namespaced_service(svc, "ingress")
        custom.delete_namespaced_custom_object("velero.io", "v1", "velero", "backups", backup)
        apps.delete_namespaced_deployment("coredns", "kube-system")
        core.delete_namespaced_endpoints("kube-dns", "kube-system")


# --- the lab ------------------------------------------------------------------------------


class RecordingEdges(LiveEdges):
    """LiveEdges noting when each snapshot was taken (against the model's refresh events)."""

    taken: list[tuple[str, float]]

    def take_snapshot(self, node: str, name: str, description: str) -> None:
        super().take_snapshot(node, name, description)
        self.taken.append((node, time.time()))


class Lab:
    def __init__(
        self, factory: Any, tmp: Path, server: KubeApiServer, pve: Pve, names: tuple[str, ...]
    ) -> None:
        self.names, self.tmp = names, tmp
        self.rig = Rig(tmp / "model")
        self.rig.root.mkdir(parents=True)
        self.rig.configure(restart_s=1.0)  # kubelite is down a second after each refresh
        self.rig.set_store(STORE)
        self.cluster = factory(names, path_dirs=[FS, BIN], env=self.rig.session_env())
        self.rig.seed({n: self.cluster.nodes[n].host for n in names}, channel=OLD)
        self.rig.form(list(names))
        self.kubelets = Kubelets(self.rig, server.api_client())
        self.kubelets.sync()
        self.inventory = tmp / "lab.yaml"
        self.inventory.write_text(yaml.safe_dump(inventory(self.cluster, names)))
        self.env: Environment = load_environment(str(self.inventory))
        self.build = tmp / "build" / "lab"
        self.build.mkdir(parents=True)
        (self.build / "known_hosts").write_text(self.cluster.known_hosts())
        src = Sources(
            pve=lambda: pve,
            targets={
                n.name: Target(n, self.cluster.nodes[n.name].host, self.cluster.nodes[n.name].port)
                for n in self.env.nodes
            },
            kubeconfig=server.kubeconfig,
            node_url=lambda spec: server.url,
            root=tmp,
        )
        self.edges = RecordingEdges(self.env, self.build, pve, KubeApi(server.kubeconfig), src)
        self.edges.taken = []
        self.out, self.err = Console(record=True, width=200), Console(record=True, width=200)

    def run(self, **tune: float) -> tuple[str, ...]:
        with self.kubelets.running(0.2):
            return upgrade(
                self.env, str(self.inventory), self.edges, Options(), outside_window=False,
                out=self.out, err=self.err, tune={**TUNE, **tune}, root=self.tmp,
            )  # fmt: skip

    def printed(self) -> str:
        return self.out.export_text() + self.err.export_text()

    def refreshes(self) -> list[tuple[str, float]]:
        return [(e["node"], e["at"]) for e in self.rig.events() if e["event"] == "refreshed"]

    def commands(self) -> list[tuple[str, list[str]]]:
        return [(e["node"], e["argv"]) for e in self.rig.journal()]


@contextlib.contextmanager
def lab_for(
    factory: Any, tmp: Path, server: KubeApiServer, names: tuple[str, ...]
) -> Iterator[tuple[Lab, ServedPve]]:
    api = server.api_client()
    with proxmox(tmp, names) as (served, pve), ingress_lb() as ip, served_cluster(api, ip):
        lab = Lab(factory, tmp, server, pve, names)
        try:
            yield lab, served
        finally:
            lab.kubelets.cleanup()
            api.close()


def _names(tag: str) -> tuple[str, ...]:
    return tuple(f"{tag}-k8s-{i}" for i in (1, 2, 3))


def _no_single_voter_rewound(lab: Lab, served: ServedPve) -> None:
    assert not any(argv[:2] == ["snap", "revert"] for _, argv in lab.commands())
    assert "reverted" not in [e["event"] for e in lab.rig.events()]
    assert served.pve.rollback_requests() == []


def test_upgrade_over_the_rig_green(
    sshd_factory: Any, kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    names = _names("upg")
    with lab_for(sshd_factory, tmp_path, kube_apiserver, names) as (lab, served):
        before = cluster_facts.read(lab.env, lab.build, _now(), lab.edges.src)
        assert {n.snap.channel for n in before.nodes if n.snap} == {OLD}, before.problems
        lines = lab.run()
        printed = lab.printed()
        assert lines == (f"lab: every node on {NEW}; evidence recorded",), printed

        # the order: stand-bys/spares first (none here: three voters), the endpoint last
        refreshed = lab.refreshes()
        assert [n for n, _ in refreshed] == [names[1], names[2], names[0]], printed
        sent = [(n, a) for n, a in lab.commands() if a[:2] == ["snap", "refresh"]]
        assert [n for n, a in sent if f"--channel={NEW}" in a] == [names[1], names[2], names[0]]
        holds = [n for n, a in sent if a[2:3] == ["--hold"]]
        assert holds == [names[1], names[2], names[0]]

        # one disk-only snapshot set of every VM, taken before the first refresh
        requests = served.pve.snapshot_requests()
        assert sorted(requests) == [(1101, "mk8s-pre-1-33"), (1102, "mk8s-pre-1-33"),
                                    (1103, "mk8s-pre-1-33")]  # fmt: skip
        assert max(t for _, t in lab.edges.taken) < refreshed[0][1]
        for vmid in (1101, 1102, 1103):
            vm = served.pve.vm(vmid)
            snap = vm.snapshots["mk8s-pre-1-33"]
            assert not snap.get("vmstate"), snap
            assert ("fsfreeze-freeze", {}) in vm.agent_requests

        # the green end state, read again through the same reader
        after = cluster_facts.read(lab.env, lab.build, _now(), lab.edges.src)
        for n in after.nodes:
            assert n.snap is not None and n.snap.channel == NEW, n
            assert n.snap.revision == STORE[NEW][0] and n.snap.held, n
            assert n.ready and n.kubelet_version == STORE[NEW][1], n
            assert n.members is not None and len([m for m in n.members if m.role == "voter"]) == 3
            assert not n.unschedulable and n.cordoned_by is None, n  # cordons lifted
        assert len({frozenset(n.members or ()) for n in after.nodes}) == 1  # agreed by all
        _no_single_voter_rewound(lab, served)

        # evidence: reports/lab/RUN/day2.json, green, before and after per node
        found = list((tmp_path / "reports" / "lab").glob("*/day2.json"))
        assert len(found) == 1, found
        record = json.loads(found[0].read_text())
        assert record["outcome"] == "green" and record["channel"] == NEW
        assert record["snapshots"] == ["mk8s-pre-1-33"]
        assert {n["node"]: (n["before"]["channel"], n["after"]["channel"])
                for n in record["nodes"]} == {n: (OLD, NEW) for n in names}  # fmt: skip


def test_unhealthy_after_the_first_refresh_stops_with_two_ways_out(
    sshd_factory: Any, kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    names = _names("upf")
    with lab_for(sshd_factory, tmp_path, kube_apiserver, names) as (lab, served):
        first = names[1]  # the first in the order (see the module doc)
        lab.rig.fault(first, unhealthy_after_refresh=True)
        with pytest.raises(OperationFailedError) as failed:
            lab.run(gate_timeout_s=10.0)  # the node never comes back: no need to wait 60 s
        assert failed.value.exit_code == 1
        text = "\n".join(failed.value.lines)
        assert f"{first} is unhealthy on the new revision. Two ways out" in text, text
        assert "--recover rebuild-node" in text and "--recover rollback-cluster" in text
        assert f"Never `snap revert` or roll back {first} alone" in text

        assert [n for n, _ in lab.refreshes()] == [first]  # no other node refreshed
        for other in (names[0], names[2]):
            assert lab.rig.node(other)["channel"] == OLD
            assert not any(
                n == other and a[:2] == ["snap", "refresh"] and "--hold" not in a
                for n, a in lab.commands()
            )
        _no_single_voter_rewound(lab, served)
        seen = lab.edges.kube.node(first) or {}
        annotations = (seen.get("metadata") or {}).get("annotations") or {}
        assert annotations.get(CORDON_ANNOTATION, "").startswith("upgrade ")  # kept for recover
        found = list((tmp_path / "reports" / "lab").glob("*/day2.json"))
        assert len(found) == 1 and json.loads(found[0].read_text())["outcome"] == "failed"


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
