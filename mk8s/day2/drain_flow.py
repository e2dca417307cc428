"""`invoke drain` and `invoke maintenance`, the half that acts: one `Action` per plan step
(mk8s.day2.drain), run by `operate` (plan, --dry-run, --json, lock, journal, resume).

Every `done()` reads the real state (the Node, the pods, the node's boot id, the VM), never the
journal, so a run killed at any step boundary converges when re-run. A drain that cannot finish
(a PDB that allows no eviction until the deadline, a pod no controller owns, a node that does
not come back) lifts its own cordon, closes the journal (nothing is left to resume: the change
was undone) and fails naming the pods and PDBs; it never forces an eviction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from mk8s.day2 import drain
from mk8s.day2.facts import CORDON_ANNOTATION, Blocker, ClusterFacts, Disruption
from mk8s.day2.journal import Journal, run_file
from mk8s.day2.runner import Action
from mk8s.day2.wait import Clock, SystemClock, wait_for
from mk8s.edges.kube_drain import CordonState, DrainApi, PodRef, cordon_of, select_pods
from mk8s.errors import OperationFailedError

FactsReader = Callable[[], ClusterFacts]


class Power(Protocol):
    """The node's machine: SSH for the guest, Proxmox for the VM."""

    def boot_id(self, node: str) -> str:
        """/proc/sys/kernel/random/boot_id over SSH (raises OSError-like errors while down)."""
        ...

    def reboot(self, node: str) -> None: ...
    def shutdown(self, node: str) -> None:
        """Shut the VM down through Proxmox (ACPI/guest agent), waiting for its task."""
        ...

    def running(self, node: str) -> bool: ...


@dataclass
class Context:
    env: str
    kube: DrainApi
    power: Power
    read: FactsReader
    state_dir: Path  # build/ENV/day2: where a reboot keeps the boot id it started from
    owner: str  # the CORDON_ANNOTATION value for this run
    clock: Clock
    say: Callable[[str], None]
    retry_on: tuple[type[Exception], ...] = (OSError, OperationFailedError)
    evict_s: float = drain.EVICT_S
    boot_s: float = drain.BOOT_S
    back_s: float = drain.BACK_S
    poll_s: float = 5.0


class DrainBlockedError(OperationFailedError):
    """The drain stopped; its own cordon is lifted; the lines name what held it."""


# --- facts about evictions -------------------------------------------------------------------


def disruption(kube: DrainApi, node: str) -> Disruption:
    """Server-side dry-run evictions of every pod a drain would take from `node`."""
    picked = select_pods(kube.node_pods(node))
    blockers = list(drain.unmanaged_blockers(picked))
    for ref in picked.evict:
        answer = kube.evict(ref, dry_run=True)
        if answer.refused:
            blockers.append(drain.blocker_of(answer))
    return Disruption(node, tuple(str(p) for p in picked.evict), tuple(blockers))


def with_disruption(facts: ClusterFacts, kube: DrainApi, nodes: Sequence[str]) -> ClusterFacts:
    fresh = {n: disruption(kube, n) for n in nodes}
    kept = tuple(d for d in facts.disruption if d.node not in fresh)
    return replace(facts, disruption=kept + tuple(fresh.values()))


def _blocker_text(blockers: Sequence[Blocker]) -> str:
    return "; ".join(drain.describe_blocker(b) for b in blockers) or "none"


# --- actions -------------------------------------------------------------------------------------


@dataclass
class Preflight:
    ctx: Context
    nodes: tuple[str, ...]

    def run(self) -> None:
        facts = with_disruption(self.ctx.read(), self.ctx.kube, self.nodes)
        lines = []
        for node in self.nodes:
            for gate in drain.drain_gates(facts, node):
                self.ctx.say(f"  {'pass' if gate.ok else 'FAIL'} {gate.name}: {gate.detail}")
                if not gate.ok:
                    lines.append(f"{gate.name} ({node}): {gate.detail}; fix: {gate.fix}")
        if lines:
            raise OperationFailedError("preflight failed, nothing changed:", *sorted(set(lines)))

    def done(self) -> bool:
        # A check leaves no effect; "done" means its gates pass now (a resumed run re-checks).
        facts = with_disruption(self.ctx.read(), self.ctx.kube, self.nodes)
        return not any(drain.failed(drain.drain_gates(facts, n)) for n in self.nodes)


