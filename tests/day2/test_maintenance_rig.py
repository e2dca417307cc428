"""`maintenance` and `drain` end to end over the rig, with `real_rig` (the edges the tasks use):
sshd nodes running the MicroK8s model (tests/support/microk8s), fakepve holding the VMs, and
the real kube-apiserver holding the model's Nodes and calico-node pods (kubelets.py), a
sample app's pods and its PDB, whose status the test sets (no disruption controller).

Two stand-ins besides the model, each a claim about the real system:
- the API "on this node" (https://NODE_IP:16443, what cluster_facts probes): each MicroK8s
  node serves the API on 16443 (canonical/microk8s@0071dd1d microk8s-resources/default-args/
  kube-apiserver `--secure-port=16443`), so `ApiOnNodes` answers on the node's address only
  while the model's kubelite runs there, and relays to the one real kube-apiserver;
- the controllers: a terminating pod is finished by its kubelet (tests/support/workloads.py
  Kubelet), its ReplicaSet starts a replacement on a schedulable node, and the disruption
  controller recomputes the PDB (allows 1 again once the replacement runs).
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from rich.console import Console

from mk8s.day2 import drain, maintenance
from mk8s.day2.facts import CORDON_ANNOTATION
from mk8s.day2.operation import Options
from mk8s.day2.wait import FakeClock
from mk8s.errors import OperationFailedError
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.model import Environment
from tests.day2.test_certs_ssh import inventory as lab_inventory
from tests.day2.test_status_rig import proxmox
from tests.support import workloads
from tests.support.envtest import KubeApiServer, kube_apiserver
from tests.support.fakepve import ServedPve
from tests.support.microk8s import model
from tests.support.microk8s.kubelets import Kubelets
from tests.support.microk8s.rig import BIN, FS, Rig
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory

__all__ = ["kube_apiserver", "sshd_factory"]

pytestmark = pytest.mark.slow

API_PORT = 16443
BOOT_S = 3.0  # the model keeps a rebooted node's kubelite down this long
TOKEN = ("root@pam!mk8s", "rig-secret")


# --- the API on each node --------------------------------------------------------------------


class ApiOnNodes:
    """https://NODE_IP:16443 for every node: refused unless the model's kubelite runs there,
    else relayed byte for byte (a TLS session of its own each side) to the real API server.
    Its serving certificate names the node IP, as cluster_kube.api_answers expects of
    server.crt (mk8s puts every node IP in the SANs: mk8s.render.launchconfig)."""

    def __init__(self, rig: Rig, ips: dict[str, str], upstream: KubeApiServer, tmp: Path) -> None:
        self.rig, self.ips, self.upstream = rig, ips, upstream
        self.ca = trustme.CA(organization_name="rig nodes")
        self.bundle = tmp / "ca-bundle.crt"
        self.bundle.write_bytes(upstream.ca_file.read_bytes() + self.ca.cert_pem.bytes())
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()

    def up(self, name: str) -> bool:
        with model.locked(self.rig.root) as state:
            node = state["nodes"][name]
            return bool(node["powered"] and model.kubelite_up(node))

    def start(self) -> None:
        for name, ip in self.ips.items():
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ca.issue_cert(ip).configure_cert(ctx)
            sock = socket.create_server((ip, API_PORT))
            sock.settimeout(0.2)
            self.socks.append(sock)
            threading.Thread(target=self._accept, args=(name, sock, ctx), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        for s in self.socks:
            s.close()

    def _accept(self, name: str, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.up(name):
                conn.close()  # nothing listens on 16443 while kubelite is down
                continue
            threading.Thread(target=self._relay, args=(conn, ctx), daemon=True).start()

    def _relay(self, conn: socket.socket, ctx: ssl.SSLContext) -> None:
        conn.settimeout(300)
        with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as front:
            up = ssl.create_default_context(cafile=str(self.upstream.ca_file))
            raw = socket.create_connection((self.upstream.host, self.upstream.port), timeout=300)
            with up.wrap_socket(raw, server_hostname=self.upstream.host) as back:
                _relay_loop(front, back)


def _relay_loop(a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
    """One thread for both directions (an SSL socket is not safe to read and write from two).
    A readable socket may hold no application data (a TLS 1.3 session ticket): a blocking recv
    would then wait while the other side's request is never relayed, so reads time out short
    and are retried."""
    peer = {a: b, b: a}
    idle_until = time.monotonic() + 300  # no idle timeout shorter than a client's pool keeps
    while time.monotonic() < idle_until:
        readable, _, _ = select.select([a, b], [], [], 1)
        for s in readable:
            s.settimeout(0.05)
            try:
                data = s.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            if not data:
                return
            while s.pending():
                data += s.recv(s.pending())
            peer[s].settimeout(30)
            peer[s].sendall(data)
            idle_until = time.monotonic() + 300


# --- the world -------------------------------------------------------------------------------


def inventory(cluster: SshdCluster, names: list[str], served: ServedPve) -> Any:
    """The rig tests' lab inventory, with fakepve as its Proxmox (reached with an API token)."""
    data = lab_inventory(cluster, names)
    cafile = served.cafile  # type: ignore[attr-defined]  # serve_lab sets it
    data["proxmox"].update(endpoint=served.pve.url, ca_bundle=str(cafile), verify_tls=True)
    return data


