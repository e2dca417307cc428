"""Backup -> delete namespace -> restore -> checksum, against a real kube-apiserver with the
Velero CRDs. Test actors play Velero (Backup/Restore controllers with file-system backup), the
namespace controller (finalising a deleted namespace) and the kubelet (a volume's bytes)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import drills, resilience
from tests.conformance.actors import terminated

pytestmark = pytest.mark.slow


class World:
    """Volumes (namespace/claim -> bytes), pods' fates, Velero and the namespace controller."""

    def __init__(self, api: Any, namespace: str, velero_keeps_data: bool = True,
                 restore_phase: str = "Completed") -> None:  # fmt: skip
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.api = api
        self.namespace = namespace
        self.keeps_data, self.restore_phase = velero_keeps_data, restore_phase
        self.volumes: dict[str, bytes] = {}
        self.backups: dict[str, bytes] = {}
        self.done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> World:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kubelet()
            self._velero()
            self._namespace_controller()
            self._stop.wait(0.05)

    def _kubelet(self) -> None:
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.metadata.uid in self.done or pod.metadata.deletion_timestamp:
                continue
            env = {e.name: e.value for e in pod.spec.containers[0].env or ()}
            key = f"{self.namespace}/data"
            if pod.metadata.name == "data-holder":
                if "DATA" in env and key not in self.volumes:
                    self.volumes[key] = env["DATA"].encode()
                body: dict[str, Any] = {"status": {"phase": "Running"}}
            elif pod.metadata.name == "data-reader":
                digest = hashlib.sha256(self.volumes.get(key, b"")).hexdigest()
                body = terminated("Succeeded", digest)
            else:
                continue
            with contextlib.suppress(ApiException):
                self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, body)
                self.done.add(pod.metadata.uid)

    def _velero(self) -> None:
        for kind in ("backups", "restores"):
            items = self.custom.list_namespaced_custom_object(
                "velero.io", "v1", drills.VELERO_NS, kind
            )["items"]
            for item in items:
                if (item.get("status") or {}).get("phase"):
                    continue
                name = item["metadata"]["name"]
                if kind == "backups":
                    data = self.volumes.get(f"{self.namespace}/data", b"")
                    self.backups[name] = data if self.keeps_data else b""
                    phase = "Completed"
                else:
                    phase = self.restore_phase
                    if phase == "Completed":
                        self._restore(self.backups[item["spec"]["backupName"]])
                self.custom.patch_namespaced_custom_object_status(
                    "velero.io", "v1", drills.VELERO_NS, kind, name, {"status": {"phase": phase}}
                )

    def _restore(self, data: bytes) -> None:
        """Namespace, claim and volume contents back, as Velero's restore + fs-restore do."""
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=self.namespace)))  # fmt: skip
        self.core.create_namespaced_persistent_volume_claim(
            self.namespace,
            client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name="data"),
                spec=client.V1PersistentVolumeClaimSpec(
                    access_modes=["ReadWriteOnce"],
                    resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}),
                ),
            ),
        )
        self.volumes[f"{self.namespace}/data"] = data

    def _namespace_controller(self) -> None:
        try:
            ns = self.core.read_namespace(self.namespace)
        except ApiException:
            return
        if not ns.metadata.deletion_timestamp:
            return
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(pod.metadata.name, self.namespace,
                                                grace_period_seconds=0)  # fmt: skip
        for pvc in self.core.list_namespaced_persistent_volume_claim(self.namespace).items:
            with contextlib.suppress(ApiException):
                self.core.patch_namespaced_persistent_volume_claim(
                    pvc.metadata.name, self.namespace, {"metadata": {"finalizers": None}}
                )
                self.core.delete_namespaced_persistent_volume_claim(pvc.metadata.name,
                                                                    self.namespace)  # fmt: skip
        self.volumes.pop(f"{self.namespace}/data", None)
        ns.spec.finalizers = []
        with contextlib.suppress(ApiException):
            self.core.replace_namespace_finalize(self.namespace, ns)


@pytest.fixture
def velero_ns(kube_apiserver: Any, crds: list[str]) -> str:
    with contextlib.suppress(ApiException):
        kube_apiserver.create_namespace(drills.VELERO_NS)
    return drills.VELERO_NS


def _drill(api: Any, namespace: str = "", **world: Any) -> resilience.RestoreDrill:
    namespace = namespace or f"drill-{secrets.token_hex(3)}"
    with World(api, namespace, **world):
        # Poll fast: the actors answer within a few tens of milliseconds.
        return drills.restore_drill(api, namespace, timeout_s=30, sleep=lambda s: time.sleep(0.05))


def test_restore_drill_passes_when_data_comes_back_within_the_rto(api: Any, velero_ns: str) -> None:
    drill = _drill(api)
    verdict = resilience.backup_restore(drill, 60, [], [])
    assert verdict.passed, verdict
    assert drill.checksum_after == drill.checksum_before
    assert drill.rto_seconds is not None and drill.rto_seconds < 30


def test_restore_drill_fails_when_the_backup_held_no_volume_data(api: Any, velero_ns: str) -> None:
    """The MicroK8s pitfall: a Completed backup that is empty (no fs-backup of the PV)."""
    drill = _drill(api, velero_keeps_data=False)
    verdict = resilience.backup_restore(drill, 60, [], [])
    assert not verdict.passed
    assert drill.backup_phase == "Completed" and drill.restore_phase == "Completed"
    assert "checksum before" in verdict.message


def test_restore_drill_fails_when_the_restore_partially_fails(api: Any, velero_ns: str) -> None:
    drill = _drill(api, restore_phase="PartiallyFailed")
    verdict = resilience.backup_restore(drill, 60, [], [])
    assert not verdict.passed
    assert "drill restore phase PartiallyFailed" in verdict.message


def test_restore_drill_fails_when_slower_than_the_rto() -> None:
    drill = resilience.RestoreDrill("Completed", "Completed", "ab" * 32, "ab" * 32, 3700.0)
    verdict = resilience.backup_restore(drill, 60, [], [])
    assert not verdict.passed and "RTO 3700s above 60 min" in verdict.message


def test_restore_drill_removes_what_it_created(api: Any, velero_ns: str) -> None:
    """Its namespace (the restored copy), its Restore, and its Backup with the bucket's data
    (a DeleteBackupRequest: deleting the Backup object alone leaves the data)."""
    namespace = f"drill-{secrets.token_hex(3)}"
    drill = _drill(api, namespace)
    assert drill.leftovers == ()
    custom = client.CustomObjectsApi(api)
    backups = custom.list_namespaced_custom_object("velero.io", "v1", velero_ns, "backups")["items"]
    mine = [b["metadata"]["name"] for b in backups
            if namespace in b["spec"].get("includedNamespaces", [])]  # fmt: skip
    assert len(mine) == 1
    requests = custom.list_namespaced_custom_object(
        "velero.io", "v1", velero_ns, "deletebackuprequests"
    )["items"]
    assert [r["spec"]["backupName"] for r in requests if r["spec"]["backupName"] == mine[0]]
    restores = custom.list_namespaced_custom_object("velero.io", "v1", velero_ns, "restores")
    assert mine[0] not in [r["metadata"]["name"] for r in restores["items"]]
    try:
        ns = client.CoreV1Api(api).read_namespace(namespace)
        assert ns.metadata.deletion_timestamp is not None  # Terminating: on its way out
    except ApiException as exc:
        assert exc.status == 404
