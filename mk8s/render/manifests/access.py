"""Who may do what: the cluster-wide RBAC rows and one kustomization per team."""

from __future__ import annotations

from mk8s.inventory.model import Environment, Team
from mk8s.render.manifests.common import REPO, Obj, meta, ops


def cluster_rbac(env: Environment) -> list[Obj]:
    """The cluster-wide rows of the RBAC matrix: SRE cluster-admin, auditors read-only."""

    def crb(name: str, role: str, group: str) -> Obj:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        }

    acc = env.access
    return [
        crb("mk8s-cluster-admin", "cluster-admin", acc.cluster_admin_group),
        crb("mk8s-auditor-view", "view", acc.auditor_group),
        crb("mk8s-auditor-cluster-read", "mk8s-auditor-cluster-read", acc.auditor_group),
    ]


def team_kustomization(team: Team) -> Obj:
    """One team: the repo's blueprint (manifests/team) renamed and given its quota and groups."""
    q = team.quota
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": team.name,
        "resources": [f"../../{REPO}/manifests/team"],
        "patches": [
            {
                "target": {"kind": "Namespace", "name": "team"},
                "patch": ops([{"op": "replace", "path": "/metadata/name", "value": team.name}]),
            },
            {
                "target": {"kind": "ResourceQuota", "name": "compute"},
                "patch": ops(
                    [
                        {
                            "op": "replace",
                            "path": "/spec/hard",
                            "value": {
                                "requests.cpu": q.cpu,
                                "requests.memory": q.memory,
                                "limits.cpu": q.cpu,
                                "limits.memory": q.memory,
                                "pods": str(q.pods),
                            },
                        }
                    ]
                ),
            },
            {
                "target": {"kind": "RoleBinding", "name": "namespace-admin"},
                "patch": ops(
                    [{"op": "replace", "path": "/subjects/0/name", "value": team.leads_group}]
                ),
            },
            {
                "target": {"kind": "RoleBinding", "name": "developer"},
                "patch": ops(
                    [{"op": "replace", "path": "/subjects/0/name", "value": team.developers_group}]
                ),
            },
        ],
    }
