"""Edge: the two disruptive drills, node loss (Proxmox + Kubernetes) and restore (Velero).

Both drills only orchestrate and time; what they observed goes into `NodeLossDrill` /
`RestoreDrill`, judged by `mk8s.checks.cluster`. Clocks and sleeps are injectable so tests can
run them fast against real servers (fakepve with time_scale 0, kube-apiserver).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from proxmoxer.core import ResourceException

from mk8s.checks import kube_facts as kf
from mk8s.checks.resilience import MIN_READY_BEFORE, NodeLossDrill, RestoreDrill
from mk8s.edges import proxmox
from mk8s.errors import UserError
from mk8s.inventory.model import Environment, NodeSpec

Clock = Callable[[], float]
Sleep = Callable[[float], None]


# --- Proxmox ---------------------------------------------------------------------------------


def proxmox_api(env: Environment, verify: bool | str | None = None) -> Any:
    """proxmoxer client from the inventory endpoint and the token in the named env vars."""
    source = proxmox.secret_source(env)
    if not source.get(env.proxmox.token_id_env) or not source.get(env.proxmox.token_secret_env):
        raise UserError(
            f"set {env.proxmox.token_id_env} and {env.proxmox.token_secret_env} "
            "(the Proxmox API token the inventory names)"
        )
    return proxmox.client(env, proxmox.credentials(env, source), verify=verify)


@dataclass
class PveVm:
    """One VM's power state through the Proxmox API."""

    pve: Any
    node: str
    vmid: int
    sleep: Sleep = time.sleep

    def _wait_task(self, upid: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.pve.nodes(self.node).tasks(upid).status.get()
            if status.get("status") == "stopped":
                return str(status.get("exitstatus", ""))
            if time.monotonic() >= deadline:
                return "timeout"
            self.sleep(0.5)

    def status(self) -> str:
        return str(self.pve.nodes(self.node).qemu(self.vmid).status.current.get()["status"])

    def stop(self, timeout_s: float = 120) -> str:
        """Hard stop (power off), as a host failure would: no guest shutdown."""
        upid = self.pve.nodes(self.node).qemu(self.vmid).status.stop.post()
        return self._wait_task(str(upid), timeout_s)

    def start(self, timeout_s: float = 120) -> str:
        upid = self.pve.nodes(self.node).qemu(self.vmid).status.start.post()
        return self._wait_task(str(upid), timeout_s)


# --- API availability ----------------------------------------------------------------------


@dataclass
class ApiGapMonitor:
    """Probes the API server every `interval_s` in a thread; the longest stretch without a
    successful answer is the outage clients would have seen."""

    probe: Callable[[], bool]
    interval_s: float = 0.5
    clock: Clock = time.monotonic
    longest_gap_s: float = 0.0
    probes: int = 0
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ApiGapMonitor:
        self._thread = threading.Thread(target=self._run, name="api-gap", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        last_ok = self.clock()
        while not self._stop.is_set():
            ok = False
            try:
                ok = self.probe()
            except Exception:  # any failure to answer is unavailability
                ok = False
            now = self.clock()
            self.probes += 1
            if ok:
                last_ok = now
            else:
                self.failures += 1
            self.longest_gap_s = max(self.longest_gap_s, now - last_ok)
            self._stop.wait(self.interval_s)


def api_probe(api: client.ApiClient, namespace: str, timeout_s: float = 2.0) -> Callable[[], bool]:
    """A probe the API server can answer only with its datastore: a list of one pod.

    A list without resourceVersion is a consistent read ("Most Recent", Kubernetes API
    concepts, resource versions), so it needs dqlite's quorum; `/version` is answered by the
    API server alone and stays up while the datastore is gone."""
    core = client.CoreV1Api(api)

    def probe() -> bool:
        core.list_namespaced_pod(namespace, limit=1, _request_timeout=timeout_s)
        return True

    return probe


API_PROBE = "list pods (limit 1, consistent read)"


def _node_ready(api: client.ApiClient, name: str) -> bool:
    return any(n.ready for n in kf.read_nodes(api) if n.name == name)


def app_pods(api: client.ApiClient, namespace: str, selector: str) -> list[Any]:
    pods: Any = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    return list(pods.items or [])


def pod_ready(pod: Any) -> bool:
    return (
        any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or ()))
        and pod.metadata.deletion_timestamp is None
    )


