"""Node-loss drill: the VM is powered off through the Proxmox API (fakepve, real HTTP and
UPIDs), the cluster side is a real kube-apiserver where a test actor plays the node lifecycle
controller, ReplicaSet, scheduler and kubelet by watching the VM's power state."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import drills, resilience
from mk8s.inventory.model import Environment, NodeSpec

pytestmark = pytest.mark.slow

SELECTOR = {"app.kubernetes.io/name": "sample-app"}


def _set_ready(core: Any, name: str, ready: bool) -> None:
    now = datetime.now(UTC).isoformat()
    core.patch_node_status(
        name,
        {"status": {"conditions": [{
            "type": "Ready", "status": "True" if ready else "Unknown",
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "" if ready else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": now, "lastTransitionTime": now}]}},
    )  # fmt: skip


def _run_pod(core: Any, namespace: str, node: str) -> str:
    name = f"sample-app-{secrets.token_hex(3)}"
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=SELECTOR),
            spec=client.V1PodSpec(
                node_name=node, containers=[client.V1Container(name="app", image="agnhost")]
            ),
        ),
    )
    now = datetime.now(UTC).isoformat()
    core.patch_namespaced_pod_status(
        name, namespace,
        {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}},
    )  # fmt: skip
    return name


class ClusterActor:
    """Reacts to the victim VM's power state as the cluster would, unless told not to."""

    def __init__(
        self, api: Any, pve: Any, vmid: int, victim: str, spare: str, namespace: str,
        reschedule: bool = True, api_endpoint: ApiEndpoint | None = None,
        boot_s: float = 0.0,
    ) -> None:  # fmt: skip
        self.core = client.CoreV1Api(api)
        self.pve, self.vmid, self.victim, self.spare = pve, vmid, victim, spare
        self.namespace, self.reschedule, self.endpoint = namespace, reschedule, api_endpoint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.was_down = False
        # A node takes time to boot: it is back (API endpoint, Ready) no sooner than this
        # after it went down, so a probe every 0.5 s surely sees the outage.
        self.boot_s, self.down_at = boot_s, 0.0

    def __enter__(self) -> ClusterActor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            running = self.pve.vm(self.vmid).status == "running"
            if not running and not self.was_down:
                self.was_down, self.down_at = True, time.monotonic()
                if self.endpoint:
                    self.endpoint.down()
                _set_ready(self.core, self.victim, False)
                if self.reschedule:
                    for pod in self.core.list_namespaced_pod(self.namespace).items:
                        if pod.spec.node_name == self.victim:
                            self.core.delete_namespaced_pod(
                                pod.metadata.name, self.namespace, grace_period_seconds=0
                            )
                            _run_pod(self.core, self.namespace, self.spare)
            elif running and self.was_down and time.monotonic() - self.down_at >= self.boot_s:
                self.was_down = False
                if self.endpoint:
                    self.endpoint.up()
                _set_ready(self.core, self.victim, True)
            self._stop.wait(0.05)


class ApiEndpoint:
    """A real HTTP endpoint that can go away and come back on the same port (an API server
    address that lives on the stopped node)."""

    def __init__(self) -> None:
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    def up(self) -> None:
        class Ok(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Ok)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def probe(self) -> bool:
        return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=0.5).ok


@pytest.fixture
def drill_env(
    fakepve: Any, fakepve_cafile: str, dev_env: Environment, monkeypatch: pytest.MonkeyPatch
) -> Environment:
    """dev's inventory pointed at the fake PVE, with an API token in the named variables."""
    fakepve.apitokens["root@pam!mk8s"] = "0123-secret"
    monkeypatch.setenv(dev_env.proxmox.token_id_env, "root@pam!mk8s")
    monkeypatch.setenv(dev_env.proxmox.token_secret_env, "0123-secret")
    for node in dev_env.nodes:
        fakepve.add_vm(node.vmid, node.name, node=node.pve_node, status="running")
    data = dev_env.model_dump(mode="json")
    data["proxmox"].update(endpoint=fakepve.url, ca_bundle=fakepve_cafile)
    return Environment.model_validate(data)


