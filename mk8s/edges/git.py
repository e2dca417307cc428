"""The git edge of `invoke publish`: clone the GitOps repository, replace one directory's
files, commit when they changed, push to the branch Argo CD follows.

Only the `git` CLI, in a private temporary clone: the user's working tree is never touched.
The repository may be a URL or a path on disk (a bare repository in tests).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mk8s.errors import OperationFailedError, UserError

# A repository URL may carry credentials (https://user:token@host/...): never print them.
USERINFO = re.compile(r"://[^/@\s]+@")
# Used only when git has no identity configured (a CI box): who made the commit is mk8s.
IDENTITY = {"user.name": "mk8s", "user.email": "mk8s@localhost"}


def redact(text: str) -> str:
    return USERINFO.sub("://***@", text)


def _git(args: list[str], cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UserError("git not found: install git (apt-get install -y git)") from None
    if done.returncode != 0:
        detail = redact(done.stderr or done.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit {done.returncode}"
        raise OperationFailedError(f"git {args[0]} failed: {last}")
    return done.stdout.strip()


@contextmanager
def checkout(repo_url: str, branch: str) -> Iterator[Path]:
    """A scratch clone of `repo_url` on `branch` (an orphan branch when the remote lacks it)."""
    with tempfile.TemporaryDirectory(prefix="mk8s-publish-") as tmp:
        work = Path(tmp) / "repo"
        _git(["clone", "--quiet", "--no-checkout", repo_url, str(work)])
        heads = _git(["ls-remote", "--heads", "origin", branch], cwd=work)
        if heads:
            _git(["checkout", "--quiet", "-B", branch, f"origin/{branch}"], cwd=work)
        else:
            _git(["checkout", "--quiet", "--orphan", branch], cwd=work)
        yield work


def replace_tree(work: Path, root: str, files: Mapping[str, str]) -> None:
    """`root` in the clone holds exactly `files` (paths relative to `root`) afterwards."""
    target = work / root
    if target.exists():
        shutil.rmtree(target)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit_and_push(work: Path, root: str, branch: str, message: str) -> str | None:
    """Commit `root` and push it to `branch`; None when nothing changed (converged)."""
    _git(["add", "--all", "--", root], cwd=work)
    staged = subprocess.run(
        ["git", "diff", "--cached", "--quiet", "--", root], cwd=work, check=False
    )
    if staged.returncode == 0:
        return None
    config: list[str] = []
    for key, value in IDENTITY.items():
        found = subprocess.run(
            ["git", "config", key], cwd=work, capture_output=True, text=True, check=False
        )
        if not found.stdout.strip():
            config += ["-c", f"{key}={value}"]
    _git([*config, "commit", "--quiet", "-m", message], cwd=work)
    _git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], cwd=work)
    return _git(["rev-parse", "HEAD"], cwd=work)
