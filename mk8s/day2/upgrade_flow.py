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

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from mk8s.day2.facts import CORDON_ANNOTATION, Blocker, ClusterFacts
from mk8s.day2.plan import Plan
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
    snapshot: str  # the snapshot set's name (from the run: mk8s.day2.upgrade_flow.snapshot_name)
    old_channels: Mapping[str, str]  # node -> channel before the upgrade (the plan's "current")
    gate_timeout_s: float = 900
    conformance_timeout_s: float = 180
    settle_s: float = 60
    refresh_timeout_s: float = 1800
    interval_s: float = 5

    @property
    def owner(self) -> str:
        """The cordon annotation's value: "<task> <run id>" (mk8s.day2.facts)."""
        return f"{TASK} {self.snapshot}"


class HealthyOnOldError(OperationFailedError):
    """The node is healthy on its old revision and uncordoned: nothing to recover."""

    def __init__(self, node: str, lines: tuple[str, ...]) -> None:
        super().__init__(*lines)
        self.node = node


class UnhealthyError(OperationFailedError):
    """The node is unhealthy after its step: recover with one of the two ways out."""

    def __init__(self, failure: Failure, lines: tuple[str, ...]) -> None:
        super().__init__(*lines)
        self.failure = failure


def snapshot_name(plan: Plan, target_channel: str) -> str:
    """The snapshot set's name: the plan's snapshot step names it; else from the plan's hash.

    Stable across a resume (the same plan has the same fingerprint) and a valid PVE config id
    (letters, digits, `-`, `_`; no dots)."""
    for step in plan.steps:
        if step.key == "snapshot-set" and step.snapshots:
            return step.snapshots[0]
    minor = target_channel.split("/", 1)[0].replace(".", "-")
    return f"mk8s-up-{minor}-{plan.fingerprint().split(':', 1)[1][:8]}"


def old_channels(plan: Plan, facts: ClusterFacts | None = None) -> dict[str, str]:
    """node -> channel before the upgrade: the plan's `microk8s` components' current values."""
    out = {c.node: c.current for c in plan.components if c.name == "microk8s" and c.node}
    if facts is not None:
        for n in facts.nodes:
            if n.name not in out and n.snap is not None:
                out[n.name] = n.snap.channel
    return out


def snap_refresh(shell: microk8s.Shell, channel: str, timeout: float) -> microk8s.Output:
    """snap refresh microk8s --channel=CHANNEL   (works while held: the hold is on automatic
    refreshes only; shared/reference/microk8s.md "Upgrades")"""
    res: microk8s.Output = shell.run(
        f"snap refresh microk8s --channel={shlex.quote(channel)}", timeout=timeout
    )
    return res


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
    edges: UpgradeEdges
    gates: Callable[[ClusterFacts], list[str]]  # failed gates, one line each with its fix

    def run(self) -> None:
        failed = self.gates(self.edges.facts())
        if failed:
            raise OperationFailedError(
                f"preflight: {len(failed)} gate(s) failed; nothing was changed", *failed
            )

    def done(self) -> bool:
        return not self.gates(self.edges.facts())


@dataclass
class SnapshotSet:
    edges: UpgradeEdges
    name: str
    say: Callable[[str], None]

    def missing(self) -> list[str]:
        return [n for n, vm in self.edges.vm_snapshots().items() if self.name not in vm.snapshots]

    def run(self) -> None:
        for node in self.missing():  # a resumed run takes only what is missing
            self.say(f"snapshot {self.name} of {node} (disk only)")
            self.edges.take_snapshot(node, self.name, "mk8s upgrade: before the first node")

    def done(self) -> bool:
        return not self.missing()


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
        res = snap_refresh(self.edges.shell(self.node), s.target_channel, s.refresh_timeout_s)
        if res.code != 0:
            text = (res.stderr or res.stdout).strip().splitlines()
            why = text[-1] if text else f"exit {res.code}"
            raise self.policy.fail(
                self.node, [f"{self.node}: snap refresh --channel={s.target_channel}: {why}"]
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
class Gate:
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
    gates: Callable[[ClusterFacts], list[str]],
    *,
    clock: Clock | None = None,
    say: Callable[[str], None] = print,
    record: Callable[[ClusterFacts], None] = _nothing,
) -> dict[str, Action]:
    """An action for every step key of `plan` (ValueError for a key this flow does not know)."""
    clock = clock or SystemClock()
    policy = Policy(edges, settings, say)
    owner = settings.owner
    fixed: dict[str, Action] = {
        "preflight": Preflight(edges, gates),
        "snapshot-set": SnapshotSet(edges, settings.snapshot, say),
        "verify-snapshots": VerifySnapshots(edges, settings.snapshot),
        "finish": Finish(edges, settings, record),
    }
    per_node: dict[str, Callable[[str], Action]] = {
        "cordon": lambda n: Cordon(edges, n, owner),
        "evict": lambda n: Evict(edges, policy, n),
        "refresh": lambda n: Refresh(edges, policy, n, settings),
        "hold": lambda n: Hold(edges, n),
        "gate": lambda n: Gate(edges, policy, n, settings, clock),
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
