"""Cluster formation and add-on decisions on MicroK8s' real semantics. Pure: facts in, decisions out.

- A fresh node lists one member, 127.0.0.1:19001 (MK microk8s-resources/actions/common/utils.sh
  init_cluster): it belongs to no cluster and is joinable. The node receiving the first join
  rebinds to its address (CA pkg/snap/util/dqlite.go MaybeUpdateDqliteBindAddress).
- Joiners start as spares (GD app/app.go); below three members dqlite keeps exactly one voter,
  with three it makes three (GD app/roles.go, "cluster too small"). So node 2 is done when it is a
  member, node 3 when the cluster has three voters.
- The seed is found by observation, never by inventory order: if any node holds cluster state,
  new or rebuilt nodes join that cluster through a healthy voter; a new cluster starts only when
  no node holds state.
(MK = canonical/microk8s@1.33, CA = canonical/microk8s-cluster-agent@1.33,
GD = canonical/go-dqlite@v2.0.0.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address

from mk8s.edges.microk8s import JoinOutcome, JoinResult, Member, Status
from mk8s.inventory.model import Environment
from mk8s.render.manifests import observability_value_files

HA_VOTERS = 3
STARTING = "; it may still be starting"


class FormationError(ValueError):
    """The facts contradict what mk8s can fix on its own (one line per problem)."""

    def __init__(self, *lines: str, transient: bool = False) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)
        self.transient = transient  # MicroK8s still starting: worth reading again


@dataclass(frozen=True)
class Node:
    """An inventory node as formation needs it: its name and IP (members may use either)."""

    name: str
    ip: str

    def is_member(self, member: Member) -> bool:
        return member.host in (self.ip, self.name)


# None: the node did not answer over SSH.
Observations = Mapping[str, Status | None]


def clusterless(node: Node, status: Status) -> bool:
    """Only member 127.0.0.1 (or itself): a fresh or reset node, joinable (MK init_cluster)."""
    return len(status.members) == 1 and (status.members[0].loopback or node.is_member(
        status.members[0]
    ))  # fmt: skip


def _named(nodes: Sequence[Node], member: Member) -> str:
    return next((n.name for n in nodes if n.is_member(member)), member.host)


@dataclass(frozen=True)
class Cluster:
    """A set of nodes that list each other, and the members the best-informed of them lists."""

    holders: tuple[str, ...]  # inventory nodes whose own view lists this cluster
    members: tuple[Member, ...]

    def describe(self, nodes: Sequence[Node]) -> str:
        listed = ", ".join(f"{_named(nodes, m)} ({m.role})" for m in self.members)
        return f"held by {', '.join(self.holders)}; members {listed}"

    def voters(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.role == "voter")


def problems(
    nodes: Sequence[Node], seen: Observations, rejoin: frozenset[str] = frozenset()
) -> list[str]:
    """One line per node formation cannot use, naming what it is. `rejoin`: nodes a cluster
    lists though they do not hold it (a join cut short leaves them down, microk8s#3694); they
    are removed and joined again, whatever they say."""
    out = []
    for node in nodes:
        status = seen.get(node.name)
        if status is None:
            continue  # decided in plan(): a listed member may be down, a joiner may not
        if status.state == "stopped":
            out.append(f"{node.name}: MicroK8s is stopped (`microk8s start` on it, then re-run)")
        elif status.state == "worker":
            out.append(f"{node.name}: joined as a worker node; mk8s forms control-plane nodes only")
        elif status.state == "unreadable":
            out.append(f"{node.name}: `microk8s status` is unreadable: {status.detail}")
        elif status.state == "not-running" and node.name not in rejoin:
            out.append(f"{node.name}: MicroK8s is not running ({status.detail}){STARTING}")
        elif not status.members_known and node.name not in rejoin:
            out.append(
                f"{node.name}: lists no datastore members (the dqlite query failed); "
                "see `microk8s inspect`"
            )
    return out


def clusters(nodes: Sequence[Node], seen: Observations) -> list[Cluster]:
    """Group the nodes holding cluster state by the members they list (two nodes are in one
    cluster when either lists the other)."""
    groups: list[tuple[set[str], list[Member]]] = []
    for node in nodes:
        status = seen.get(node.name)
        if status is None or not status.running or clusterless(node, status):
            continue
        listed = {_named(nodes, m) for m in status.members} | {node.name}
        joined = [g for g in groups if g[0] & listed]
        names, members = set(listed), list(status.members)
        for g in joined:
            groups.remove(g)
            names |= g[0]
            members = members if len(members) >= len(g[1]) else g[1]
        groups.append((names, members))
    holders = [n.name for n in nodes]
    return [
        Cluster(tuple(h for h in holders if h in names and _holds(seen, h)), tuple(members))
        for names, members in groups
    ]


def _holds(seen: Observations, name: str) -> bool:
    status = seen.get(name)
    return status is not None and status.running and len(status.members) > 1


class Seed(Enum):
    NEW = "new"  # no node holds state: the first reachable node starts the cluster
    EXISTING = "existing"


@dataclass(frozen=True)
class Plan:
    """Where the cluster is and who joins next."""

    kind: Seed
    via: str  # a healthy voter (or, for a new cluster, the node that starts it)
    via_ip: str
    members: tuple[Member, ...]
    joins: tuple[Node, ...]  # in inventory order, still to join
    stale: frozenset[str]  # names of joiners the cluster already lists (rebuilt or half-joined)
    down: tuple[str, ...] = ()  # listed members that do not answer over SSH


def plan(nodes: Sequence[Node], seen: Observations) -> Plan:
    """Decide the seed and the remaining joins, or refuse with every reason at once."""
    found = clusters(nodes, seen)
    listed = [m for c in found for m in c.members]
    holders = {h for c in found for h in c.holders}
    rejoin = frozenset(
        n.name for n in nodes if n.name not in holders and any(n.is_member(m) for m in listed)
    )
    bad = problems(nodes, seen, rejoin)
    starting = [ln for ln in bad if ln.endswith(STARTING)]
    silent = [n for n in nodes if seen.get(n.name) is None]
    down = tuple(n.name for n in silent if any(n.is_member(m) for m in listed))
    bad += [f"{n.name}: not reachable over SSH" for n in silent if n.name not in down]
    if bad:
        raise FormationError(*bad, transient=len(starting) == len(bad))
    if len(found) > 1:
        biggest = max(found, key=lambda c: len(c.members))
        raise FormationError(
            "the nodes report different clusters; mk8s will not merge or choose:",
            *(f"  cluster {i + 1}: {c.describe(nodes)}" for i, c in enumerate(found)),
            f"keep the one holding the data (likely the larger: {', '.join(biggest.holders)}); "
            "only on nodes of the other, after checking they hold nothing you need, run "
            "`microk8s leave`, then re-run",
        )
    if not found:
        return Plan(Seed.NEW, nodes[0].name, nodes[0].ip, (), tuple(nodes[1:]), frozenset())
    cluster = found[0]
    via = healthy_voter(nodes, seen, cluster)
    joins = tuple(n for n in nodes if n.name not in cluster.holders and n.name not in down)
    stale = frozenset(n.name for n in joins if any(n.is_member(m) for m in cluster.members))
    via_ip = next(n.ip for n in nodes if n.name == via)
    return Plan(Seed.EXISTING, via, via_ip, cluster.members, joins, stale, down)


def healthy_voter(nodes: Sequence[Node], seen: Observations, cluster: Cluster) -> str:
    """The first holder, in inventory order, that is running and a voter in its own view."""
    for name in cluster.holders:
        status = seen[name]
        node = next(n for n in nodes if n.name == name)
        if status is not None and status.running and status.role_of(node.ip, node.name) == "voter":
            return name
    raise FormationError(
        f"no reachable voter in the cluster {cluster.describe(nodes)}; "
        "restore a voter before joining nodes (docs/disaster-recovery.md)"
    )


def settled(joiner: Node, view: Status) -> bool:
    """Node 2 is done when listed (a spare); from three members, when there are three voters."""
    if not any(joiner.is_member(m) for m in view.members):
        return False
    return len(view.members) < HA_VOTERS or len(view.voters) >= HA_VOTERS


def formed(nodes: Sequence[Node], view: Status, viewer: str) -> bool:
    """Every inventory node a member of `viewer`'s view (a lone node lists itself as
    127.0.0.1) and, from three nodes, three voters (HA)."""

    def listed(node: Node) -> bool:
        return any(node.is_member(m) or (m.loopback and node.name == viewer) for m in view.members)

    if not all(listed(n) for n in nodes):
        return False
    return len(nodes) < HA_VOTERS or len(view.voters) >= HA_VOTERS


def ready_for_joins(seed: Status) -> bool:
    """dns must be on before the first join: the launch configuration's add-ons come up after
    start, and a joiner copies the first node's kubelet args (with --cluster-dns) at join time
    (CA pkg/k8sinit; MK join.py store_base_kubelet_args)."""
    return "dns" in seed.enabled_addons


# --- join outcomes -------------------------------------------------------------------------


class Action(Enum):
    SETTLE = "wait for the role the real rules give it"
    NEW_TOKEN = "issue a new token and retry"
    REMOVE_STALE = "remove the stale member on a healthy member, then retry"
    REISSUE = "issue a new add-node (new fingerprint) and retry once"
    RETRY_LATER = "wait and retry (bounded)"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    action: Action
    message: str = ""


FIXES = {
    JoinResult.HOSTNAME_UNRESOLVED: "make every node's name resolve to its IP (/etc/hosts)",
    JoinResult.BIND_ADDRESS: "the join URL's address is not on the contacted node; check its IP",
    JoinResult.REFUSED: "see MicroK8s' reason above",
    JoinResult.BAD_CONNECTION: "mk8s built a bad join URL: a bug, please report it",
    JoinResult.FAILED: "see `microk8s inspect` on both nodes",
}


def decide_join(outcome: JoinOutcome, tries: Mapping[Action, int], limit: int) -> Decision:
    """What to do after one `microk8s join`; `tries` counts the retries already done per action.
    Permanent errors stop at once with MicroK8s' reason and the fix; transient ones are bounded."""
    result = outcome.result
    if result is JoinResult.JOINED:
        return Decision(Action.SETTLE)
    transient = {
        JoinResult.TOKEN_INVALID: (Action.NEW_TOKEN, limit),
        JoinResult.ALREADY_KNOWN: (Action.REMOVE_STALE, 1),
        JoinResult.FINGERPRINT_CHANGED: (Action.REISSUE, 1),
        JoinResult.AGENT_UNREACHABLE: (Action.RETRY_LATER, limit),
        JoinResult.LINK_LOST: (Action.RETRY_LATER, limit),
    }
    if result in transient:
        action, allowed = transient[result]
        if tries.get(action, 0) < allowed:
            return Decision(action)
        return Decision(
            Action.STOP, f"{result.value}, {allowed + 1} attempts; last: {outcome.reason}"
        )
    return Decision(
        Action.STOP, f"{result.value}: MicroK8s said: {outcome.reason}; fix: {FIXES[result]}"
    )