@pytest.fixture
def lab_cluster(api: Any, namespace: str, dev_env: Environment) -> Iterator[list[str]]:
    """Nodes named like dev's (suffixed, nodes are cluster-wide) with two app replicas."""
    core = client.CoreV1Api(api)
    tag = secrets.token_hex(2)
    names = [f"{n.name}-{tag}" for n in dev_env.nodes]
    for name in names:
        core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
        _set_ready(core, name, True)
    _run_pod(core, namespace, names[0])
    _run_pod(core, namespace, names[2])
    yield names
    for name in names:
        with contextlib.suppress(ApiException):
            core.delete_node(name)


def _drill(
    api: Any, env: Environment, names: list[str], namespace: str, timeout_s: float,
    probe: Any = None,
) -> resilience.NodeLossDrill:  # fmt: skip
    victim_spec = env.nodes[2]
    victim = NodeSpec(name=names[2], vmid=victim_spec.vmid, ip=victim_spec.ip,
                      pve_node=victim_spec.pve_node)  # fmt: skip
    vm = drills.PveVm(drills.proxmox_api(env), victim.pve_node, victim.vmid)
    return drills.node_loss_drill(
        api, vm, victim, namespace, "app.kubernetes.io/name=sample-app",
        timeout_s=timeout_s, probe=probe, poll_s=0.1,
    )  # fmt: skip


def test_node_loss_passes_when_api_stays_up_pods_move_and_node_returns(
    api: Any, namespace: str, drill_env: Environment, lab_cluster: list[str], fakepve: Any
) -> None:
    vmid = drill_env.nodes[2].vmid
    with ClusterActor(api, fakepve, vmid, lab_cluster[2], lab_cluster[1], namespace):
        drill = _drill(api, drill_env, lab_cluster, namespace, timeout_s=20)
    verdict = resilience.availability(drill)
    assert verdict.passed, verdict
    assert drill.longest_api_gap_s < 5
    assert fakepve.vm(vmid).status == "running"
    requests_seen = [path for method, path, _ in fakepve.requests if method == "POST"]
    assert requests_seen[-2:] == [
        f"/api2/json/nodes/pve3/qemu/{vmid}/status/stop",
        f"/api2/json/nodes/pve3/qemu/{vmid}/status/start",
    ]


def test_node_loss_fails_when_workloads_are_not_rescheduled(
    api: Any, namespace: str, drill_env: Environment, lab_cluster: list[str], fakepve: Any
) -> None:
    vmid = drill_env.nodes[2].vmid
    with ClusterActor(api, fakepve, vmid, lab_cluster[2], lab_cluster[1], namespace,
                      reschedule=False):  # fmt: skip
        drill = _drill(api, drill_env, lab_cluster, namespace, timeout_s=2)
    verdict = resilience.availability(drill)
    assert not verdict.passed
    assert "workloads not rescheduled (1/2 ready off" in verdict.message
    assert drill.node_returned  # only the rescheduling failed


def test_node_loss_fails_when_the_node_does_not_come_back(
    api: Any, namespace: str, drill_env: Environment, lab_cluster: list[str], fakepve: Any
) -> None:
    vmid = drill_env.nodes[2].vmid
    fakepve.fail("POST", f"/nodes/pve3/qemu/{vmid}/status/start", 500, "start failed: boom")
    with ClusterActor(api, fakepve, vmid, lab_cluster[2], lab_cluster[1], namespace):
        drill = _drill(api, drill_env, lab_cluster, namespace, timeout_s=3)
    verdict = resilience.availability(drill)
    assert not verdict.passed
    assert f"node {lab_cluster[2]} did not return" in verdict.message


