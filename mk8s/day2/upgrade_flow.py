"""`invoke upgrade`: one `Action` per step key of the upgrade plan (mk8s.day2.upgrade_plan).

    actions = build_actions(plan, edges, Settings(target_channel="1.33/stable", ...))
    operate(plan, actions, build, options, ...)   # mk8s.day2.operation: plan, lock, journal

Keys (the contract with upgrade-plan): `preflight`, `snapshot-set`, `verify-snapshots`, then
per node N `N:cordon`, `N:evict`, `N:refresh`, `N:hold`, `N:gate`, `N:uncordon`,
`N:conformance`, `N:settle`, then `finish`. Every `done()` reads the real state through
`UpgradeEdges` (never the journal): the runner adopts a step that completed before a kill and
re-checks the last finished one on resume.

Failure policy (mk8s.day2.upgrade_gates): a failed evict, refresh or gate stops the run; no
other node is touched. Healthy on the old channel: the node is uncordoned (only mk8s' own
cordon) and the run ends with exit 1 (`HealthyOnOldError`). Unhealthy: the two ways out are
printed (`UnhealthyError`, exit 1) and the journal stays for `--recover` (mk8s.day2.recover).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mk8s.day2.facts import CORDON_ANNOTATION, Blocker, ClusterFacts
from mk8s.day2.plan import Plan
from mk8s.day2.preflight import Gate
from mk8s.day2.runner import Action
from mk8s.day2.snapshots import VmSnapFacts, can_rollback
from mk8s.day2.upgrade_gates import (
    Failure,
    Verdict,
    api_via_each_node,
    classify,
    gate_problems,
    ways_out,
)
from mk8s.day2.wait import Clock, SystemClock, WaitTimeoutError, wait_for
from mk8s.edges import microk8s
from mk8s.errors import OperationFailedError

TASK = "upgrade"
CHANNEL_ROW = "microk8s channel"  # the plan's component row (mk8s.day2.upgrade_plan components)
PER_NODE = ("cordon", "evict", "refresh", "hold", "gate", "uncordon", "conformance", "settle")


class UpgradeEdges(Protocol):
    """Everything the upgrade reads and does; `mk8s.day2.upgrade_edges` wires the real edges."""

    def facts(self) -> ClusterFacts: ...

    def shell(self, node: str) -> microk8s.Shell: ...

    def cordon(self, node: str, owner: str) -> None:
        """Cordon and set CORDON_ANNOTATION=owner (an already-cordoned node is refused)."""
        ...

    def uncordon(self, node: str, owner: str) -> bool:
        """Uncordon when CORDON_ANNOTATION is `owner`; False (nothing done) otherwise."""
        ...

    def evict(self, node: str) -> tuple[Blocker, ...]:
        """Evict every evictable pod (the Eviction API, never a delete); what a PDB kept."""
        ...

    def evictable(self, node: str) -> tuple[str, ...]:
        """namespace/pod still on the node that a drain would evict (DaemonSets excluded)."""
        ...

    def vm_snapshots(self) -> dict[str, VmSnapFacts]: ...

    def take_snapshot(self, node: str, name: str, description: str) -> None:
        """A disk-only snapshot (vmstate 0; PVE freezes the guest through its agent)."""
        ...

    def snapshot_descriptions(self, name: str) -> dict[str, str | None]:
        """node -> the description of its snapshot `name`, None when it has none of that name."""
        ...

    def dns(self) -> str | None:
        """A problem with cluster DNS, None when a name resolves inside the cluster."""
        ...

    def ingress(self) -> str | None:
        """A problem with the ingress through the LB IP, None when it answers."""
        ...


@dataclass(frozen=True)
class Settings:
    env: str
    target_channel: str
    snapshot: str  # the snapshot set's name (the plan's snapshot step: `snapshot_of`)
    old_channels: Mapping[str, str]  # node -> channel before the upgrade (the plan's "current")
    run_id: str  # stable across a resume: `run_id(plan)`
    gate_timeout_s: float = 900
    conformance_timeout_s: float = 180
    settle_s: float = 60
    refresh_timeout_s: float = 1800
    interval_s: float = 5

    @property
    def owner(self) -> str:
        """The cordon annotation's value: "<task> <run id>" (mk8s.day2.facts)."""
        return f"{TASK} {self.run_id}"

    @property
    def snapshot_description(self) -> str:
        """Written on every snapshot of the set: tells this run's set from an older one of the
        same name (the plan names the set after the target, so a retry meets the old one)."""
        return f"mk8s upgrade to {self.target_channel}, run {self.run_id}"