@dataclass
class World:
    rig: Rig
    cluster: SshdCluster
    env: Environment
    build: Path
    admin: Any
    ns: str
    served: ServedPve
    names: list[str]
    cordons: list[tuple[float, str, str]] = field(default_factory=list)  # (t, node, owner)

    def node(self, name: str) -> Any:
        return client.CoreV1Api(self.admin).read_node(name)

    def cordon(self, name: str) -> tuple[bool, str | None]:
        n = self.node(name)
        return bool(n.spec.unschedulable), (n.metadata.annotations or {}).get(CORDON_ANNOTATION)

    def ready(self, name: str) -> bool:
        conds = self.node(name).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conds)

    def real_rig(self) -> maintenance.Rig:
        return maintenance.real_rig(self.env, self.build)

    def controllers(self) -> None:
        """One round of kubelet, ReplicaSet and disruption controller (see the docstring)."""
        kubelet = workloads.Kubelet(self.admin)
        for name in self.names:
            cordoned, owner = self.cordon(name)
            if cordoned and not any(
                c[1] == name and c[0] > time.time() - 0.5 for c in self.cordons
            ):
                self.cordons.append((time.time(), name, str(owner)))
            for _ in kubelet.finish(name):
                free = [n for n in self.names if not self.cordon(n)[0]]
                workloads.run_pod(self.admin, self.ns, free[0])
                workloads.set_pdb_allowed(self.admin, self.ns, "web", 1, healthy=3)


@contextlib.contextmanager
def running(period_s: float, act: Callable[[], None]) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period_s):
            with contextlib.suppress(Exception):  # a failed round; the next one retries
                act()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.fixture
