"""Preflight verdicts: is this Proxmox cluster ready for this environment? Pure.

`checks(env, facts)` turns recorded API facts (mk8s.edges.proxmox.ClusterFacts) into one `Check` per
question, each with a fix hint. Also resolves the inventory's template (name or vmid) to the
VM to clone, which mk8s passes to Terraform as -var.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Address

from mk8s.edges.proxmox import ClusterFacts, VmFacts
from mk8s.inventory.model import Environment
from mk8s.render.terraform import tags as env_tags

MIN_PVE_MAJOR = 8
GIB = 1024**3
_IPCONFIG_IP = re.compile(r"(?:^|,)ip=([0-9.]+)")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def env_tag(env: Environment) -> str:
    return env_tags(env)[1]


def is_ours(vm: VmFacts, env: Environment) -> bool:
    """A VM mk8s created for this environment: tagged env-<name>."""
    return env_tag(env) in vm.tags


def find_template(env: Environment, facts: ClusterFacts) -> VmFacts | str | None:
    """The template VM, None when absent, or a line when the name is ambiguous."""
    wanted = env.proxmox.template
    if isinstance(wanted, int) or str(wanted).isdigit():
        return facts.vm(int(wanted))
    named = [v for v in facts.vms if v.name == wanted and v.template]
    if len(named) > 1:
        ids = ", ".join(f"{v.vmid} on {v.node}" for v in named)
        return f"template name {wanted!r} matches several templates ({ids}); give its vmid"
    if named:
        return named[0]
    return next((v for v in facts.vms if v.name == wanted), None)


_DRIVE_KEY = re.compile(r"^(ide|sata|scsi|virtio)\d+$")


def _has_cloudinit_drive(vm: VmFacts) -> bool:
    """A drive whose volume is a cloud-init image (`local-lvm:vm-9000-cloudinit,media=cdrom`)."""
    return any(
        _DRIVE_KEY.match(key) and "cloudinit" in str(value).split(",")[0]
        for key, value in vm.config.items()
    )


def version_check(facts: ClusterFacts) -> Check:
    match = re.match(r"(\d+)", facts.version)
    major = int(match.group(1)) if match else 0
    return Check(
        "PVE version",
        major >= MIN_PVE_MAJOR,
        f"{facts.version}",
        f"upgrade Proxmox VE to {MIN_PVE_MAJOR}.x or later",
    )


def template_check(env: Environment, facts: ClusterFacts) -> Check:
    name = "template"
    found = find_template(env, facts)
    wanted = env.proxmox.template
    if isinstance(found, str):
        return Check(name, False, found, "set proxmox.template to the template's vmid")
    if found is None:
        return Check(
            name,
            False,
            f"no VM named or numbered {wanted!r}",
            "create the cloud-init template (docs/provision.md#template) or fix proxmox.template",
        )
    if not found.template:
        return Check(
            name,
            False,
            f"{wanted!r} (vmid {found.vmid}) is a VM, not a template",
            "convert it with `qm template <vmid>` after preparing cloud-init",
        )
    if not _has_cloudinit_drive(found):
        return Check(
            name,
            False,
            f"template {found.vmid} has no cloud-init drive",
            f"add one: qm set {found.vmid} --ide2 <storage>:cloudinit",
        )
    return Check(name, True, f"{found.name} (vmid {found.vmid} on {found.node})")


def node_checks(env: Environment, facts: ClusterFacts) -> list[Check]:
    out = []
    for node in sorted({n.pve_node for n in env.nodes}):
        online = facts.nodes.get(node)
        if online is None:
            out.append(
                Check(
                    f"node {node}",
                    False,
                    "not a member of the cluster",
                    f"fix pve_node in the inventory; cluster nodes: {', '.join(sorted(facts.nodes))}",
                )
            )
        else:
            out.append(
                Check(
                    f"node {node}",
                    online,
                    "online" if online else "offline",
                    "bring the node back (pvecm status) or move its VMs to another pve_node",
                )
            )
    return out


def datastore_checks(env: Environment, facts: ClusterFacts) -> list[Check]:
    """VM datastore exists on every target node with room for every disk; snippets allowed."""
    out = []
    ds, sn = env.proxmox.datastore, env.proxmox.snippets_datastore
    need_per_node: dict[str, int] = defaultdict(int)
    for node in env.nodes:
        need_per_node[node.pve_node] += env.size.disk_gib * GIB
    shared_need = sum(need_per_node.values())
    for pve_node, need in sorted(need_per_node.items()):
        stores = facts.storages.get(pve_node)
        if stores is None:
            continue  # node offline or unknown: reported by node_checks
        store = stores.get(ds)
        label = f"datastore {ds} on {pve_node}"
        if store is None or not store.active:
            out.append(
                Check(
                    label,
                    False,
                    "missing" if store is None else "inactive",
                    f"create it or set proxmox.datastore; {pve_node} has: {', '.join(sorted(stores))}",
                )
            )
        elif "images" not in store.content:
            out.append(
                Check(
                    label,
                    False,
                    "does not accept VM images",
                    f"pvesm set {ds} --content images,...",
                )
            )
        else:
            wanted = shared_need if store.shared else need
            out.append(
                Check(
                    label,
                    store.avail_bytes >= wanted,
                    f"{store.avail_bytes // GIB} GiB free, {wanted // GIB} GiB needed"
                    + (" (shared, all nodes)" if store.shared else ""),
                    "free space, grow the storage, or lower size.disk_gib",
                )
            )
        snip = stores.get(sn)
        label = f"snippets on {sn}@{pve_node}"
        if snip is None:
            out.append(Check(label, False, "datastore missing", "set proxmox.snippets_datastore"))
        else:
            out.append(
                Check(
                    label,
                    "snippets" in snip.content,
                    f"content: {','.join(c for c in snip.content if c)}",
                    f"pvesm set {sn} --content {','.join([*[c for c in snip.content if c], 'snippets'])}"
                    " (bpg#1540)",
                )
            )
    return out


def identity_checks(env: Environment, facts: ClusterFacts) -> list[Check]:
    """vmids free or ours; no foreign VM with our names or IPs; our VMs not locked."""
    out = []
    ours = {n.name for n in env.nodes}
    our_ips = {n.ip: n.name for n in env.nodes}
    for node in env.nodes:
        vm = facts.vm(node.vmid)
        label = f"vmid {node.vmid} ({node.name})"
        if vm is None:
            out.append(Check(label, True, "free"))
        elif not is_ours(vm, env) or vm.name != node.name:
            out.append(
                Check(
                    label,
                    False,
                    f"taken by foreign VM {vm.name!r} on {vm.node} (tags: {','.join(vm.tags) or '-'})",
                    "choose another vmid in the inventory; mk8s never touches VMs it did not create",
                )
            )
        elif vm.lock:
            out.append(
                Check(
                    label,
                    False,
                    f"ours, but locked ({vm.lock})",
                    f"wait for the {vm.lock} task to finish, or `qm unlock {vm.vmid}` if it died",
                )
            )
        else:
            out.append(Check(label, True, f"ours ({vm.status} on {vm.node})"))
    for vm in facts.vms:
        # Our own VMs (tagged for this env) may hold our names/IPs: Terraform decides about them.
        if vm.template or vm.vmid in {n.vmid for n in env.nodes} or is_ours(vm, env):
            continue
        if vm.name in ours:
            out.append(
                Check(
                    f"name {vm.name}",
                    False,
                    f"already used by VM {vm.vmid} on {vm.node}",
                    "rename that VM or the node in the inventory",
                )
            )
        for ip in _IPCONFIG_IP.findall(str(vm.config.get("ipconfig0", ""))):
            if IPv4Address(ip) in our_ips:
                out.append(
                    Check(
                        f"ip {ip}",
                        False,
                        f"configured on foreign VM {vm.vmid} ({vm.name}), wanted by {our_ips[IPv4Address(ip)]}",
                        "pick another IP in the inventory or reconfigure that VM",
                    )
                )
    return out


def placement_check(env: Environment) -> Check | None:
    if env.effective_tier != "prod":
        return None
    hosts = [n.pve_node for n in env.nodes]
    distinct = len(set(hosts)) == len(hosts)
    return Check(
        "prod placement",
        distinct,
        f"{len(set(hosts))} hosts for {len(hosts)} nodes",
        "put every prod node on its own pve_node so one host failure loses one node",
    )


def checks(env: Environment, facts: ClusterFacts) -> list[Check]:
    out = [
        Check("API", True, f"reachable, token accepted (PVE {facts.version})"),
        version_check(facts),
    ]
    out.append(template_check(env, facts))
    out += node_checks(env, facts)
    out += datastore_checks(env, facts)
    out += identity_checks(env, facts)
    placement = placement_check(env)
    if placement is not None:
        out.append(placement)
    return out


def failures(results: list[Check]) -> list[str]:
    return [f"preflight: {c.name}: {c.detail}; fix: {c.hint}" for c in results if not c.ok]