@dataclass
class Cordon:
    ctx: Context
    node: str

    def run(self) -> None:
        out = self.ctx.kube.cordon(self.node, CORDON_ANNOTATION, self.ctx.owner)
        self.ctx.say(out.describe())
        if out.state is CordonState.FOREIGN:
            raise OperationFailedError(
                f"{out.describe()}; ask who cordoned it, then re-run (mk8s drains only a node "
                "it cordoned itself)"
            )

    def done(self) -> bool:
        seen = self.ctx.kube.node(self.node)
        return seen is not None and cordon_of(seen, CORDON_ANNOTATION).state is CordonState.OURS


@dataclass
class Evict:
    """Evict every pod the drain takes; wait while a PDB allows none; wait until they are gone.
    Dry-run first, so a blocked drain evicts nothing rather than half the node."""

    ctx: Context
    node: str

    def _remaining(self) -> list[PodRef]:
        return list(select_pods(self.ctx.kube.node_pods(self.node)).evict)

    def _try(self) -> tuple[Blocker, ...]:
        """One round: every pod allowed (dry run) is evicted; what is refused is returned."""
        d = disruption(self.ctx.kube, self.node)
        if d.blockers:
            return d.blockers
        refused = []
        for ref in select_pods(self.ctx.kube.node_pods(self.node)).evict:
            answer = self.ctx.kube.evict(ref, dry_run=False)
            if answer.refused:  # a PDB changed between the dry run and now
                refused.append(drain.blocker_of(answer))
        return tuple(refused)

    def run(self) -> None:
        c = self.ctx
        pods = self._remaining()
        c.say(f"evicting {len(pods)} pods from {self.node}: {', '.join(map(str, pods)) or '-'}")
        blockers = wait_for(
            f"the PDBs of {self.node}'s pods to allow their eviction",
            self._try,
            lambda b: not b,
            timeout_s=c.evict_s,
            interval_s=c.poll_s,
            clock=c.clock,
            describe=_blocker_text,
            on_poll=c.say,
        )
        assert not blockers
        wait_for(
            f"the pods evicted from {self.node} to be gone",
            self._remaining,
            lambda left: not left,
            timeout_s=c.evict_s,
            interval_s=c.poll_s,
            clock=c.clock,
            describe=lambda left: ", ".join(map(str, left)),
            on_poll=c.say,
        )

    def done(self) -> bool:
        return not self._remaining()


@dataclass
class Reboot:
    ctx: Context
    node: str

    @property
    def _mark(self) -> Path:
        return self.ctx.state_dir / f"boot-id-{self.node}"

    def _rebooted(self) -> bool:
        if not self._mark.exists():
            return False
        try:
            return self.ctx.power.boot_id(self.node) != self._mark.read_text().strip()
        except self.ctx.retry_on:
            return False

    def run(self) -> None:
        c = self.ctx
        self._mark.parent.mkdir(parents=True, exist_ok=True)
        self._mark.write_text(c.power.boot_id(self.node) + "\n")
        c.power.reboot(self.node)
        wait_for(
            f"{self.node} to come back with a new boot id",
            lambda: c.power.boot_id(self.node),
            lambda now: now != self._mark.read_text().strip(),
            timeout_s=c.boot_s,
            interval_s=c.poll_s,
            clock=c.clock,
            retry_on=c.retry_on,
            on_poll=c.say,
        )

    def done(self) -> bool:
        return self._rebooted()


@dataclass
class Stop(Reboot):
    def run(self) -> None:
        self._mark.parent.mkdir(parents=True, exist_ok=True)
        self._mark.write_text(self.ctx.power.boot_id(self.node) + "\n")
        self.ctx.power.shutdown(self.node)

    def done(self) -> bool:
        # Stopped, or stopped and started again since (the next step's effect).
        return self._mark.exists() and (not self.ctx.power.running(self.node) or self._rebooted())


