"""Cluster formation and add-on decisions from MicroK8s facts. Pure: text and data in, actions out.

Facts come from `microk8s status --format yaml` and `microk8s add-node --format json` (output
formats: canonical/microk8s scripts/wrappers/status.py and add_token.py; shared/reference/
microk8s.md "CLI output facts"). Parsing is tolerant: real pastes carry trailing spaces,
prompts and missing lines, so we key on labels and never on line positions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Literal

import yaml

from mk8s.inventory.model import Environment, NodeSpec
from mk8s.render.manifests import observability_value_files

Role = Literal["voter", "standby", "spare"]
# HA needs three dqlite voters; `status` says `high-availability: yes` only when voters > 2
# (status.py ha_cluster_formed). The first 3 nodes are voters, the next 3 standby.
HA_VOTERS = 3
DQLITE_PORT = 19001
CLUSTER_AGENT_PORT = 25000
# add-node tokens live only as long as one join needs (add_token.py: `--token-ttl`).
TOKEN_TTL_S = 300


class FactsError(ValueError):
    """MicroK8s printed something we cannot read; the message says what and where."""


@dataclass(frozen=True)
class Member:
    """One dqlite cluster member as a node sees it (`high-availability.nodes[]`)."""

    ip: str
    role: str


@dataclass(frozen=True)
class NodeStatus:
    """What `microk8s status --format yaml` says on one node."""

    running: bool
    members: tuple[Member, ...] = ()
    addons: Mapping[str, str] = field(default_factory=dict)  # name -> enabled|disabled

    def role_of(self, ip: str) -> str | None:
        return next((m.role for m in self.members if m.ip == ip), None)

    @property
    def voters(self) -> int:
        return sum(1 for m in self.members if m.role == "voter")

    @property
    def highly_available(self) -> bool:
        """What pretty `status` prints as `high-availability: yes`: more than 2 voters."""
        return self.voters >= HA_VOTERS

    @property
    def enabled_addons(self) -> frozenset[str]:
        return frozenset(n for n, s in self.addons.items() if s == "enabled")


def _strip_prompt(text: str) -> str:
    # Drop shell prompts and anything before the first top-level key we know.
    lines = [ln.rstrip() for ln in text.splitlines()]
    for i, ln in enumerate(lines):
        if ln.startswith(("microk8s:", "high-availability:", "addons:")):
            return "\n".join(lines[i:])
    return "\n".join(lines)


def parse_status_yaml(text: str) -> NodeStatus:
    """Parse `microk8s status --format yaml` (running or not)."""
    try:
        data = yaml.safe_load(_strip_prompt(text))
    except yaml.YAMLError as exc:
        raise FactsError(f"`microk8s status --format yaml` is not YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("microk8s"), dict):
        raise FactsError("`microk8s status --format yaml` has no `microk8s:` section")
    running = data["microk8s"].get("running")
    ha = data.get("high-availability") or {}
    members = []
    for node in (ha.get("nodes") or []) if isinstance(ha, dict) else []:
        if isinstance(node, dict) and "address" in node:
            ip = str(node["address"]).rsplit(":", 1)[0]
            members.append(Member(ip, str(node.get("role", "")).strip()))
    addons = {}
    for addon in data.get("addons") or []:
        if isinstance(addon, dict) and "name" in addon:
            addons[str(addon["name"])] = str(addon.get("status", "")).strip()
    return NodeStatus(running is True or str(running).lower() == "true", tuple(members), addons)


def parse_add_node_json(text: str) -> str:
    """The `<token>/<check>` part of `microk8s add-node --format json`."""
    start = text.find("{")
    try:
        data: Any = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        data = None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or "/" not in token:
        raise FactsError("`microk8s add-node --format json` printed no token")
    return token


def join_url(first: NodeSpec, token_check: str) -> str:
    """By IP literal (hostnames are rejected from 1.29) and with the certificate fingerprint,
    so the joiner verifies the node it joins (reference: "Join URL")."""
    return f"{first.ip}:{CLUSTER_AGENT_PORT}/{token_check}"


# --- formation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Join:
    """Join `node` to the first node's cluster; `remove_stale` first when dqlite still lists it
    from an earlier, unfinished join (canonical/microk8s#3694: never blind-retry)."""

    node: NodeSpec
    remove_stale: bool
    wait_for: str  # the role the first node must report before the next join: voter|member

    def describe(self) -> str:
        pre = f"remove stale dqlite entry {self.node.ip}, then " if self.remove_stale else ""
        return f"{self.node.name}: {pre}join {self.node.ip} (wait until {self.wait_for})"


class FormationError(ValueError):
    """The facts contradict what mk8s can fix on its own (one line, names the node)."""


def wanted_role(index: int) -> str:
    """The first three nodes become voters; the others only need to be members."""
    return "voter" if index < HA_VOTERS else "member"


def is_joined(env: Environment, node: NodeSpec, statuses: Mapping[str, NodeStatus]) -> bool:
    """The first node lists `node` in dqlite and `node` itself sees the first node."""
    first = env.first_node
    if node == first:
        return True
    mine, theirs = statuses.get(node.name), statuses.get(first.name)
    if mine is None or theirs is None:
        return False
    return theirs.role_of(str(node.ip)) is not None and mine.role_of(str(first.ip)) is not None


def next_join(env: Environment, statuses: Mapping[str, NodeStatus]) -> Join | None:
    """The one join to do next (one node at a time, inventory order), or None when formed.

    Nodes join in inventory order so that the voters are always the first three nodes;
    a node is joined only after every earlier node is a member.
    """
    first = env.first_node
    first_status = statuses.get(first.name)
    if first_status is None or not first_status.running:
        raise FormationError(f"{first.name}: MicroK8s is not running on the first node")
    for index, node in enumerate(env.nodes):
        if node == first:
            continue
        if is_joined(env, node, statuses):
            continue
        mine = statuses.get(node.name)
        if mine is None or not mine.running:
            raise FormationError(f"{node.name}: MicroK8s is not running; cannot join it")
        others = [m.ip for m in mine.members if m.ip != str(node.ip)]
        if others:  # it belongs to some other cluster: leaving it is the operator's call
            raise FormationError(
                f"{node.name}: is in another dqlite cluster ({', '.join(others)}); "
                "run `microk8s leave` on it after checking, then re-run"
            )
        stale = first_status.role_of(str(node.ip)) is not None
        return Join(node, remove_stale=stale, wait_for=wanted_role(index))
    return None


def join_settled(env: Environment, join: Join, first_status: NodeStatus) -> bool:
    role = first_status.role_of(str(join.node.ip))
    return role == "voter" if join.wait_for == "voter" else role is not None


def ha_formed(env: Environment, first_status: NodeStatus) -> bool:
    """All inventory nodes are members and (for 3+ nodes) 3 voters: `high-availability: yes`."""
    ips = {str(n.ip) for n in env.nodes}
    members = {m.ip for m in first_status.members}
    if not ips <= members:
        return False
    return len(env.nodes) < HA_VOTERS or first_status.highly_available


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
    env: Environment, status: NodeStatus, values_dir: str = ADDON_VALUES_DIR
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
