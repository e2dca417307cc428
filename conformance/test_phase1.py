"""Phase 1 (Dev) exit: nodes, HA, LoadBalancer, ingress, TLS staging, sample app (PRD).

Each test is one exit criterion; facts come from the live cluster and nodes, verdicts from
mk8s.checks, evidence through the `criterion` fixture.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conformance.conftest import Criterion
from mk8s.checks import Verdict, all_of, cluster, ha, node, serving, tls_served
from mk8s.checks import kube_facts as kf
from mk8s.checks import serving_facts as sf
from mk8s.checks.node_facts import NodeShell, on_every_node, read_ha_views
from mk8s.inventory.model import Environment
from mk8s.render.manifests import ACME, ingress_address

pytestmark = pytest.mark.phase1

SAMPLE_NS = "sample-app"
SAMPLE_APP = "sample-app"
SAMPLE_SELECTOR = {"app.kubernetes.io/name": SAMPLE_APP}
SELECTOR = ",".join(f"{k}={v}" for k, v in SAMPLE_SELECTOR.items())
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
    """Three live voters: listed, agreed on by every node's own view, each answering over SSH
    and on 19001 (a powered-off voter stays listed, canonical/microk8s#2400)."""
    c: Criterion = criterion("phase1.ha_voters", unit="voters")
    views, dqlite_open = read_ha_views(nodes)
    c.check(ha.ha_voters(views, dqlite_open))


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
    """A LoadBalancer Service in front of the ingress controller gets a MetalLB IP, and
    through it, with the app's Host header, a current sample-app pod answers."""
    c: Criterion = criterion("phase1.loadbalancer")
    name = f"mk8s-conformance-lb-{secrets.token_hex(3)}"
    selector = kf.daemonset_selector(kube, INGRESS_NS, INGRESS_DAEMONSET)
    kf.create_lb_service(kube, INGRESS_NS, name, selector, 80)
    try:
        ips = kf.wait_lb_ips(kube, INGRESS_NS, name, LB_TIMEOUT_S)
        answer = sf.through_lb(ips[0], app_host(env)) if ips else None
        pods = sf.ready_pod_names(kube, SAMPLE_NS, SELECTOR)
        service = f"Service {INGRESS_NS}/{name}"
        c.check(serving.loadbalancer(service, ips, env.network.metallb_range, answer, pods))
    finally:
        kf.delete_service(kube, INGRESS_NS, name)


def test_ingress_routes_host_to_sample_app(env: Environment, kube: Any, criterion: Any) -> None:
    """The app's own Ingress routes its host, no stale one elsewhere claims it, and a current
    pod answers through every node's ingress controller and through the MetalLB IP."""
    c: Criterion = criterion("phase1.ingress")
    host = app_host(env)
    # Plain HTTP redirects to HTTPS (ingress-nginx's ssl-redirect, mk8s' Traefik redirect).
    plain = kf.http_redirect_probe(ingress_address(env), host, SAMPLE_PATH)
    # The controller's Service holds the pinned MetalLB address.
    answers = [*sf.through_nodes(env.nodes, host), sf.through_lb(ingress_address(env), host)]
    pods = sf.ready_pod_names(kube, SAMPLE_NS, SELECTOR)
    routed = serving.ingress(kf.read_ingresses(kube), SAMPLE_NS, host, SAMPLE_APP, answers, pods)
    c.check(all_of([cluster.https_redirect(host, plain), routed], routed.expected))


def test_tls_staging_certificate(
    env: Environment, kube: Any, criterion: Any, tls_ca: Path | None
) -> None:
    """The certificate served on 443 for the app host through the MetalLB IP verifies to the
    issuer's CA (`--tls-ca`: Let's Encrypt staging's roots), is the Certificate's Secret,
    from an ACME ClusterIssuer pointed at the environment's ACME server."""
    c: Criterion = criterion("phase1.tls", unit="days")
    c.check(served_certificate(env, kube, env.tls.issuer, tls_ca))


def served_certificate(env: Environment, kube: Any, issuer: str, ca: Path | None) -> Verdict:
    host = app_host(env)
    cert = kf.certificate_for(kf.read_certificates(kube), host)
    secret = tls_served.read_secret_leaf(kube, cert.namespace, cert.secret_name) if cert else None
    return tls_served.served_tls(
        cert, tls_served.read_cluster_issuer(kube, issuer),
        tls_served.fetch_served(ingress_address(env), 443, host, ca), secret,
        host=host, issuer_name=issuer, acme_server=ACME[issuer], now=datetime.now(UTC),
    )  # fmt: skip


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
    c.check(all_of(on_every_node(nodes, lambda n: node.swap_off(n.name, n.swaps())), "off"))


def test_time_synchronised(nodes: list[NodeShell], criterion: Any) -> None:
    c: Criterion = criterion("phase1.time_sync")
    c.check(
        all_of(
            on_every_node(nodes, lambda n: node.time_synchronised(n.name, n.ntp_synchronized())),
            "yes",
        )
    )