def world(
    sshd_factory: SshdFactory,
    kube_apiserver: KubeApiServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    suffix = secrets.token_hex(3)
    names = [f"m{suffix}-{i}" for i in (1, 2, 3)]
    rig = Rig(tmp_path / "model")
    cluster = sshd_factory(names, path_dirs=[FS, BIN], env=rig.session_env())
    ips = {n: cluster.nodes[n].host for n in names}
    rig.seed(ips)
    rig.form(names)
    rig.configure(boot_s=BOOT_S)
    admin = kube_apiserver.api_client()
    core: Any = client.CoreV1Api(admin)
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": "kube-system"}})
    ns = kube_apiserver.create_namespace(f"mnt-{suffix}")
    kubelets = Kubelets(rig, admin)
    api = ApiOnNodes(rig, ips, kube_apiserver, tmp_path)
    api.start()
    with proxmox(tmp_path) as (served, _):
        for i, n in enumerate(names):  # the VMs carry the inventory's names
            served.pve.vm(1101 + i).name = n
        served.pve.apitokens[TOKEN[0]] = TOKEN[1]
        monkeypatch.setenv("PVE_TOKEN_ID", TOKEN[0])
        monkeypatch.setenv("PVE_TOKEN_SECRET", TOKEN[1])
        monkeypatch.delenv("KUBECONFIG", raising=False)
        env = parse_inventory(yaml.safe_dump(inventory(cluster, names, served)), "lab")
        build = tmp_path / "build" / "lab"
        build.mkdir(parents=True)
        (build / "known_hosts").write_text(cluster.known_hosts())
        kubeconfig = yaml.safe_load(kube_apiserver.kubeconfig.read_text())
        # The kubeconfig trusts the CA that signs every node's serving certificate.
        for c in kubeconfig["clusters"]:
            c["cluster"].pop("certificate-authority-data", None)
            c["cluster"]["certificate-authority"] = str(api.bundle)
        (build / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (build / "kubeconfig").chmod(0o600)
        w = World(rig, cluster, env, build, admin, ns, served, names)
        kubelets.sync()
        for n in names:
            workloads.run_pod(admin, ns, n, name=f"web-{n}")
        workloads.pdb(admin, ns, "web", allowed=1, healthy=3)
        try:
            with kubelets.running(0.2), running(0.2, w.controllers):
                yield w
        finally:
            api.close()
            kubelets.cleanup()


def voters(w: World) -> list[str]:
    return [a for a, role in w.rig.members(w.names[0]) if role == "voter"]


def run_json(w: World) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((w.build / "day2" / "RUN.json").read_text())
    return data


# --- the tests -------------------------------------------------------------------------------


def test_maintenance_reboots_the_two_nodes_that_need_it_one_at_a_time(world: World) -> None:
    w = world
    n1, _, n3 = w.names
    w.rig.reboot_required(n1, packages=["linux-image-generic"])
    w.rig.reboot_required(n3)
    out = Console(record=True, width=200, file=io.StringIO())
    outcome = maintenance.run_maintenance(w.env, w.real_rig(), w.build, Options(), out=out, err=out)
    text = out.export_text()
    assert outcome is not None, text

    reboots = [e for e in w.rig.events() if e["event"] == "reboot"]
    assert sorted(e["node"] for e in reboots) == sorted([n1, n3]), reboots
    first, second = reboots
    # never two down at once: the second went down only after the first was back
    assert second["at"] >= first["at"] + BOOT_S, reboots
    steps = {s["key"]: s for s in run_json(w)["steps"]}
    assert all(s["state"] == "done" for s in steps.values()), steps
    a, b = first["node"], second["node"]
    assert steps[f"{a}:uncordon"]["finished_at"] <= steps[f"{b}:cordon"]["started_at"]

    seen = {node: owner for _, node, owner in w.cordons}
    assert set(seen) == {n1, n3}, w.cordons  # n2 was never cordoned
    assert all(o.startswith("maintenance lab ") for o in seen.values()), seen
    assert {w.cordon(n) for n in w.names} == {(False, None)}  # lifted, annotation gone
    assert not any((w.rig.root / n / "var/run/reboot-required").exists() for n in w.names)
    assert all(w.ready(n) for n in w.names)
    assert len(voters(w)) == 3
    after = w.real_rig().read()  # what `invoke status` would say now
    assert [n.reboot_required for n in after.nodes] == [False] * 3
    assert all(n.ready and n.api and n.cni_ready and not n.unschedulable for n in after.nodes)


class JumpClock(FakeClock):
    """Time moves by what is slept (so the drain's 300 s eviction budget runs out in a few
    real seconds) while the world acts in real time between polls."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        time.sleep(0.05)


def test_drain_blocked_by_a_pdb_lifts_its_own_cordon_and_reboots_nothing(world: World) -> None:
    w = world
    n2 = w.names[1]

    def budget_taken(label: str) -> None:
        # Another disruption takes the budget once the node is cordoned (after preflight).
        if label == "2:done":  # step 2 is the cordon
            workloads.set_pdb_allowed(w.admin, w.ns, "web", 0, healthy=3)

    rig = replace(w.real_rig(), clock=JumpClock(time.time()), boundary=budget_taken)
    out = Console(record=True, width=200, file=io.StringIO())
    with pytest.raises(OperationFailedError) as failed:
        maintenance.run_drain(w.env, n2, drain.Mode.REBOOT, rig, w.build, Options(), out=out)
    text = "\n".join(failed.value.lines)
    assert f"{w.ns}/web-{n2}" in text, text
    assert f"PDB {w.ns}/web" in text, text
    assert failed.value.exit_code == 1
    assert {c[1] for c in w.cordons} == {n2}  # it was cordoned by the run...
    assert w.cordon(n2) == (False, None)  # ...and that cordon is lifted
    assert not any(e["event"] == "reboot" for e in w.rig.events())
    # the pod is still there: nothing was forced
    assert client.CoreV1Api(w.admin).read_namespaced_pod(f"web-{n2}", w.ns).metadata


def test_drain_refused_by_preflight_when_the_pdb_allows_none_changes_nothing(
    world: World,
) -> None:
    w = world
    n1 = w.names[0]
    workloads.set_pdb_allowed(w.admin, w.ns, "web", 0, healthy=3)
    out = Console(record=True, width=200, file=io.StringIO())
    with pytest.raises(OperationFailedError) as failed:
        maintenance.run_drain(w.env, n1, drain.Mode.REBOOT, w.real_rig(), w.build, Options(),
                              out=out)  # fmt: skip
    text = "\n".join(failed.value.lines)
    assert "preflight failed" in text, text
    assert f"pdbs ({n1}): {n1}: PDB web blocks {w.ns}/web-{n1}" in text, text
    assert not w.cordons and w.cordon(n1) == (False, None)
    assert not any(e["event"] == "reboot" for e in w.rig.events())


class Machines:
    """fakepve's VM power as the machine's: a VM stopped through the API takes its node down
    (the model's node unpowered, its sshd gone, so SSH is refused as on a stopped VM); started
    again, the node boots (the model's `reboot`: a new boot id, kubelite back after boot_s)."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.seen_down: set[str] = set()

    def sync(self) -> None:
        w = self.w
        for i, name in enumerate(w.names):
            running = w.served.pve.vm(1101 + i).status == "running"
            powered = w.rig.node(name)["powered"]
            if not running and powered:
                w.rig.power_off(name)
                w.cluster._stop_node(w.cluster.nodes[name])
                self.seen_down.add(name)
            elif running and not powered:
                w.cluster.restart(name)
                with model.locked(w.rig.root) as state:
                    state["nodes"][name]["powered"] = True
                    model.reboot(state, name, w.rig.root)


def test_drain_stop_shuts_the_vm_down_through_proxmox_and_waits_for_its_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mk8s.edges import proxmox as pve_edge

    w = world
    n3 = w.names[2]
    monkeypatch.setenv("MK8S_MODEL_STATE", str(w.rig.root))  # model.event() in this process
    machines = Machines(w)
    rig = w.real_rig()
    pve = rig.power.pve  # type: ignore[attr-defined]  # NodePower's Proxmox connection

    def operator(label: str) -> None:
        if label == "5:started":  # n3:back: do the host work, then start the VM via the API

            def start() -> None:
                time.sleep(1.0)
                vm = pve_edge.read_vm_facts(pve, w.env)[n3]
                assert vm is not None
                pve_edge.power(pve, vm, "start")

            threading.Thread(target=start, daemon=True).start()

    rig = replace(rig, clock=JumpClock(time.time()), boundary=operator)
    out = Console(record=True, width=200, file=io.StringIO())
    with running(0.1, machines.sync):
        outcome = maintenance.run_drain(w.env, n3, drain.Mode.STOP, rig, w.build, Options(),
                                        out=out)  # fmt: skip
    assert outcome is not None, out.export_text()
    posts = [p for m, p, _ in w.served.pve.requests if m == "POST"]
    assert [p.rsplit("/", 1)[1] for p in posts if "/qemu/1103/status/" in p] == [
        "shutdown",
        "start",
    ], posts
    assert not [p for p in posts if "/qemu/1101/" in p or "/qemu/1102/" in p]
    assert machines.seen_down == {n3}  # it really was down, and only it
    assert [e["node"] for e in w.rig.events() if e["event"] == "reboot"] == [n3]  # the boot
    assert {c[1] for c in w.cordons} == {n3} and w.cordon(n3) == (False, None)
    assert all(w.ready(n) for n in w.names) and len(voters(w)) == 3


def test_maintenance_through_a_node_endpoint_reboots_that_node_last(world: World) -> None:
    """The kubeconfig names one node's API (as `invoke bootstrap` writes it): that node goes
    last, and while it reboots the API answers only after it is back."""
    w = world
    n1, n2, _ = w.names
    path = w.build / "kubeconfig"
    config = yaml.safe_load(path.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{w.cluster.nodes[n1].host}:{API_PORT}"
    path.write_text(yaml.safe_dump(config))
    w.rig.reboot_required(n1)
    w.rig.reboot_required(n2)
    out = Console(record=True, width=200, file=io.StringIO())
    outcome = maintenance.run_maintenance(w.env, w.real_rig(), w.build, Options(), out=out)
    assert outcome is not None, out.export_text()
    assert [e["node"] for e in w.rig.events() if e["event"] == "reboot"] == [n2, n1]
    assert {w.cordon(n) for n in w.names} == {(False, None)}
    assert all(w.ready(n) for n in w.names) and len(voters(w)) == 3