# --- add-ons -------------------------------------------------------------------------------

# Enabled first: later add-ons rely on cluster DNS and RBAC being in place.
ADDON_ORDER = ("dns", "rbac")


def addon_argument(env: Environment, name: str) -> str:
    """`microk8s enable` argument for an add-on (`name` or `name:ARGS`; never mixed forms)."""
    if name == "metallb":
        # CORE:addons/metallb/enable takes `metallb:A-B[,CIDR]`.
        return f"metallb:{env.network.metallb_range}"
    if name == "dns":
        return "dns:" + ",".join(str(d) for d in env.network.dns_servers)
    return name


# Where bootstrap puts add-on values files on the first node (the snap's writable area).
ADDON_VALUES_DIR = "/var/snap/microk8s/common/mk8s"


def monitoring_by_addon(env: Environment) -> bool:
    return env.monitoring.enabled and env.monitoring.stack == "observability"


def gitops_addons(env: Environment) -> list[str]:
    """What installs Argo CD where the inventory asks for GitOps: `community` adds the community
    repository (microk8s-core-addons@1.33:addons.yaml, add-on `community`), whose `argocd`
    installs chart argo-cd 5.34.3, Argo CD 2.7.2, into namespace argocd
    (microk8s-community-addons@1.33:addons/argocd/enable, addons.yaml)."""
    return ["community", "argocd"] if env.gitops.enabled else []


