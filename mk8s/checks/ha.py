"""The HA exit criterion measures liveness, not membership.

dqlite keeps listing a powered-off voter as a voter until the leader demotes it
(canonical/microk8s#2400; canonical/go-dqlite@v2.0.0 app/roles.go demotes offline voters only
when another node can take their place), so "3 voters in `microk8s status`" on one node proves
little. HA holds when three voters are listed, every node's own view agrees on who they are, and
each voter answers over SSH and on the dqlite port 19001.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mk8s.checks.verdict import Verdict, failed, passed
from mk8s.edges.microk8s import DQLITE_PORT, Status, parse_status

HA_VOTERS = 3


@dataclass(frozen=True)
class NodeView:
    """One node's own answer to `microk8s status --format yaml` (None: SSH failed)."""

    name: str
    ip: str
    status: Status | None

    @classmethod
    def read(cls, name: str, ip: str, status_yaml: str | None) -> NodeView:
        return cls(name, ip, None if status_yaml is None else parse_status(status_yaml))


def _name(views: Sequence[NodeView], host: str) -> str:
    return next((v.name for v in views if host in (v.ip, v.name)), host)


def ha_voters(
    views: Sequence[NodeView], dqlite_open: Mapping[str, bool], wanted: int = HA_VOTERS
) -> Verdict:
    """`wanted` live voters, agreed on by every node; `dqlite_open`: node -> 19001 answered."""
    expected = f"{wanted} voters, each answering over SSH and on {DQLITE_PORT}, agreed by all nodes"
    problems: list[str] = []
    sets: dict[str, frozenset[str]] = {}
    for view in views:
        status = view.status
        if status is None:
            problems.append(f"{view.name}: not reachable over SSH")
        elif not status.running:
            problems.append(f"{view.name}: microk8s is {status.state} ({status.detail})")
        elif not status.members_known:
            problems.append(f"{view.name}: lists no datastore members (dqlite query failed)")
        else:
            sets[view.name] = frozenset(_name(views, m.host) for m in status.voters)
    if not sets:
        return failed("no readable view", expected, "; ".join(problems))
    voters = max(sets.values(), key=len)
    if len(set(sets.values())) > 1:
        seen = "; ".join(f"{n} sees {', '.join(sorted(v)) or 'none'}" for n, v in sets.items())
        problems.append(f"the nodes disagree on the voters: {seen}")
    strangers = sorted(v for v in voters if v not in {x.name for x in views})
    if strangers:
        problems.append(f"voters not in the inventory: {', '.join(strangers)}")
    by_name = {v.name: v for v in views}
    live = []
    for voter in sorted(voters):
        own = by_name.get(voter)
        if own is None:
            continue
        dead = []
        if own.status is None or not own.status.running:
            dead.append("not answering over SSH/MicroK8s")
        if not dqlite_open.get(voter, False):
            dead.append(f"port {DQLITE_PORT} closed")
        if dead:
            problems.append(f"voter {voter} ({own.ip}) is listed but {' and '.join(dead)}")
        else:
            live.append(voter)
    if len(voters) != wanted:
        problems.append(f"{len(voters)} voters listed ({', '.join(sorted(voters)) or 'none'})")
    measured = f"{len(live)} voters" if len(live) == len(voters) else (
        f"{len(live)} of {len(voters)} voters live"
    )  # fmt: skip
    if problems or len(live) != wanted:
        return failed(measured, expected, "; ".join(problems))
    return passed(measured, expected, f"voters {', '.join(live)}: live and agreed by all nodes")