def test_node_loss_measures_the_longest_api_gap(
    api: Any, namespace: str, drill_env: Environment, lab_cluster: list[str], fakepve: Any
) -> None:
    """The API endpoint lives on the stopped node (no VIP): clients see an outage."""
    vmid = drill_env.nodes[2].vmid
    endpoint = ApiEndpoint()
    try:
        actor = ClusterActor(api, fakepve, vmid, lab_cluster[2], lab_cluster[1], namespace,
                             api_endpoint=endpoint, boot_s=1.5)  # fmt: skip
        with actor:
            drill = _drill(api, drill_env, lab_cluster, namespace, timeout_s=20,
                           probe=endpoint.probe)  # fmt: skip
    finally:
        endpoint.down()
    assert drill.longest_api_gap_s >= 1.0
    verdict = resilience.availability(drill, max_gap_s=0.5)
    assert not verdict.passed
    assert "API unreachable for" in verdict.message


def test_node_loss_with_one_replica_is_nothing_to_measure_and_stops_nothing(
    api: Any, namespace: str, drill_env: Environment, lab_cluster: list[str], fakepve: Any
) -> None:
    """`0 >= 0` passed before: with one Ready replica losing its node is an outage."""
    core = client.CoreV1Api(api)
    first = next(p for p in core.list_namespaced_pod(namespace).items
                 if p.spec.node_name == lab_cluster[0])  # fmt: skip
    core.delete_namespaced_pod(first.metadata.name, namespace, grace_period_seconds=0)
    drill = _drill(api, drill_env, lab_cluster, namespace, timeout_s=2)
    verdict = resilience.availability(drill)
    assert not verdict.passed
    assert verdict.measured == "nothing to measure"
    assert "1 Ready app replicas before the drill, 1 on" in verdict.message
    assert not [p for m, p, _ in fakepve.requests if m == "POST" and p.endswith("/status/stop")]


def test_node_loss_of_a_node_hosting_no_replica_is_nothing_to_measure(
    api: Any, namespace: str, drill_env: Environment, lab_cluster: list[str], fakepve: Any
) -> None:
    core = client.CoreV1Api(api)
    for pod in core.list_namespaced_pod(namespace).items:
        if pod.spec.node_name == lab_cluster[2]:
            core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    _run_pod(core, namespace, lab_cluster[1])
    drill = _drill(api, drill_env, lab_cluster, namespace, timeout_s=2)
    verdict = resilience.availability(drill)
    assert not verdict.passed
    assert f"2 Ready app replicas before the drill, 0 on {lab_cluster[2]}" in verdict.message


def test_pick_victim_takes_a_node_with_a_replica_and_not_the_api_endpoint(
    api: Any, namespace: str, dev_env: Environment, lab_cluster: list[str]
) -> None:
    pods = drills.app_pods(api, namespace, "app.kubernetes.io/name=sample-app")
    nodes = [NodeSpec(name=n, vmid=s.vmid, ip=s.ip, pve_node=s.pve_node)
             for n, s in zip(lab_cluster, dev_env.nodes, strict=True)]  # fmt: skip
    # Replicas on nodes 1 and 3; node 3 is the API endpoint: node 1 is the one to stop.
    victim = drills.pick_victim(nodes, pods, nodes[2].ip)
    assert victim is not None and victim.name == lab_cluster[0]
    assert drills.pick_victim(nodes[1:2], pods, nodes[0].ip) is None


def test_api_probe_needs_the_datastore_where_version_does_not(tmp_path: Any) -> None:
    """etcd frozen (quorum lost): /version still answers, the drill's list probe does not."""
    import signal

    from tests.support.envtest import running

    with running(tmp_path / "envtest") as server:
        api = server.api_client()
        probe = drills.api_probe(api, "default", timeout_s=2.0)
        assert probe()
        etcd = server._procs[0]  # started first (tests/support/envtest.py start())
        etcd.send_signal(signal.SIGSTOP)
        try:
            assert client.VersionApi(api).get_code(_request_timeout=2.0).git_version
            with pytest.raises(Exception):  # noqa: B017 (a timeout or a 5xx, either is down)
                probe()
        finally:
            etcd.send_signal(signal.SIGCONT)


def test_proxmox_api_needs_the_token_variables(
    dev_env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(dev_env.proxmox.token_id_env, raising=False)
    with pytest.raises(Exception, match="set PVE_TOKEN_ID and PVE_TOKEN_SECRET"):
        drills.proxmox_api(dev_env)
