"""Edge: Velero's Backups and BackupStorageLocations as the facts of `mk8s.checks.resilience`
(fields as in shared/upstream/crds/velero-v1.16.1-*.yaml)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes import client

from mk8s.checks.resilience import SCHEDULE_LABEL, BackupFact, LocationFact

VELERO = ("velero.io", "v1")
VELERO_NS = "velero"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _list(api: client.ApiClient, plural: str) -> list[dict[str, Any]]:
    found: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
        *VELERO, VELERO_NS, plural
    )
    return list(found.get("items") or [])


def read_backups(api: client.ApiClient) -> list[BackupFact]:
    facts = []
    for item in _list(api, "backups"):
        meta, status = item["metadata"], item.get("status") or {}
        created = _time(meta.get("creationTimestamp"))
        assert created is not None  # the API server always sets it
        facts.append(
            BackupFact(
                name=meta["name"],
                schedule=(meta.get("labels") or {}).get(SCHEDULE_LABEL),
                phase=str(status.get("phase") or "New"),
                created=created,
                completed=_time(status.get("completionTimestamp")),
            )
        )
    return facts


def read_locations(api: client.ApiClient) -> list[LocationFact]:
    facts = []
    for item in _list(api, "backupstoragelocations"):
        spec, status = item.get("spec") or {}, item.get("status") or {}
        facts.append(
            LocationFact(
                name=item["metadata"]["name"],
                phase=str(status.get("phase") or ""),
                bucket=str((spec.get("objectStorage") or {}).get("bucket", "")),
                s3_url=str((spec.get("config") or {}).get("s3Url", "")),
                message=str(status.get("message") or ""),
            )
        )
    return facts
