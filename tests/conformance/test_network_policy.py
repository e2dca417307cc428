"""phase2.network_policy on the rig: the sample app's real policies in a real kube-apiserver,
probe pods run by a test kubelet that plays the CNI (it connects or times out as Calico would
for the probe's source namespace). A block counts only beside a control that got through."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import cluster, netpol
from mk8s.checks import kube_facts as kf
from tests.conformance.actors import FakeKubelet, terminated
from tests.conformance.rig import APP_SELECTOR, ROOT, ready_pod

pytestmark = pytest.mark.slow

POD_IP = "10.1.23.7"
TIMED_OUT = "blocked: wget: download timed out"
REFUSED = "blocked: wget: can't connect to remote host (10.1.23.7): Connection refused"
# Namespaces the sample app's policies admit (manifests/base/sample-app/networkpolicy.yaml).
ALLOWED = ("ingress", "observability")

# The CNI's answer for a probe from namespace `ns`: enforcing Calico, one that ignores policy,
# and an app that is down (nothing listens, so everyone is refused).
Cni = Callable[[str], str]
ENFORCING: Cni = lambda ns: "open" if ns in ALLOWED else TIMED_OUT  # noqa: E731
IGNORING: Cni = lambda ns: "open"  # noqa: E731
APP_DOWN: Cni = lambda ns: REFUSED  # noqa: E731


def policies(namespace: str, without: str = "") -> list[dict[str, Any]]:
    path = ROOT / "manifests" / "base" / "sample-app" / "networkpolicy.yaml"
    docs = [
        d for d in yaml.safe_load_all(path.read_text()) if d and d["metadata"]["name"] != without
    ]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


@pytest.fixture
def app_ns(api: Any, namespace: str) -> str:
    name = ready_pod(api, namespace, "dev-k8s-1")
    client.CoreV1Api(api).patch_namespaced_pod_status(
        name, namespace, {"status": {"podIP": POD_IP}}
    )
    return namespace


@pytest.fixture
def allowed_ns(api: Any) -> str:
    with contextlib.suppress(ApiException):
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "ingress"}})
    return "ingress"


@pytest.fixture
def foreign_ns(kube_apiserver: Any) -> str:
    return kube_apiserver.create_namespace(f"probe-{secrets.token_hex(3)}")


def run(
    api: Any, app_ns: str, foreign: str, allowed: str, cni: Cni, target: str | None = None
) -> Any:
    url = target or netpol.app_target(api, app_ns, APP_SELECTOR, 8080)
    assert url is not None

    def fate(pod: Any) -> dict[str, Any] | None:
        if pod.metadata.namespace not in (foreign, allowed) or "mk8s-probe" not in (
            pod.metadata.labels or {}
        ):
            return None
        return terminated("Succeeded", cni(pod.metadata.namespace))

    with FakeKubelet(api, None, fate):
        denied = netpol.connect(api, foreign, f"np-deny-{secrets.token_hex(2)}", url, 10)
        control = netpol.connect(api, allowed, f"np-ctl-{secrets.token_hex(2)}", url, 10)
    return netpol.network_policy(app_ns, kf.read_policies(api, app_ns), denied, control)


def apply(api: Any, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        client.NetworkingV1Api(api).create_namespaced_network_policy(
            doc["metadata"]["namespace"], doc
        )


def test_passes_when_foreign_is_blocked_and_the_control_connects(
    api: Any, app_ns: str, foreign_ns: str, allowed_ns: str
) -> None:
    apply(api, policies(app_ns))
    verdict = run(api, app_ns, foreign_ns, allowed_ns, ENFORCING)
    assert verdict.passed, verdict
    assert f"http://{POD_IP}:8080/" in verdict.message


def test_fails_when_the_control_is_blocked_too(
    api: Any, app_ns: str, foreign_ns: str, allowed_ns: str
) -> None:
    """The app is down: every probe fails, which is no proof of a policy."""
    apply(api, policies(app_ns))
    verdict = run(api, app_ns, foreign_ns, allowed_ns, APP_DOWN)
    assert not verdict.passed
    assert "positive control namespace ingress" in verdict.message
    assert "did not connect" in verdict.message and "Connection refused" in verdict.message


def test_fails_when_the_policy_is_not_enforced(
    api: Any, app_ns: str, foreign_ns: str, allowed_ns: str
) -> None:
    apply(api, policies(app_ns))
    verdict = run(api, app_ns, foreign_ns, allowed_ns, IGNORING)
    assert not verdict.passed
    assert (
        f"namespace {foreign_ns} reached http://{POD_IP}:8080/: policy not enforced"
        in verdict.message
    )


def test_fails_without_a_default_deny_policy(
    api: Any, app_ns: str, foreign_ns: str, allowed_ns: str
) -> None:
    apply(api, policies(app_ns, without="default-deny"))
    verdict = run(api, app_ns, foreign_ns, allowed_ns, ENFORCING)
    assert not verdict.passed
    assert f"namespace {app_ns} has no default-deny policy" in verdict.message


def test_fails_when_the_probe_goes_by_name(
    api: Any, app_ns: str, foreign_ns: str, allowed_ns: str
) -> None:
    apply(api, policies(app_ns))
    name = f"http://sample-app.{app_ns}.svc:80/"
    verdict = run(api, app_ns, foreign_ns, allowed_ns, ENFORCING, target=name)
    assert not verdict.passed
    assert f"probe target {name} is not an IP: DNS would decide" in verdict.message


def test_fails_when_the_probe_pod_never_ran(
    api: Any, app_ns: str, foreign_ns: str, allowed_ns: str
) -> None:
    apply(api, policies(app_ns))
    url = f"http://{POD_IP}:8080/"
    denied = netpol.connect(api, foreign_ns, "np-stuck", url, 1)  # no kubelet: stays Pending
    control = cluster.ConnectProbe("namespace ingress", url, True, "open")
    verdict = netpol.network_policy(app_ns, kf.read_policies(api, app_ns), denied, control)
    assert not verdict.passed
    assert (
        f"probe namespace {foreign_ns} -> {url} did not run (probe pod Pending" in verdict.message
    )