def pick_victim(
    nodes: Sequence[NodeSpec], pods: Sequence[Any], keep: IPv4Address
) -> NodeSpec | None:
    """A node that hosts a Ready app pod and is not the API endpoint the drill talks to."""
    hosting = {p.spec.node_name for p in pods if pod_ready(p)}
    return next((n for n in reversed(nodes) if n.ip != keep and n.name in hosting), None)


def node_loss_drill(
    api: client.ApiClient,
    vm: PveVm,
    node: NodeSpec,
    namespace: str,
    selector: str,
    timeout_s: float = 900.0,
    probe: Callable[[], bool] | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    poll_s: float = 2.0,
) -> NodeLossDrill:
    """Stop `node`'s VM, watch the API and the app's pods, start it again, wait for Ready.

    Before anything is stopped the app must have >= 2 Ready replicas, one on `node`; else
    the drill stops nothing and reports "nothing to measure". Rescheduled means: as many
    Ready pods of `selector` as before, none of them on `node`. Kubernetes evicts pods from
    an unreachable node after its toleration (300 s by default), so the timeout must be well
    above that.
    """
    before = [p for p in app_pods(api, namespace, selector) if pod_ready(p)]
    on_victim = sum(1 for p in before if p.spec.node_name == node.name)
    if len(before) < MIN_READY_BEFORE or on_victim < 1:
        return NodeLossDrill(node.name, len(before), on_victim, 0.0, False, "not run", False,
                             "not stopped", API_PROBE)  # fmt: skip
    with ApiGapMonitor(probe or api_probe(api, namespace), clock=clock) as monitor:
        vm.stop()
        deadline = clock() + timeout_s
        rescheduled, detail = False, "not observed"
        while clock() < deadline:
            pods = [p for p in app_pods(api, namespace, selector) if pod_ready(p)]
            elsewhere = [p for p in pods if p.spec.node_name != node.name]
            detail = f"{len(elsewhere)}/{len(before)} ready off {node.name}"
            if len(elsewhere) >= len(before):
                rescheduled = True
                break
            sleep(poll_s)
        try:
            start_result = vm.start()
        except (ResourceException, requests.RequestException) as exc:
            # The node stays down: the verdict says so, and the operator must start it.
            start_result = f"failed: {exc}"
        returned = False
        deadline = clock() + timeout_s  # the node gets its own time to come back
        while clock() < deadline:
            if _node_ready(api, node.name):
                returned = True
                break
            sleep(poll_s)
        gap = monitor.longest_gap_s
    return NodeLossDrill(
        node=node.name,
        ready_before=len(before),
        on_victim=on_victim,
        longest_api_gap_s=gap,
        rescheduled=rescheduled,
        reschedule_detail=detail,
        node_returned=returned,
        return_detail=f"start task {start_result or 'unknown'}; node not Ready"
        if not returned
        else "",
        api_probe=API_PROBE if probe is None else "given probe",
    )


# --- backup and restore (Velero) ---------------------------------------------------------------

VELERO = ("velero.io", "v1")
VELERO_NS = "velero"


def _velero_phase(api: client.ApiClient, plural: str, name: str) -> str:
    obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *VELERO, VELERO_NS, plural, name
    )
    return str((obj.get("status") or {}).get("phase") or "New")


def _wait_phase(
    api: client.ApiClient, plural: str, name: str, deadline: float, clock: Clock, sleep: Sleep
) -> str:
    final = {"Completed", "Failed", "PartiallyFailed", "FailedValidation"}
    phase = "New"
    while clock() < deadline:
        phase = _velero_phase(api, plural, name)
        if phase in final:
            return phase
        sleep(2.0)
    return phase


