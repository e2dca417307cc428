"""Run a plan under the lock, journalled, resumable.

Each step is recorded as started before it runs and as done after; a re-run of the same
command (same plan fingerprint) resumes at the first step that is not done. Before it does, it
re-checks the last finished step (the world may have moved since: a node rebooted, someone
uncordoned it): if that step's effect no longer holds the run stops and says so. A step found
"started" was interrupted somewhere inside; its `done()` says whether its effect is there, so it
is not run twice when it completed but the journal did not get to say so. Actions must be
written for that: `done()` is a read of the real state, never of the journal.

`boundary` is called at every step boundary with a label (tests kill the process there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mk8s.day2.journal import DONE, STARTED, Journal, plan_difference
from mk8s.day2.lock import EnvLock
from mk8s.day2.plan import Plan
from mk8s.day2.wait import Clock, SystemClock
from mk8s.errors import OperationFailedError, UserError


class Action(Protocol):
    def run(self) -> None: ...

    def done(self) -> bool:
        """Whether this step's effect holds now (read from the real system)."""
        ...


@dataclass(frozen=True)
class Outcome:
    ran: tuple[int, ...]  # steps whose action ran in this invocation
    adopted: tuple[int, ...]  # steps found started and already in effect: marked done
    resumed_at: int | None  # first step of this invocation when it resumed a partial run


def _nothing(_: str) -> None:
    return None


def execute(
    plan: Plan,
    actions: Mapping[str, Action],
    run_json: Path,
    *,
    lock: EnvLock | None = None,
    clock: Clock | None = None,
    say: Callable[[str], None] = _nothing,
    boundary: Callable[[str], None] = _nothing,
) -> Outcome:
    clock = clock or SystemClock()
    missing = [s.key for s in plan.steps if s.key not in actions]
    if missing:
        raise ValueError(f"plan {plan.task}: no action for {', '.join(missing)}")
    journal, resumed_at = _open_journal(plan, run_json, actions, clock, say)
    ran: list[int] = []
    adopted: list[int] = []
    for step in plan.steps:
        entry = journal.steps[step.number - 1]
        if entry["state"] == DONE:
            continue
        if lock is not None:
            lock.renew()
        action = actions[step.key]
        boundary(f"{step.number}:before")
        if entry["state"] == STARTED and action.done():
            say(f"step {step.number} ({step.title}) was interrupted after it took effect")
            adopted.append(step.number)
        else:
            journal.mark(step.number, STARTED, clock.now())
            boundary(f"{step.number}:started")
            say(f"step {step.number}/{len(plan.steps)}: {step.title}")
            action.run()
            ran.append(step.number)
            boundary(f"{step.number}:ran")
        journal.mark(step.number, DONE, clock.now())
        boundary(f"{step.number}:done")
    journal.finished = clock.now()
    journal.save()
    return Outcome(tuple(ran), tuple(adopted), resumed_at)


def _open_journal(
    plan: Plan,
    run_json: Path,
    actions: Mapping[str, Action],
    clock: Clock,
    say: Callable[[str], None],
) -> tuple[Journal, int | None]:
    old = Journal.load(run_json)
    if old is None or old.finished is not None:
        journal = Journal.new(run_json, plan, clock.now())
        journal.save()
        return journal, None
    if old.fingerprint != plan.fingerprint():
        raise UserError(
            f"{run_json}: a partial run ({old.describe_start()}) had a different plan; "
            "refusing to resume it with this one. Differences:",
            *(f"  {line}" for line in plan_difference(old.plan, plan.to_dict())),
            "finish it with the inventory it started with, or move RUN.json aside after "
            "checking the cluster (docs/day2.md)",
        )
    last = old.last_done()
    if last is not None:
        key = old.steps[last - 1]["key"]
        if not actions[key].done():
            raise OperationFailedError(
                f"step {last} ({old.steps[last - 1]['title']}) was finished but no longer "
                "holds; the cluster changed since the interrupted run: check it before resuming"
            )
    first = old.first_unfinished()
    old.resumed.append(clock.now())
    old.save()
    checked = f" (step {last} re-checked)" if last is not None else ""
    say(f"resuming {old.describe_start()} at step {first}{checked}")
    return old, first
