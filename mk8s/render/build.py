"""Writing a Plan into build/ENV/: the edge of the pure render step.

Only files the plan owns are touched: those in the new plan and those the previous plan.json
listed. Other files in build/ENV/ (kubeconfig, terraform state, ...) belong to other steps.
Files are written only when their content changes, so re-running plan changes nothing; the
changed files are swapped in all or nothing through mk8s.render.staging.
"""

from __future__ import annotations

import json
from pathlib import Path

from mk8s.render import staging
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
    """Swap the new render in whole; return the file changes and the readable summary changes.

    An interrupted swap is undone (here, or by the next run if the process died), so the
    previous render stays whole and the next run reports the full change (issue 12).
    """
    staging.recover(out)
    previous = previous_render(out)
    changes = diff(previous, plan)
    facts = summary_changes(previous[PLAN_JSON], plan) if PLAN_JSON in previous else []
    if changes.empty:
        return changes, facts
    touched = [*changes.added, *changes.changed]
    # plan.json last: it is what the next run diffs against, so it lands after every file it lists
    order = sorted(touched, key=lambda rel: rel == PLAN_JSON)
    new = {a.path: (a.content, a.mode) for a in plan.artifacts if a.path in touched}
    try:
        staged = staging.stage(out, new, [*changes.changed, *changes.removed], changes.added)
        staging.commit(out, staged, order, changes.removed)
    except BaseException:  # KeyboardInterrupt included: leave the previous render whole
        staging.recover(out)
        raise
    return changes, facts
