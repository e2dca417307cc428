"""Operations add-ons: ExternalDNS, Velero (backups), the observability add-on's values."""

from __future__ import annotations

from urllib.parse import urlsplit

from mk8s.inventory.model import Environment
from mk8s.render.manifests.common import Obj, allow_kube_api, dump, meta


def external_dns_args(env: Environment) -> list[Obj]:
    """Restrict ExternalDNS to this env's domain; the owner id keeps envs off each other's records."""
    return [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg}
        for arg in (f"--domain-filter={env.ingress.domain}", f"--txt-owner-id=mk8s-{env.name}")
    ]


def s3_port(endpoint: str) -> int:
    parts = urlsplit(endpoint)
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def velero(env: Environment) -> list[Obj]:
    assert env.backup is not None
    b = env.backup
    out: list[Obj] = [
        {
            "apiVersion": "velero.io/v1",
            "kind": "BackupStorageLocation",
            "metadata": meta("default", "velero"),
            "spec": {
                "provider": "aws",
                "default": True,
                "objectStorage": {"bucket": b.target.bucket, "prefix": env.name},
                "config": {
                    "region": b.target.region,
                    "s3Url": b.target.endpoint,
                    "s3ForcePathStyle": "true",
                },
                "credential": {"name": "velero-s3-credentials", "key": "cloud"},
            },
        }
    ]
    for s in b.schedules:
        out.append(
            {
                "apiVersion": "velero.io/v1",
                "kind": "Schedule",
                "metadata": meta(s.name, "velero"),
                "spec": {
                    "schedule": s.cron,
                    "useOwnerReferencesInBackup": False,
                    "template": {
                        "ttl": f"{s.ttl_days * 24}h0m0s",
                        "includedNamespaces": list(s.namespaces),
                        "includeClusterResources": s.namespaces == ["*"],
                        "storageLocation": "default",
                        "defaultVolumesToFsBackup": b.fs_backup,
                    },
                },
            }
        )
    out.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-s3", "velero"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": s3_port(b.target.endpoint)}]}],
            },
        }
    )
    out.append(allow_kube_api(env, "velero"))
    return out


def observability_values(env: Environment) -> dict[str, Obj]:
    """Helm values for the observability add-on's charts (`microk8s enable observability
    --kube-prometheus-stack-values=... --loki-stack-values=...`), or kube-prometheus-stack."""
    m = env.monitoring
    scrape = f"{m.scrape_interval_s}s"
    retention_h = f"{m.log_retention_days * 24}h"
    return {
        "kube-prometheus-stack.values.yaml": {
            "prometheus": {
                "prometheusSpec": {
                    "scrapeInterval": scrape,
                    "evaluationInterval": scrape,
                    "retention": f"{m.log_retention_days}d",
                }
            },
            "nodeExporter": {"enabled": True},
            "kubeStateMetrics": {"enabled": True},
            "kubelet": {"enabled": True, "serviceMonitor": {"cAdvisor": True}},
        },
        "loki-stack.values.yaml": {
            "loki": {
                "config": {
                    "table_manager": {
                        "retention_deletes_enabled": True,
                        "retention_period": retention_h,
                    },
                    "limits_config": {"retention_period": retention_h},
                }
            }
        },
    }


def observability_value_files(env: Environment) -> dict[str, str]:
    """The values files as text: rendered into build/ENV/ and uploaded by bootstrap."""
    return {name: dump([body]) for name, body in observability_values(env).items()}
