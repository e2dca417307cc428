"""The shape every mutating day-2 task shares: show the plan, stop for --dry-run, confirm,
lock, run.

    outcome = operate(plan, actions, build_dir(env.name), Options(dry_run=..., json=...),
                      out=console, lease_api=kube_api)

`--json` prints the plan as JSON on stdout and nothing else there (progress goes to `err`),
so `invoke upgrade --env stage --dry-run --json | jq` works. `confirm` (the operator's "yes",
mk8s.cli.confirm) is asked after the plan is shown, so the operator confirms what they read,
and before the lock: a refusal leaves nothing locked, journalled or run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mk8s.day2.journal import run_file
from mk8s.day2.lock import EnvLock, LeaseApi
from mk8s.day2.plan import Plan, plan_tables
from mk8s.day2.runner import Action, Outcome, execute
from mk8s.day2.wait import Clock


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    json: bool = False
    break_lock: bool = False
    wait_lock_s: float = 0


def show_plan(plan: Plan, out: Console, as_json: bool) -> None:
    if as_json:
        out.print(plan.to_json(), end="", markup=False, highlight=False, soft_wrap=True)
        return
    for table in plan_tables(plan):
        out.print(table)
    for note in plan.notes:
        out.print(note, markup=False, soft_wrap=True)


def operate(
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
    confirm: Callable[[], None] | None = None,
) -> Outcome | None:
    """None for a dry run (nothing locked, journalled or run). `confirm` raises to refuse."""
    show_plan(plan, out, options.json)
    if options.dry_run:
        return None
    if confirm is not None:
        confirm()
    progress = err or out

    def say(line: str) -> None:
        progress.print(line, markup=False, highlight=False, soft_wrap=True)

    lock = EnvLock(plan.env, build, plan.task, lease_api=lease_api, clock=clock)
    with lock.held(break_lock=options.break_lock, wait_s=options.wait_lock_s):
        return execute(
            plan,
            actions,
            run_file(build),
            lock=lock,
            clock=clock,
            say=say,
            **({"boundary": boundary} if boundary else {}),
        )
