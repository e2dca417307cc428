"""Each cluster check passes on a conforming cluster and fails on a broken one, judged from
objects in a real kube-apiserver (statuses written as the controllers would write them)."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import cluster
from mk8s.checks import kube_facts as kf
from mk8s.inventory.model import Environment
from tests.conformance.actors import FakeKubelet, ready_after

pytestmark = pytest.mark.slow

HOST = "app.dev.example.com"


# --- nodes -----------------------------------------------------------------------------------


def make_node(api: Any, name: str, ready: bool, reason: str = "KubeletReady") -> None:
    core = client.CoreV1Api(api)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
    now = datetime.now(UTC)
    core.patch_node_status(
        name,
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": reason,
                        "message": "kubelet is posting ready status"
                        if ready
                        else "container runtime network not ready",
                        "lastHeartbeatTime": now.isoformat(),
                        "lastTransitionTime": now.isoformat(),
                    }
                ]
            }
        },
    )


@pytest.fixture
def node_names(api: Any) -> list[str]:
    tag = secrets.token_hex(2)
    return [f"n{tag}-k8s-{i}" for i in (1, 2, 3)]


def test_nodes_ready_passes_when_every_inventory_node_is_ready(
    api: Any, node_names: list[str]
) -> None:
    for name in node_names:
        make_node(api, name, ready=True)
    verdict = cluster.nodes_ready(kf.read_nodes(api), node_names)
    assert verdict.passed, verdict
    assert verdict.measured == "3/3 Ready"


def test_nodes_ready_fails_naming_the_not_ready_node(api: Any, node_names: list[str]) -> None:
    make_node(api, node_names[0], ready=True)
    make_node(api, node_names[1], ready=False, reason="KubeletNotReady")
    make_node(api, node_names[2], ready=True)
    verdict = cluster.nodes_ready(kf.read_nodes(api), node_names)
    assert not verdict.passed
    assert f"node {node_names[1]} not Ready (KubeletNotReady" in verdict.message


def test_nodes_ready_fails_when_a_node_never_registered(api: Any, node_names: list[str]) -> None:
    for name in node_names[:2]:
        make_node(api, name, ready=True)
    verdict = cluster.nodes_ready(kf.read_nodes(api), node_names)
    assert not verdict.passed
    assert f"node {node_names[2]} not registered" in verdict.message


# --- add-ons -----------------------------------------------------------------------------------


def make_deployment(api: Any, namespace: str, name: str, replicas: int, ready: int) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": name}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(
                replicas=replicas,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                ),
            ),
        ),
    )
    apps.patch_namespaced_deployment_status(
        name, namespace, {"status": {"replicas": replicas, "readyReplicas": ready}}
    )


def test_addon_healthy_when_enabled_and_its_workloads_ready(api: Any, namespace: str) -> None:
    make_deployment(api, namespace, "coredns", 1, 1)
    workloads = kf.read_workloads(api, [namespace])
    # The add-on's namespace is kube-system on a cluster; here the test's own namespace.
    table = {"dns": (namespace, ("coredns",))}
    verdict = _addons(["dns"], ["dns"], workloads, table)
    assert verdict.passed, verdict


def test_addon_unhealthy_when_its_deployment_is_not_ready(api: Any, namespace: str) -> None:
    make_deployment(api, namespace, "coredns", 2, 1)
    verdict = _addons(["dns"], ["dns"], kf.read_workloads(api, [namespace]),
                      {"dns": (namespace, ("coredns",))})  # fmt: skip
    assert not verdict.passed
    assert f"Deployment {namespace}/coredns 1/2 ready" in verdict.message


def test_addon_fails_when_not_enabled(api: Any, namespace: str) -> None:
    verdict = cluster.addons_healthy(["metallb"], ["dns"], [])
    assert not verdict.passed
    assert "add-on metallb is not enabled" in verdict.message


def _addons(
    wanted: list[str],
    enabled: list[str],
    workloads: list[cluster.WorkloadFact],
    where: dict[str, tuple[str, tuple[str, ...]]],
) -> Any:
    return cluster.addons_healthy(wanted, enabled, workloads, where)


# LoadBalancer and ingress: tests/conformance/test_serving.py (real nginx on loopback).


# --- certificate (cert-manager CRD) ------------------------------------------------------------


def make_certificate(
    api: Any,
    namespace: str,
    issuer: str,
    ready: bool,
    valid_days: float,
    issuer_kind: str = "ClusterIssuer",
) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates",
        {
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "sample-app-tls"},
            "spec": {
                "secretName": "sample-app-tls", "dnsNames": [HOST],
                "issuerRef": {"name": issuer, "kind": issuer_kind, "group": "cert-manager.io"},
            },
        },
    )  # fmt: skip
    now = datetime.now(UTC)
    not_after = (now + timedelta(days=valid_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    custom.patch_namespaced_custom_object_status(
        "cert-manager.io", "v1", namespace, "certificates", "sample-app-tls",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready", "status": "True" if ready else "False",
                        "reason": "Ready" if ready else "Issuing",
                        "message": "Certificate is up to date and has not expired"
                        if ready else "Issuing certificate as Secret does not exist",
                        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                ],
                "notBefore": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "notAfter": not_after,
            }
        },
    )  # fmt: skip


def _cert_verdict(api: Any, namespace: str, issuer: str) -> Any:
    certs = [c for c in kf.read_certificates(api) if c.namespace == namespace]
    return cluster.certificate(kf.certificate_for(certs, HOST), HOST, issuer, datetime.now(UTC))


def test_certificate_passes_ready_from_env_issuer_valid_60_days(
    api: Any, namespace: str, crds: list[str]
) -> None:
    make_certificate(api, namespace, "letsencrypt-staging", ready=True, valid_days=60)
    verdict = _cert_verdict(api, namespace, "letsencrypt-staging")
    assert verdict.passed, verdict
    assert verdict.unit == "days" and float(verdict.measured) > 59


def test_certificate_fails_from_the_wrong_issuer(api: Any, namespace: str, crds: list[str]) -> None:
    make_certificate(api, namespace, "letsencrypt-prod", ready=True, valid_days=60)
    verdict = _cert_verdict(api, namespace, "letsencrypt-staging")
    assert not verdict.passed
    assert "issued by ClusterIssuer letsencrypt-prod, not ClusterIssuer letsencrypt-staging" in (
        verdict.message
    )


def test_certificate_fails_from_a_namespaced_issuer_of_the_same_name(
    api: Any, namespace: str, crds: list[str]
) -> None:
    make_certificate(api, namespace, "letsencrypt-staging", True, 60, issuer_kind="Issuer")
    assert not _cert_verdict(api, namespace, "letsencrypt-staging").passed


def test_certificate_fails_when_expiring_within_30_days(
    api: Any, namespace: str, crds: list[str]
) -> None:
    make_certificate(api, namespace, "letsencrypt-staging", ready=True, valid_days=12)
    verdict = _cert_verdict(api, namespace, "letsencrypt-staging")
    assert not verdict.passed
    assert "below 30" in verdict.message


def test_certificate_fails_when_not_ready(api: Any, namespace: str, crds: list[str]) -> None:
    make_certificate(api, namespace, "letsencrypt-staging", ready=False, valid_days=60)
    verdict = _cert_verdict(api, namespace, "letsencrypt-staging")
    assert not verdict.passed
    assert "not Ready (Issuing" in verdict.message


def test_certificate_fails_when_none_covers_the_host(
    api: Any, namespace: str, crds: list[str]
) -> None:
    verdict = _cert_verdict(api, namespace, "letsencrypt-staging")
    assert not verdict.passed and verdict.measured == "no certificate"


# --- pod cold start ------------------------------------------------------------------------------


def test_pod_start_passes_when_ready_within_the_slo(
    api: Any, namespace: str, dev_env: Environment
) -> None:
    with FakeKubelet(api, namespace, ready_after(4.0)):
        seconds, detail = kf.measure_pod_start(api, namespace, "cold", timeout_s=10, poll_s=0.1)
    verdict = cluster.pod_start("cold", seconds, dev_env.slo.pod_start_s, detail)
    assert verdict.passed, verdict
    assert verdict.measured == "4.0"


def test_pod_start_fails_when_slower_than_the_slo(
    api: Any, namespace: str, dev_env: Environment
) -> None:
    with FakeKubelet(api, namespace, ready_after(35.0)):
        seconds, detail = kf.measure_pod_start(api, namespace, "slow", timeout_s=10, poll_s=0.1)
    verdict = cluster.pod_start("slow", seconds, dev_env.slo.pod_start_s, detail)
    assert not verdict.passed
    assert "took 35.0s" in verdict.message


def test_pod_start_fails_when_never_ready(api: Any, namespace: str) -> None:
    with FakeKubelet(api, namespace, lambda pod: None):
        seconds, detail = kf.measure_pod_start(api, namespace, "stuck", timeout_s=1, poll_s=0.1)
    verdict = cluster.pod_start("stuck", seconds, 20, detail)
    assert not verdict.passed
    assert "never became Ready" in verdict.message
    assert client.CoreV1Api(api).list_namespaced_pod(namespace).items == []  # cleaned up


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


# --- the ingress probe follows ingress-nginx's HTTP -> HTTPS redirect ------------------------------


@pytest.fixture
def tls_ingress() -> Iterator[tuple[int, int]]:
    """Like ingress-nginx for a host with TLS: HTTP answers 308 to HTTPS; HTTPS (a trustme
    certificate the client does not trust, like LE staging) serves the app."""
    import ssl

    import trustme

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(308)
            self.send_header("Location", f"https://{HOST}{self.path}")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class App(Redirect):
        def do_GET(self) -> None:
            body = b"sample-app-7d4b9c-x2x" if self.headers.get("Host") == HOST else b"404"
            self.send_response(200 if self.headers.get("Host") == HOST else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    secure = ThreadingHTTPServer(("127.0.0.1", 0), App)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(plain.server_address[1]), int(secure.server_address[1])
    for server in (plain, secure):
        server.shutdown()
        server.server_close()


def test_ingress_probe_starts_on_https_where_the_app_is_routed(
    tls_ingress: tuple[int, int],
) -> None:
    _, https_port = tls_ingress
    probe = kf.ingress_probe("127.0.0.1", HOST, "/hostname", https_port)
    assert (probe.status, probe.body) == (200, "sample-app-7d4b9c-x2x"), probe
    assert probe.url.startswith("https://")


def test_plain_http_redirects_to_https(tls_ingress: tuple[int, int]) -> None:
    http_port, _ = tls_ingress
    probe = kf.http_redirect_probe("127.0.0.1", HOST, "/hostname", http_port)
    assert kf.redirects_to_https(probe), probe
    assert probe.location == f"https://{HOST}/hostname"


def test_plain_http_answering_404_is_no_redirect(tls_ingress: tuple[int, int]) -> None:
    # Traefik without a router on `web` for the host: 404 on HTTP (issue 13).
    _, https_port = tls_ingress
    probe = kf.http_get(f"https://127.0.0.1:{https_port}/", host="other.example", verify=False)
    assert probe.status == 404
    assert not kf.redirects_to_https(probe)
    verdict = cluster.https_redirect(HOST, probe)
    assert not verdict.passed
    assert verdict.measured == "HTTP 404"
    assert "no redirect to HTTPS" in verdict.message


def test_https_redirect_verdict_passes_on_a_redirect_to_https(
    tls_ingress: tuple[int, int],
) -> None:
    http_port, _ = tls_ingress
    probe = kf.http_redirect_probe("127.0.0.1", HOST, "/hostname", http_port)
    verdict = cluster.https_redirect(HOST, probe)
    assert verdict.passed, verdict
    assert verdict.measured == "HTTP 308"


def test_https_redirect_verdict_fails_on_a_redirect_to_plain_http() -> None:
    from mk8s.checks.cluster import HttpProbe

    probe = HttpProbe("http://127.0.0.1/", 301, location="http://app.example.com/")
    verdict = cluster.https_redirect(HOST, probe)
    assert not verdict.passed
    assert "to http://app.example.com/" in verdict.message


def test_ingress_probe_reports_an_https_port_that_does_not_answer() -> None:
    probe = kf.ingress_probe("127.0.0.1", HOST, "/hostname", _closed_port())
    assert probe.status is None and probe.error, probe


# --- monitoring and alerting -------------------------------------------------------------------


def make_statefulset(api: Any, namespace: str, name: str, replicas: int, ready: int) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": name}
    apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1StatefulSetSpec(
                replicas=replicas,
                service_name=name,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                ),
            ),
        ),
    )
    apps.patch_namespaced_stateful_set_status(
        name, namespace, {"status": {"replicas": replicas, "readyReplicas": ready}}
    )


def make_rule(api: Any, namespace: str, name: str) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheusrules",
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
         "metadata": {"name": name},
         "spec": {"groups": [{"name": "node", "rules": [
             {"alert": "NodeDown", "expr": "up == 0", "for": "5m"}]}]}},
    )  # fmt: skip


def test_monitoring_and_alerting_pass_with_the_stack_ready(
    api: Any, namespace: str, crds: list[str]
) -> None:
    make_deployment(api, namespace, "kube-prom-stack-grafana", 1, 1)
    make_statefulset(api, namespace, "prometheus-kube-prom-stack-prometheus", 1, 1)
    make_statefulset(api, namespace, "alertmanager-kube-prom-stack-alertmanager", 1, 1)
    make_rule(api, namespace, "node-rules")
    workloads = kf.read_workloads(api, [namespace])
    assert {w.kind for w in workloads} == {"Deployment", "StatefulSet"}
    client.CoreV1Api(api).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="k8s-resources-cluster",
                                     labels={"grafana_dashboard": "1"}),
        data={"cluster.json": "{}"}))  # fmt: skip
    assert cluster.monitoring(namespace, workloads, kf.count_dashboards(api, namespace)).passed
    managers = [w for w in workloads if "alertmanager" in w.name]
    verdict = cluster.alerting(kf.count_prometheus_rules(api), managers)
    assert verdict.passed, verdict


def test_monitoring_fails_when_prometheus_is_not_ready(api: Any, namespace: str) -> None:
    make_deployment(api, namespace, "kube-prom-stack-grafana", 1, 1)
    make_statefulset(api, namespace, "prometheus-kube-prom-stack-prometheus", 1, 0)
    verdict = cluster.monitoring(
        namespace, kf.read_workloads(api, [namespace]), kf.count_dashboards(api, namespace)
    )
    assert not verdict.passed
    assert f"StatefulSet {namespace}/prometheus-kube-prom-stack-prometheus 0/1 ready" in (
        verdict.message
    )


def test_alerting_fails_without_an_alertmanager(api: Any, namespace: str, crds: list[str]) -> None:
    make_rule(api, namespace, "node-rules")
    managers = [w for w in kf.read_workloads(api, [namespace]) if "alertmanager" in w.name]
    verdict = cluster.alerting(kf.count_prometheus_rules(api), managers)
    assert not verdict.passed and "no Alertmanager workload" in verdict.message


@contextlib.contextmanager
def dns_server(ip: str, zone: dict[str, list[str]]) -> Iterator[int]:
    """A DNS server on loopback answering A queries from `zone` (NXDOMAIN otherwise), speaking
    the wire protocol through dnspython; yields its UDP port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            name = query.question[0].name.to_text().rstrip(".")
            if name in zone:
                response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", *zone[name]))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def test_resolve_asks_the_inventory_dns_servers_by_ip_never_the_machine_resolver() -> None:
    zone = {"app.dev.example.com": ["127.0.10.50", "127.0.10.11"]}
    with dns_server("127.0.0.53", zone) as port:
        assert kf.resolve("app.dev.example.com", ["127.0.0.53"], port=port) == [
            "127.0.10.11",
            "127.0.10.50",
        ]
        assert kf.resolve("other.dev.example.com", ["127.0.0.53"], port=port) == []
    # Nobody answers on this address: unresolved, quickly, and nothing left loopback.
    assert kf.resolve("app.dev.example.com", ["127.0.0.54"], port=port, timeout_s=1) == []


