"""phase2.monitoring (targets) and phase4.alerting (delivery) against real Prometheus,
Alertmanager and node-exporter on loopback (tests/support/prometheus_rig.py)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mk8s.checks import observability as obs
from mk8s.checks.verdict import Verdict
from tests.support.prometheus_rig import MonitoringRig, monitoring_rig

pytestmark = pytest.mark.slow

NAMES = ("dev-k8s-1", "dev-k8s-2", "dev-k8s-3")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[MonitoringRig]:
    octet = 150 + secrets.randbelow(90)
    ips = [f"127.{octet}.0.{11 + i}" for i in range(3)]
    with monitoring_rig(tmp_path / "mon", ips) as r:
        yield r


def nodes(rig: MonitoringRig) -> list[tuple[str, str]]:
    return list(zip(NAMES, rig.node_ips, strict=True))


def targets_verdict(rig: MonitoringRig) -> Verdict:
    rig.wait_scraped()
    return obs.targets_up(obs.read_targets(obs.http_json(rig.prometheus_url)), nodes(rig))


def alert_verdict(rig: MonitoringRig, settle_s: float = 15.0) -> Verdict:
    """Poll until delivered or `settle_s` passed: delivery takes an evaluation and a send."""
    prom, am = obs.http_json(rig.prometheus_url), obs.http_json(rig.alertmanager_url)
    deadline = time.monotonic() + settle_s
    while True:
        verdict = obs.alert_delivered(
            obs.TEST_ALERT, obs.read_alert_state(prom, am, obs.TEST_ALERT)
        )
        if verdict.passed or time.monotonic() > deadline:
            return verdict
        time.sleep(0.5)


def test_targets_pass_when_every_exporter_and_kubelet_is_scraped(rig: MonitoringRig) -> None:
    verdict = targets_verdict(rig)
    assert verdict.passed, verdict
    assert verdict.measured == "6/6 targets up"


def test_targets_fail_naming_the_node_whose_exporter_is_down(rig: MonitoringRig) -> None:
    ip = rig.node_ips[1]
    address = rig.exporter_addresses[ip]
    rig.stop_exporter(ip)
    time.sleep(2.5)  # two scrape intervals: the target's health turns down
    verdict = targets_verdict(rig)
    assert not verdict.passed
    assert f"node-exporter target {address} (node dev-k8s-2) is down" in verdict.message
    assert "connection refused" in verdict.message


def test_targets_fail_when_a_node_is_not_scraped_at_all(rig: MonitoringRig) -> None:
    rig.start_prometheus(scrape=rig.node_ips[:2])
    verdict = targets_verdict(rig)
    assert not verdict.passed
    ip = rig.node_ips[2]
    assert f"no node-exporter target for node dev-k8s-3 ({ip}) in Prometheus" in verdict.message
    assert f"no kubelet target for node dev-k8s-3 ({ip})" in verdict.message


def test_targets_fail_when_a_kubelet_is_unreachable(rig: MonitoringRig) -> None:
    ip = rig.node_ips[0]
    rig.kubelets[ip].close()
    time.sleep(2.5)
    verdict = targets_verdict(rig)
    assert not verdict.passed
    assert f"kubelet target {rig.kubelets[ip].address} (node dev-k8s-1) is down" in verdict.message


def test_alert_passes_when_the_firing_alert_reaches_alertmanager(rig: MonitoringRig) -> None:
    verdict = alert_verdict(rig)
    assert verdict.passed, verdict


def test_alert_fails_when_prometheus_sends_to_no_alertmanager(rig: MonitoringRig) -> None:
    rig.start_prometheus(send_to_alertmanager=False)
    rig.wait_rules_evaluated()
    verdict = alert_verdict(rig, settle_s=4)
    assert not verdict.passed
    assert "fires in Prometheus but never reached Alertmanager" in verdict.message


def test_alert_fails_when_alertmanager_is_down(rig: MonitoringRig) -> None:
    rig.stop_alertmanager()
    verdict = alert_verdict(rig, settle_s=3)
    assert not verdict.passed
    assert "never reached Alertmanager (ConnectionError" in verdict.message


def test_alert_fails_when_the_rule_is_missing(rig: MonitoringRig) -> None:
    rig.start_prometheus(watchdog=False)
    rig.wait_rules_evaluated()
    verdict = alert_verdict(rig, settle_s=2)
    assert not verdict.passed
    assert "alert Watchdog is not active in Prometheus" in verdict.message