class HealthyOnOldError(OperationFailedError):
    """The node is healthy on its old revision and uncordoned: nothing to recover."""

    def __init__(self, node: str, lines: tuple[str, ...]) -> None:
        super().__init__(*lines)
        self.node = node


class StalePlanError(OperationFailedError):
    """The cluster changed between planning and taking the lock (e.g. this run waited for
    another one): nothing was changed; a re-run plans afresh."""


class UnhealthyError(OperationFailedError):
    """The node is unhealthy after its step: recover with one of the two ways out."""

    def __init__(self, failure: Failure, lines: tuple[str, ...]) -> None:
        super().__init__(*lines)
        self.failure = failure


def run_id(plan: Plan) -> str:
    """The plan's fingerprint, short: the same plan (a resume) has the same id."""
    return plan.fingerprint().split(":", 1)[1][:12]


def snapshot_of(plan: Plan) -> str:
    """The snapshot set's name from the plan's `snapshot-set` step ("node@name" or "name")."""
    for step in plan.steps:
        if step.key == "snapshot-set" and step.snapshots:
            return step.snapshots[0].rpartition("@")[2]
    raise ValueError("upgrade plan: no snapshot-set step naming the snapshot")


def old_channels(plan: Plan) -> dict[str, str]:
    """node -> channel before the upgrade: the plan's `microk8s channel` rows' current values."""
    return {
        c.node: c.current for c in plan.components if c.name == CHANNEL_ROW and c.node is not None
    }


# --- the failure policy, shared by the steps that can leave a node half-done ---------------


@dataclass
class Policy:
    edges: UpgradeEdges
    settings: Settings
    say: Callable[[str], None]

    def fail(self, node: str, reason: list[str]) -> OperationFailedError:
        """Decide what the failure on `node` left, act on it (uncordon), return the error."""
        s = self.settings
        facts = self.edges.facts()
        failure = classify(facts, node, s.old_channels.get(node, "?"), reason)
        if failure.outcome is Verdict.HEALTHY_OLD:
            uncordoned = self.edges.uncordon(node, s.owner)
            lines = (
                *reason,
                f"{node} is healthy on {s.old_channels.get(node)}; "
                + ("uncordoned it" if uncordoned else "it was not cordoned by this run")
                + "; no other node was touched. Fix the cause and re-run.",
            )
            return HealthyOnOldError(node, lines)
        old = s.old_channels.get(node, "the old channel")
        lines = (*failure.problems, *ways_out(s.env, node, s.snapshot, old))
        return UnhealthyError(failure, lines)


# --- the actions ---------------------------------------------------------------------------


@dataclass
class Preflight:
    """Every gate printed pass/fail with its fix; any failure stops the run, nothing changed."""

    edges: UpgradeEdges
    gates: Callable[[ClusterFacts], Sequence[Gate]]  # mk8s.day2.preflight.gates, bound
    say: Callable[[str], None]
    fingerprint: str = ""  # this run's plan
    replan: Callable[[], str] | None = None  # a fresh plan's fingerprint, made under the lock

    def run(self) -> None:
        results = self.gates(self.edges.facts())
        for g in results:
            fix = f" (fix: {g.fix})" if not g.ok and g.fix else ""
            self.say(f"{'PASS' if g.ok else 'FAIL'} {g.name}: {g.detail}{fix}")
        failed = [g for g in results if not g.ok]
        if failed:
            raise OperationFailedError(
                f"preflight: {len(failed)} gate(s) failed ({', '.join(g.name for g in failed)}); "
                "nothing was changed",
                *(f"FAIL {g.name}: {g.detail} (fix: {g.fix})" for g in failed),
            )
        # The plan was made before the lock was taken; a run that waited for another one would
        # otherwise work through a plan of a cluster that is no more.
        if self.replan is not None and (now := self.replan()) != self.fingerprint:
            raise StalePlanError(
                "the cluster changed since this plan was made (another run finished while this "
                f"one waited for the lock?): plan {self.fingerprint[:19]} is now {now[:19]}; "
                "nothing was changed: re-run to plan afresh"
            )

    def done(self) -> bool:
        return all(g.ok for g in self.gates(self.edges.facts()))


