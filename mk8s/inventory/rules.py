"""Cross-field rules of an inventory: the heart of `invoke check`.

Each rule is a small function returning problem lines `field.path: what is wrong`; all rules
run, so the user sees every problem at once. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network

from mk8s.inventory.cron import longest_gap_minutes
from mk8s.inventory.model import LAST_NGINX_MINOR, Environment

# PRD "Node Specifications": minimum for every environment, recommended for production.
PRD_MINIMUM = {"cores": 4, "memory_gib": 16, "disk_gib": 100}
PRD_RECOMMENDED = {"cores": 8, "memory_gib": 32, "disk_gib": 100}
# PRD "MetalLB: Dedicated IP pool (10-20 IPs reserved)".
METALLB_MIN_SIZE = 10
HA_MIN_NODES = 3

Rule = Callable[[Environment], Iterator[str]]


def _usable(ip: IPv4Address, subnet: IPv4Network) -> str | None:
    """Why `ip` cannot be a host address in `subnet`, or None."""
    if ip not in subnet:
        return f"{ip} is outside subnet {subnet}"
    if subnet.prefixlen < 31 and ip in (subnet.network_address, subnet.broadcast_address):
        kind = "network" if ip == subnet.network_address else "broadcast"
        return f"{ip} is the {kind} address of {subnet}"
    return None


def addresses_in_subnet(env: Environment) -> Iterator[str]:
    subnet = env.network.subnet
    if problem := _usable(env.network.gateway, subnet):
        yield f"network.gateway: {problem}"
    for i, node in enumerate(env.nodes):
        if problem := _usable(node.ip, subnet):
            yield f"nodes[{i}].ip: {problem} ({node.name})"
        if node.ip == env.network.gateway:
            yield f"nodes[{i}].ip: {node.ip} is the gateway ({node.name})"
    if env.network.api_vip is not None:
        vip = env.network.api_vip
        if problem := _usable(vip, subnet):
            yield f"network.api_vip: {problem}"
        for node in env.nodes:
            if node.ip == vip:
                yield f"network.api_vip: {vip} is the IP of node {node.name}"


def metallb_range(env: Environment) -> Iterator[str]:
    pool, subnet = env.network.metallb_range, env.network.subnet
    field = "network.metallb_range"
    if int(pool.start) > int(pool.end):
        yield f"{field}: start {pool.start} is after end {pool.end}"
        return
    for end in (pool.start, pool.end):
        if problem := _usable(end, subnet):
            yield f"{field}: {problem}"
    if pool.size < METALLB_MIN_SIZE:
        yield f"{field}: {pool.size} addresses; the PRD reserves at least {METALLB_MIN_SIZE}"
    for node in env.nodes:
        if node.ip in pool:
            yield f"{field}: {node.ip} overlaps node {node.name}"
    if env.network.gateway in pool:
        yield f"{field}: {env.network.gateway} overlaps the gateway"
    if env.network.api_vip is not None and env.network.api_vip in pool:
        yield f"{field}: {env.network.api_vip} overlaps network.api_vip"


def cidrs_disjoint(env: Environment) -> Iterator[str]:
    net = env.network
    pairs = [
        ("network.pod_cidr", net.pod_cidr, "network.subnet", net.subnet),
        ("network.service_cidr", net.service_cidr, "network.subnet", net.subnet),
        ("network.service_cidr", net.service_cidr, "network.pod_cidr", net.pod_cidr),
    ]
    for field, a, other, b in pairs:
        if a.overlaps(b):
            yield f"{field}: {a} overlaps {other} {b}"


def _duplicates(values: Iterable[object]) -> list[str]:
    return sorted(str(v) for v, n in Counter(values).items() if n > 1)


def unique_nodes(env: Environment) -> Iterator[str]:
    for attr in ("name", "vmid", "ip"):
        for dup in _duplicates(getattr(n, attr) for n in env.nodes):
            yield f"nodes[].{attr}: {dup} is used by more than one node"


def ha_quorum(env: Environment) -> Iterator[str]:
    if env.ha and len(env.nodes) < HA_MIN_NODES:
        yield (
            f"nodes: {len(env.nodes)} node(s); HA needs at least {HA_MIN_NODES} "
            "(MicroK8s keeps 3 datastore voters), or set ha: false for a lab"
        )
    if not env.ha and env.effective_tier in ("stage", "prod"):
        yield f"ha: {env.effective_tier} must be highly available (ha: true)"


def tier_known(env: Environment) -> Iterator[str]:
    if env.tier is None and env.name not in ("dev", "stage", "prod"):
        yield f"tier: required when name ({env.name}) is not dev, stage or prod"


def node_size(env: Environment) -> Iterator[str]:
    tier = env.effective_tier
    if tier == "lab":
        return
    floor, label = (PRD_RECOMMENDED, "recommended") if tier == "prod" else (PRD_MINIMUM, "minimum")
    for key, least in floor.items():
        value = getattr(env.size, key)
        if value < least:
            yield f"size.{key}: {value} is below the PRD {label} {least} for {tier}"


def prod_spread(env: Environment) -> Iterator[str]:
    if env.effective_tier != "prod":
        return
    for host in _duplicates(n.pve_node for n in env.nodes[:HA_MIN_NODES]):
        yield f"nodes[].pve_node: {host} hosts more than one prod control-plane node; spread them"


def ingress_controller(env: Environment) -> Iterator[str]:
    minor = env.microk8s.minor
    if env.ingress.controller == "nginx" and minor > LAST_NGINX_MINOR:
        yield (
            f"ingress.controller: nginx needs MicroK8s <= 1.{LAST_NGINX_MINOR}; "
            f"{env.microk8s.channel} ships Traefik (set controller: traefik)"
        )
    if env.ingress.controller == "traefik" and minor <= LAST_NGINX_MINOR:
        yield (
            f"ingress.controller: traefik needs MicroK8s >= 1.{LAST_NGINX_MINOR + 1}; "
            f"{env.microk8s.channel} ships NGINX"
        )


def rate_limit(env: Environment) -> Iterator[str]:
    limit = env.ingress.rate_limit
    if limit is not None and limit.burst < limit.rps:
        yield f"ingress.rate_limit.burst: {limit.burst} is below rps {limit.rps}"


def tls_challenge(env: Environment) -> Iterator[str]:
    tls = env.tls
    if tls.challenge == "dns-01":
        if tls.dns01_provider is None:
            yield "tls.dns01_provider: required when tls.challenge is dns-01"
        if tls.dns01_token_env is None:
            yield "tls.dns01_token_env: DNS-01 needs a credential reference (an env var name)"
    if tls.wildcard and tls.challenge != "dns-01":
        yield "tls.wildcard: wildcard certificates need tls.challenge dns-01"
    if env.effective_tier == "prod" and tls.issuer != "letsencrypt-prod":
        yield f"tls.issuer: prod must use letsencrypt-prod, not {tls.issuer}"


def dns(env: Environment) -> Iterator[str]:
    if env.dns.external_dns:
        if env.dns.provider == "manual":
            yield "dns.provider: external_dns needs a provider (cloudflare)"
        if env.dns.api_token_env is None:
            yield "dns.api_token_env: ExternalDNS needs a credential reference (an env var name)"


def addons(env: Environment) -> Iterator[str]:
    wanted = set(env.microk8s.addons)
    for required in ("dns", "metallb", "ingress", "cert-manager"):
        if required not in wanted:
            yield f"microk8s.addons: {required} is required by the platform (PRD core/networking)"
    if env.effective_tier == "prod" and "dashboard" in wanted:
        yield "microk8s.addons: dashboard is off in prod (PRD checklist); remove it"


def storage(env: Environment) -> Iterator[str]:
    st = env.storage
    if st.default_class == "microk8s-hostpath" and "hostpath-storage" not in env.microk8s.addons:
        yield "storage.default_class: microk8s-hostpath needs the hostpath-storage add-on"
    if st.default_class == "sc-nfs" and st.nfs is None:
        yield "storage.nfs: required when storage.default_class is sc-nfs"
    if st.default_class == "sc-ceph-rbd" and st.ceph is None:
        yield "storage.ceph: required when storage.default_class is sc-ceph-rbd"
    if env.effective_tier == "prod" and st.default_class == "microk8s-hostpath":
        yield "storage.default_class: prod needs shared storage (sc-ceph-rbd or sc-nfs), not node-local hostpath"


def backup(env: Environment) -> Iterator[str]:
    if env.effective_tier in ("stage", "prod") and env.backup is None:
        yield f"backup: {env.effective_tier} needs a backup target (PRD: Velero to S3/MinIO)"
    if env.backup is None:
        return
    for dup in _duplicates(s.name for s in env.backup.schedules):
        yield f"backup.schedules[].name: {dup} is used more than once"
    gaps = {}
    for i, schedule in enumerate(env.backup.schedules):
        gap = longest_gap_minutes(schedule.cron)
        if gap is None:
            yield f"backup.schedules[{i}].cron: {schedule.cron!r} is not a cron mk8s can check"
        else:
            gaps[schedule.name] = gap
    if gaps and min(gaps.values()) > env.slo.rpo_minutes:
        name = min(gaps, key=lambda n: gaps[n])
        yield (
            f"backup.schedules: the most frequent ({name}) leaves up to {gaps[name]} min between "
            f"backups; slo.rpo_minutes is {env.slo.rpo_minutes} (add a schedule for the Tier-1 "
            "namespaces)"
        )


def monitoring(env: Environment) -> Iterator[str]:
    # PRD phase 2 exits with "dashboards live"; with monitoring off in stage, a change could be
    # promoted all the way to prod without that criterion ever being measured (issue 12).
    if env.effective_tier in ("stage", "prod") and not env.monitoring.enabled:
        yield f"monitoring.enabled: {env.effective_tier} must keep monitoring on"


def teams(env: Environment) -> Iterator[str]:
    for dup in _duplicates(t.name for t in env.teams):
        yield f"teams[].name: {dup} is used more than once"


def promotion(env: Environment) -> Iterator[str]:
    if env.promotion.after == env.name:
        yield f"promotion.after: {env.name} cannot follow itself"
    if env.effective_tier == "prod" and env.promotion.after is None:
        yield "promotion.after: prod must be promoted from a previous environment (stage)"


RULES: tuple[Rule, ...] = (
    tier_known,
    addresses_in_subnet,
    metallb_range,
    cidrs_disjoint,
    unique_nodes,
    ha_quorum,
    node_size,
    prod_spread,
    ingress_controller,
    rate_limit,
    tls_challenge,
    dns,
    addons,
    storage,
    backup,
    monitoring,
    teams,
    promotion,
)


def problems(env: Environment) -> list[str]:
    """Every cross-field problem of `env`, one line each; empty when it is valid."""
    return [line for rule in RULES for line in rule(env)]
