"""Every refusal of `invoke upgrade` (pure, over recorded facts and inputs).

Each refusal is one line naming what is wrong and how to fix it:
- about the target: flags the target minor removes (in mk8s' launch configuration and, when
  read, the nodes' args files), API versions it stops serving (tables and their sources in
  mk8s.day2.upgrade_removals), the ingress controller it ships, the previous environment's
  upgrade evidence and the maintenance window;
- about the nodes: the channel path (one minor at a time, no downgrade, no risk change, mixed
  minors only as a half-done upgrade to this target), the newest revision in the current
  channel, health (unknown never passes), the datastore leader, roles and kubeconfig endpoint
  the node order needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mk8s.day2.evidence import Day2Latest, green_since, why_not_green
from mk8s.day2.facts import ClusterFacts, NodeFacts
from mk8s.day2.upgrade_removals import REMOVED_APIS, REMOVED_FLAGS, RemovedApi, RemovedFlag
from mk8s.day2.window import require_window
from mk8s.errors import UserError
from mk8s.inventory.model import CHANNEL, LAST_NGINX_MINOR, Environment
from mk8s.render.launchconfig import launch_config

TASK = "upgrade"
ROLE_RANK = {"spare": 0, "standby": 1, "voter": 2}


@dataclass(frozen=True)
class Refusal:
    code: str  # stable name, e.g. "path-skip"; tests and the run's output match on it
    line: str  # what is wrong and the fix, one line


class UpgradeRefusedError(UserError):
    """The upgrade will not be planned; every refusal is one line (exit 2, nothing touched)."""

    def __init__(self, env: str, refusals: Sequence[Refusal]) -> None:
        super().__init__(*(f"{env}: upgrade refused: {r.line}" for r in refusals))
        self.refusals: tuple[Refusal, ...] = tuple(refusals)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.refusals)


# launch configuration key -> the service whose args file it feeds (MicroK8s names).
LAUNCH_ARGS_KEYS: Mapping[str, str] = {
    "extraKubeletArgs": "kubelet",
    "extraKubeAPIServerArgs": "kube-apiserver",
    "extraKubeProxyArgs": "kube-proxy",
    "extraKubeControllerManagerArgs": "kube-controller-manager",
    "extraKubeSchedulerArgs": "kube-scheduler",
}


@dataclass(frozen=True)
class PreviousEvidence:
    """The previous environment's (`promotion.after`) newest upgrade evidence at the target."""

    env: str
    channel: str  # the channel that upgrade reached
    green: bool  # every gate passed, and the record is trustworthy (signed by an allowed signer)
    at: datetime | None = None
    reason: str | None = None  # why it does not count, in the evidence reader's words

    @classmethod
    def from_latest(cls, env: str, channel: str, latest: Day2Latest) -> PreviousEvidence:
        """From mk8s.day2.evidence.last_upgrade(previous_env, target) (read by the flow)."""
        at = green_since(latest)
        reason = why_not_green(latest, env, "upgrade", channel)
        return cls(env, channel, at is not None and reason is None, at, reason)


@dataclass(frozen=True)
class ApiUse:
    """An API version objects are stored or requested in (e.g. the apiserver's
    `apiserver_requested_deprecated_apis` metric or a list of stored objects)."""

    api_version: str  # group/version, e.g. flowcontrol.apiserver.k8s.io/v1beta3
    resource: str  # plural, e.g. flowschemas
    where: str = ""  # which objects or clients, for the refusal line


def flag_name(arg: str) -> str:
    """`--foo=bar` and `--foo` name the same flag."""
    return arg.split("=", 1)[0].strip()