def wanted_addons(env: Environment) -> list[str]:
    """The environment's add-ons in enable order; rbac always (PRD), no dashboard on prod,
    observability last when the inventory monitors through it: the add-on only monitors the
    nodes present when it is enabled (core-addons observability/enable)."""
    names = [n for n in env.microk8s.addons if n != "observability"]
    if "rbac" not in names:
        names.append("rbac")
    names += [n for n in gitops_addons(env) if n not in names]
    if monitoring_by_addon(env) or "observability" in env.microk8s.addons:
        names.append("observability")
    if env.effective_tier == "prod":
        names = [n for n in names if n != "dashboard"]
    first = [n for n in ADDON_ORDER if n in names]
    return first + [n for n in names if n not in first]


def addon_value_files(env: Environment) -> dict[str, str]:
    """Files bootstrap uploads to ADDON_VALUES_DIR before enabling add-ons (name -> text)."""
    return observability_value_files(env) if monitoring_by_addon(env) else {}


def _enable_argv(env: Environment, name: str, values_dir: str) -> list[str]:
    if name == "observability" and monitoring_by_addon(env):
        # Flags of core-addons addons/observability/enable (`--NAME-values=FILE`).
        return [
            "microk8s", "enable", "observability",
            f"--kube-prometheus-stack-values={values_dir}/kube-prometheus-stack.values.yaml",
            f"--loki-stack-values={values_dir}/loki-stack.values.yaml",
        ]  # fmt: skip
    return ["microk8s", "enable", addon_argument(env, name)]


