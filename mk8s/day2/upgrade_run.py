"""One `invoke upgrade` run: the partial run's plan to resume, the operation, what happens to
the journal and the evidence when it stops.

    plan = plan_upgrade(env, facts, UpgradeInputs(..., resuming=resuming(build)))
    run_upgrade(plan, actions, build, options, out=..., on_failure=...)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from mk8s.day2.journal import STARTED, Journal, run_file
from mk8s.day2.lock import LeaseApi
from mk8s.day2.operation import Options, operate
from mk8s.day2.plan import Plan
from mk8s.day2.runner import Action, Outcome
from mk8s.day2.upgrade_flow import TASK, HealthyOnOldError, StalePlanError
from mk8s.day2.wait import Clock, SystemClock
from mk8s.errors import OperationFailedError


def resuming(build: Path) -> dict[str, Any] | None:
    """The unfinished upgrade's recorded plan (for `UpgradeInputs.resuming`), else None.

    The plan is made from the cluster's state, which the run itself changes (node 1 upgraded,
    its row now current): a fresh plan mid-run would differ and never resume."""
    journal = Journal.load(run_file(build))
    if journal is None or journal.finished is not None or journal.task != TASK:
        return None
    return dict(journal.plan, fingerprint=journal.fingerprint)


def failed_step(build: Path) -> str | None:
    journal = Journal.load(run_file(build))
    if journal is None:
        return None
    started = [s["key"] for s in journal.steps if s["state"] == STARTED]
    return started[-1] if started else None


def _nothing(step: str | None, message: str) -> None:
    return None


def run_upgrade(
    plan: Plan,
    actions: Mapping[str, Action],
    build: Path,
    options: Options,
    *,
    out: Console,
    err: Console | None = None,
    lease_api: LeaseApi | None = None,
    clock: Clock | None = None,
    boundary: Callable[[str], None] | None = None,
    on_failure: Callable[[str | None, str], None] = _nothing,
) -> Outcome | None:
    """operate(); on a failed step `on_failure(step key, first line)` (failed evidence).

    After a failure that left the node healthy on its old revision the journal is moved aside:
    the node was uncordoned, so its cordon step no longer holds and a resume would refuse; the
    next run plans afresh from the cluster as it is. Any other failure keeps the journal, for a
    resume after a fix or for `--recover`. A plan found stale under the lock (StalePlanError)
    changed nothing: its journal goes aside too."""
    try:
        return operate(
            plan, actions, build, options, out=out, err=err, lease_api=lease_api,
            clock=clock, boundary=boundary,
        )  # fmt: skip
    except OperationFailedError as exc:
        path = run_file(build)
        step = failed_step(build)
        if path.exists() and step is not None:
            on_failure(step, exc.lines[0] if exc.lines else str(exc))
        if isinstance(exc, HealthyOnOldError | StalePlanError) and path.exists():
            now = int((clock or SystemClock()).now())
            path.replace(path.with_name(f"RUN.failed-{now}.json"))
        raise
