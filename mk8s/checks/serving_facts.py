"""Edge: the facts `mk8s.checks.serving` judges: the app's Ready pods and what each way in
(the LB IP, each node's ingress hostPort) answered for the app host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubernetes import client

from mk8s.checks import kube_facts as kf
from mk8s.checks.serving import Answer
from mk8s.inventory.model import NodeSpec

# agnhost netexec answers /hostname with the name of the pod that served the request.
HOSTNAME_PATH = "/hostname"


def ready_pod_names(api: client.ApiClient, namespace: str, selector: str) -> list[str]:
    """Names of the Ready, not terminating pods matching `selector`: who may answer now."""
    pods: Any = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    names = []
    for pod in pods.items or []:
        conditions = pod.status.conditions if pod.status else None
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions or ())
        if ready and pod.metadata.deletion_timestamp is None:
            names.append(str(pod.metadata.name))
    return sorted(names)


def through_lb(ip: str, host: str, https_port: int = 443) -> Answer:
    """GET /hostname for `host` at the MetalLB IP, over HTTPS where the app is routed with
    either controller (plain HTTP only redirects; `cluster.https_redirect` judges that)."""
    probe = kf.ingress_probe(ip, host, HOSTNAME_PATH, https_port=https_port)
    return Answer(f"LB {ip}", probe)


def through_nodes(nodes: Sequence[NodeSpec], host: str, https_port: int = 443) -> list[Answer]:
    """The same request to every node's ingress hostPort: a node whose controller is down or
    serves something else fails on its own, not hidden behind node 1."""
    return [
        Answer(
            f"node {n.name} ({n.ip})",
            kf.ingress_probe(str(n.ip), host, HOSTNAME_PATH, https_port=https_port),
        )
        for n in nodes
    ]
