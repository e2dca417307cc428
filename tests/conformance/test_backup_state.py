"""phase3.backup_restore beyond the drill: the schedules' newest backup within the RPO and the
backup location available and off-cluster, read from a real kube-apiserver holding Velero's
real BackupStorageLocation CRD (shared/upstream/crds) and Backups as Velero writes them."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks import resilience
from mk8s.checks import velero_facts as vf
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from tests.conformance.rig import ROOT, install_crds

pytestmark = pytest.mark.slow

GOOD_DRILL = resilience.RestoreDrill("Completed", "Completed", "ab" * 32, "ab" * 32, 240.0)


@pytest.fixture(scope="module")
def stage() -> Environment:
    return load_environment("stage", ROOT)


@pytest.fixture
def velero(api: Any, crds: list[str]) -> Any:
    """A clean `velero` namespace with the real BSL CRD installed."""
    install_crds(api, "velero-v1.16.1-backupstoragelocations.yaml")
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": "velero"}})
    for plural in ("backups", "backupstoragelocations"):
        custom.delete_collection_namespaced_custom_object("velero.io", "v1", "velero", plural)
    return api


def make_location(api: Any, s3_url: str, bucket: str, phase: str = "Available") -> None:
    """The BSL as Velero leaves it after validation. Its CRD has no status subresource
    (`subresources: {}` in velero-v1.16.1-backupstoragelocations.yaml): status is written
    with the object."""
    status: dict[str, Any] = {"phase": phase, "lastValidationTime": _ts(datetime.now(UTC))}
    if phase != "Available":
        status["message"] = "BackupStorageLocation is unavailable: dial tcp: i/o timeout"
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "velero.io", "v1", "velero", "backupstoragelocations",
        {"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
         "metadata": {"name": "default"},
         "spec": {"provider": "aws", "default": True,
                  "objectStorage": {"bucket": bucket, "prefix": "stage"},
                  "config": {"region": "us-east-1", "s3Url": s3_url, "s3ForcePathStyle": "true"}},
         "status": status},
    )  # fmt: skip


def make_backup(api: Any, name: str, schedule: str, phase: str, minutes_ago: float) -> None:
    """A Backup as a Schedule's run leaves it (label, phase, completion time)."""
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "backups",
        {"apiVersion": "velero.io/v1", "kind": "Backup",
         "metadata": {"name": name, "labels": {resilience.SCHEDULE_LABEL: schedule}},
         "spec": {"includedNamespaces": ["sample-app"]}},
    )  # fmt: skip
    done = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    status: dict[str, Any] = {"phase": phase, "startTimestamp": _ts(done - timedelta(minutes=1))}
    if phase in ("Completed", "PartiallyFailed", "Failed"):
        status["completionTimestamp"] = _ts(done)
    custom.patch_namespaced_custom_object_status(
        "velero.io", "v1", "velero", "backups", name, {"status": status}
    )


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def verdict(api: Any, env: Environment, now: datetime | None = None) -> Any:
    assert env.backup is not None
    net = env.network
    inside = [net.pod_cidr, net.service_cidr, net.metallb_range, *(n.ip for n in env.nodes)]
    freshness = resilience.freshness_problems(
        vf.read_backups(api), [s.name for s in env.backup.schedules], env.slo.rpo_minutes,
        now or datetime.now(UTC),
    )  # fmt: skip
    location = resilience.location_problems(
        vf.read_locations(api), env.backup.target.endpoint, env.backup.target.bucket,
        env.effective_tier, inside,
    )  # fmt: skip
    return resilience.backup_restore(GOOD_DRILL, env.slo.rto_minutes, freshness, location)


def healthy(api: Any, env: Environment) -> None:
    assert env.backup is not None
    make_location(api, env.backup.target.endpoint, env.backup.target.bucket)
    make_backup(api, "tier1-20261202010000", "tier1", "Completed", minutes_ago=6)
    make_backup(api, "daily-20261202020000", "daily", "Completed", minutes_ago=600)


def test_passes_with_a_recent_scheduled_backup_and_an_available_off_cluster_location(
    velero: Any, stage: Environment
) -> None:
    healthy(velero, stage)
    v = verdict(velero, stage)
    assert v.passed, v


