"""The RBAC matrix (PRD checklist) as SubjectAccessReview expectations, from the inventory.

Roles: cluster-admin (`access.cluster_admin_group`, SRE), namespace-admin (each team's
`leads_group` in its namespace), developer read/write (each team's `developers_group` in its
namespace, no RBAC changes), read-only auditors (`access.auditor_group`, never Secrets).
Each role gets cells it must be allowed and cells it must be denied, so a binding that is
missing fails as surely as one that grants too much.
"""

from __future__ import annotations

from mk8s.checks.cluster import AccessExpectation
from mk8s.inventory.model import Environment

# Namespace no team owns: access there must come only from cluster-wide roles.
FOREIGN_NAMESPACE = "kube-system"


def rbac_expectations(env: Environment) -> list[AccessExpectation]:
    admin = env.access.cluster_admin_group
    auditor = env.access.auditor_group
    cells = [
        AccessExpectation("cluster-admin", admin, "delete", "nodes"),
        AccessExpectation(
            "cluster-admin", admin, "create", "clusterrolebindings", "rbac.authorization.k8s.io"
        ),
        AccessExpectation("cluster-admin", admin, "get", "secrets", namespace=FOREIGN_NAMESPACE),
        AccessExpectation("auditor", auditor, "list", "pods", namespace=FOREIGN_NAMESPACE),
        AccessExpectation("auditor", auditor, "list", "nodes"),
        AccessExpectation(
            "auditor", auditor, "get", "deployments", "apps", namespace=FOREIGN_NAMESPACE
        ),
        AccessExpectation(
            "auditor", auditor, "get", "secrets", namespace=FOREIGN_NAMESPACE, allowed=False
        ),
        AccessExpectation(
            "auditor", auditor, "delete", "pods", namespace=FOREIGN_NAMESPACE, allowed=False
        ),
        AccessExpectation(
            "auditor",
            auditor,
            "create",
            "deployments",
            "apps",
            namespace=FOREIGN_NAMESPACE,
            allowed=False,
        ),
    ]
    for team in env.teams:
        ns = team.name
        lead, dev = team.leads_group, team.developers_group
        cells += [
            AccessExpectation(
                "namespace-admin",
                lead,
                "create",
                "rolebindings",
                "rbac.authorization.k8s.io",
                namespace=ns,
            ),
            AccessExpectation(
                "namespace-admin", lead, "delete", "deployments", "apps", namespace=ns
            ),
            AccessExpectation("namespace-admin", lead, "get", "secrets", namespace=ns),
            AccessExpectation(
                "namespace-admin",
                lead,
                "create",
                "deployments",
                "apps",
                namespace=FOREIGN_NAMESPACE,
                allowed=False,
            ),
            AccessExpectation("namespace-admin", lead, "delete", "nodes", allowed=False),
            AccessExpectation("developer", dev, "create", "deployments", "apps", namespace=ns),
            AccessExpectation("developer", dev, "update", "configmaps", namespace=ns),
            AccessExpectation("developer", dev, "list", "pods", namespace=ns),
            AccessExpectation(
                "developer",
                dev,
                "create",
                "rolebindings",
                "rbac.authorization.k8s.io",
                namespace=ns,
                allowed=False,
            ),
            AccessExpectation(
                "developer", dev, "get", "pods", namespace=FOREIGN_NAMESPACE, allowed=False
            ),
            AccessExpectation("developer", dev, "create", "namespaces", allowed=False),
        ]
    return cells