@dataclass
class SnapshotSet:
    edges: UpgradeEdges
    settings: Settings
    say: Callable[[str], None]

    def _seen(self) -> dict[str, str | None]:
        return self.edges.snapshot_descriptions(self.settings.snapshot)

    def _foreign(self, seen: dict[str, str | None]) -> list[str]:
        mine = self.settings.snapshot_description
        return [n for n, d in seen.items() if d is not None and d != mine]

    def run(self) -> None:
        s = self.settings
        seen = self._seen()
        if foreign := self._foreign(seen):
            raise OperationFailedError(
                f"snapshot {s.snapshot!r} already exists on {', '.join(foreign)} from another "
                "run; it is not this run's set and no node was touched",
                "check it is not needed (it may be the only way back from an earlier attempt), "
                "delete it on every VM (`invoke snapshot --env ENV --delete "
                f"{s.snapshot}` or `qm delsnapshot`), then re-run",
            )
        for node, description in seen.items():  # a resumed run takes only what is missing
            if description is None:
                self.say(f"snapshot {s.snapshot} of {node} (disk only)")
                self.edges.take_snapshot(node, s.snapshot, s.snapshot_description)

    def done(self) -> bool:
        seen = self._seen()
        return all(d == self.settings.snapshot_description for d in seen.values())


@dataclass
class VerifySnapshots:
    edges: UpgradeEdges
    name: str

    def problems(self) -> tuple[str, ...]:
        vms = self.edges.vm_snapshots()
        nodes = [n.name for n in self.edges.facts().nodes]
        return can_rollback(list(vms.values()), self.name, all_nodes=nodes).reasons

    def run(self) -> None:
        problems = self.problems()
        if problems:
            raise OperationFailedError(
                f"snapshot set {self.name!r} is not whole or cannot be rolled back; no node was "
                "touched",
                *problems,
            )

    def done(self) -> bool:
        return not self.problems()


@dataclass
class Cordon:
    edges: UpgradeEdges
    node: str
    owner: str

    def run(self) -> None:
        self.edges.cordon(self.node, self.owner)

    def done(self) -> bool:
        n = self.edges.facts().node(self.node)
        return bool(n.unschedulable) and n.cordoned_by == self.owner


@dataclass
class Evict:
    edges: UpgradeEdges
    policy: Policy
    node: str

    def run(self) -> None:
        blockers = self.edges.evict(self.node)
        if blockers:
            lines = [f"{self.node}: eviction refused; the run never forces it:"]
            lines += [
                f"  {b.namespace}/{b.pod}: PDB {b.pdb or '(not named)'}: {b.message}"
                for b in blockers
            ]
            raise self.policy.fail(self.node, lines)

    def done(self) -> bool:
        return not self.edges.evictable(self.node)


@dataclass
class Refresh:
    edges: UpgradeEdges
    policy: Policy
    node: str
    settings: Settings

    def run(self) -> None:
        s = self.settings
        shell = self.edges.shell(self.node)
        outcome = microk8s.snap_refresh(shell, s.target_channel, s.refresh_timeout_s)
        if not outcome.ok:
            raise self.policy.fail(
                self.node,
                [f"{self.node}: snap refresh --channel={s.target_channel}: {outcome.reason}"],
            )

    def done(self) -> bool:
        snap = self.edges.facts().node(self.node).snap
        return snap is not None and snap.channel == self.settings.target_channel


@dataclass
class Hold:
    edges: UpgradeEdges
    node: str

    def run(self) -> None:
        res = microk8s.snap_hold(self.edges.shell(self.node))
        if res.code != 0:
            raise OperationFailedError(
                f"{self.node}: snap refresh --hold microk8s: exit {res.code}"
            )

    def done(self) -> bool:
        snap = self.edges.facts().node(self.node).snap
        return snap is not None and snap.held


@dataclass
class NodeGate:
    edges: UpgradeEdges
    policy: Policy
    node: str
    settings: Settings
    clock: Clock

    def problems(self) -> list[str]:
        return gate_problems(self.edges.facts(), self.node, self.settings.target_channel)

    def run(self) -> None:
        s = self.settings
        what = (
            f"{self.node} on {s.target_channel}: Node Ready, kubelet "
            f"{s.target_channel.split('/')[0]}, API on the node, {3} voters agreed by every "
            "node, CNI pod Ready"
        )
        try:
            wait_for(
                what,
                self.problems,
                lambda p: not p,
                timeout_s=s.gate_timeout_s,
                interval_s=s.interval_s,
                clock=self.clock,
                describe="; ".join,
                on_poll=self.policy.say,
            )
        except WaitTimeoutError as exc:
            raise self.policy.fail(self.node, list(exc.lines)) from None

    def done(self) -> bool:
        return not self.problems()


