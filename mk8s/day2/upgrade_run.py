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
    confirm: Callable[[], None] | None = None,
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
            clock=clock, boundary=boundary, confirm=confirm,
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


# --- `invoke upgrade`: the real edges wired together (tasks.py stays thin) -----------------


def _versions(before: Any, after: Any) -> list[Any]:
    from mk8s.day2.evidence import NodeVersions, Version

    def v(n: Any) -> Any:
        return None if n.snap is None else Version(
            channel=n.snap.channel, revision=n.snap.revision, version=n.kubelet_version
        )  # fmt: skip

    return [
        NodeVersions(node=b.name, before=v(b), after=v(after.node(b.name)) if after else None)
        for b in before.nodes
    ]


def invoke_upgrade(
    env_arg: str,
    options: Options,
    *,
    outside_window: bool,
    out: Console,
    err: Console,
    recover_mode: str = "",
    confirm: Callable[[str], None] | None = None,
    confirm_run: Callable[[], None] | None = None,
) -> tuple[str, ...]:
    """Plan, show, lock, run (or `--recover MODE`); returns closing lines to print."""
    from mk8s.day2 import recover
    from mk8s.day2.upgrade_edges import LiveEdges
    from mk8s.edges import proxmox
    from mk8s.edges.kube import KubeApi, default_kubeconfig
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir

    env = load_environment(env_arg)
    build = build_dir(env.name)
    kube = KubeApi(default_kubeconfig(build))
    edges = LiveEdges(env, build, proxmox.connect(env), kube)
    if recover_mode:
        assert confirm is not None
        return recover.recover(recover_mode, edges, build, env.name, confirm,
                               say=_say_to(err), break_lock=options.break_lock)  # fmt: skip
    return upgrade(env, env_arg, edges, options, outside_window=outside_window, out=out,
                   err=err, confirm=confirm_run)  # fmt: skip


def _say_to(err: Console) -> Callable[[str], None]:
    def say(line: str) -> None:
        err.print(line, markup=False, highlight=False, soft_wrap=True)

    return say


def upgrade(
    env: Any,
    env_arg: str,
    edges: Any,
    options: Options,
    *,
    outside_window: bool,
    out: Console,
    err: Console,
    tune: Mapping[str, Any] | None = None,
    root: Path = Path(),
    confirm: Callable[[], None] | None = None,
) -> tuple[str, ...]:
    """`invoke upgrade` on given edges (`LiveEdges`): plan, show, lock, run, record evidence.

    `tune` replaces `Settings` fields (waits, settle) and `root` is where evidence goes; the
    task passes neither, the rig test (tests/day2/test_upgrade_rig.py) both. `confirm` is asked
    once the plan is printed, before the lock (the task's typed environment name)."""
    import dataclasses
    from datetime import UTC, datetime

    from mk8s.day2 import evidence, preflight
    from mk8s.day2.upgrade_flow import Settings, build_actions, old_channels, run_id, snapshot_of
    from mk8s.day2.upgrade_plan import UpgradeInputs, plan_upgrade
    from mk8s.day2.upgrade_refusals import PreviousEvidence
    from mk8s.inventory.load import load_environment

    build, kube, say = edges.build, edges.kube, _say_to(err)
    facts = edges.facts()
    after = env.promotion.after
    previous = None
    if after is not None:
        latest = evidence.last_upgrade(load_environment(after), env.microk8s.channel)
        previous = PreviousEvidence.from_latest(after, env.microk8s.channel, latest)
    now = datetime.now(UTC)
    api_use = edges.api_use()
    inputs = UpgradeInputs(now=now, outside_window=outside_window, previous=previous,
                           api_use=api_use, resuming=resuming(build))  # fmt: skip
    plan = plan_upgrade(env, facts, inputs)
    if not plan.steps:
        out.print(plan.notes[0] if plan.notes else "nothing to upgrade", markup=False)
        return ()
    settings = Settings(env.name, env.microk8s.channel, snapshot_of(plan), old_channels(plan),
                        run_id(plan))  # fmt: skip
    settings = dataclasses.replace(settings, **(tune or {}))
    policy = preflight.Policy(rpo_minutes=env.slo.rpo_minutes)

    def gates(f: Any) -> Any:
        return preflight.gates(f, preflight.CLUSTER, policy)

    def replan() -> str:
        fresh = UpgradeInputs(now=now, outside_window=outside_window, previous=previous,
                              api_use=edges.api_use())  # fmt: skip
        return plan_upgrade(env, edges.facts(), fresh).fingerprint()

    def record(final: Any) -> None:
        evidence.record_day2(env, run_file(build), outcome="green", inventory=env_arg,
                             nodes=_versions(facts, final), snapshots=[settings.snapshot],
                             root=root)  # fmt: skip

    def failed(step: str | None, message: str) -> None:
        evidence.record_day2(env, run_file(build), outcome="failed", inventory=env_arg,
                             nodes=_versions(facts, None), failed_step=step, message=message,
                             root=root)  # fmt: skip

    actions = build_actions(plan, edges, settings, gates, say=say, record=record, replan=replan)
    outcome = run_upgrade(plan, actions, build, options, out=out, err=err, lease_api=kube,
                          on_failure=failed, confirm=confirm)  # fmt: skip
    if outcome is None:
        return ()
    return (f"{env.name}: every node on {env.microk8s.channel}; evidence recorded",)