def _namespace_gone(api: client.ApiClient, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


DATA_POD_SCRIPT = 'printf %s "$DATA" > /data/probe && sync && sleep 86400'


def restore_drill(
    api: client.ApiClient,
    namespace: str,
    timeout_s: float = 3600.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> RestoreDrill:
    """Data in a PVC -> Velero backup -> delete the namespace -> restore -> read the data back.

    RTO is timed from the namespace deletion (the incident) to the restored data verified.
    """
    errors: list[str] = []
    data = os.urandom(32).hex()
    before = hashlib.sha256(data.encode()).hexdigest()
    deadline = clock() + timeout_s
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    kf.ensure_namespace(api, namespace)
    kf.create_pvc(api, namespace, "data")
    holder = kf.probe_pod("data-holder", DATA_POD_SCRIPT, {"DATA": data}, pvc="data")
    core.create_namespaced_pod(namespace, holder)
    # Velero's file-system backup copies volumes of running pods only: wait until it runs.
    while clock() < deadline:
        pod: Any = core.read_namespaced_pod("data-holder", namespace)
        if pod.status and pod.status.phase == "Running":
            break
        sleep(2.0)
    # Unique per drill: two drills within a second must not share a Backup name.
    stamp = f"{int(time.time()):x}-{os.urandom(2).hex()}"
    backup, restore = f"mk8s-drill-{stamp}", f"mk8s-drill-{stamp}"
    custom.create_namespaced_custom_object(
        *VELERO, VELERO_NS, "backups",
        {
            "apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": backup, "namespace": VELERO_NS},
            "spec": {"includedNamespaces": [namespace], "defaultVolumesToFsBackup": True},
        },
    )  # fmt: skip
    backup_phase = _wait_phase(api, "backups", backup, deadline, clock, sleep)
    if backup_phase != "Completed":
        left = clean_up_drill(api, namespace, backup, None)
        return RestoreDrill(backup_phase, "not started", before, None, None, tuple(errors), left)
    incident = clock()
    kf.delete_namespace(api, namespace)
    while clock() < deadline and not _namespace_gone(api, namespace):
        sleep(2.0)
    custom.create_namespaced_custom_object(
        *VELERO, VELERO_NS, "restores",
        {
            "apiVersion": "velero.io/v1", "kind": "Restore",
            "metadata": {"name": restore, "namespace": VELERO_NS},
            "spec": {"backupName": backup},
        },
    )  # fmt: skip
    restore_phase = _wait_phase(api, "restores", restore, deadline, clock, sleep)
    after = None
    if restore_phase == "Completed":
        phase, after_sum = kf.run_pod(
            api,
            namespace,
            kf.probe_pod("data-reader", kf.READ_SCRIPT, pvc="data"),
            max(1.0, deadline - clock()),
        )
        after = after_sum if phase == "Succeeded" else None
        if after is None:
            errors.append(f"reader pod {phase}")
    rto = clock() - incident if after is not None else None
    left = clean_up_drill(api, namespace, backup, restore)
    return RestoreDrill(backup_phase, restore_phase, before, after, rto, tuple(errors), left)


def clean_up_drill(
    api: client.ApiClient, namespace: str, backup: str, restore: str | None
) -> tuple[str, ...]:
    """Remove what the drill made: its namespace (restored copy included), its Restore, and
    its Backup with the data in object storage. A Backup is deleted through a
    DeleteBackupRequest (velero.io/v1, spec.backupName): deleting the Backup object alone
    leaves its data in the bucket and Velero's sync brings the object back.
    Returns what could not be removed."""
    custom = client.CustomObjectsApi(api)
    left = []
    steps: list[tuple[str, Callable[[], object]]] = [
        (f"namespace {namespace}", lambda: client.CoreV1Api(api).delete_namespace(namespace)),
        (f"Backup {VELERO_NS}/{backup}", lambda: custom.create_namespaced_custom_object(
            *VELERO, VELERO_NS, "deletebackuprequests",
            {"apiVersion": "velero.io/v1", "kind": "DeleteBackupRequest",
             "metadata": {"name": backup, "namespace": VELERO_NS,
                          "labels": {"velero.io/backup-name": backup}},
             "spec": {"backupName": backup}})),
    ]  # fmt: skip
    if restore:
        steps.append((f"Restore {VELERO_NS}/{restore}", lambda: custom.delete_namespaced_custom_object(
            *VELERO, VELERO_NS, "restores", restore)))  # fmt: skip
    for what, step in steps:
        try:
            step()
        except ApiException as exc:
            # Deleting: 404 is already gone. Requesting the Backup's deletion: 409 is already
            # requested, 404 is no DeleteBackupRequest CRD (no Velero), so the Backup stays.
            done = (409,) if what.startswith("Backup") else (404,)
            if exc.status not in done:
                left.append(f"{what} ({exc.status} {exc.reason})")
    return tuple(left)