@dataclass
class Uncordon:
    edges: UpgradeEdges
    node: str
    owner: str

    def run(self) -> None:
        if not self.edges.uncordon(self.node, self.owner):
            n = self.edges.facts().node(self.node)
            if n.unschedulable:
                raise OperationFailedError(
                    f"{self.node}: cordoned by {n.cordoned_by or 'someone else'}, not by this run "
                    f"({CORDON_ANNOTATION}); left cordoned"
                )

    def done(self) -> bool:
        return self.edges.facts().node(self.node).unschedulable is False


@dataclass
class Conformance:
    """A short subset after each node: the API via each node, DNS, ingress via the LB IP."""

    edges: UpgradeEdges
    node: str
    settings: Settings
    clock: Clock
    say: Callable[[str], None]

    def problems(self) -> list[str]:
        out = api_via_each_node(self.edges.facts())
        out += [p for p in (self.edges.dns(), self.edges.ingress()) if p]
        return out

    def run(self) -> None:
        wait_for(
            f"conformance after {self.node}: the API via each node, DNS, ingress via the LB IP",
            self.problems,
            lambda p: not p,
            timeout_s=self.settings.conformance_timeout_s,
            interval_s=self.settings.interval_s,
            clock=self.clock,
            describe="; ".join,
            on_poll=self.say,
        )

    def done(self) -> bool:
        return not self.problems()


@dataclass
class Settle:
    """A pause before the next node (the datastore's roles adjust every 30 s, go-dqlite
    app/options.go RolesAdjustmentFrequency); nothing to re-check, so always done after."""

    seconds: float
    clock: Clock

    def run(self) -> None:
        self.clock.sleep(self.seconds)

    def done(self) -> bool:
        return True


@dataclass
class Finish:
    edges: UpgradeEdges
    settings: Settings
    record: Callable[[ClusterFacts], None]

    def problems(self) -> list[str]:
        facts = self.edges.facts()
        out: list[str] = []
        for n in facts.nodes:
            out += gate_problems(facts, n.name, self.settings.target_channel)
        return sorted(set(out))

    def run(self) -> None:
        problems = self.problems()
        if problems:
            raise OperationFailedError("upgrade finished its steps but:", *problems)
        self.record(self.edges.facts())

    def done(self) -> bool:
        return not self.problems()


def _nothing(_: ClusterFacts) -> None:
    return None


def build_actions(
    plan: Plan,
    edges: UpgradeEdges,
    settings: Settings,
    gates: Callable[[ClusterFacts], Sequence[Gate]],
    *,
    clock: Clock | None = None,
    say: Callable[[str], None] = print,
    record: Callable[[ClusterFacts], None] = _nothing,
    replan: Callable[[], str] | None = None,
) -> dict[str, Action]:
    """An action for every step key of `plan` (ValueError for a key this flow does not know)."""
    clock = clock or SystemClock()
    policy = Policy(edges, settings, say)
    owner = settings.owner
    fixed: dict[str, Action] = {
        "preflight": Preflight(edges, gates, say, plan.fingerprint(), replan),
        "snapshot-set": SnapshotSet(edges, settings, say),
        "verify-snapshots": VerifySnapshots(edges, settings.snapshot),
        "finish": Finish(edges, settings, record),
    }
    per_node: dict[str, Callable[[str], Action]] = {
        "cordon": lambda n: Cordon(edges, n, owner),
        "evict": lambda n: Evict(edges, policy, n),
        "refresh": lambda n: Refresh(edges, policy, n, settings),
        "hold": lambda n: Hold(edges, n),
        "gate": lambda n: NodeGate(edges, policy, n, settings, clock),
        "uncordon": lambda n: Uncordon(edges, n, owner),
        "conformance": lambda n: Conformance(edges, n, settings, clock, say),
        "settle": lambda n: Settle(settings.settle_s, clock),
    }
    out: dict[str, Action] = {}
    for step in plan.steps:
        if step.key in fixed:
            out[step.key] = fixed[step.key]
            continue
        node, _, verb = step.key.rpartition(":")
        if not node or verb not in per_node:
            raise ValueError(f"upgrade plan: step key {step.key!r} has no action")
        out[step.key] = per_node[verb](node)
    return out
