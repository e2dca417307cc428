"""`invoke drain` and `invoke maintenance`: choose the nodes, check the window, plan, operate.

- `drain --node N [--reboot|--stop]`: one node (reboot over SSH is the default; `--stop` shuts
  the VM down through Proxmox and waits for it to run again).
- `maintenance`: every node whose /var/run/reboot-required exists, one at a time, stand-bys
  first; only inside the inventory's `maintenance.window` (`--outside-window` overrides, never
  for prod), and only if the whole plan's expected time fits in what is left of the window.
- `maintenance --pve-node pveX`: every node on that Proxmox host, refused when it holds more
  than one voter.

`NodePower` is the real `Power`: SSH for the boot id and the reboot, Proxmox for the VM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from mk8s.day2 import drain, drain_flow
from mk8s.day2.facts import ClusterFacts
from mk8s.day2.lock import LeaseApi
from mk8s.day2.operation import Options, operate
from mk8s.day2.plan import Plan, duration
from mk8s.day2.runner import Outcome
from mk8s.day2.wait import Clock, SystemClock
from mk8s.day2.window import WindowState, require_window
from mk8s.edges import proxmox
from mk8s.edges.kube_drain import DrainApi
from mk8s.edges.ssh import Journal, Login, NodeSession, NodeUnreachableError, targets_for
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.model import Environment


@dataclass(frozen=True)
class Rig:
    """Everything a drain talks to (tests build one on the real kube-apiserver)."""

    kube: DrainApi
    power: drain_flow.Power
    read: drain_flow.FactsReader
    lease_api: LeaseApi | None = None
    clock: Clock = field(default_factory=SystemClock)
    boundary: Callable[[str], None] | None = None


def _ip(env: Environment, node: str) -> str:
    for n in env.nodes:
        if n.name == node:
            return str(n.ip)
    names = ", ".join(n.name for n in env.nodes)
    raise UserError(f"--node {node}: not a node of {env.name} ({names})")


def _run(
    env: Environment,
    plan: Plan,
    nodes: list[str],
    modes: dict[str, drain.Mode],
    rig: Rig,
    build: Path,
    options: Options,
    out: Console,
    err: Console | None,
    confirm: Callable[[], None] | None,
) -> Outcome | None:
    progress = err or out

    def say(line: str) -> None:
        progress.print(line, markup=False, highlight=False, soft_wrap=True)

    ctx = drain_flow.context(env.name, rig.kube, rig.power, rig.read, build, plan.task,
                             clock=rig.clock, say=say)  # fmt: skip
    acts = drain_flow.actions(ctx, nodes, modes, build)
    return operate(plan, acts, build, options, out=out, err=err, lease_api=rig.lease_api,
                   clock=rig.clock, boundary=rig.boundary, confirm=confirm)  # fmt: skip


def run_drain(
    env: Environment,
    node: str,
    mode: drain.Mode,
    rig: Rig,
    build: Path,
    options: Options,
    *,
    out: Console,
    err: Console | None = None,
    confirm: Callable[[], None] | None = None,
) -> Outcome | None:
    """`confirm` is asked after the plan is printed, before anything is locked or changed."""
    plan = drain.plan_drain(env.name, node, _ip(env, node), mode)
    return _run(env, plan, [node], {node: mode}, rig, build, options, out, err, confirm)


def fits(plan: Plan, state: WindowState, now: datetime) -> str | None:
    """Pure: why `plan` does not fit in the open window (None when it does, or ad hoc)."""
    if state.ad_hoc or state.current_end is None:
        return None
    left = state.current_end - now
    if timedelta(seconds=plan.expected_s) <= left:
        return None
    return (
        f"the plan expects {duration(plan.expected_s)} but the window closes "
        f"{state.current_end:%H:%M} UTC ({duration(int(left.total_seconds()))} left); "
        "re-run at the start of the next window, or pass --outside-window (not for prod)"
    )


def maintenance_plan(
    env: Environment, rig: Rig, pve_node: str | None, *, outside_window: bool
) -> tuple[Plan, list[str], dict[str, drain.Mode]] | None:
    """The plan, its nodes and their modes; None when no node needs a reboot."""
    now = datetime.fromtimestamp(rig.clock.now(), UTC)
    state = require_window(env, now, outside_window=outside_window)
    facts = rig.read()
    if pve_node is not None:
        nodes = drain.host_nodes(facts, pve_node)
        plan = drain.plan_host(env.name, pve_node, nodes)
        modes = dict.fromkeys(nodes, drain.Mode.STOP)
    else:
        nodes, unknown = drain.reboot_candidates(facts)
        if unknown:
            raise OperationFailedError("cannot tell which nodes need a reboot:", *unknown)
        if not nodes:
            return None
        plan = drain.plan_maintenance(env.name, [(n, _ip(env, n)) for n in nodes])
        modes = dict.fromkeys(nodes, drain.Mode.REBOOT)
    why = fits(plan, state, now)
    if why is not None and not outside_window:
        raise UserError(f"{env.name}: {why}")
    return plan, nodes, modes


def run_maintenance(
    env: Environment,
    rig: Rig,
    build: Path,
    options: Options,
    *,
    pve_node: str | None = None,
    outside_window: bool = False,
    out: Console,
    err: Console | None = None,
    confirm: Callable[[], None] | None = None,
) -> Outcome | None:
    chosen = maintenance_plan(env, rig, pve_node, outside_window=outside_window)
    if chosen is None:
        (err or out).print(f"{env.name}: no node needs a reboot (/var/run/reboot-required)")
        return None
    plan, nodes, modes = chosen
    return _run(env, plan, nodes, modes, rig, build, options, out, err, confirm)


class NodePower:
    """The real `Power`: SSH (pinned host keys from `invoke bootstrap`) and the Proxmox API."""

    def __init__(self, env: Environment, build: Path, pve: proxmox.Pve) -> None:
        self.env, self.pve = env, pve
        self.targets = targets_for(env)
        self.login = Login(env.ssh.user, env.ssh.private_key_file)
        self.known_hosts = build / "known_hosts"
        self.journal = Journal(build / "day2" / "ssh.log")
        self.sessions: dict[str, NodeSession] = {}

    def _session(self, node: str) -> NodeSession:
        if node not in self.sessions:
            self.sessions[node] = NodeSession(
                self.targets[node], self.login, self.known_hosts, self.journal
            )
        return self.sessions[node]

    def boot_id(self, node: str) -> str:
        res = self._session(node).run("cat /proc/sys/kernel/random/boot_id", timeout=15)
        if not res.ok:
            raise OperationFailedError(f"{node}: cannot read its boot id: {res.text}")
        return res.stdout.strip()

    def reboot(self, node: str) -> None:
        session = self._session(node)
        # The link drops as the node goes down: that is the reboot, not a failure.
        with contextlib.suppress(NodeUnreachableError):
            session.run(drain.REBOOT_COMMAND.removeprefix("sudo "), timeout=30)
        session.close()

    def _vm(self, node: str) -> proxmox.VmFacts:
        vm = proxmox.read_vm_facts(self.pve, self.env).get(node)
        if vm is None:
            raise OperationFailedError(f"{node}: its VM is not on Proxmox")
        return vm

    def shutdown(self, node: str) -> None:
        proxmox.power(self.pve, self._vm(node), "shutdown")
        self._session(node).close()

    def running(self, node: str) -> bool:
        return proxmox.vm_status(self.pve, self._vm(node)) == "running"


def real_rig(env: Environment, build: Path) -> Rig:
    """The rig of a real environment: the kubeconfig's API server, Proxmox, SSH, and the status
    helper's fact reader (mk8s.day2.cluster_facts) over the same Proxmox connection."""
    from mk8s.day2 import cluster_facts
    from mk8s.edges.kube import KubeApi, default_kubeconfig

    kube = KubeApi(default_kubeconfig(build))
    pve = proxmox.connect(env)
    sources = cluster_facts.Sources(pve=lambda: pve)

    def read() -> ClusterFacts:
        return cluster_facts.read(env, build, datetime.now(UTC), sources)

    return Rig(kube, NodePower(env, build, pve), read, lease_api=kube)
