"""Argo CD (the community `argocd` add-on, Argo CD 2.7.2): an app-of-apps root in the overlay
and its children, all pointing at what `invoke publish` commits to the GitOps repository.

Layout under the inventory's `gitops.path` on branch `gitops.revision` (mk8s.deploy.publish):
`apps/` holds the child Applications, `platform/` the built overlay. Both are plain YAML, so
Argo CD applies exactly what `invoke deploy` would (no kustomize run inside Argo CD, which could
not reach `manifests/` from the GitOps repository anyway).
"""

from __future__ import annotations

from mk8s.inventory.model import Environment
from mk8s.render.manifests.common import DIR, Obj, meta

APPS_DIR = "apps"
PLATFORM_DIR = "platform"
# Where the plan renders the children, for `invoke publish` to commit.
APPS_FILE = f"{DIR}/apps/applications.yaml"
# The namespace the add-on installs into (microk8s-community-addons@1.33:addons/argocd/enable).
ARGOCD_NAMESPACE = "argocd"


def gitops_path(env: Environment) -> str:
    """The directory of this environment in the GitOps repository."""
    return env.gitops.path or f"clusters/{env.name}"


def argocd_application(env: Environment, name: str, path: str) -> Obj:
    g = env.gitops
    source: Obj = {
        "repoURL": g.repo_url,
        "targetRevision": g.revision,
        "path": path,
        "directory": {"recurse": False},
    }
    sync: Obj = {"syncOptions": ["ServerSideApply=true"]}
    if g.auto_sync:
        sync["automated"] = {"prune": True, "selfHeal": True}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": meta(name, ARGOCD_NAMESPACE),
        "spec": {
            "project": "default",
            "source": source,
            "destination": {"server": "https://kubernetes.default.svc"},
            "syncPolicy": sync,
        },
    }


def argocd_root(env: Environment) -> Obj:
    """App-of-apps root: syncs the child Applications published under `<path>/apps`."""
    return argocd_application(env, f"mk8s-{env.name}", f"{gitops_path(env)}/{APPS_DIR}")


def argocd_children(env: Environment) -> list[Obj]:
    return [
        argocd_application(env, f"mk8s-{env.name}-platform", f"{gitops_path(env)}/{PLATFORM_DIR}")
    ]
