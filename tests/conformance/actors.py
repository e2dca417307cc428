"""Test actors that do, on a bare kube-apiserver, what the missing components would do.

There is no kubelet, scheduler or controller-manager in envtest; these write the statuses
those components write, through the same status subresources, so the code under test reads
them exactly as it would on a cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

# A pod's fate, decided from the pod object: a status body for `patch_namespaced_pod_status`,
# or None to leave it alone (not picked up yet / stays Pending).
PodFate = Callable[[Any], dict[str, Any] | None]


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def terminated(phase: str, message: str, exit_code: int | None = None) -> dict[str, Any]:
    """Status of a run-once pod whose only container `probe` exited, as the kubelet writes it."""
    now = rfc3339(datetime.now(UTC))
    code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
    return {
        "status": {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "probe",
                    "image": "busybox:1.36",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "message": message,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
    }


def ready_after(seconds: float) -> PodFate:
    """The pod turns Ready `seconds` after its creation (as the kubelet would report it)."""

    def fate(pod: Any) -> dict[str, Any]:
        at = rfc3339(pod.metadata.creation_timestamp + timedelta(seconds=seconds))
        return {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": at},
                    {"type": "Ready", "status": "True", "lastTransitionTime": at},
                ],
            }
        }

    return fate


class FakeKubelet:
    """Polls pods of one namespace (None: all) and patches each once with `fate(pod)`'s status."""

    def __init__(self, api: Any, namespace: str | None, fate: PodFate) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.fate = fate
        self.handled: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-kubelet")

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = (
                self.core.list_namespaced_pod(self.namespace)
                if self.namespace
                else self.core.list_pod_for_all_namespaces()
            )
            for pod in pods.items:
                uid = pod.metadata.uid
                if uid in self.handled:
                    continue
                body = self.fate(pod)
                if body is None:
                    continue
                try:
                    self.core.patch_namespaced_pod_status(
                        pod.metadata.name, pod.metadata.namespace, body
                    )
                    self.handled.add(uid)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            self._stop.wait(0.05)


def aggregate_cluster_roles(api: Any) -> int:
    """What kube-controller-manager's clusterrole-aggregation controller does: fill every
    ClusterRole that has an aggregationRule (admin, edit, view, ...) with the rules of the
    ClusterRoles its selectors match, until nothing changes (edit feeds admin, view feeds edit).
    Returns how many updates it made."""
    rbac = client.RbacAuthorizationV1Api(api)
    updated = 0
    for _round in range(10):
        changed = _aggregate_once(api, rbac)
        updated += changed
        if not changed:
            return updated
    raise AssertionError("ClusterRole aggregation did not settle")


def _aggregate_once(api: Any, rbac: Any) -> int:
    roles = rbac.list_cluster_role().items
    updated = 0
    for role in roles:
        rule = role.aggregation_rule
        if rule is None or not rule.cluster_role_selectors:
            continue
        rules: list[Any] = []
        for selector in rule.cluster_role_selectors:
            wanted = selector.match_labels or {}
            for other in roles:
                labels = other.metadata.labels or {}
                if other.metadata.name != role.metadata.name and all(
                    labels.get(k) == v for k, v in wanted.items()
                ):
                    for r in other.rules or ():
                        if r not in rules:
                            rules.append(r)
        body = api.sanitize_for_serialization(rules)
        if body == api.sanitize_for_serialization(role.rules or []):
            continue
        rbac.patch_cluster_role(role.metadata.name, {"rules": body})
        updated += 1
    return updated
