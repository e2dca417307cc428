"""`invoke provision` / `destroy` and the day-2 VM primitives, composed from the edges.

provision: render → preflight (proxmoxer) → terraform plan (summary, replace/delete refusal)
→ apply (lock-retrying) → verify (config and guest agent vs inventory) → wait for SSH banners.
Every step reads state first, so a re-run after a crash converges and changes nothing that is
already right.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mk8s.day2.snapshot_facts import read_vm
from mk8s.day2.snapshots import can_rollback
from mk8s.edges.proxmox import (
    ClusterFacts,
    Pve,
    VmFacts,
    connect,
    credentials,
    provider_env,
    read_cluster_facts,
    read_vm_facts,
)
from mk8s.edges.proxmox import power as pve_power
from mk8s.edges.proxmox import rollback as pve_rollback
from mk8s.edges.proxmox import snapshot as pve_snapshot
from mk8s.edges.terraform import (
    VM_TYPE,
    Change,
    Terraform,
    changes,
    pending,
    refusals,
    tainted_to_keep,
)
from mk8s.edges.tools import ensure_tools
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.model import Environment, NodeSpec
from mk8s.provision import preflight, verify
from mk8s.render.build import build_dir, write_plan
from mk8s.render.plan import build_plan

Say = Callable[[str], None]
MODULE_DIR = Path("terraform")
SSH_TIMEOUT_S = 600.0


@dataclass
class ProvisionReport:
    checks: list[preflight.Check] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    lock_retries: int = 0
    banners: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def _quiet(_: str) -> None:
    return None


def terraform_for(
    env: Environment, root: Path, pve_env: dict[str, str], say: Say, module: Path | None = None
) -> Terraform:
    tools = ensure_tools(root)
    tf = Terraform(
        tools=tools,
        workdir=build_dir(env.name, root) / "terraform",
        provider_env=pve_env,
        parallelism=env.proxmox.parallelism,
        on_line=say,
    )
    tf.stage(module or root / MODULE_DIR)
    tf.init()
    return tf


def template_vars(env: Environment, facts: ClusterFacts) -> dict[str, object]:
    found = preflight.find_template(env, facts)
    if not isinstance(found, VmFacts):  # preflight has failed already; belt and braces
        raise OperationFailedError(f"template {env.proxmox.template!r} not found")
    return {"template_vmid": found.vmid, "template_node": found.node}


def run_preflight(env: Environment, pve: Pve) -> tuple[ClusterFacts, list[preflight.Check]]:
    facts = read_cluster_facts(pve, env)
    return facts, preflight.checks(env, facts)


def provision(
    env: Environment,
    root: Path = Path(),
    *,
    dry_run: bool = False,
    allow_replace: bool = False,
    module: Path | None = None,
    ssh_timeout_s: float = SSH_TIMEOUT_S,
    say: Say = _quiet,
    show_checks: Callable[[list[preflight.Check]], None] | None = None,
    show_plan: Callable[[list[Change]], None] | None = None,
) -> ProvisionReport:
    report = ProvisionReport()
    write_plan(build_plan(env), build_dir(env.name, root))

    creds = credentials(env)
    pve = connect(env, root, creds)
    say("preflight: reading the Proxmox cluster")
    facts, report.checks = run_preflight(env, pve)
    if show_checks:
        show_checks(report.checks)
    failed = preflight.failures(report.checks)
    if failed:
        raise OperationFailedError(*failed)

    tf = terraform_for(env, root, provider_env(env, creds, root), say, module)
    variables = template_vars(env, facts)

    def check_plan(plan: dict[str, Any], kept: Sequence[Change] = ()) -> None:
        report.changes = changes(plan)
        refused = refusals([c for c in report.changes if c not in kept], allow_replace)
        if refused:
            raise UserError(*refused)

    say("terraform: planning")
    plan = tf.plan(variables)
    report.changes = changes(plan)
    ours = {vm.vmid for vm in facts.vms if preflight.is_ours(vm, env)}
    keep = [] if allow_replace else tainted_to_keep(report.changes, ours)
    for change in keep:
        say(
            f"terraform: {change.key} (vmid {change.vmid}) was left tainted by an interrupted "
            f"apply; {'would keep' if dry_run else 'keeping'} the VM and converge it in place"
        )
        if not dry_run:  # a dry run writes nothing, not even the state
            tf.untaint(change.address)
    if keep and not dry_run:
        plan = tf.plan(variables)
        report.changes = changes(plan)
        keep = []
    if show_plan:
        show_plan(report.changes)
    check_plan(plan, keep)
    if dry_run:
        return report
    if pending(report.changes):
        report.lock_retries = tf.apply(variables, check_plan)
        report.applied = True
    else:
        say("terraform: no changes")
    report.outputs = tf.output()

    say("verify: comparing the VMs with the inventory")
    problems = verify.problems(env, read_vm_facts(pve, env))
    if problems:
        raise OperationFailedError(*problems)
    report.banners = wait_for_ssh(env.nodes, env.ssh.port, ssh_timeout_s, say)
    return report


# -------------------------------------------------------------------------- SSH wait


def ssh_banner(host: str, port: int, timeout_s: float = 5.0) -> str | None:
    """The server's identification line (`SSH-2.0-...`), or None if nothing answers yet."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            data = b""
            while b"\n" not in data and len(data) < 512:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.decode("latin-1").splitlines():
        if line.startswith("SSH-"):
            return line.strip()
    return None