def test_addon_daemonset_counts_ready_pods_per_node(api: Any, namespace: str) -> None:
    """The ingress add-on is a DaemonSet: one pod per node must be ready."""
    apps = client.AppsV1Api(api)
    labels = {"name": "nginx-ingress-microk8s"}
    apps.create_namespaced_daemon_set(
        namespace,
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="nginx-ingress-microk8s-controller"),
            spec=client.V1DaemonSetSpec(
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                ),
            ),
        ),
    )
    where = {"ingress": (namespace, ())}

    def status(ready: int) -> Any:
        apps.patch_namespaced_daemon_set_status(
            "nginx-ingress-microk8s-controller",
            namespace,
            {"status": {"desiredNumberScheduled": 3, "numberReady": ready,
                        "currentNumberScheduled": 3, "numberMisscheduled": 0}},
        )  # fmt: skip
        return cluster.addons_healthy(["ingress"], ["ingress"],
                                      kf.read_workloads(api, [namespace]), where)  # fmt: skip

    assert status(3).passed
    degraded = status(2)
    assert not degraded.passed
    assert f"DaemonSet {namespace}/nginx-ingress-microk8s-controller 2/3 ready" in degraded.message
    assert kf.daemonset_selector(api, namespace, "nginx-ingress-microk8s-controller") == labels


# --- probes pass Pod Security "restricted" (the sample app's namespace enforces it) ----------------


@pytest.fixture
def restricted_namespace(api: Any) -> str:
    name = f"restricted-{secrets.token_hex(3)}"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    return name


def test_probe_pods_are_admitted_where_pod_security_is_restricted(
    api: Any, restricted_namespace: str
) -> None:
    with FakeKubelet(api, restricted_namespace, ready_after(2.0)):
        seconds, _ = kf.measure_pod_start(api, restricted_namespace, "cold", 10, poll_s=0.1)
    assert seconds == 2.0


def test_an_unrestricted_pod_is_refused_there(api: Any, restricted_namespace: str) -> None:
    """The admission that the probe above passes is real: a root pod is rejected."""
    pod = kf.probe_pod("root-probe", "true", restricted=False)
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).create_namespaced_pod(restricted_namespace, pod)
    assert refused.value.status == 403
    assert "violates PodSecurity" in str(refused.value.body)
