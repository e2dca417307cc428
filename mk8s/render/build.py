"""Writing a Plan into build/ENV/: the edge of the pure render step.

Only files the plan owns are touched: those in the new plan and those the previous plan.json
listed. Other files in build/ENV/ (kubeconfig, terraform state, ...) belong to other steps.
Files are written only when their content changes, so re-running plan changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from mk8s.render.plan import PLAN_JSON, Changes, Plan, diff, summary_changes

BUILD_DIR = Path("build")


def build_dir(env_name: str, root: Path = Path()) -> Path:
    return root / BUILD_DIR / env_name


def previous_render(out: Path) -> dict[str, str]:
    """Contents of the files the last render wrote (empty when there was none)."""
    try:
        listed = json.loads((out / PLAN_JSON).read_text())["artifacts"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    files = {PLAN_JSON: (out / PLAN_JSON).read_text()}
    for rel in listed:
        path = out / rel
        if path.is_file():
            files[rel] = path.read_text()
    return files


def write_plan(plan: Plan, out: Path) -> tuple[Changes, list[str]]:
    """Write what changed; return the file changes and the readable summary changes."""
    previous = previous_render(out)
    changes = diff(previous, plan)
    facts = summary_changes(previous[PLAN_JSON], plan) if PLAN_JSON in previous else []
    for artifact in plan.artifacts:
        if artifact.path in changes.added or artifact.path in changes.changed:
            path = out / artifact.path
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(artifact.content)
            tmp.chmod(artifact.mode)
            tmp.replace(path)  # atomic: an interrupted plan never leaves half a file
    for rel in changes.removed:
        (out / rel).unlink(missing_ok=True)
    return changes, facts