def addon_commands(
    env: Environment, status: Status, values_dir: str = ADDON_VALUES_DIR
) -> list[list[str]]:
    """`microk8s enable` argv for every wanted add-on that is not enabled yet, in order."""
    enabled = status.enabled_addons
    return [_enable_argv(env, n, values_dir) for n in wanted_addons(env) if n not in enabled]


# --- API certificate -------------------------------------------------------------------------


def missing_sans(address: IPv4Address, cert_ips: Iterable[str]) -> bool:
    return str(address) not in set(cert_ips)


def csr_template_with(template: str, address: IPv4Address) -> str:
    """The MicroK8s CSR template with `address` as an extra IP SAN.

    IP.n numbering collides when several tools append (canonical/microk8s#3059): use the
    next free number after the highest present, and insert before `#MOREIPS`, the marker
    MicroK8s fills with extraSANs, so the template stays valid for both.
    """
    if f"= {address}" in template:
        return template
    numbers = [
        int(line.split("=")[0].strip()[3:])
        for line in template.splitlines()
        if line.strip().startswith("IP.") and line.split("=")[0].strip()[3:].isdigit()
    ]
    line = f"IP.{max(numbers, default=0) + 1} = {address}"
    if "#MOREIPS" in template:
        return template.replace("#MOREIPS", f"{line}\n#MOREIPS", 1)
    return template.rstrip("\n") + f"\n{line}\n"


def distinct_machine_ids(ids: Mapping[str, str]) -> list[str]:
    """Problem lines for nodes sharing a machine-id (cloned templates: duplicate leases)."""
    by_id: dict[str, list[str]] = {}
    for name, mid in ids.items():
        by_id.setdefault(mid.strip(), []).append(name)
    return [
        f"{', '.join(sorted(names))}: share machine-id {mid[:8]}…; the template was not "
        "cleaned (empty /etc/machine-id before converting it)"
        for mid, names in sorted(by_id.items())
        if len(names) > 1
    ]
