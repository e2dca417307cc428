"""Phase 1 (Dev) exit: nodes, HA, LoadBalancer, ingress, TLS staging, sample app (PRD).

Each test is one exit criterion; facts come from the live cluster and nodes, verdicts from
mk8s.checks, evidence through the `criterion` fixture.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from conformance.conftest import Criterion
from mk8s.checks import all_of, cluster, node
from mk8s.checks import kube_facts as kf
from mk8s.checks.node_facts import NodeShell, on_every_node
from mk8s.inventory.model import Environment

pytestmark = pytest.mark.phase1

SAMPLE_NS = "sample-app"
SAMPLE_APP = "sample-app"
SAMPLE_SELECTOR = {"app.kubernetes.io/name": SAMPLE_APP}
# agnhost netexec answers /hostname with the pod name: proof the request reached the app.
SAMPLE_PATH = "/hostname"
INGRESS_NS = "ingress"
INGRESS_DAEMONSET = "nginx-ingress-microk8s-controller"
LB_TIMEOUT_S = 120.0


def app_host(env: Environment) -> str:
    return f"app.{env.ingress.domain}"


def test_all_nodes_ready(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase1.nodes_ready")
    c.check(cluster.nodes_ready(kf.read_nodes(kube), [n.name for n in env.nodes]))


def test_ha_three_voters(env: Environment, nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase1.ha_voters", unit="voters")
    first = nodes[0]
    c.check(node.ha_voters(first.name, first.microk8s_status(), [str(n.ip) for n in env.nodes]))


def test_addons_enabled_and_healthy(
    env: Environment, kube: Any, nodes: list[NodeShell], criterion: Any
) -> None:
    c: Criterion = criterion("phase1.addons")
    enabled = node.parse_enabled_addons(nodes[0].microk8s_status())
    namespaces = sorted({cluster.ADDON_WORKLOADS[a][0] for a in env.microk8s.addons
                         if a in cluster.ADDON_WORKLOADS})  # fmt: skip
    c.check(
        cluster.addons_healthy(env.microk8s.addons, enabled, kf.read_workloads(kube, namespaces))
    )


def test_loadbalancer(env: Environment, kube: Any, criterion: Any) -> None:
    """A LoadBalancer Service in front of the ingress controller gets a MetalLB IP that answers."""
    c: Criterion = criterion("phase1.loadbalancer")
    name = f"mk8s-conformance-lb-{secrets.token_hex(3)}"
    selector = kf.daemonset_selector(kube, INGRESS_NS, INGRESS_DAEMONSET)
    kf.create_lb_service(kube, INGRESS_NS, name, selector, 80)
    try:
        ips = kf.wait_lb_ips(kube, INGRESS_NS, name, LB_TIMEOUT_S)
        probe = kf.http_get(f"http://{ips[0]}/") if ips else None
        answered = probe is not None and probe.status is not None
        detail = (
            f"HTTP {probe.status}" if probe and probe.status else (probe.error if probe else "")
        )
        c.check(
            cluster.loadbalancer(
                f"Service {INGRESS_NS}/{name}", ips, env.network.metallb_range, answered, detail
            )
        )
    finally:
        kf.delete_service(kube, INGRESS_NS, name)


def test_ingress_routes_host_to_sample_app(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase1.ingress")
    host = app_host(env)
    # The MicroK8s ingress controller listens with hostPorts on every node.
    plain = kf.http_redirect_probe(str(env.first_node.ip), host, SAMPLE_PATH)
    c.check(cluster.https_redirect(host, plain))
    probe = kf.ingress_probe(str(env.first_node.ip), host, SAMPLE_PATH)
    c.check(cluster.ingress_routes(kf.read_ingresses(kube), host, SAMPLE_APP, probe, SAMPLE_APP))


def test_tls_staging_certificate(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase1.tls", unit="days")
    host = app_host(env)
    cert = kf.certificate_for(kf.read_certificates(kube), host)
    c.check(cluster.certificate(cert, host, env.tls.issuer, datetime.now(UTC)))


def test_sample_app_available(kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase1.sample_app")
    mine = [w for w in kf.read_workloads(kube, [SAMPLE_NS]) if w.name == SAMPLE_APP]
    c.check(cluster.workload_available(f"Deployment {SAMPLE_NS}/{SAMPLE_APP}", mine))


def test_pod_cold_start(env: Environment, kube: Any, criterion: Any) -> None:
    c: Criterion = criterion("phase1.pod_start", unit="s")
    name = f"mk8s-pod-start-{secrets.token_hex(3)}"
    limit = env.slo.pod_start_s
    seconds, detail = kf.measure_pod_start(kube, SAMPLE_NS, name, timeout_s=max(120, 3 * limit))
    c.check(cluster.pod_start(name, seconds, limit, detail))


def test_microk8s_snap_on_inventory_channel(
    env: Environment, nodes: list[NodeShell], criterion: Any
) -> None:
    c: Criterion = criterion("phase1.snap_channel")
    want = env.microk8s.channel
    c.check(
        all_of(on_every_node(nodes, lambda n: node.snap_channel(n.name, n.snap_list(), want)), want)
    )


def test_microk8s_services_active(nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase1.services")
    c.check(
        all_of(
            on_every_node(nodes, lambda n: node.services_active(n.name, n.service_states())),
            "all active",
        )
    )


def test_expected_ports_listening(env: Environment, nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase1.ports")
    wanted = node.expected_ports(env)
    c.check(
        all_of(
            on_every_node(nodes, lambda n: node.ports(n.name, n.ip, n.listening_tcp(), wanted)),
            f"listening {', '.join(map(str, wanted))}",
        )
    )


def test_swap_off(nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase1.swap_off")
    c.check(all_of(on_every_node(nodes, lambda n: node.swap_off(n.name, n.swapon())), "off"))


def test_time_synchronised(nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase1.time_sync")
    c.check(
        all_of(
            on_every_node(nodes, lambda n: node.time_synchronised(n.name, n.ntp_synchronized())),
            "yes",
        )
    )
