"""`invoke upgrade --recover rebuild-node|rollback-cluster`: the two ways out of a node left
unhealthy by an upgrade (mk8s.day2.upgrade_gates `ways_out`), and nothing else.

Why only these two: dqlite lives in the snap revision's data (`snap revert` brings back the old
revision's copy) and a VM disk rollback brings back an old copy too; either on one voter rewinds
its raft log while the others move on (shared/reference/microk8s-behaviour.md "Snap refresh and
revert"). So the node leaves the datastore first and comes back as a *new* member
(rebuild-node), or every VM goes back to the same snapshot set together (rollback-cluster).

Both read the failed run's journal (build/ENV/day2/RUN.json) for the node and the snapshot set,
ask the operator to confirm (the caller passes `confirm`, tasks.py uses mk8s/cli/confirm.py),
run under the environment's day-2 lock and, when done, move the journal aside so the next
`invoke upgrade` plans afresh instead of resuming the failed run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mk8s.day2.journal import STARTED, Journal, run_file
from mk8s.day2.lock import EnvLock
from mk8s.day2.snapshots import can_rollback
from mk8s.day2.upgrade_flow import CHANNEL_ROW, UpgradeEdges
from mk8s.day2.upgrade_gates import healthy_problems, voter_problems
from mk8s.day2.wait import Clock, SystemClock, wait_for
from mk8s.edges import microk8s
from mk8s.errors import OperationFailedError, UserError

REBUILD = "rebuild-node"
ROLLBACK = "rollback-cluster"
MODES = (REBUILD, ROLLBACK)


class RecoverEdges(UpgradeEdges, Protocol):
    def stop_vm(self, node: str) -> None:
        """Hard stop (POST .../status/stop), waiting for the task."""
        ...

    def start_vm(self, node: str) -> None: ...

    def rollback_vm(self, node: str, snapshot: str) -> None:
        """POST .../snapshot/NAME/rollback with start=0 (PVE hard-stops the VM first)."""
        ...


@dataclass(frozen=True)
class Failed:
    """What the journal says the failed run left: the node, its old channel, the snapshot set."""

    node: str
    step: str
    snapshot: str
    old_channel: str
    target_channel: str
    journal: Path


def failed_run(build: Path) -> Failed:
    path = run_file(build)
    journal = Journal.load(path)
    if journal is None or journal.task != "upgrade" or journal.finished is not None:
        raise UserError(f"{path}: no unfinished upgrade to recover from; nothing done")
    started = [s for s in journal.steps if s["state"] == STARTED and ":" in s["key"]]
    if not started:
        raise UserError(f"{path}: the upgrade did not stop on a node step; nothing to recover")
    node, _, verb = started[-1]["key"].rpartition(":")
    plan = journal.plan
    snaps = [s for s in plan["steps"] if s["key"] == "snapshot-set"]
    names = snaps[0]["snapshots"] if snaps else []
    snapshot = names[0].rpartition("@")[2] if names else ""
    rows = {c["node"]: c for c in plan.get("components", []) if c["name"] == CHANNEL_ROW}
    comp = rows.get(node)
    if comp is None or not snapshot:
        raise UserError(f"{path}: the journal names no snapshot set or channels; nothing done")
    return Failed(node, verb, snapshot, comp["current"], comp["target"], path)


def _archive(failed: Failed, clock: Clock) -> Path:
    aside = failed.journal.with_name(f"RUN.recovered-{int(clock.now())}.json")
    failed.journal.replace(aside)
    return aside


@dataclass
class Recovery:
    edges: RecoverEdges
    failed: Failed
    clock: Clock
    say: Callable[[str], None]
    timeout_s: float = 1800
    interval_s: float = 5

    def _wait_healthy(self, nodes: list[str], what: str) -> None:
        def problems() -> list[str]:
            facts = self.edges.facts()
            out = voter_problems(facts)
            for n in nodes:
                out += [p for p in healthy_problems(facts, n) if p.startswith(n)]
            return sorted(set(out))

        wait_for(
            what,
            problems,
            lambda p: not p,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
            clock=self.clock,
            describe="; ".join,
            on_poll=self.say,
        )

    def _run(self, node: str, command: str) -> microk8s.Output:
        res: microk8s.Output = self.edges.shell(node).run(command, timeout=self.timeout_s)
        if res.code != 0:
            raise OperationFailedError(f"{node}: {command}: exit {res.code}: {res.stderr.strip()}")
        return res

    # --- rebuild-node ------------------------------------------------------------------------

    def helper_voter(self) -> str:
        """A healthy voter other than the failed node, to remove it from and join it to."""
        facts = self.edges.facts()
        bad = self.failed.node
        for n in facts.nodes:
            roles = {m.host: m.role for m in n.members or ()}
            healthy = not [p for p in healthy_problems(facts, n.name) if p.startswith(n.name)]
            if n.name != bad and healthy and roles.get(n.ip) == "voter":
                return n.name
        raise OperationFailedError(
            f"no healthy voter besides {bad} to rebuild it from; consider rollback-cluster"
        )

    def rebuild_node(self) -> None:
        f = self.failed
        helper = self.helper_voter()
        target = self.edges.facts().node(f.node)
        self.say(f"removing {f.node} ({target.ip}) from the datastore on {helper}")
        microk8s.remove_node(
            self.edges.shell(helper), target.ip, force=True
        )  # exit 1 is no verdict
        left = self.edges.facts().node(helper).members or ()
        if any(m.host in (target.ip, f.node) for m in left):
            raise OperationFailedError(f"{helper} still lists {f.node} after remove-node; stopped")
        if target.ssh is not True:  # no SSH: bring the OS back from the set (it is no member now)
            self.say(f"{f.node} does not answer over SSH: restoring its disk from {f.snapshot!r}")
            self.edges.rollback_vm(f.node, f.snapshot)
            self.edges.start_vm(f.node)
        # A fresh install has a fresh datastore, so the node can only come back as a new member.
        self._run(f.node, "snap remove --purge microk8s")
        self._run(f.node, f"snap install microk8s --classic --channel={f.old_channel}")
        self._run(f.node, "snap refresh --hold microk8s")
        token = microk8s.add_node(self.edges.shell(helper))
        outcome = microk8s.join(
            self.edges.shell(f.node), token.url(self.edges.facts().node(helper).ip)
        )
        if outcome.result is not microk8s.JoinResult.JOINED:
            raise OperationFailedError(
                f"{f.node}: join failed: {outcome.result.value}: {outcome.reason}"
            )
        self._wait_healthy([f.node], f"{f.node} re-joined on {f.old_channel} and 3 voters agreed")

    # --- rollback-cluster --------------------------------------------------------------------

    def rollback_cluster(self) -> None:
        f = self.failed
        vms = self.edges.vm_snapshots()
        nodes = [n.name for n in self.edges.facts().nodes]
        decision = can_rollback(list(vms.values()), f.snapshot, all_nodes=nodes)
        if not decision.ok:
            raise OperationFailedError(
                f"cannot roll the cluster back to {f.snapshot!r}; nothing was stopped",
                *decision.reasons,
            )
        for n in nodes:  # every VM down before any disk goes back: no member runs ahead
            self.say(f"stopping {n}")
            self.edges.stop_vm(n)
        for n in nodes:
            self.say(f"rolling {n} back to {f.snapshot}")
            self.edges.rollback_vm(n, f.snapshot)
        for n in nodes:
            self.edges.start_vm(n)
        self._wait_healthy(nodes, f"every node healthy on {f.old_channel} after the rollback")


def recover(
    mode: str,
    edges: RecoverEdges,
    build: Path,
    env: str,
    confirm: Callable[[str], None],
    *,
    clock: Clock | None = None,
    say: Callable[[str], None] = print,
    timeout_s: float = 1800,
    break_lock: bool = False,
) -> tuple[str, ...]:
    """Run one recovery under the day-2 lock; returns the closing lines for the operator.

    The lock is the file lock only: during a rollback the cluster (and its Lease) is down."""
    if mode not in MODES:
        raise UserError(f"--recover {mode}: must be one of {', '.join(MODES)}")
    clock = clock or SystemClock()
    failed = failed_run(build)
    if mode == REBUILD:
        confirm(f"rebuild {failed.node} (remove, reinstall {failed.old_channel}, re-join)")
    else:
        confirm(f"stop every VM and roll all of them back to {failed.snapshot!r}")
    recovery = Recovery(edges, failed, clock, say, timeout_s=timeout_s)
    lock = EnvLock(env, build, f"upgrade --recover {mode}", clock=clock)
    with lock.held(break_lock=break_lock):
        closing = _run_mode(mode, recovery, env)
        aside = _archive(failed, clock)
    return (*closing, f"the failed run's journal is kept as {aside}")


def _run_mode(mode: str, recovery: Recovery, env: str) -> tuple[str, ...]:
    failed = recovery.failed
    if mode == REBUILD:
        recovery.rebuild_node()
        closing = (
            f"{failed.node} rebuilt on {failed.old_channel} and back as a datastore member.",
            f"Find why it failed on {failed.target_channel} before running invoke upgrade "
            f"--env {env} again.",
        )
    else:
        recovery.rollback_cluster()
        closing = (
            f"every VM rolled back to {failed.snapshot!r} and healthy on {failed.old_channel}.",
            f"Now set microk8s.channel back to {failed.old_channel} in the inventory of {env} "
            "(the cluster runs it again; the inventory still says "
            f"{failed.target_channel}).",
        )
    return closing