def wait_for_ssh(
    nodes: Sequence[NodeSpec],
    port: int,
    timeout_s: float,
    say: Say = _quiet,
    poll_s: float = 2.0,
) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    banners: dict[str, str] = {}
    waiting = list(nodes)
    while waiting:
        for node in list(waiting):
            banner = ssh_banner(str(node.ip), port)
            if banner:
                banners[node.name] = banner
                waiting.remove(node)
                say(f"ssh: {node.name} ({node.ip}:{port}) answers: {banner}")
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise OperationFailedError(
                *(
                    f"ssh: {n.name} ({n.ip}:{port}) gave no SSH banner within {timeout_s:.0f}s; "
                    "check cloud-init on its console (cloud-init status --long)"
                    for n in waiting
                )
            )
        say(f"ssh: waiting for {', '.join(n.name for n in waiting)}")
        time.sleep(poll_s)
    return banners


# ---------------------------------------------------------------------------- destroy


def destroy(env: Environment, root: Path = Path(), *, say: Say = _quiet) -> list[str]:
    """Destroy this environment's VMs (those in its Terraform state, all tagged env-NAME).
    Returns the node names destroyed. The caller has confirmed."""
    creds = credentials(env)
    pve = connect(env, root, creds)
    facts = read_cluster_facts(pve, env)
    tf = terraform_for(env, root, provider_env(env, creds, root), say)
    vms = [r for r in tf.state_resources() if r.get("type") == "proxmox_virtual_environment_vm"]
    foreign = []
    tag = preflight.env_tag(env)
    for r in vms:
        vmid = int(r["values"]["vm_id"])
        live = facts.vm(vmid)
        if live is not None and tag not in live.tags:
            foreign.append(f"refusing: VM {vmid} in the state is not tagged {tag} on Proxmox")
    if foreign:
        raise UserError(*foreign)
    if not vms:
        say("destroy: nothing in the state for this environment")
        return []
    found = preflight.find_template(env, facts)
    variables = (
        template_vars(env, facts)
        if isinstance(found, VmFacts)
        else {"template_vmid": 100, "template_node": None}  # not read by a destroy
    )
    plan = tf.plan(variables, destroy=True)
    gone = sorted(c.key for c in changes(plan) if c.action == "delete" and c.type == VM_TYPE)
    tf.apply_plan()
    return gone


