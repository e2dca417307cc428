"""Monitoring and alerting measured where they live: in Prometheus and Alertmanager.

phase2.monitoring is more than "the pods are Ready": Prometheus must be scraping every
node's node-exporter and kubelet, each target `up`. phase4.alerting is more than "a rule
object exists": an alert that fires in Prometheus must arrive in Alertmanager.

Names, from the sources: the observability add-on installs the kube-prometheus-stack chart
as release `kube-prom-stack` in namespace `observability`
(canonical/microk8s-core-addons@f689811:addons/observability/enable); the chart labels
node-exporter's job `node-exporter` (its values.yaml, prometheus-node-exporter.podLabels
jobLabel) and the kubelet's `kubelet`; the operator fronts Prometheus and Alertmanager with
the governing Services `prometheus-operated` (9090) and `alertmanager-operated` (9093)
(prometheus-operator pkg/prometheus, governingServiceName); the chart's default rules
include `Watchdog`, an alert that always fires so the pipeline can be checked end to end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests
from kubernetes import client

from mk8s.checks.verdict import Verdict, failed, passed

NODE_EXPORTER_JOB = "node-exporter"
KUBELET_JOB = "kubelet"
PER_NODE_JOBS = (NODE_EXPORTER_JOB, KUBELET_JOB)
PROMETHEUS_SERVICE = ("prometheus-operated", 9090)
ALERTMANAGER_SERVICE = ("alertmanager-operated", 9093)
TEST_ALERT = "Watchdog"

GetJson = Callable[[str], Any]


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    instance: str
    health: str  # up | down | unknown (Prometheus /api/v1/targets)
    last_error: str = ""

    @property
    def host(self) -> str:
        return urlsplit(f"//{self.instance}").hostname or self.instance


def targets_up(
    targets: Sequence[ScrapeTarget],
    nodes: Sequence[tuple[str, str]],
    jobs: Sequence[str] = PER_NODE_JOBS,
) -> Verdict:
    """Every node (name, ip) has a target of each job in Prometheus, and every one is up."""
    expected = f"{' and '.join(jobs)} targets up for each of {len(nodes)} nodes"
    problems = []
    judged = up = 0
    for job in jobs:
        for name, ip in nodes:
            # instance is IP:port by default; a relabeling may have put the node name there.
            mine = [t for t in targets if t.job == job and t.host in (ip, name)]
            if not mine:
                problems.append(f"no {job} target for node {name} ({ip}) in Prometheus")
                continue
            for t in mine:
                judged += 1
                if t.health == "up":
                    up += 1
                else:
                    problems.append(f"{job} target {t.instance} (node {name}) is {t.health}: "
                                    f"{t.last_error or 'no error given'}")  # fmt: skip
    measured = f"{up}/{judged} targets up"
    if problems:
        return failed(measured, expected, "; ".join(problems))
    return passed(
        measured, expected, f"Prometheus scrapes {', '.join(jobs)} on all {len(nodes)} nodes"
    )


@dataclass(frozen=True)
class AlertState:
    prometheus: str | None  # firing | pending | None (no such alert active)
    in_alertmanager: bool
    alertmanager_error: str = ""


def alert_delivered(name: str, state: AlertState) -> Verdict:
    """The test alert is firing in Prometheus and Alertmanager holds it."""
    expected = f"{name} firing in Prometheus and received by Alertmanager"
    measured = f"prometheus {state.prometheus or 'absent'}, alertmanager {'has it' if state.in_alertmanager else 'none'}"
    if state.prometheus is None:
        return failed(
            measured, expected, f"alert {name} is not active in Prometheus (rule missing?)"
        )
    if state.prometheus != "firing":
        return failed(
            measured, expected, f"alert {name} is {state.prometheus} in Prometheus, not firing"
        )
    if not state.in_alertmanager:
        why = f" ({state.alertmanager_error})" if state.alertmanager_error else ""
        return failed(measured, expected,
                      f"alert {name} fires in Prometheus but never reached Alertmanager{why}")  # fmt: skip
    return passed(measured, expected, f"alert {name} fired in Prometheus and reached Alertmanager")


# --- edge -------------------------------------------------------------------------------------


def read_targets(get: GetJson) -> list[ScrapeTarget]:
    data = get("/api/v1/targets?state=active")
    return [
        ScrapeTarget(
            job=str(t.get("labels", {}).get("job", "")),
            instance=str(t.get("labels", {}).get("instance", "")),
            health=str(t.get("health", "unknown")),
            last_error=str(t.get("lastError", "")),
        )
        for t in data.get("data", {}).get("activeTargets", [])
    ]


def read_alert_state(prometheus: GetJson, alertmanager: GetJson, name: str) -> AlertState:
    alerts = prometheus("/api/v1/alerts").get("data", {}).get("alerts", [])
    states = {a.get("state") for a in alerts if a.get("labels", {}).get("alertname") == name}
    prom = "firing" if "firing" in states else ("pending" if states else None)
    try:
        held = alertmanager("/api/v2/alerts?filter=" + quote(f'alertname="{name}"'))
        error = ""
    except (requests.RequestException, client.ApiException, ValueError) as exc:
        held, error = [], f"{exc.__class__.__name__}: {str(exc)[:160]}"
    return AlertState(prom, any(a.get("labels", {}).get("alertname") == name for a in held), error)


def http_json(base_url: str, timeout_s: float = 5.0) -> GetJson:
    """GET JSON from a Prometheus/Alertmanager reached directly (base URL, e.g. a port-forward)."""

    def get(path: str) -> Any:
        resp = requests.get(base_url.rstrip("/") + path, timeout=timeout_s)
        resp.raise_for_status()
        return resp.json()

    return get


def service_proxy_json(
    api: client.ApiClient, namespace: str, service: str, port: int, timeout_s: float = 10.0
) -> GetJson:
    """GET JSON through the API server's service proxy (no port-forward, no extra exposure)."""

    def get(path: str) -> Any:
        route, _, query = path.partition("?")
        params = parse_qsl(query)
        method, url, headers, body, post = api.param_serialize(  # the generated client's own request builder
            "GET", f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{route}",
            query_params=params, auth_settings=["BearerToken"],
        )  # fmt: skip
        resp: Any = api.call_api(method, url, headers, body, post, _request_timeout=timeout_s)
        resp.read()
        if not 200 <= resp.status < 300:
            raise client.ApiException(status=resp.status, reason=resp.reason)
        return json.loads(resp.data)

    return get


READ_ERRORS = (requests.RequestException, client.ApiException, ValueError, KeyError, OSError)


def scrape_verdict(prometheus: GetJson, nodes: Sequence[tuple[str, str]]) -> Verdict:
    """targets_up on what Prometheus reports; FAIL "could not read" when it does not answer."""
    try:
        targets = read_targets(prometheus)
    except READ_ERRORS as exc:
        return failed("could not read", "node-exporter and kubelet targets up",
                      f"could not read Prometheus targets ({_why(exc)})")  # fmt: skip
    return targets_up(targets, nodes)


def delivery_verdict(prometheus: GetJson, alertmanager: GetJson, name: str = TEST_ALERT) -> Verdict:
    try:
        state = read_alert_state(prometheus, alertmanager, name)
    except READ_ERRORS as exc:
        return failed("could not read", f"{name} firing and received by Alertmanager",
                      f"could not read Prometheus alerts ({_why(exc)})")  # fmt: skip
    return alert_delivered(name, state)


def _why(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    text = " ".join(str(getattr(exc, "reason", "") or exc).split())[:160]
    return f"{exc.__class__.__name__}{' ' + str(status) if status else ''}: {text}"
