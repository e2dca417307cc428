"""One `invoke upgrade` run: which plan (a partial run's own, or a fresh one), the operation,
and the journal after a failure that left the node healthy on its old revision."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from mk8s.day2.journal import Journal, run_file
from mk8s.day2.lock import LeaseApi
from mk8s.day2.operation import Options, operate
from mk8s.day2.plan import Component, Kind, Plan, Step
from mk8s.day2.runner import Action, Outcome
from mk8s.day2.upgrade_flow import TASK, HealthyOnOldError
from mk8s.day2.wait import Clock, SystemClock


def _plan_from_dict(data: dict[str, Any]) -> Plan:
    steps = tuple(
        Step(
            s["number"],
            s["key"],
            Kind(s["kind"]),
            s["title"],
            s.get("node"),
            s.get("command"),
            s.get("waits_for"),
            tuple(s.get("snapshots") or ()),
            int(s.get("expected_s") or 0),
        )
        for s in data["steps"]
    )
    components = tuple(Component(**c) for c in data.get("components", []))
    return Plan(data["task"], data["env"], steps, components, tuple(data.get("notes", [])))


def plan_for_run(build: Path, target_channel: str, fresh: Callable[[], Plan]) -> Plan:
    """The partial run's own plan when one is unfinished for the same target; else `fresh()`.

    The plan is made from the cluster's state, which the run itself changes (node 1 upgraded,
    its component now current): re-planning mid-run would differ and never resume. A partial
    run for another target is not reused: `fresh()` then differs and the runner refuses it
    with the difference."""
    journal = Journal.load(run_file(build))
    if journal is not None and journal.finished is None and journal.task == TASK:
        targets = {c["target"] for c in journal.plan.get("components", [])}
        if targets == {target_channel}:
            plan = _plan_from_dict(journal.plan)
            if plan.fingerprint() == journal.fingerprint:
                return plan
    return fresh()


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
) -> Outcome | None:
    """operate(); after a failure that left the node healthy on its old revision, the journal
    is moved aside (the node was uncordoned, so its cordon step no longer holds and a resume
    would refuse): the next run plans afresh from the cluster as it is."""
    try:
        return operate(
            plan, actions, build, options, out=out, err=err, lease_api=lease_api,
            clock=clock, boundary=boundary,
        )  # fmt: skip
    except HealthyOnOldError:
        path = run_file(build)
        if path.exists():
            path.replace(path.with_name(f"RUN.failed-{int((clock or SystemClock()).now())}.json"))
        raise