def test_fails_when_the_newest_scheduled_backup_is_older_than_the_rpo(
    velero: Any, stage: Environment
) -> None:
    assert stage.backup is not None
    make_location(velero, stage.backup.target.endpoint, stage.backup.target.bucket)
    make_backup(velero, "tier1-old", "tier1", "Completed", minutes_ago=47)
    v = verdict(velero, stage)
    assert not v.passed
    assert (
        "newest completed scheduled backup tier1-old is 47 min old, above the RPO of 15 min"
        in v.message
    )


def test_fails_when_the_schedules_only_fail(velero: Any, stage: Environment) -> None:
    """Backups are created on time but none completes: schedule objects alone look fine."""
    assert stage.backup is not None
    make_location(velero, stage.backup.target.endpoint, stage.backup.target.bucket)
    make_backup(velero, "tier1-a", "tier1", "PartiallyFailed", minutes_ago=3)
    v = verdict(velero, stage)
    assert not v.passed
    assert "no completed backup from the schedules" in v.message
    assert "schedule tier1: latest backup tier1-a PartiallyFailed" in v.message


def test_fails_when_a_manual_backup_is_the_only_recent_one(velero: Any, stage: Environment) -> None:
    assert stage.backup is not None
    make_location(velero, stage.backup.target.endpoint, stage.backup.target.bucket)
    make_backup(velero, "by-hand", "", "Completed", minutes_ago=1)
    make_backup(velero, "tier1-old", "tier1", "Completed", minutes_ago=90)
    v = verdict(velero, stage)
    assert not v.passed
    assert "tier1-old is 90 min old" in v.message


def test_fails_when_the_location_is_unavailable(velero: Any, stage: Environment) -> None:
    assert stage.backup is not None
    healthy_url, bucket = stage.backup.target.endpoint, stage.backup.target.bucket
    make_location(velero, healthy_url, bucket, phase="Unavailable")
    make_backup(velero, "tier1-a", "tier1", "Completed", minutes_ago=2)
    v = verdict(velero, stage)
    assert not v.passed
    assert (
        "BackupStorageLocation default is Unavailable (BackupStorageLocation is unavailable"
        in v.message
    )


@pytest.mark.parametrize(
    "url",
    ["http://minio.velero.svc:9000", "http://minio.minio.svc.cluster.local:9000",
     "http://10.152.183.40:9000", "http://192.168.20.60:9000"],
    ids=["service", "service-fqdn", "cluster-ip", "metallb-ip"],
)  # fmt: skip
def test_fails_in_stage_when_the_location_lives_in_the_cluster(
    velero: Any, stage: Environment, url: str
) -> None:
    data = stage.model_dump(mode="json")
    assert data["backup"] is not None
    data["backup"]["target"]["endpoint"] = url
    env = Environment.model_validate(data)
    assert env.backup is not None
    make_location(velero, url, env.backup.target.bucket)
    make_backup(velero, "tier1-a", "tier1", "Completed", minutes_ago=2)
    v = verdict(velero, env)
    assert not v.passed
    assert f"BackupStorageLocation default at {url} is inside the cluster it backs up" in v.message


def test_fails_when_the_location_is_not_the_inventorys(velero: Any, stage: Environment) -> None:
    assert stage.backup is not None
    make_location(velero, "https://old-minio.example.lan:9000", stage.backup.target.bucket)
    make_backup(velero, "tier1-a", "tier1", "Completed", minutes_ago=2)
    v = verdict(velero, stage)
    assert not v.passed
    assert "points at https://old-minio.example.lan:9000" in v.message


def test_fails_when_the_drill_left_its_objects_behind(velero: Any, stage: Environment) -> None:
    healthy(velero, stage)
    drill = resilience.RestoreDrill("Completed", "Completed", "ab" * 32, "ab" * 32, 240.0,
                                    leftovers=("namespace mk8s-restore-drill-1a2b3c",))  # fmt: skip
    v = resilience.backup_restore(drill, stage.slo.rto_minutes, [], [])
    assert not v.passed
    assert "drill left behind namespace mk8s-restore-drill-1a2b3c" in v.message
