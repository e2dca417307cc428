"""`invoke publish --env ENV`: commit the built platform manifests to the GitOps repository.

Argo CD can only sync what is in git, and build/ is git-ignored: publish puts exactly the
objects `invoke deploy` applies (minus Secrets, which never leave deploy) under the path the
inventory names (`gitops.path`) on the branch the Applications follow (`gitops.revision`):

    <path>/platform/manifests.yaml   the built overlay (what the platform Application syncs)
    <path>/apps/applications.yaml    the child Applications (what the root Application syncs)

Pure part: `files` (what the directory must hold). The act: the git edge clones, replaces the
directory, commits when something changed and pushes; a second run with no change commits
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mk8s.edges import git
from mk8s.errors import UserError
from mk8s.inventory.model import Environment
from mk8s.render import manifests

Obj = dict[str, Any]


@dataclass(frozen=True)
class Publication:
    repo_url: str
    branch: str
    root: str  # gitops.path
    files: dict[str, str]  # path under root -> content
    commit: str | None  # None: the repository already held these files (or a dry run)


def _dump(objects: Sequence[Obj]) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False, default_flow_style=False, width=1000)


def files(env: Environment, objects: Sequence[Obj], applications: Sequence[Obj]) -> dict[str, str]:
    """What `gitops.path` must hold: the built overlay without Secrets, and the apps."""
    header = (
        f"# Published by `invoke publish --env {env.name}` from inventory/{env.name}.yaml; "
        "do not edit here.\n"
    )
    platform = [o for o in objects if o["kind"] != "Secret"]
    return {
        f"{manifests.PLATFORM_DIR}/manifests.yaml": header + _dump(platform),
        f"{manifests.APPS_DIR}/applications.yaml": header + _dump(applications),
    }


def check_publishable(env: Environment) -> None:
    if not env.gitops.enabled:
        raise UserError(f"{env.name}: gitops.enabled is false; there is nothing to publish")


def publish(
    env: Environment, build: Path, objects: Sequence[Obj], dry_run: bool = False
) -> Publication:
    """Commit the built overlay of `env` (rendered into `build`) to its GitOps repository."""
    check_publishable(env)
    apps_file = build / manifests.APPS_FILE
    applications = [d for d in yaml.safe_load_all(apps_file.read_text()) if d]
    g = env.gitops
    root = manifests.gitops_path(env)
    wanted = files(env, objects, applications)
    if dry_run:
        return Publication(g.repo_url, g.revision, root, wanted, None)
    with git.checkout(g.repo_url, g.revision) as work:
        git.replace_tree(work, root, wanted)
        commit = git.commit_and_push(
            work, root, g.revision, f"mk8s: publish {env.name} platform manifests"
        )
    return Publication(g.repo_url, g.revision, root, wanted, commit)
