"""The model's kubelets for a real kube-apiserver (tests/support/envtest.py): each node of the
model becomes a Node whose status follows the model, plus its calico-node pod.

    kubelets = Kubelets(rig, kube_apiserver.api_client(), prefix="t1-")
    kubelets.sync()              # after each model change, or
    with kubelets.running(0.2):  # a background thread syncing every 0.2 s
        ...

What a kubelet posts (kubernetes/kubernetes@v1.33.0 pkg/kubelet/nodestatus/setters.go
ReadyCondition, NodeInfo): Ready True `KubeletReady` while kubelite runs (model.kubelite_up) on
a powered node without the `kubelet_not_ready` fault, False `KubeletNotReady` with that fault,
and `status.nodeInfo.kubeletVersion` = the node's snap version. A kubelet that stopped posting
leaves its last status; the node lifecycle controller then sets Ready Unknown
`NodeStatusUnknown` "Kubelet stopped posting node status." (pkg/controller/nodelifecycle/
node_lifecycle_controller.go tryUpdateNodeHealth), which is what is written here at once: there
is no grace period. The kubelet version stays the last one posted.

Only status is written: spec (cordons) and annotations belong to whoever set them. A Node
exists while its model node is listed by a cluster's Kubernetes nodes (cli.py cmd_remove_node
deletes it); the rig's Nodes carry the label RIG_LABEL so sync() deletes only its own.
The CNI pod is `calico-node-<node>` in kube-system, owned by the calico-node DaemonSet with
label k8s-app=calico-node (MK = canonical/microk8s@1.33 upgrade-scripts/000-switch-to-calico/
resources/calico.yaml); it is Ready iff its node is. Tests share one API server: `prefix` keeps
the Node names of concurrent tests apart (Node `prefix + model name`).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.microk8s import model
from tests.support.microk8s.rig import Rig

RIG_LABEL = "mk8s.test/model-rig"
CNI_NAMESPACE = "kube-system"
CNI_LABELS = {"k8s-app": "calico-node"}
STOPPED = ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")


class Kubelets:
    def __init__(self, rig: Rig, api_client: Any, *, prefix: str = "", cni: bool = True) -> None:
        self.rig = rig
        # Any: the client's Optional-everywhere models would need a check per attribute.
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        self.prefix = prefix
        self.cni = cni
        self.rig_id = uuid.uuid4().hex[:10]
        self._posted: dict[str, str] = {}  # node -> kubelet version last posted
        self._lock = threading.Lock()

    def node_name(self, name: str) -> str:
        return self.prefix + name

    # --- the one call ------------------------------------------------------------------------

    def sync(self) -> None:
        """Make the API server's Nodes (and CNI pods) match the model as it is now."""
        with self._lock:
            wanted = self._wanted()
            for name, node in wanted.items():
                self._sync_node(name, node)
            self._delete_gone(set(wanted))

    @contextlib.contextmanager
    def running(self, period_s: float = 0.2) -> Iterator[Kubelets]:
        """sync() now and every `period_s` in a thread until the block ends."""
        stop = threading.Event()
        self.sync()

        def loop() -> None:
            while not stop.wait(period_s):
                with contextlib.suppress(Exception):  # one failed round; the next retries
                    self.sync()

        thread = threading.Thread(target=loop, name="model-kubelets", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=10)

    # --- pieces ------------------------------------------------------------------------------

    def _wanted(self) -> dict[str, dict[str, Any]]:
        with model.locked(self.rig.root) as state:
            listed = {n for c in state["clusters"].values() for n in c["k8s_nodes"]}
            return {n: dict(v) for n, v in state["nodes"].items() if n in listed}

    def _ready(self, node: dict[str, Any]) -> tuple[str, str, str]:
        if not (node["powered"] and model.kubelite_up(node)):
            return STOPPED
        if node["faults"].get("kubelet_not_ready"):
            return ("False", "KubeletNotReady", "container runtime network not ready")
        return ("True", "KubeletReady", "kubelet is posting ready status")

    def _sync_node(self, name: str, node: dict[str, Any]) -> None:
        k8s = self.node_name(name)
        self._ensure_node(k8s)
        status, reason, message = self._ready(node)
        if status != "Unknown":  # a running kubelet posts its version
            self._posted[name] = str(node.get("version") or "")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        current = self.core.read_node_status(k8s)
        previous = next(
            (c for c in current.status.conditions or [] if c.type == "Ready"),
            None,
        )
        since = previous.last_transition_time if previous and previous.status == status else None
        condition = {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ") if since else now,
        }
        body = {
            "status": {
                "conditions": [condition],
                "addresses": [
                    {"type": "InternalIP", "address": node["ip"]},
                    {"type": "Hostname", "address": node["hostname"]},
                ],
                "nodeInfo": _node_info(self._posted.get(name, str(node.get("version") or ""))),
            }
        }
        self.core.patch_node_status(k8s, body)
        if self.cni:
            self._sync_cni(k8s, status == "True")

    def _ensure_node(self, k8s: str) -> None:
        meta = client.V1ObjectMeta(
            name=k8s,
            labels={
                RIG_LABEL: self.rig_id,
                "kubernetes.io/hostname": k8s,
                "kubernetes.io/os": "linux",
            },
        )
        try:
            self.core.create_node(client.V1Node(metadata=meta))
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _delete_gone(self, wanted: set[str]) -> None:
        ours = self.core.list_node(label_selector=f"{RIG_LABEL}={self.rig_id}").items
        keep = {self.node_name(n) for n in wanted}
        for item in ours:
            if item.metadata.name not in keep:
                self.core.delete_node(item.metadata.name)
                self._delete_pod(item.metadata.name)

    def _daemonset_uid(self) -> str:
        ds = client.V1DaemonSet(
            metadata=client.V1ObjectMeta(
                name="calico-node", namespace=CNI_NAMESPACE, labels=CNI_LABELS
            ),
            spec=client.V1DaemonSetSpec(
                selector=client.V1LabelSelector(match_labels=CNI_LABELS),
                template=_pod_template(),
            ),
        )
        try:
            created = self.apps.create_namespaced_daemon_set(CNI_NAMESPACE, ds)
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = self.apps.read_namespaced_daemon_set("calico-node", CNI_NAMESPACE)
        return str(created.metadata.uid)

    def _sync_cni(self, k8s: str, ready: bool) -> None:
        pod = f"calico-node-{k8s}"
        try:
            self.core.read_namespaced_pod(pod, CNI_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._create_pod(k8s, pod)
        flag = "True" if ready else "False"
        body = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": flag},
                    {"type": "ContainersReady", "status": flag},
                ],
                "containerStatuses": [
                    {
                        "name": "calico-node",
                        "ready": ready,
                        "restartCount": 0,
                        "image": "docker.io/calico/node",
                        "imageID": "",
                        "started": ready,
                        "state": {"running": {}} if ready else {"waiting": {"reason": "NodeDown"}},
                    }
                ],
            }
        }
        self.core.patch_namespaced_pod_status(pod, CNI_NAMESPACE, body)

    def _create_pod(self, k8s: str, pod: str) -> None:
        owner = client.V1OwnerReference(
            api_version="apps/v1",
            kind="DaemonSet",
            name="calico-node",
            uid=self._daemonset_uid(),
            controller=True,
        )
        body = client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=pod, namespace=CNI_NAMESPACE, labels=CNI_LABELS, owner_references=[owner]
            ),
            spec=client.V1PodSpec(node_name=k8s, containers=_containers(), host_network=True),
        )
        self.core.create_namespaced_pod(CNI_NAMESPACE, body)

    def _delete_pod(self, k8s: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                f"calico-node-{k8s}", CNI_NAMESPACE, grace_period_seconds=0
            )

    def cleanup(self) -> None:
        """Delete this rig's Nodes and CNI pods (the API server outlives the test)."""
        with self._lock:
            self._delete_gone(set())


def _pod_template() -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=CNI_LABELS),
        spec=client.V1PodSpec(
            containers=_containers(),
            host_network=True,
        ),
    )


def _containers() -> list[client.V1Container]:
    return [client.V1Container(name="calico-node", image="docker.io/calico/node")]


def _node_info(version: str) -> dict[str, str]:
    return {
        "kubeletVersion": version,
        "kubeProxyVersion": version,
        "machineID": "",
        "systemUUID": "",
        "bootID": "",
        "kernelVersion": "",
        "osImage": "Ubuntu 24.04 LTS",
        "containerRuntimeVersion": "containerd://1.7",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }
