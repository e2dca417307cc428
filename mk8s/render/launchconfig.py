"""MicroK8s launch configuration per node (`/etc/microk8s.yaml`, read by `snap install`).

Facts (shared/reference/microk8s.md "Launch configuration"; canonical/microk8s-cluster-agent
pkg/k8sinit/schema.go and apply.go):
- version 0.2.0 is needed for `extraCNIEnv` (pod/service CIDR at install time).
- A supplied file replaces the bundled default, which is what enables `dns`: list it ourselves.
- Add-ons listed on a joining node run *before* it joins, so only the first node lists any.
- `extraSANs` holds every node IP, the API address and the service CIDR's first IP, so the
  API server certificate covers whatever address a kubeconfig points at and no
  `refresh-certs` is needed later (refresh-certs ignores template edits after join: #2576).
- MicroK8s silently ignores unknown keys, so every key rendered here is checked against the
  documented set below; a typo is a render error, not a silently ignored setting.

Formation is NOT done with the `join` key. It would need the join token (or a
`persistentClusterToken`, which never expires) in the user-data, i.e. a secret in build/ and in
the Proxmox snippets store, and every joiner would join at its own `snap install` time, all at
once — the third node then fails while dqlite is still settling (canonical/microk8s#4696).
`mk8s.bootstrap.flow` instead runs `add-node` (one short-lived token per join) and `join` over SSH,
one node at a time, each waiting until the previous one is a voter.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

import yaml

from mk8s.inventory.model import Environment, NodeSpec
from mk8s.render.artifact import Artifact

VERSION = "0.2.0"
PATH_ON_NODE = "/etc/microk8s.yaml"

# Documented top-level keys (reference/microk8s.md; CA:pkg/k8sinit/schema.go).
DOCUMENTED_KEYS = frozenset(
    {
        "version",
        "addonRepositories",
        "addons",
        "extraKubeAPIServerArgs",
        "extraKubeletArgs",
        "extraKubeProxyArgs",
        "extraKubeControllerManagerArgs",
        "extraKubeSchedulerArgs",
        "extraKubeliteEnv",
        "extraSANs",
        "containerdRegistryConfigs",
        "extraContainerdArgs",
        "extraContainerdEnv",
        "extraDqliteArgs",
        "extraDqliteEnv",
        "extraMicroK8sClusterAgentArgs",
        "extraMicroK8sClusterAgentEnv",
        "extraMicroK8sAPIServerProxyArgs",
        "extraMicroK8sAPIServerProxyEnv",
        "extraEtcdArgs",
        "extraEtcdEnv",
        "extraFlanneldArgs",
        "extraFlanneldEnv",
        "extraConfigFiles",
        "persistentClusterToken",
        "join",
        "extraCNIEnv",
        "extraFIPSEnv",
    }
)
# Keys of the documented nested objects.
DOCUMENTED_NESTED: Mapping[str, frozenset[str]] = {
    "addons": frozenset({"name", "disable", "args"}),
    "addonRepositories": frozenset({"name", "url", "reference"}),
    "join": frozenset({"url", "worker"}),
    "extraCNIEnv": frozenset(
        {
            "IPv4_SUPPORT",
            "IPv4_CLUSTER_CIDR",
            "IPv4_SERVICE_CIDR",
            "IPv6_SUPPORT",
            "IPv6_CLUSTER_CIDR",
            "IPv6_SERVICE_CIDR",
            "CALICO_VETH_MTU",
        }
    ),
}
# Calico VXLAN adds a 50-byte header (Calico docs, "Configure MTU").
VXLAN_OVERHEAD = 50


def undocumented_keys(doc: Mapping[str, Any]) -> list[str]:
    """Dotted paths of keys MicroK8s would silently ignore."""
    bad = [k for k in doc if k not in DOCUMENTED_KEYS]
    for key, allowed in DOCUMENTED_NESTED.items():
        value = doc.get(key)
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        for i, item in enumerate(items):
            if isinstance(item, dict):
                where = f"{key}[{i}]" if isinstance(value, list) else key
                bad += [f"{where}.{k}" for k in item if k not in allowed]
    return bad


def sans(env: Environment) -> list[str]:
    """Every address a client may use for the API: node IPs, the VIP, the in-cluster IP."""
    addresses: list[IPv4Address] = [n.ip for n in env.nodes]
    if env.network.api_vip is not None:
        addresses.append(env.network.api_vip)
    # `kubernetes.default` resolves to the service CIDR's first IP (reference: "CIDRs").
    addresses.append(env.network.service_cidr.network_address + 1)
    return [str(a) for a in dict.fromkeys(addresses)]


def launch_config(env: Environment, node: NodeSpec) -> dict[str, Any]:
    net = env.network
    doc: dict[str, Any] = {
        "version": VERSION,
        "extraSANs": sans(env),
        # map[string]*string in schema.go: every value a string.
        "extraCNIEnv": {
            "IPv4_SUPPORT": "true",
            "IPv4_CLUSTER_CIDR": str(net.pod_cidr),
            "IPv4_SERVICE_CIDR": str(net.service_cidr),
            "CALICO_VETH_MTU": str(net.mtu - VXLAN_OVERHEAD),
        },
        # The API server and kube-proxy must agree with the CNI on the CIDRs (same values as
        # MicroK8s derives from extraCNIEnv; stated so a reader sees them).
        "extraKubeAPIServerArgs": {"--service-cluster-ip-range": str(net.service_cidr)},
        "extraKubeProxyArgs": {"--cluster-cidr": str(net.pod_cidr)},
    }
    if node == env.first_node:
        # Only dns here (the default we replace); the other add-ons need the whole cluster
        # (MetalLB speakers, ingress DaemonSet) and their arguments checked, so mk8s.bootstrap.flow
        # enables them over SSH once HA has formed, skipping what is already on.
        # dns args (CORE:addons/dns/enable): $1 upstream nameservers, $2 the DNS service IP.
        upstream = ",".join(str(d) for d in net.dns_servers)
        dns_ip = str(net.service_cidr.network_address + 10)
        doc["addons"] = [{"name": "dns", "args": [upstream, dns_ip]}]
    else:
        doc["addons"] = []  # a joiner's add-ons would run before it joins
    bad = undocumented_keys(doc)
    if bad:  # a programming error: never ship a key MicroK8s would ignore
        raise ValueError(f"undocumented launch configuration keys: {', '.join(bad)}")
    return doc


def text(env: Environment, node: NodeSpec) -> str:
    return (
        "# MicroK8s launch configuration rendered by mk8s; read once by `snap install`.\n"
        + yaml.safe_dump(launch_config(env, node), sort_keys=False, width=1000)
    )


def render(env: Environment) -> list[Artifact]:
    return [Artifact(f"launch-config/{n.name}.yaml", text(env, n)) for n in env.nodes]
