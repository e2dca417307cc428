"""Every inventory rule, as a specification: one valid and one invalid case each.

Each case starts from a shipped inventory, changes one thing, and states the exact line
`invoke check` must print (or that the inventory stays valid).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from mk8s.errors import InventoryError
from mk8s.inventory.load import parse_inventory
from tests.conftest import ROOT

Data = dict[str, Any]


def shipped(name: str) -> Data:
    data: Data = yaml.safe_load((ROOT / "inventory" / f"{name}.yaml").read_text())
    return data


def errors_of(data: Data) -> list[str]:
    try:
        parse_inventory(yaml.safe_dump(data))
    except InventoryError as exc:
        return list(exc.lines)
    return []


def mutate(name: str, change: Callable[[Data], object]) -> Data:
    data = copy.deepcopy(shipped(name))
    change(data)
    return data


def set_path(data: Data, path: str, value: object) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


# (inventory, dotted path, new value, expected error line or None for "still valid")
CASES: list[tuple[str, str, object, str | None]] = [
    # every IP inside the subnet, not network/broadcast
    ("dev", "nodes.0.ip", "192.168.10.14", None),
    (
        "dev",
        "nodes.0.ip",
        "192.168.11.11",
        "nodes[0].ip: 192.168.11.11 is outside subnet 192.168.10.0/24 (dev-k8s-1)",
    ),
    (
        "dev",
        "nodes.0.ip",
        "192.168.10.0",
        "nodes[0].ip: 192.168.10.0 is the network address of 192.168.10.0/24 (dev-k8s-1)",
    ),
    (
        "dev",
        "nodes.2.ip",
        "192.168.10.255",
        "nodes[2].ip: 192.168.10.255 is the broadcast address of 192.168.10.0/24 (dev-k8s-3)",
    ),
    ("dev", "nodes.1.ip", "192.168.10.1", "nodes[1].ip: 192.168.10.1 is the gateway (dev-k8s-2)"),
    # gateway inside subnet
    ("dev", "network.gateway", "192.168.10.254", None),
    (
        "dev",
        "network.gateway",
        "10.0.0.1",
        "network.gateway: 10.0.0.1 is outside subnet 192.168.10.0/24",
    ),
    # MetalLB range inside subnet, ordered, clear of nodes and gateway, >= 10 addresses
    ("dev", "network.metallb_range", "192.168.10.100-192.168.10.109", None),
    (
        "dev",
        "network.metallb_range",
        "192.168.10.69-192.168.10.50",
        "network.metallb_range: start 192.168.10.69 is after end 192.168.10.50",
    ),
    (
        "dev",
        "network.metallb_range",
        "192.168.10.250-192.168.11.10",
        "network.metallb_range: 192.168.11.10 is outside subnet 192.168.10.0/24",
    ),
    (
        "dev",
        "network.metallb_range",
        "192.168.10.5-192.168.10.20",
        "network.metallb_range: 192.168.10.11 overlaps node dev-k8s-1",
    ),
    (
        "dev",
        "network.metallb_range",
        "192.168.10.1-192.168.10.10",
        "network.metallb_range: 192.168.10.1 overlaps the gateway",
    ),
    (
        "dev",
        "network.metallb_range",
        "192.168.10.50-192.168.10.58",
        "network.metallb_range: 9 addresses; the PRD reserves at least 10",
    ),
    (
        "dev",
        "network.metallb_range",
        "192.168.10.50",
        "network.metallb_range: '192.168.10.50' must look like 192.168.10.50-192.168.10.69",
    ),
    # pod CIDR, service CIDR and subnet pairwise disjoint
    ("dev", "network.pod_cidr", "10.2.0.0/16", None),
    (
        "dev",
        "network.pod_cidr",
        "192.168.0.0/16",
        "network.pod_cidr: 192.168.0.0/16 overlaps network.subnet 192.168.10.0/24",
    ),
    (
        "dev",
        "network.service_cidr",
        "192.168.10.128/25",
        "network.service_cidr: 192.168.10.128/25 overlaps network.subnet 192.168.10.0/24",
    ),
    (
        "dev",
        "network.service_cidr",
        "10.1.200.0/24",
        "network.service_cidr: 10.1.200.0/24 overlaps network.pod_cidr 10.1.0.0/16",
    ),
    (
        "dev",
        "network.subnet",
        "192.168.10.0/33",
        "network.subnet: Input is not a valid IPv4 network (got '192.168.10.0/33')",
    ),
    # unique names, vmids, IPs
    ("dev", "nodes.1.name", "dev-k8s-1", "nodes[].name: dev-k8s-1 is used by more than one node"),
    ("dev", "nodes.1.vmid", 1101, "nodes[].vmid: 1101 is used by more than one node"),
    (
        "dev",
        "nodes.1.ip",
        "192.168.10.11",
        "nodes[].ip: 192.168.10.11 is used by more than one node",
    ),
    # channel and ingress controller
    ("dev", "microk8s.channel", "1.34/stable", None),
    (
        "dev",
        "microk8s.channel",
        "1.33",
        "microk8s.channel: '1.33' must look like 1.33/stable (track/risk)",
    ),
    (
        "dev",
        "microk8s.channel",
        "1.27/stable",
        "microk8s.channel: '1.27/stable' is older than 1.28, the oldest channel mk8s supports",
    ),
    (
        "dev",
        "microk8s.channel",
        "1.35/stable",
        "ingress.controller: nginx needs MicroK8s <= 1.34; 1.35/stable ships Traefik (set controller: traefik)",
    ),
    (
        "dev",
        "ingress.controller",
        "traefik",
        "ingress.controller: traefik needs MicroK8s >= 1.35; 1.33/stable ships NGINX",
    ),
    # rate limit burst >= rps
    ("stage", "ingress.rate_limit.burst", 50, None),
    ("stage", "ingress.rate_limit.burst", 49, "ingress.rate_limit.burst: 49 is below rps 50"),
    # domain names valid
    ("dev", "ingress.domain", "dev.example.org", None),
    (
        "dev",
        "ingress.domain",
        "Dev_Example",
        "ingress.domain: 'Dev_Example' is not a valid DNS domain (lowercase labels, dot separated)",
    ),
    # DNS-01 requires a credential reference; secrets only as references
    (
        "prod",
        "tls.dns01_token_env",
        None,
        "tls.dns01_token_env: DNS-01 needs a credential reference (an env var name)",
    ),
    (
        "prod",
        "tls.dns01_token_env",
        "cf-token-literal",
        "tls.dns01_token_env: must name an environment variable (A-Z, 0-9, _), not hold a secret; put the value in that variable or in secrets_file",
    ),
    (
        "dev",
        "proxmox.token_secret_env",
        "0b6e3d52-8f7a-4c1e-9d2b-3a4f5e6d7c8b",
        "proxmox.token_secret_env: looks like a literal secret; name an environment variable (*_env) instead",
    ),
    ("dev", "tls.wildcard", True, "tls.wildcard: wildcard certificates need tls.challenge dns-01"),
    (
        "prod",
        "tls.issuer",
        "letsencrypt-staging",
        "tls.issuer: prod must use letsencrypt-prod, not letsencrypt-staging",
    ),
    # prod: recommended size, distinct hosts, no dashboard, shared storage, backup
    ("prod", "size.cores", 8, None),
    ("prod", "size.cores", 4, "size.cores: 4 is below the PRD recommended 8 for prod"),
    ("prod", "size.memory_gib", 16, "size.memory_gib: 16 is below the PRD recommended 32 for prod"),
    ("dev", "size.memory_gib", 8, "size.memory_gib: 8 is below the PRD minimum 16 for dev"),
    (
        "prod",
        "nodes.1.pve_node",
        "pve1",
        "nodes[].pve_node: pve1 hosts more than one prod control-plane node; spread them",
    ),
    ("dev", "nodes.1.pve_node", "pve1", None),
    (
        "prod",
        "microk8s.addons",
        ["dns", "metallb", "ingress", "cert-manager", "dashboard"],
        "microk8s.addons: dashboard is off in prod (PRD checklist); remove it",
    ),
    (
        "dev",
        "microk8s.addons",
        ["dns", "metallb", "ingress", "cert-manager", "hostpath-storage", "kubeflow"],
        "microk8s.addons: unknown add-on(s) kubeflow; known: cert-manager, cis-hardening, community, dashboard, dns, ha-cluster, helm, helm3, host-access, hostpath-storage, ingress, metallb, metrics-server, observability, prometheus, rbac, registry, rook-ceph",
    ),
    (
        "dev",
        "microk8s.addons",
        ["dns", "ingress", "cert-manager", "hostpath-storage"],
        "microk8s.addons: metallb is required by the platform (PRD core/networking)",
    ),
    (
        "prod",
        "storage.default_class",
        "microk8s-hostpath",
        "storage.default_class: prod needs shared storage (sc-ceph-rbd or sc-nfs), not node-local hostpath",
    ),
    ("prod", "storage.default_class", "sc-nfs", None),
    (
        "dev",
        "storage.default_class",
        "sc-nfs",
        "storage.nfs: required when storage.default_class is sc-nfs",
    ),
    ("stage", "backup", None, "backup: stage needs a backup target (PRD: Velero to S3/MinIO)"),
    (
        "prod",
        "promotion.after",
        None,
        "promotion.after: prod must be promoted from a previous environment (stage)",
    ),
    # unknown keys, with a hint
    (
        "dev",
        "network.metalb_range",
        "x",
        "network.metalb_range: unknown field; did you mean 'metallb_range'?",
    ),
    (
        "dev",
        "proxmox.token_secret",
        "x",
        "proxmox.token_secret: unknown field; did you mean 'token_secret_env'?",
    ),
    # wrong types
    (
        "dev",
        "size.cores",
        "four",
        "size.cores: Input should be a valid integer, unable to parse string as an integer (got 'four')",
    ),
    (
        "dev",
        "proxmox.vlan",
        5000,
        "proxmox.vlan: Input should be less than or equal to 4094 (got 5000)",
    ),
]


@pytest.mark.parametrize(
    ("env", "path", "value", "expected"), CASES, ids=[f"{c[0]}:{c[1]}={c[2]!r}" for c in CASES]
)
def test_rule(env: str, path: str, value: object, expected: str | None) -> None:
    errors = errors_of(mutate(env, lambda d: set_path(d, path, value)))
    if expected is None:
        assert errors == []
    else:
        assert expected in errors, "\n".join(errors)


def test_ha_needs_three_nodes_or_explicit_lab() -> None:
    two = mutate("dev", lambda d: d["nodes"].pop())
    assert errors_of(two) == [
        "nodes: 2 node(s); HA needs at least 3 (MicroK8s keeps 3 datastore voters), or set ha: false for a lab"
    ]
    lab = mutate("dev", lambda d: (d["nodes"].pop(), d.update(ha=False)))
    assert errors_of(lab) == []


def test_stage_and_prod_must_be_ha() -> None:
    assert "ha: prod must be highly available (ha: true)" in errors_of(
        mutate("prod", lambda d: d.update(ha=False))
    )


def test_dns01_needs_a_provider() -> None:
    errors = errors_of(mutate("prod", lambda d: d["tls"].pop("dns01_provider")))
    assert errors == ["tls.dns01_provider: required when tls.challenge is dns-01"]


def test_external_dns_needs_credentials() -> None:
    errors = errors_of(mutate("stage", lambda d: d["dns"].pop("api_token_env")))
    assert errors == [
        "dns.api_token_env: ExternalDNS needs a credential reference (an env var name)"
    ]


def test_environment_outside_dev_stage_prod_names_its_tier() -> None:
    unnamed = mutate("dev", lambda d: d.update(name="qa"))
    assert errors_of(unnamed) == ["tier: required when name (qa) is not dev, stage or prod"]
    assert errors_of(mutate("dev", lambda d: d.update(name="qa", tier="dev"))) == []


def test_api_vip_must_be_free() -> None:
    assert errors_of(mutate("dev", lambda d: d["network"].update(api_vip="192.168.10.10"))) == []
    errors = errors_of(mutate("dev", lambda d: d["network"].update(api_vip="192.168.10.12")))
    assert errors == ["network.api_vip: 192.168.10.12 is the IP of node dev-k8s-2"]


def test_all_rule_errors_are_reported_at_once() -> None:
    def break_three_rules(d: Data) -> None:
        d["network"]["gateway"] = "10.9.9.9"
        d["nodes"][1]["vmid"] = 1101
        d["ingress"]["rate_limit"] = {"rps": 10, "burst": 5}

    errors = errors_of(mutate("dev", break_three_rules))
    assert len(errors) == 3, errors


def test_all_field_errors_are_reported_at_once() -> None:
    def break_three_fields(d: Data) -> None:
        d["size"]["cores"] = "four"
        d["ingress"]["domain"] = "x"
        d["proxmox"]["vlan"] = 0

    errors = errors_of(mutate("dev", break_three_fields))
    assert [e.split(":")[0] for e in errors] == ["proxmox.vlan", "size.cores", "ingress.domain"]


def test_missing_section_is_named() -> None:
    errors = errors_of(mutate("dev", lambda d: d.pop("network")))
    assert errors == ["network: required field is missing"]


@pytest.mark.parametrize("name", ["dev", "stage", "prod"])
def test_shipped_inventories_are_valid(name: str) -> None:
    assert errors_of(shipped(name)) == []


def test_paths_and_names_are_not_taken_for_secrets() -> None:
    data = mutate(
        "dev",
        lambda d: d["ssh"].update(
            private_key_file="/tmp/pytest-of-root/pytest-12/test_node_checks0/client_key"
        ),
    )
    assert errors_of(data) == []


def test_an_opaque_token_anywhere_is_refused() -> None:
    data = mutate(
        "dev", lambda d: d["ssh"].update(private_key_file="Zk3jT8qW1xY9vB2nM5cL7pR4sD6fG0hJ")
    )
    assert errors_of(data) == [
        "ssh.private_key_file: looks like a literal secret; name an environment variable (*_env) instead"
    ]


def test_backups_must_be_frequent_enough_for_the_rpo() -> None:
    def daily_only(d: Data) -> None:
        d["backup"]["schedules"] = [s for s in d["backup"]["schedules"] if s["name"] != "tier1"]

    assert errors_of(mutate("prod", daily_only)) == [
        "backup.schedules: the most frequent (daily) leaves up to 1440 min between backups; "
        "slo.rpo_minutes is 15 (add a schedule for the Tier-1 namespaces)"
    ]
    assert (
        errors_of(mutate("prod", lambda d: d["slo"].update(rpo_minutes=1440) or daily_only(d)))
        == []
    )


def test_a_cron_mk8s_cannot_read_is_named() -> None:
    errors = errors_of(
        mutate("stage", lambda d: d["backup"]["schedules"][0].update(cron="@daily x y z w"))
    )
    assert errors == ["backup.schedules[0].cron: '@daily x y z w' is not a cron mk8s can check"]