def rendered_flags(env: Environment) -> dict[str, dict[str, tuple[str, ...]]]:
    """node -> service -> flags that mk8s's own launch configuration sets (render/launchconfig)."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for node in env.nodes:
        doc = launch_config(env, node)
        out[node.name] = {
            service: tuple(flag_name(f) for f in doc[key])
            for key, service in LAUNCH_ARGS_KEYS.items()
            if isinstance(doc.get(key), dict)
        }
    return out


def removed_flags(
    flags: Mapping[str, Mapping[str, Iterable[str]]],
    target_minor: int,
    table: Sequence[RemovedFlag] = REMOVED_FLAGS,
    unsanitised: Iterable[str] = (),
) -> Iterator[Refusal]:
    """One refusal per (flag, service) the target minor removes, naming the nodes that set it.

    A flag the target MicroK8s strips at start (`stripped_by`) is refused only on the nodes in
    `unsanitised` (their `no-arg-sanitisation` lock is set)."""
    removed = {(r.service, r.flag): r for r in table if r.minor == target_minor}
    off = set(unsanitised)
    hits: dict[tuple[str, str], list[str]] = {}
    for node, services in flags.items():
        for service, names in services.items():
            for name in names:
                row = removed.get((service, flag_name(name)))
                if row is not None and (row.stripped_by is None or node in off):
                    hits.setdefault((service, row.flag), []).append(node)
    for (service, flag), nodes in sorted(hits.items()):
        row = removed[(service, flag)]
        why = "" if row.stripped_by is None else ", and argument sanitisation is off there"
        yield Refusal(
            "removed-flag",
            f"{service} flag {flag} (set on {', '.join(sorted(set(nodes)))}) is removed in "
            f"Kubernetes 1.{row.minor} ({row.source}){why}; remove it from the args/launch "
            "configuration and restart that service on each node before upgrading",
        )


def removed_apis(
    used: Sequence[ApiUse] | None,
    target_minor: int,
    table: Sequence[RemovedApi] = REMOVED_APIS,
) -> Iterator[Refusal]:
    if used is None:
        yield Refusal(
            "api-unknown",
            "which API versions the cluster's objects and clients use could not be read; "
            "it is needed to refuse APIs the target removes: check the API server answers",
        )
        return
    removed = {(r.api_version, r.resource): r for r in table if r.minor <= target_minor}
    for use in sorted(used, key=lambda u: (u.api_version, u.resource)):
        row = removed.get((use.api_version, use.resource))
        if row is None:
            continue
        where = f" ({use.where})" if use.where else ""
        yield Refusal(
            "removed-api",
            f"{use.resource}.{use.api_version}{where} is no longer served from Kubernetes "
            f"1.{row.minor} ({row.source}); migrate to {row.replacement} first",
        )


def ingress_for(env: Environment, target_minor: int) -> Iterator[Refusal]:
    """MicroK8s ships Traefik from 1.35 (inventory.model LAST_NGINX_MINOR)."""
    if target_minor > LAST_NGINX_MINOR and env.ingress.controller != "traefik":
        yield Refusal(
            "ingress",
            f"ingress.controller: {env.ingress.controller}; MicroK8s 1.{target_minor} ships "
            "Traefik as its ingress: set ingress.controller: traefik (and move Ingress "
            "annotations) before raising microk8s.channel past "
            f"1.{LAST_NGINX_MINOR}",
        )


def previous_evidence(
    env: Environment, target: str, previous: PreviousEvidence | None
) -> Iterator[Refusal]:
    after = env.promotion.after
    if after is None:
        return
    fix = f"upgrade {after} first (`invoke upgrade --env {after}`) and let it pass"
    if previous is None or previous.env != after:
        yield Refusal(
            "previous-evidence", f"promotion.after: {after} has no upgrade evidence; {fix}"
        )
    elif previous.channel != target:
        yield Refusal(
            "previous-evidence",
            f"promotion.after: {after}'s last upgrade reached {previous.channel}, "
            f"not {target}; {fix}",
        )
    elif not previous.green:
        why = previous.reason or f"{after}'s upgrade to {target} is not green"
        yield Refusal("previous-evidence", f"promotion.after: {why}; {fix}")


def window(env: Environment, now: datetime, outside_window: bool) -> Iterator[Refusal]:
    try:
        require_window(env, now, outside_window=outside_window)
    except UserError as exc:
        yield Refusal("window", " ".join(exc.lines).removeprefix(f"{env.name}: "))


# ---- the target channel and the path to it ----------------------------------------------


@dataclass(frozen=True, order=True)
class Channel:
    major: int
    minor: int
    risk: str

    @classmethod
    def parse(cls, text: str) -> Channel | None:
        match = CHANNEL.match(text)
        if match is None:
            return None
        return cls(int(match["major"]), int(match["minor"]), match["risk"])

    @property
    def track(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.track}/{self.risk}"


def minor_path(lowest: int, target: Channel) -> str:
    return " -> ".join(f"{target.major}.{m}" for m in range(lowest, target.minor + 1))


# ---- refusals about the nodes' channels, revisions and health ------------------------------


def channels(facts: ClusterFacts) -> tuple[dict[str, Channel], list[Refusal]]:
    out: dict[str, Channel] = {}
    refusals = []
    for n in facts.nodes:
        if n.snap is None:
            continue  # reported as unhealthy
        parsed = Channel.parse(n.snap.channel)
        if parsed is None:
            refusals.append(
                Refusal(
                    "channel-unknown",
                    f"{n.name} tracks {n.snap.channel!r}, not a track/risk channel like "
                    "1.33/stable; refresh it to the cluster's channel first",
                )
            )
        else:
            out[n.name] = parsed
    return out, refusals


def path_refusals(current: Mapping[str, Channel], target: Channel) -> list[Refusal]:
    if not current:
        return []
    fix = f"raise microk8s.channel one minor at a time (next: {target.major}.%d/{target.risk})"
    newer = sorted(n for n, c in current.items() if c.minor > target.minor)
    if newer:
        return [
            Refusal(
                "downgrade",
                f"microk8s.channel {target} is older than "
                + ", ".join(f"{n} ({current[n]})" for n in newer)
                + f"; mk8s does not downgrade: set microk8s.channel back to "
                f"{max(current.values())} (going back is --recover rollback-cluster)",
            )
        ]
    minors = {c.minor for c in current.values()}
    lowest = min(minors)
    if len(minors) > 1 and not minors <= {target.minor - 1, target.minor}:
        listed = ", ".join(f"{n} {current[n].track}" for n in sorted(current))
        return [
            Refusal(
                "mixed-minor",
                f"nodes are on different minors ({listed}) and this is not a half-done "
                f"upgrade to {target}; {minor_path(lowest, target)}: " + fix % (lowest + 1),
            )
        ]
    if target.minor - lowest > 1:
        return [
            Refusal(
                "path-skip",
                f"{minor_path(lowest, target)}: " + fix % (lowest + 1),
            )
        ]
    other_risk = sorted(
        n for n, c in current.items() if c.minor == target.minor and c.risk != target.risk
    )
    if other_risk:
        return [
            Refusal(
                "risk-change",
                f"{', '.join(other_risk)} track {target.track}/{current[other_risk[0]].risk}, "
                f"not {target}; a risk change within a minor is not an upgrade: set "
                "microk8s.channel to the risk the nodes track",
            )
        ]
    return []


def revision_refusals(facts: ClusterFacts, target: Channel) -> list[Refusal]:
    """Nodes to be refreshed must be on the newest revision of the channel they track."""
    out = []
    for n in facts.nodes:
        snap = n.snap
        if snap is None or snap.channel == str(target):
            continue
        fix = f"refresh within the channel first (snap refresh microk8s --channel={snap.channel})"
        if snap.latest_revision is None:
            out.append(
                Refusal(
                    "revision-unknown",
                    f"{n.name}: the newest revision of {snap.channel} is unknown "
                    "(the store was not asked); check the node reaches the snap store",
                )
            )
        elif snap.revision != snap.latest_revision:
            out.append(
                Refusal(
                    "revision",
                    f"{n.name} is on {snap.channel} revision {snap.revision}, not its newest "
                    f"{snap.latest_revision}: {fix}",
                )
            )
    return out


def ours(node: NodeFacts) -> bool:
    """Cordoned by an mk8s upgrade run (the annotation value is '<task> <run id>')."""
    return (node.cordoned_by or "").split(" ", 1)[0] == TASK


def health_problems(node: NodeFacts, *, in_flight: bool = False) -> list[str]:
    """Why this node is not healthy enough to plan around; `in_flight` is the node a resumed
    run was working on (cordoned by it): it may be mid-refresh, not Ready for a while."""
    problems = []
    if node.vm is None:
        problems.append("VM state unknown")
    elif node.vm.status != "running":
        problems.append(f"VM {node.vm.status}")
    if node.ssh is not True:
        problems.append("SSH " + ("unknown" if node.ssh is None else "unreachable"))
    if node.snap is None:
        problems.append("snap state unknown")
    if not in_flight:
        if node.ready is not True:
            problems.append("Ready unknown" if node.ready is None else "not Ready")
        if node.kubelet_version is None:
            problems.append("kubelet version unknown")
    if node.unschedulable is None:
        problems.append("cordon state unknown")
    elif node.unschedulable and not in_flight:
        problems.append(f"cordoned by {node.cordoned_by or 'someone else'}")
    return problems


def health_refusals(facts: ClusterFacts, resuming: bool) -> list[Refusal]:
    in_flight = [n.name for n in facts.nodes if resuming and n.unschedulable and ours(n)]
    out = []
    if len(in_flight) > 1:
        out.append(
            Refusal(
                "unhealthy",
                f"{', '.join(in_flight)} are all cordoned by mk8s upgrade; one node at a time "
                "was broken: check them (invoke status) before resuming",
            )
        )
    for n in facts.nodes:
        problems = health_problems(n, in_flight=n.name in in_flight and len(in_flight) == 1)
        if problems:
            out.append(
                Refusal(
                    "unhealthy",
                    f"{n.name}: {', '.join(problems)}; no node is touched while another is "
                    "unhealthy: fix it first (invoke status)",
                )
            )
    return out


# ---- node order ------------------------------------------------------------------------------


def roles_of(facts: ClusterFacts) -> tuple[dict[str, str], list[Refusal]]:
    """node -> datastore role as the leader lists the members.

    No reader fills `ClusterFacts.leader` yet (`microk8s status` does not name the dqlite
    leader), so a real cluster always comes without one (tests/day2/test_upgrade_rig.py found
    every `invoke upgrade` refused). Then the roles are the member list every node agrees on,
    word for word; nodes that disagree (or one that cannot list them) still refuse."""
    leader = facts.leader
    names = [n.name for n in facts.nodes]
    if leader is None:
        agreed = {frozenset(n.members) if n.members else None for n in facts.nodes}
        if len(agreed) != 1 or None in agreed:
            return {}, [
                Refusal(
                    "leader-unknown",
                    "the datastore leader is unknown and the nodes do not all list the same "
                    "members; check invoke status",
                )
            ]
        leader = facts.nodes[0].name  # any: they all list the same members
    elif leader not in names:
        return {}, [
            Refusal(
                "leader-unknown",
                f"the datastore leader is {leader}, not a node of this environment; "
                "check invoke status",
            )
        ]
    members = facts.node(leader).members
    if members is None:
        return {}, [Refusal("roles-unknown", f"{leader} could not list the datastore members")]
    by_host = {m.host: m.role for m in members}
    roles: dict[str, str] = {}
    missing = []
    for n in facts.nodes:
        role = by_host.get(n.ip, by_host.get(n.name))
        if role is None:
            missing.append(n.name)
        else:
            roles[n.name] = role
    if missing:
        return roles, [
            Refusal(
                "roles-unknown",
                f"{', '.join(missing)} not in the datastore as {leader} lists it; "
                "re-join or remove it first",
            )
        ]
    return roles, []


def endpoint_refusals(env: Environment, facts: ClusterFacts) -> list[Refusal]:
    endpoint = facts.endpoint_node
    if endpoint is None and env.network.api_vip is None:
        return [
            Refusal(
                "endpoint-unknown",
                f"which node the kubeconfig's API address {env.api_address} is could not be "
                "told; check invoke status",
            )
        ]
    if endpoint is not None and endpoint not in [n.name for n in facts.nodes]:
        return [Refusal("endpoint-unknown", f"the kubeconfig endpoint {endpoint} is not a node")]
    return []