# ------------------------------------------------------------------ day-2 primitives


def env_vms(
    env: Environment, pve: Pve, names: Sequence[str] = ()
) -> list[tuple[NodeSpec, VmFacts]]:
    """This environment's VMs (all, or the named nodes); refuses VMs not tagged for it."""
    unknown = sorted(set(names) - {n.name for n in env.nodes})
    if unknown:
        raise UserError(f"no node named {', '.join(unknown)} in {env.name}")
    facts = read_vm_facts(pve, env)
    out = []
    for node in env.nodes:
        if names and node.name not in names:
            continue
        vm = facts.get(node.name)
        if vm is None:
            raise OperationFailedError(
                f"{node.name}: VM {node.vmid} does not exist; provision first"
            )
        if preflight.env_tag(env) not in vm.tags:
            raise UserError(f"{node.name}: VM {vm.vmid} is not tagged {preflight.env_tag(env)}")
        out.append((node, vm))
    return out


POWER_STATE = {"start": "running", "stop": "stopped", "shutdown": "stopped"}


def power_actions(
    vms: Sequence[tuple[NodeSpec, VmFacts]], action: str
) -> list[tuple[NodeSpec, VmFacts]]:
    """The VMs the action would change (start of a running VM is a no-op, and so on)."""
    target = POWER_STATE.get(action)
    if target is None:
        return list(vms)  # reboot/reset act every time
    return [(n, vm) for n, vm in vms if vm.status != target]


def power(
    env: Environment, action: str, names: Sequence[str] = (), root: Path = Path(), say: Say = _quiet
) -> list[str]:
    if action not in ("start", "stop", "shutdown", "reboot", "reset"):
        raise UserError(f"power action {action!r}: use start, stop, shutdown, reboot or reset")
    pve = connect(env, root)
    todo = power_actions(env_vms(env, pve, names), action)
    for node, vm in todo:
        say(f"{action}: {node.name} (vmid {vm.vmid})")
        pve_power(pve, vm, action)
    return [n.name for n, _ in todo]


def snapshot(
    env: Environment, name: str, names: Sequence[str] = (), root: Path = Path(), say: Say = _quiet
) -> list[str]:
    """Snapshot every (or the named) node; nodes that already have the snapshot are skipped."""
    pve = connect(env, root)
    done = []
    for node, vm in env_vms(env, pve, names):
        if name in vm.snapshots:
            say(f"snapshot: {node.name} already has {name}")
            continue
        say(f"snapshot: {node.name} (vmid {vm.vmid}) -> {name}")
        pve_snapshot(pve, vm, name, description=f"mk8s {env.name}")
        done.append(node.name)
    return done


def rollback(
    env: Environment, name: str, names: Sequence[str] = (), root: Path = Path(), say: Say = _quiet
) -> list[str]:
    """Roll every VM of the environment back to `name`, or none. A subset is refused: each
    voter's disk holds its copy of the datastore, and rewinding some of them breaks raft
    (shared/reference/microk8s-behaviour.md, "Snap refresh and revert"); one broken node is
    rebuilt instead (`invoke upgrade --recover rebuild-node`, docs/upgrade.md)."""
    pve = connect(env, root)
    vms = env_vms(env, pve, names)
    missing = [n.name for n, vm in vms if name not in vm.snapshots]
    if missing:
        raise UserError(f"snapshot {name!r} missing on {', '.join(missing)}; nothing rolled back")
    decision = can_rollback(
        [read_vm(pve, vm, node.name) for node, vm in vms], name, [n.name for n in env.nodes]
    )
    if not decision.ok:
        raise UserError(*decision.reasons, "nothing rolled back (docs/provision.md#rollback)")
    for node, vm in vms:
        say(f"rollback: {node.name} (vmid {vm.vmid}) -> {name}")
        pve_rollback(pve, vm, name)
    return [n.name for n, _ in vms]
