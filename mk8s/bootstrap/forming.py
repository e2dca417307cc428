"""The formation step of bootstrap: observe every node, decide (mk8s.bootstrap.formation), join.

One node at a time, through a healthy voter of the cluster some node already holds (or the first
node when none does); each join waits for the role the real rules give it; each failure gets the
action its outcome calls for. A formed cluster is read, never touched.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from mk8s.bootstrap import formation
from mk8s.bootstrap.formation import Action, FormationError, Node, Plan
from mk8s.edges import microk8s as mk
from mk8s.edges.ssh import NodeSession, NodeUnreachableError
from mk8s.errors import OperationFailedError


class Host(Protocol):
    """What formation needs from the running bootstrap (mk8s.bootstrap.flow.Bootstrap)."""

    @property
    def only(self) -> str | None: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def sleep(self) -> Callable[[float], None]: ...

    def session(self, name: str) -> NodeSession: ...
    def status(self, name: str) -> mk.Status: ...
    def observe(self) -> dict[str, mk.Status | None]: ...
    def change(self, node: str, what: str) -> None: ...
    def plan(self, node: str, what: str) -> None: ...
    def note(self, node: str, what: str) -> None: ...
    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> None: ...
    def secret(self, value: str) -> AbstractContextManager[None]: ...
    @property
    def join_attempts(self) -> int: ...
    @property
    def backoff_s(self) -> float: ...
    @property
    def ha_timeout_s(self) -> float: ...
    @property
    def wait_timeout_s(self) -> float: ...
    @property
    def poll_s(self) -> float: ...


def form(host: Host, nodes: list[Node]) -> Plan:
    """Converge membership; returns the plan (its `via` is the healthy voter to use after)."""
    plan = observe_plan(host, nodes)
    for name in plan.down:
        host.note(name, "listed in the cluster but not answering over SSH: left alone")
    joins = [n for n in plan.joins if host.only is None or n.name == host.only]
    for skipped in (n for n in plan.joins if n not in joins):
        host.note(skipped.name, "not a member yet (outside --node); skipped")
    if host.dry_run:
        for node in joins:
            pre = "remove its stale member, then " if node.name in plan.stale else ""
            host.plan(node.name, f"{pre}join the cluster through {plan.via}")
        return plan
    if joins and not formation.ready_for_joins(host.status(plan.via)):
        host.note(plan.via, "waiting until dns is enabled before the first join")
        host.wait_until(
            f"dns is enabled on {plan.via} (the launch configuration enables it after start)",
            lambda: formation.ready_for_joins(host.status(plan.via)),
            host.ha_timeout_s,
        )
    for node in joins:
        Joiner(host, plan, node).run()
    if not joins and host.only is None:
        view = host.status(plan.via)
        if not formation.formed(nodes, view, plan.via):
            host.wait_until(
                "every node is a member and there are three voters",
                lambda: formation.formed(nodes, host.status(plan.via), plan.via),
                host.ha_timeout_s,
            )
    return plan


def observe_plan(host: Host, nodes: list[Node]) -> Plan:
    """Read every node and plan; a node whose MicroK8s is still starting is read again until
    `wait_timeout_s` (this, not `status --wait-ready`, is the per-node gate)."""
    deadline = time.monotonic() + host.wait_timeout_s
    while True:
        try:
            return formation.plan(nodes, host.observe())
        except FormationError as exc:
            if not exc.transient or time.monotonic() > deadline:
                raise OperationFailedError(*exc.lines) from None
            host.sleep(host.poll_s)


class Joiner:
    """One node's join, with the action each outcome calls for."""

    def __init__(self, host: Host, plan: Plan, node: Node) -> None:
        self.host, self.plan, self.node = host, plan, node
        self.via = host.session(plan.via)

    def run(self) -> None:
        if self.node.name in self.plan.stale:
            self.remove_stale()
        tries: Counter[Action] = Counter()
        token = self.token()
        while True:
            outcome = self.join(token)
            decision = formation.decide_join(outcome, tries, self.host.join_attempts - 1)
            if decision.action is Action.SETTLE:
                break
            if decision.action is Action.STOP:
                raise OperationFailedError(f"{self.node.name}: {decision.message}")
            tries[decision.action] += 1
            self.host.note(self.node.name, f"join: {outcome.result.value}; {decision.action.value}")
            if decision.action is Action.REMOVE_STALE:
                self.remove_stale()
            elif decision.action in (Action.NEW_TOKEN, Action.REISSUE):
                token = self.token()
            else:
                self.host.sleep(self.host.backoff_s * 2 ** (tries[decision.action] - 1))
        self.host.wait_until(
            f"{self.node.name} has the role dqlite gives it",
            lambda: formation.settled(self.node, self.host.status(self.plan.via)),
            self.host.ha_timeout_s,
        )
        role = self.host.status(self.plan.via).role_of(self.node.ip, self.node.name)
        self.host.change(self.node.name, f"joined the cluster through {self.plan.via} ({role})")

    def token(self) -> mk.Token:
        try:
            return mk.add_node(self.via)
        except mk.MicroK8sError as exc:
            raise OperationFailedError(f"{self.plan.via}: {exc}") from None

    def join(self, token: mk.Token) -> mk.JoinOutcome:
        address = self.plan.via_ip
        with self.host.secret(token.token_check):
            try:
                return mk.join(self.host.session(self.node.name), token.url(address))
            except NodeUnreachableError as exc:
                # The link dropped mid-join: the member may be registered (#3694); the next
                # attempt tells (already known -> remove it) instead of guessing.
                return mk.JoinOutcome(mk.JoinResult.LINK_LOST, exc.lines[0], 255)

    def remove_stale(self) -> None:
        """`remove-node --force` on the healthy voter; it exits 1 after removing a member
        unknown to Kubernetes (MK remove_node.py), so the verdict is the next read."""
        view = self.host.status(self.plan.via)
        member = next((m for m in view.members if self.node.is_member(m)), None)
        if member is None:
            return
        res = mk.remove_node(self.via, member.host, force=True)
        if self.host.status(self.plan.via).role_of(self.node.ip, self.node.name) is not None:
            said = " / ".join((res.stdout + res.stderr).strip().splitlines()[-2:])
            raise OperationFailedError(
                f"{self.plan.via}: could not remove the stale member {member.address} of "
                f"{self.node.name} (exit {res.code}): {said or 'no output'}"
            )
        self.host.change(self.plan.via, f"removed the stale member {member.address}")
