"""What a run was produced from and measured with: per-part hashes and the git revision.

The parts are listed in mk8s.promotion.evidence's docstring; the gate compares them part by
part so that a refusal names what changed.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from mk8s.errors import UserError
from mk8s.inventory.load import load_environment, resolve_env_path
from mk8s.render.plan import build_plan

# Shared inputs: the same for every environment, so evidence from dev speaks for stage only
# when these are byte-identical to what dev was tested with.
SHARED_INPUT_DIRS = ("manifests", "bootstrap", "terraform")
# The code that measured (verdicts, suite, locustfile) and the tasks and sessions that ran it.
CODE_DIRS = ("mk8s", "conformance", "loadtests")
CODE_FILES = ("tasks.py", "noxfile.py", "pyproject.toml")
# Everything the hash covers, as git paths: what must be committed for a clean run.
INPUT_PATHS = ("inventory", *SHARED_INPUT_DIRS, *CODE_DIRS, *CODE_FILES)
_SKIP_PARTS = frozenset({".terraform", "__pycache__", ".pytest_cache", ".mypy_cache"})
_SKIP_SUFFIXES = (".pyc", ".tfstate", ".tfstate.backup", ".terraform.lock.hcl")


def hash_files(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (path, content) pairs in path order; an empty set has a defined hash."""
    digest = hashlib.sha256()
    for path, content in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(content).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def combine(parts: dict[str, str]) -> str:
    return hash_files((name, value.encode()) for name, value in parts.items())


def _tree(root: Path, top: str) -> Iterator[tuple[str, bytes]]:
    base = root / top
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or _SKIP_PARTS.intersection(rel.parts):
            continue
        if path.name.endswith(_SKIP_SUFFIXES):
            continue
        yield rel.as_posix(), path.read_bytes()


def _file(root: Path, rel: str) -> Iterator[tuple[str, bytes]]:
    if (root / rel).is_file():
        yield rel, (root / rel).read_bytes()


def current_inputs(env: str, root: Path = Path()) -> dict[str, str]:
    """Per-part hashes of what an environment would be built from and measured with, now."""
    inventory = resolve_env_path(env, root)
    try:
        inventory_bytes = inventory.read_bytes()
    except OSError:
        raise UserError(f"{inventory}: no such inventory file") from None
    parts = {"inventory": hash_files([(inventory.name, inventory_bytes)])}
    for rel in SHARED_INPUT_DIRS + CODE_DIRS:
        parts[rel] = hash_files(_tree(root, rel))
    for rel in CODE_FILES:
        parts[rel] = hash_files(_file(root, rel))
    plan = build_plan(load_environment(env, root))
    parts["plan"] = hash_files((a.path, a.content.encode()) for a in plan.artifacts)
    return parts


def git_revision(root: Path = Path()) -> str:
    """HEAD's commit, with `+dirty` when an input or the code differs from it (an edited
    tracked file, or a new file git does not ignore); `unknown` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *INPUT_PATHS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
