"""Verification after apply: do the VMs on Proxmox match the inventory? Pure.

Compares each node's recorded VM facts (config as PVE returns it, guest-agent IPs) with what
the inventory asks for, and returns one line per difference. An empty list means verified.
"""

from __future__ import annotations

import re

from mk8s.edges.proxmox import VmFacts
from mk8s.inventory.model import Environment, NodeSpec
from mk8s.provision.preflight import env_tag

GIB = 1024**3
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}
DISK_KEY = "scsi0"


def props(value: object) -> dict[str, str]:
    """A PVE property string (`virtio=AA:..,bridge=vmbr0,tag=110`) as a dict."""
    out = {}
    for part in str(value or "").split(","):
        key, eq, val = part.partition("=")
        if eq:
            out[key.strip()] = val.strip()
        elif part:
            out.setdefault("file", part.strip())
    return out


def size_bytes(text: str) -> int:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip(), re.I)
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()]) if found else 0


def expected(env: Environment, node: NodeSpec) -> dict[str, object]:
    return {
        "cores": env.size.cores,
        "memory_mib": env.size.memory_gib * 1024,
        "disk_bytes": env.size.disk_gib * GIB,
        "bridge": env.proxmox.bridge,
        "vlan": env.proxmox.vlan,
        "ip": f"{node.ip}/{env.network.subnet.prefixlen}",
        "gateway": str(env.network.gateway),
    }


def node_problems(env: Environment, node: NodeSpec, vm: VmFacts | None) -> list[str]:
    where = f"{node.name} (vmid {node.vmid})"
    if vm is None:
        return [f"{where}: no such VM on Proxmox"]
    want = expected(env, node)
    cfg = vm.config
    out = []
    if vm.node != node.pve_node:
        out.append(f"{where}: on {vm.node}, inventory says {node.pve_node}")
    if env_tag(env) not in vm.tags:
        out.append(f"{where}: not tagged {env_tag(env)} (tags: {','.join(vm.tags) or '-'})")
    if vm.status != "running":
        out.append(f"{where}: {vm.status}, expected running")
    if int(cfg.get("cores", 0) or 0) != want["cores"]:
        out.append(f"{where}: {cfg.get('cores')} cores, inventory says {want['cores']}")
    if int(str(cfg.get("memory", 0) or 0)) != want["memory_mib"]:
        out.append(f"{where}: {cfg.get('memory')} MiB memory, inventory says {want['memory_mib']}")
    disk = props(cfg.get(DISK_KEY))
    have_disk = size_bytes(disk.get("size", "0"))
    if have_disk != want["disk_bytes"]:
        out.append(
            f"{where}: {DISK_KEY} is {have_disk // GIB} GiB, inventory says {env.size.disk_gib} GiB"
        )
    net = props(cfg.get("net0"))
    if net.get("bridge") != want["bridge"]:
        out.append(f"{where}: net0 on bridge {net.get('bridge')}, inventory says {want['bridge']}")
    tag = net.get("tag")
    if (int(tag) if tag else None) != want["vlan"]:
        out.append(f"{where}: net0 VLAN {tag or 'untagged'}, inventory says {want['vlan']}")
    if not any(k in net for k in ("virtio", "model")) or net.get("model", "virtio") != "virtio":
        out.append(f"{where}: net0 is not a virtio NIC ({cfg.get('net0')})")
    ipcfg = props(cfg.get("ipconfig0"))
    if ipcfg.get("ip") != want["ip"] or ipcfg.get("gw") != want["gateway"]:
        out.append(
            f"{where}: ipconfig0 is {cfg.get('ipconfig0')!r}, "
            f"inventory says ip={want['ip']},gw={want['gateway']}"
        )
    if vm.agent_ips is None:
        if vm.status == "running":
            out.append(f"{where}: guest agent not answering (qemu-guest-agent in the template?)")
    elif str(node.ip) not in vm.agent_ips:
        out.append(
            f"{where}: guest agent reports {', '.join(vm.agent_ips) or 'no IPv4'}, "
            f"expected {node.ip} (cloud-init not applied? bpg#2139)"
        )
    return out


def problems(env: Environment, vms: dict[str, VmFacts | None]) -> list[str]:
    return [line for node in env.nodes for line in node_problems(env, node, vms.get(node.name))]
