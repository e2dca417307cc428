"""Phase 4 (Production) exit: production certificates, DNS, alerting (PRD)."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.conftest import Criterion
from conformance.test_phase1 import app_host, served_certificate
from mk8s.checks import Verdict, all_of, cluster, tls
from mk8s.checks import kube_facts as kf
from mk8s.checks import observability as obs
from mk8s.inventory.model import Environment

pytestmark = pytest.mark.phase4

PRODUCTION_ISSUER = "letsencrypt-prod"


def test_production_certificate(env: Environment, kube: Any, criterion: Any) -> None:
    """As phase1.tls, from the production ACME issuer, verified to the system trust store."""
    c: Criterion = criterion("phase4.production_certificate", unit="days")
    c.check(served_certificate(env, kube, PRODUCTION_ISSUER, None))


def test_dns_points_at_the_environment(env: Environment, criterion: Any) -> None:
    c: Criterion = criterion("phase4.dns")
    host = app_host(env)
    c.check(
        cluster.dns_resolves(
            host,
            kf.resolve(host, [str(ip) for ip in env.network.dns_servers]),
            [str(n.ip) for n in env.nodes],
            env.network.metallb_range,
        )
    )


def test_alerting_rules_and_alertmanager(env: Environment, kube: Any, criterion: Any) -> None:
    """Rules loaded and Alertmanager ready, and the chart's always-firing Watchdog alert is
    firing in Prometheus and held by Alertmanager: the path an alert takes, measured."""
    c: Criterion = criterion("phase4.alerting")
    namespace = cluster.MONITORING_NAMESPACES[env.monitoring.stack]
    managers = [w for w in kf.read_workloads(kube, [namespace]) if "alertmanager" in w.name]
    prometheus = obs.service_proxy_json(kube, namespace, *obs.PROMETHEUS_SERVICE)
    alertmanager = obs.service_proxy_json(kube, namespace, *obs.ALERTMANAGER_SERVICE)
    c.check(
        all_of(
            [
                cluster.alerting(kf.count_prometheus_rules(kube), managers),
                obs.delivery_verdict(prometheus, alertmanager),
            ],
            "rules loaded, Alertmanager ready, a firing alert delivered",
        )
    )


def test_production_certificate_served(env: Environment, criterion: Any) -> None:
    """What browsers see: the certificate served on 443 chains to the system trust store,
    is from Let's Encrypt (not staging), covers the host and has >= 30 days left."""
    c: Criterion = criterion("phase4.served_certificate", unit="days")
    host = app_host(env)
    seen = tls.check(
        host,
        443,
        address=str(env.first_node.ip),
        issuer_org=tls.ISSUER_ORGANISATION[PRODUCTION_ISSUER],
    )
    c.check(
        Verdict(
            seen.ok,
            f"{seen.days_left:.1f}",
            f"chain verifies, {PRODUCTION_ISSUER}, covers {host}, >= 30 days",
            "; ".join(seen.problems) or f"{host} serves a valid production certificate",
            "days",
        )
    )
