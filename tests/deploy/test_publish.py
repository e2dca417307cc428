"""`invoke publish` against a real git repository on disk (a bare repository, as a Git server
holds it): every Application's repoURL, targetRevision and path must resolve to the files it
publishes, which must be exactly the built overlay (without Secrets)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mk8s.deploy import publish
from mk8s.errors import UserError
from mk8s.inventory.model import Environment
from tests.manifests.conftest import Rendered, render, variant

Obj = dict[str, Any]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    repo = tmp_path / "gitops.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(repo))
    return repo


def env_for(repo: Path, **gitops: Any) -> Environment:
    changes = {f"gitops__{k}": v for k, v in {"repo_url": str(repo), **gitops}.items()}
    return variant("stage", **changes)


def resolve(app: Obj) -> dict[str, list[Obj]]:
    """What Argo CD would read for `app`: file -> objects at repoURL@targetRevision:path."""
    source = app["spec"]["source"]
    repo, rev, path = source["repoURL"], source["targetRevision"], source["path"]
    commit = git("--git-dir", repo, "rev-parse", "--verify", f"refs/heads/{rev}^{{commit}}")
    names = git("--git-dir", repo, "ls-tree", "--name-only", f"{commit}:{path}").splitlines()
    assert names, f"{app['metadata']['name']}: nothing at {repo}@{rev}:{path}"
    return {
        name: [
            d
            for d in yaml.safe_load_all(git("--git-dir", repo, "show", f"{commit}:{path}/{name}"))
            if d
        ]
        for name in names
    }


def published(env: Environment, scratch: Path) -> tuple[Rendered, publish.Publication]:
    r = render(env, scratch)
    return r, publish.publish(env, r.directory, r.objects)


def test_applications_resolve_to_the_published_overlay(bare: Path, tmp_path: Path) -> None:
    r, result = published(env_for(bare), tmp_path / "a")
    assert result.commit == git("--git-dir", str(bare), "rev-parse", "refs/heads/main")
    (root,) = [o for o in r.objects if o["kind"] == "Application"]
    (apps,) = resolve(root).values()
    (platform,) = apps
    assert platform["metadata"]["name"] == "mk8s-stage-platform"
    (objects,) = resolve(platform).values()
    assert objects == [o for o in r.objects if o["kind"] != "Secret"]
    assert root in objects  # the root Application is itself part of the platform


def test_the_inventory_path_and_branch_are_where_it_lands(bare: Path, tmp_path: Path) -> None:
    env = env_for(bare, path="fleet/stage-eu", revision="platform")
    r, result = published(env, tmp_path / "b")
    assert (result.root, result.branch) == ("fleet/stage-eu", "platform")
    (root,) = [o for o in r.objects if o["kind"] == "Application"]
    assert root["spec"]["source"]["path"] == "fleet/stage-eu/apps"
    assert resolve(root)
    tree = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "refs/heads/platform")
    assert tree.splitlines() == [
        "fleet/stage-eu/apps/applications.yaml",
        "fleet/stage-eu/platform/manifests.yaml",
    ]


def test_a_second_publish_commits_nothing_and_a_change_commits_once(
    bare: Path, tmp_path: Path
) -> None:
    env = env_for(bare)
    _, first = published(env, tmp_path / "c")
    _, again = published(env, tmp_path / "d")
    assert first.commit and again.commit is None
    changed = env.model_copy(
        update={"ingress": env.ingress.model_copy(update={"proxy_timeout_s": 7200})}
    )
    _, third = published(changed, tmp_path / "e")
    assert third.commit and third.commit != first.commit
    log = git("--git-dir", str(bare), "rev-list", "--count", "refs/heads/main")
    assert log == "2"


def test_other_directories_of_the_repository_are_left_alone(bare: Path, tmp_path: Path) -> None:
    work = tmp_path / "human"
    git("clone", "--quiet", str(bare), str(work))
    (work / "README.md").write_text("fleet repository\n")
    (work / "clusters" / "prod").mkdir(parents=True)
    (work / "clusters" / "prod" / "keep.yaml").write_text("{}\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "init", cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
    published(env_for(bare), tmp_path / "f")
    tree = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "refs/heads/main")
    assert {"README.md", "clusters/prod/keep.yaml"} <= set(tree.splitlines())


def test_a_stale_application_path_does_not_resolve(bare: Path, tmp_path: Path) -> None:
    # The broken state issue 13 found: Applications pointing at build/ENV/manifests.
    r, _ = published(env_for(bare), tmp_path / "g")
    (root,) = [o for o in r.objects if o["kind"] == "Application"]
    root["spec"]["source"]["path"] = "build/stage/manifests/apps"
    with pytest.raises(subprocess.CalledProcessError):
        resolve(root)


def test_an_unreachable_repository_is_one_line(tmp_path: Path) -> None:
    from mk8s.errors import OperationFailedError

    env = env_for(tmp_path / "missing.git")
    r = render(env, tmp_path / "h")
    with pytest.raises(OperationFailedError, match="git clone failed"):
        publish.publish(env, r.directory, r.objects)


def test_gitops_disabled_has_nothing_to_publish(bare: Path) -> None:
    env = env_for(bare, enabled=False)
    with pytest.raises(UserError, match=r"gitops\.enabled is false"):
        publish.check_publishable(env)


def test_credentials_in_a_repository_url_never_reach_a_message() -> None:
    from mk8s.edges import git as git_edge

    line = "fatal: unable to access 'https://bot:s3cr3t@git.example.com/p.git/': 403"
    assert (
        git_edge.redact(line) == "fatal: unable to access 'https://***@git.example.com/p.git/': 403"
    )
