"""The Terraform variables file: the single input of terraform/ (or a module of the user's own).

Contract (terraform/variables.tf validates it): `nodes` is a map keyed by node name so the
module can `for_each` over it and adding a node never renumbers the others. The template's
vmid and node are not here: they are facts of the Proxmox cluster, resolved by `mk8s.edges.proxmox`
at provision time and passed with -var, so this file stays a pure function of the inventory.
"""

from __future__ import annotations

import json

from mk8s.inventory.model import Environment
from mk8s.render.artifact import Artifact
from mk8s.render.cloudinit import user_data

TFVARS = "terraform/terraform.tfvars.json"


def tags(env: Environment) -> list[str]:
    return ["mk8s", f"env-{env.name}"]


def tfvars(env: Environment) -> dict[str, object]:
    net, pve = env.network, env.proxmox
    nodes = {
        n.name: {
            "name": n.name,
            "vmid": n.vmid,
            "ip": str(n.ip),
            "cidr_prefix": net.subnet.prefixlen,
            "gateway": str(net.gateway),
            "dns_servers": [str(d) for d in net.dns_servers],
            "pve_node": n.pve_node,
            "cores": env.size.cores,
            "memory_mib": env.size.memory_gib * 1024,
            "disk_gib": env.size.disk_gib,
            "bridge": pve.bridge,
            "vlan": pve.vlan,
            "mtu": net.mtu,
            "tags": tags(env),
            "user_data": user_data(env, n),
        }
        for n in env.nodes
    }
    return {
        "environment": env.name,
        "template": str(pve.template),
        "datastore": pve.datastore,
        "snippets_datastore": pve.snippets_datastore,
        "ssh_user": env.ssh.user,
        "ssh_authorized_keys": list(env.ssh.authorized_keys),
        "pve_ssh_nodes": pve_ssh_nodes(env),
        "nodes": nodes,
    }


def pve_ssh_nodes(env: Environment) -> dict[str, dict[str, object]]:
    """`proxmox.node_ssh` as the module's `pve_ssh_nodes`: name => {address, port}."""
    out: dict[str, dict[str, object]] = {}
    for name, target in sorted(env.proxmox.node_ssh.items()):
        host, _, port = target.rpartition(":")
        out[name] = {"address": host, "port": int(port)}
    return out


def render(env: Environment) -> list[Artifact]:
    return [Artifact(TFVARS, json.dumps(tfvars(env), indent=2, sort_keys=True) + "\n")]
