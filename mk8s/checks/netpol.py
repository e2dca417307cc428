"""phase2.network_policy: default-deny is present and enforced, proven with a positive control.

A probe that fails to connect proves a block only if the same probe, to the same pod IP and
port, got through from a namespace the policy allows in the same run: otherwise a DNS
failure, an app with no endpoints or a broken CNI would read as "blocked". Probes go to IP
literals (a pod IP), so no resolver is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from mk8s.checks import kube_facts as kf
from mk8s.checks.cluster import ConnectProbe, PolicyFact
from mk8s.checks.verdict import Verdict, failed, passed


def _host(target: str) -> str:
    return urlsplit(target if "://" in target else f"tcp://{target}").hostname or ""


def _is_ip(target: str) -> bool:
    try:
        ip_address(_host(target))
    except ValueError:
        return False
    return True


def network_policy(
    namespace: str,
    policies: Sequence[PolicyFact],
    denied: ConnectProbe,
    control: ConnectProbe,
) -> Verdict:
    """Default-deny exists in `namespace`; from a foreign namespace the app's pod IP is
    unreachable while the same probe from an allowed namespace reaches it."""
    expected = (
        "default-deny present; probe from a foreign namespace blocked while the same probe "
        "from an allowed namespace connects (pod IP, no DNS)"
    )
    deny = [p for p in policies if p.namespace == namespace and p.is_default_deny]
    problems = []
    if not deny:
        problems.append(f"namespace {namespace} has no default-deny policy")
    for probe in (denied, control):
        if not _is_ip(probe.target):
            problems.append(f"probe target {probe.target} is not an IP: DNS would decide")
    if denied.target != control.target:
        problems.append(f"control probed {control.target}, not {denied.target}")
    if control.connected is None:
        problems.append(f"positive control {control.source} -> {control.target} did not run "
                        f"({control.detail})")  # fmt: skip
    elif not control.connected:
        problems.append(
            f"positive control {control.source} -> {control.target} did not connect "
            f"({control.detail}): a failed probe proves no block"
        )
    if denied.connected is None:
        problems.append(f"probe {denied.source} -> {denied.target} did not run ({denied.detail})")
    elif denied.connected:
        problems.append(f"{denied.source} reached {denied.target}: policy not enforced")
    measured = f"foreign {_state(denied.connected)}, control {_state(control.connected)}"
    if problems:
        return failed(measured, expected, "; ".join(problems))
    return passed(
        measured,
        expected,
        f"{namespace}: {deny[0].name} enforced ({denied.source} blocked, "
        f"{control.source} connected to {denied.target})",
    )


def _state(connected: bool | None) -> str:
    return {True: "connected", False: "blocked", None: "no result"}[connected]


# --- edge -------------------------------------------------------------------------------------

# The probe's verdict and wget's own words, so a failure says why (timeout, refused, ...).
CONNECT_SCRIPT = (
    'if out=$(wget -q -T "$TIMEOUT" -O /dev/null "$URL" 2>&1); then echo open; '
    'else echo "blocked: $out"; fi > /dev/termination-log'
)


def app_target(api: client.ApiClient, namespace: str, selector: str, port: int) -> str | None:
    """`http://POD_IP:PORT/` of a Ready app pod (None when no pod has an IP)."""
    pods: Any = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    for pod in pods.items or []:
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in (pod.status.conditions or ()))  # fmt: skip
        if ready and pod.status.pod_ip:
            return f"http://{pod.status.pod_ip}:{port}/"
    return None


def connect(
    api: client.ApiClient, namespace: str, name: str, url: str, timeout_s: float
) -> ConnectProbe:
    """From a run-once pod in `namespace`, GET `url`: connected, blocked or no result."""
    pod = kf.probe_pod(name, CONNECT_SCRIPT, {"URL": url, "TIMEOUT": "5"})
    phase, message = kf.run_pod(api, namespace, pod, timeout_s)
    source = f"namespace {namespace}"
    if phase != "Succeeded" or not (message == "open" or message.startswith("blocked")):
        return ConnectProbe(source, url, None, f"probe pod {phase} ({message or 'no result'})")
    return ConnectProbe(source, url, message == "open", message)