@dataclass
class Back:
    ctx: Context
    node: str

    def run(self) -> None:
        c = self.ctx
        c.say(f"{self.node} is stopped: do the host work, then start the VM (or boot the host)")
        wait_for(
            f"{self.node}'s VM to run again",
            lambda: c.power.running(self.node),
            bool,
            timeout_s=c.back_s,
            interval_s=c.poll_s * 6,
            clock=c.clock,
            on_poll=c.say,
        )

    def done(self) -> bool:
        return self.ctx.power.running(self.node)


@dataclass
class Gate:
    ctx: Context
    node: str

    def _problems(self) -> list[str]:
        return drain.back_problems(self.ctx.read(), self.node)

    def run(self) -> None:
        c = self.ctx
        wait_for(
            f"{self.node} Ready, its API answering and {drain.VOTERS} voters agreed",
            self._problems,
            lambda p: not p,
            timeout_s=c.boot_s,
            interval_s=c.poll_s,
            clock=c.clock,
            retry_on=c.retry_on,
            describe="; ".join,
            on_poll=c.say,
        )

    def done(self) -> bool:
        return not self._problems()


@dataclass
class Uncordon:
    ctx: Context
    node: str

    def run(self) -> None:
        self.ctx.say(self.ctx.kube.uncordon(self.node, CORDON_ANNOTATION).describe())

    def done(self) -> bool:
        seen = self.ctx.kube.node(self.node)
        return seen is not None and cordon_of(seen, CORDON_ANNOTATION).state in (
            CordonState.NOT_CORDONED,
            CordonState.FOREIGN,
        )


@dataclass
class UndoOnFailure:
    """A failed step lifts mk8s' cordons on `nodes` (a foreign one stays) and closes the
    journal: what it changed is undone, so the next run plans afresh instead of resuming."""

    inner: Action
    ctx: Context
    nodes: tuple[str, ...]
    run_json: Path

    def run(self) -> None:
        try:
            self.inner.run()
        except OperationFailedError as exc:
            lifted = [self.ctx.kube.uncordon(n, CORDON_ANNOTATION).describe() for n in self.nodes]
            journal = Journal.load(self.run_json)
            if journal is not None:
                journal.finished = self.ctx.clock.now()
                journal.save()
            raise DrainBlockedError(
                *exc.lines,
                *[x for x in lifted if "not cordoned" not in x],
                "the drain stopped here; nothing was forced",
            ) from None

    def done(self) -> bool:
        return self.inner.done()


def actions(
    ctx: Context, nodes: Sequence[str], modes: dict[str, drain.Mode], build: Path
) -> dict[str, Action]:
    """An action for every key `drain.plan_*` can produce for `nodes`."""
    guarded = tuple(nodes)
    journal = run_file(build)
    out: dict[str, Action] = {"preflight": UndoOnFailure(Preflight(ctx, guarded), ctx, (), journal)}
    for n in nodes:
        steps: dict[str, Action] = {
            f"{n}:cordon": Cordon(ctx, n),
            f"{n}:evict": Evict(ctx, n),
            f"{n}:gate": Gate(ctx, n),
        }
        if modes[n] is drain.Mode.REBOOT:
            steps[f"{n}:reboot"] = Reboot(ctx, n)
        else:
            steps[f"{n}:stop"] = Stop(ctx, n)
            steps[f"{n}:back"] = Back(ctx, n)
        out[f"{n}:cordon"] = Cordon(ctx, n)
        out.update({k: UndoOnFailure(a, ctx, guarded, run_file(build)) for k, a in steps.items()})
        out[f"{n}:uncordon"] = Uncordon(ctx, n)
    return out


def context(
    env: str,
    kube: DrainApi,
    power: Power,
    read: FactsReader,
    build: Path,
    task: str,
    *,
    clock: Clock | None = None,
    say: Callable[[str], None] = print,
) -> Context:
    from mk8s.day2.wait import stamp

    clock = clock or SystemClock()
    return Context(
        env,
        kube,
        power,
        read,
        build / "day2",
        drain.cordon_owner(task, env, stamp(clock.now())),
        clock,
        say,
    )
