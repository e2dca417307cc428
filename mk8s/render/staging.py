"""Swapping a new render into build/ENV/ all or nothing (issue 12).

build/ENV/ also holds other steps' files (kubeconfig, terraform state), so the render cannot be
one directory renamed into place. Instead a swap is a small transaction in build/ENV/.staging/:

1. `stage`: the new content of every added or changed file goes to `.staging/new/`, the current
   content of every file that will change or go to `.staging/old/`, the list of added files to
   `.staging/added`; `.staging/READY` marks the staging complete. Nothing else is touched, so an
   interrupt here leaves the previous render as it was.
2. `commit`: the new files replace the old ones (plan.json last), removed files go.
3. `.staging/` is renamed to `.staging.done` and deleted: the swap is done.

A run that finds `.staging/READY` (interrupted during 2) puts the old files back and deletes the
added ones, so the previous render is whole again and the re-run reports the full change; a
`.staging/` without READY, or a `.staging.done`, is simply deleted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

STAGING = ".staging"
DONE = ".staging.done"
READY = "READY"


def _write(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.chmod(mode)
    tmp.replace(path)  # atomic per file


def recover(out: Path) -> None:
    """Undo a swap that was interrupted before it finished; drop leftovers of finished ones."""
    staging = out / STAGING
    if (staging / READY).is_file():
        old = staging / "old"
        for path in sorted(p for p in old.rglob("*") if p.is_file()):
            rel = path.relative_to(old)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / rel)
        for rel in json.loads((staging / "added").read_text()):
            (out / rel).unlink(missing_ok=True)
    for leftover in (staging, out / DONE):
        if leftover.exists():
            shutil.rmtree(leftover)


def stage(
    out: Path,
    new: Mapping[str, tuple[str, int]],
    replaced: Sequence[str],
    added: Sequence[str],
) -> Path:
    """Stage `new` (path -> (content, mode)) and back up `replaced` (changed or removed)."""
    staging = out / STAGING
    for rel, (content, mode) in new.items():
        _write(staging / "new" / rel, content, mode)
    for rel in replaced:
        if (out / rel).is_file():
            (staging / "old" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / rel, staging / "old" / rel)
    _write(staging / "added", json.dumps(sorted(added)), 0o644)
    _write(staging / READY, "", 0o644)
    return staging


def commit(out: Path, staging: Path, order: Sequence[str], removed: Sequence[str]) -> None:
    """Move the staged files in (in `order`), delete `removed`, then retire the staging."""
    for rel in order:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / "new" / rel).replace(out / rel)
    for rel in removed:
        (out / rel).unlink(missing_ok=True)
    _retire(out, staging)


def _retire(out: Path, staging: Path) -> None:
    staging.replace(out / DONE)  # from here on the new render is the render
    shutil.rmtree(out / DONE)
