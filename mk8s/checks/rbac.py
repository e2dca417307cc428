"""The RBAC matrix (PRD checklist) as SubjectAccessReview cells, from the inventory.

Every role is asked about every namespace class: its own team namespace, each other team's
namespace, a platform namespace no team owns, and cluster-scoped objects. Roles:
cluster-admin (`access.cluster_admin_group`, SRE), namespace-admin (each team's `leads_group`,
built-in `admin` in its namespace), developer (each team's `developers_group`, built-in
`edit`: read/write, no RBAC changes), read-only auditor (`access.auditor_group`: `view`
cluster-wide plus cluster reads, never Secrets, in any namespace). A cell is allowed or
denied, so a binding that is missing fails as surely as one that grants too much or reaches
into another team's namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

from mk8s.checks.cluster import AccessExpectation
from mk8s.inventory.model import Environment, Team

# A namespace no team owns: access there must come only from cluster-wide roles.
PLATFORM_NAMESPACE = "kube-system"
RBAC = "rbac.authorization.k8s.io"

# (verb, resource, api group) asked in a namespace; the same probes in every class, so a
# grant in the wrong class shows up as the same cell with the opposite answer.
NS_PROBES: tuple[tuple[str, str, str], ...] = (
    ("list", "pods", ""),
    ("get", "deployments", "apps"),
    ("create", "deployments", "apps"),
    ("delete", "pods", ""),
    ("update", "configmaps", ""),
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("create", "rolebindings", RBAC),
)
CLUSTER_PROBES: tuple[tuple[str, str, str], ...] = (
    ("list", "nodes", ""),
    ("delete", "nodes", ""),
    ("create", "namespaces", ""),
    ("create", "clusterrolebindings", RBAC),
)

READS = {("list", "pods"), ("get", "deployments")}
WRITES = {("create", "deployments"), ("delete", "pods"), ("update", "configmaps")}
SECRETS = {("get", "secrets"), ("list", "secrets")}


def _allows(role: str, own: bool, verb: str, resource: str) -> bool:
    """What the PRD's matrix grants `role` in a namespace (`own`: the role's team's)."""
    cell = (verb, resource)
    if role == "cluster-admin":
        return True
    if role == "auditor":
        return cell in READS  # never Secrets, never writes, in any namespace
    if not own:
        return False  # a team role reaches nothing outside its own namespace
    if role == "namespace-admin":
        return True  # `admin`: everything in the namespace, RoleBindings included
    return cell in READS | WRITES | SECRETS  # developer (`edit`): no RBAC changes


def _cluster_allows(role: str, verb: str, resource: str) -> bool:
    if role == "cluster-admin":
        return True
    return role == "auditor" and verb == "list" and resource == "nodes"


def _subjects(env: Environment) -> Iterator[tuple[str, str, Team | None]]:
    yield "cluster-admin", env.access.cluster_admin_group, None
    yield "auditor", env.access.auditor_group, None
    for team in env.teams:
        yield "namespace-admin", team.leads_group, team
        yield "developer", team.developers_group, team


def rbac_expectations(env: Environment) -> list[AccessExpectation]:
    """Every role x namespace class x probe: each role in every team namespace (its own and
    the others'), in the platform namespace, and cluster-wide."""
    cells = []
    namespaces = [*(t.name for t in env.teams), PLATFORM_NAMESPACE]
    for role, group, team in _subjects(env):
        for ns in namespaces:
            own = team is not None and ns == team.name
            cells += [
                AccessExpectation(
                    role, group, verb, resource, api, ns, _allows(role, own, verb, resource)
                )
                for verb, resource, api in NS_PROBES
            ]
        cells += [
            AccessExpectation(
                role, group, verb, resource, api, None, _cluster_allows(role, verb, resource)
            )
            for verb, resource, api in CLUSTER_PROBES
        ]
    return cells
