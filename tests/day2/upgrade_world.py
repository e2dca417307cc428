"""The upgrade's world for tests: a file-backed three-node MicroK8s cluster whose VMs live in a
served fakepve (real HTTPS, real snapshot/rollback rules), implementing `RecoverEdges`.

STAND-IN, until the MicroK8s model (tests/support/microk8s) gains snap refresh, revisions and
the kubelet -> Node sync into the kube-apiserver: the cluster side here is a JSON file, not
sshd + model + kube-apiserver. What it claims, and from where:
- a refresh to another channel moves the node to that channel's revision and kubelet minor
  (shared/reference/microk8s-behaviour.md "Snap refresh and revert"); an injected refused
  refresh leaves channel and revision as they were (snapd undoes a failed change; the texts are
  the world's own, marked "world:");
- the datastore view lives on the node's disk (dqlite in $SNAP_DATA), so a VM rollback brings
  back the view of its snapshot: rolling back one voter makes it disagree with the others;
- remove-node drops the member; a join adds it back, and the roles settle to three voters
  (tests/support/microk8s/model.py adjust_once, go-dqlite app/roles.go);
- a stopped VM answers nothing (no SSH, no API, NotReady).
Every command run on a node is appended to the state's `log` as [node, command].

The environment is the inventory's `dev` (three nodes on pve1..pve3, window ad hoc), so the
real planner (mk8s.day2.upgrade_plan) and the real preflight gates (mk8s.day2.preflight) run.
Facts the world cannot have (certificates, backups) are reported healthy: their gates' broken
cases are tested in tests/day2/test_preflight.py.

    python -m tests.day2.upgrade_world STATE.json BUILD --pve URL CAFILE [--kill-at LABEL]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from proxmoxer import ProxmoxAPI

from mk8s.day2.certs import CERT_FILES, CertFacts
from mk8s.day2.facts import (
    Blocker,
    ClusterFacts,
    Disruption,
    NodeFacts,
    SnapFacts,
    StorageRoom,
    VmState,
)
from mk8s.day2.snapshot_facts import read_vm
from mk8s.day2.snapshots import VmSnapFacts
from mk8s.edges import proxmox
from mk8s.edges.microk8s import Member
from mk8s.inventory.load import load_environment

# Test data, not claims about the store.
REVISIONS = {"1.32/stable": ("7964", "v1.32.9"), "1.33/stable": ("8148", "v1.33.5")}
ENV = "dev"
TARGET = "1.33/stable"  # the dev inventory's microk8s.channel
GIB = 1024**3


def _nodes() -> dict[str, tuple[str, int, str]]:
    env = load_environment(ENV)
    return {n.name: (str(n.ip), n.vmid, n.pve_node) for n in env.nodes}


NODES = _nodes()
DISK_KEYS = ("channel", "revision", "version", "held", "installed", "members")


def initial(channel: str = "1.32/stable") -> dict[str, Any]:
    rev, version = REVISIONS[channel]
    voters = [[name, "voter"] for name in NODES]
    nodes = {
        name: {
            "ip": ip, "vmid": vmid, "channel": channel, "revision": rev, "version": version,
            "held": True, "installed": True, "members": copy.deepcopy(voters),
            "ready": True, "kubelet": version, "api": True, "cni": True,
            "unschedulable": False, "cordoned_by": None, "pods": [f"default/web-{name}"],
        }
        for name, (ip, vmid, _host) in NODES.items()
    }  # fmt: skip
    return {
        "nodes": nodes, "pdb_blocks": {}, "late_pdb_blocks": {}, "faults": {}, "log": [],
        "dns": True, "ingress": True, "disks": {}, "evictions": [], "polls": {},
    }  # fmt: skip


@contextlib.contextmanager
def locked(path: Path) -> Iterator[dict[str, Any]]:
    with path.with_suffix(".lock").open("a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        state: dict[str, Any] = json.loads(path.read_text())
        yield state
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)


@dataclass
class Res:
    code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


class NodeShell:
    def __init__(self, world: World, node: str) -> None:
        self.world, self.node = world, node

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        secret_output: bool = False,
        timeout: float | None = None,
    ) -> Res:
        if not self.world.running(self.node):
            return Res(255, "", "world: no route to host (VM stopped)")
        with locked(self.world.path) as state:
            state["log"].append([self.node, command])
            return _command(state, self.node, command, stdin)


def _channel_of(command: str) -> str:
    return command.split("--channel=", 1)[1].split()[0].strip("'")


def _command(state: dict[str, Any], name: str, command: str, stdin: str | None) -> Res:
    node, faults = state["nodes"][name], state["faults"]
    if command.startswith("snap refresh microk8s --channel="):
        if faults.get("refresh_refused") == name:
            return Res(1, "", "world: refresh refused (injected)")
        channel = _channel_of(command)
        node["channel"] = channel
        node["revision"], node["version"] = REVISIONS[channel]
        after = faults.get("after_refresh", {}).get(name)
        if after == "not_ready":  # kubelite crash-looping on the new revision
            node.update(ready=False, api=False, cni=False)
        elif after == "datastore_alone":  # Ready, but its dqlite no longer sees the others
            node["members"] = [[name, "voter"]]
        elif after == "slow":  # Ready after a few reads (the gate waits through it)
            node.update(ready=False)
            state["polls"][name] = 3
        node["kubelet"] = node["version"]
        return Res(0, f"microk8s ({channel}) {node['version']} from Canonical refreshed")
    if command == "snap refresh --hold microk8s":
        node["held"] = True
        return Res(0, 'General refreshes of "microk8s" held indefinitely')
    if command.startswith("microk8s remove-node "):
        gone = next(n for n, v in state["nodes"].items() if v["ip"] == command.split()[2])
        for other in state["nodes"].values():
            other["members"] = [m for m in other["members"] if m[0] != gone]
        return Res(0)
    if command == "snap remove --purge microk8s":
        node.update(installed=False, channel="", members=[], ready=False, api=False, cni=False)
        return Res(0, "microk8s removed")
    if command.startswith("snap install microk8s"):
        channel = _channel_of(command)
        rev, version = REVISIONS[channel]
        node.update(installed=True, channel=channel, revision=rev, version=version, held=False)
        node["members"] = [[name, "voter"]]  # a fresh, lone datastore
        return Res(0)
    if command.startswith("microk8s add-node"):
        return Res(0, json.dumps({"token": "0" * 32 + "/abcdef012345", "urls": []}))
    if command.startswith("read -r url && exec microk8s join"):
        voters = [[n, "voter"] for n, v in state["nodes"].items() if v["installed"]]
        for v in state["nodes"].values():  # the roles settle: three voters, seen alike
            if v["installed"]:
                v["members"] = copy.deepcopy(voters)
        node.update(ready=True, api=True, cni=True, kubelet=node["version"])
        return Res(0, "Successfully joined the cluster.")
    return Res(2, "", f"world: {command!r} is not modelled")


class World:
    """RecoverEdges over the JSON state and a fakepve."""

    def __init__(self, path: Path, pve: proxmox.Pve) -> None:
        self.path, self.pve = path, pve

    # --- Proxmox ---------------------------------------------------------------------------

    def _vm(self, name: str) -> proxmox.VmFacts:
        _ip, vmid, host = NODES[name]
        status = self.pve.get(f"nodes/{host}/qemu/{vmid}/status/current")
        return proxmox.VmFacts(vmid, name, host, str(status.get("status")), False, ())

    def running(self, name: str) -> bool:
        return self._vm(name).status == "running"

    def vm_snapshots(self) -> dict[str, VmSnapFacts]:
        return {n: read_vm(self.pve, self._vm(n), n) for n in NODES}

    def snapshot_descriptions(self, name: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for node in NODES:
            listed = self.pve.get(f"{proxmox.vm_path(self._vm(node))}/snapshot")
            found = next((s for s in listed if s.get("name") == name), None)
            out[node] = None if found is None else str(found.get("description") or "")
        return out

    def take_snapshot(self, node: str, name: str, description: str) -> None:
        proxmox.snapshot(self.pve, self._vm(node), name, description=description)
        with locked(self.path) as state:
            disk = {k: copy.deepcopy(state["nodes"][node][k]) for k in DISK_KEYS}
            state["disks"].setdefault(node, {})[name] = disk

    def rollback_vm(self, node: str, snapshot: str) -> None:
        proxmox.rollback(self.pve, self._vm(node), snapshot, start=False)
        with locked(self.path) as state:
            state["nodes"][node].update(copy.deepcopy(state["disks"][node][snapshot]))
            state["log"].append([node, f"pve: rollback to {snapshot}"])

    def stop_vm(self, node: str) -> None:
        proxmox.power(self.pve, self._vm(node), "stop")

    def start_vm(self, node: str) -> None:
        proxmox.power(self.pve, self._vm(node), "start")
        with locked(self.path) as state:
            n = state["nodes"][node]
            if n["installed"]:
                n.update(ready=True, api=True, cni=True, kubelet=n["version"])

    # --- the cluster -----------------------------------------------------------------------

    def shell(self, node: str) -> NodeShell:
        return NodeShell(self, node)

    def _node_facts(self, state: dict[str, Any], name: str, now: datetime) -> NodeFacts:
        n = state["nodes"][name]
        vm = self._vm(name)
        lock = self.pve.get(f"{proxmox.vm_path(vm)}/config").get("lock")
        up = vm.status == "running"
        if state["polls"].get(name):
            state["polls"][name] -= 1
            if not state["polls"][name]:
                n["ready"] = True
        ips = {k: v["ip"] for k, v in state["nodes"].items()}
        members = tuple(Member(f"{ips[m]}:19001", role) for m, role in n["members"])
        snap = (
            SnapFacts(n["channel"], n["revision"], n["version"], n["held"], n["revision"])
            if up
            else None
        )
        certs = tuple(
            CertFacts(name, f.name, f.path, not_after=now + timedelta(days=300), subject="CN=x")
            for f in CERT_FILES
        )
        return NodeFacts(
            name, n["ip"], vm=VmState(vm.status, vm.node, str(lock) if lock else None), ssh=up,
            ssh_error=None if up else "no route to host", snap=snap,
            ready=n["ready"] and up, kubelet_version=n["kubelet"] if up else None,
            unschedulable=n["unschedulable"], cordoned_by=n["cordoned_by"],
            members=members if up and n["installed"] else None, api=n["api"] and up,
            cni_ready=n["cni"] and up, reboot_required=False, certs=certs if up else (),
            snapshots=read_vm(self.pve, vm, name),
        )  # fmt: skip

    def facts(self) -> ClusterFacts:
        now = datetime.now(UTC)
        with locked(self.path) as state:
            nodes = tuple(self._node_facts(state, name, now) for name in NODES)
            disruption = tuple(_disruption(name, v["pods"], state["pdb_blocks"])
                               for name, v in state["nodes"].items())  # fmt: skip
        store = self.pve.get("nodes/pve1/storage/local-lvm/status")
        rooms = tuple(
            StorageRoom(host, "local-lvm", int(store["avail"]), int(store["total"]))
            for host in sorted({h for _i, _v, h in NODES.values()})
        )
        first = next(iter(NODES))
        return ClusterFacts(
            ENV, now, nodes, disruption, leader=first, endpoint_node=first,
            newest_backup=now - timedelta(minutes=5), storage=rooms,
        )  # fmt: skip

    def cordon(self, node: str, owner: str) -> None:
        with locked(self.path) as state:
            n = state["nodes"][node]
            if n["unschedulable"] and n["cordoned_by"] != owner:
                raise RuntimeError(f"{node} is cordoned by {n['cordoned_by']}")
            n.update(unschedulable=True, cordoned_by=owner)
            state["log"].append([node, f"kube: cordon ({owner})"])

    def uncordon(self, node: str, owner: str) -> bool:
        with locked(self.path) as state:
            n = state["nodes"][node]
            if n["cordoned_by"] != owner:
                return False
            n.update(unschedulable=False, cordoned_by=None)
            state["log"].append([node, "kube: uncordon"])
            return True

    def evict(self, node: str) -> tuple[Blocker, ...]:
        with locked(self.path) as state:
            blockers = []
            for pod in list(state["nodes"][node]["pods"]):
                pdb = state["pdb_blocks"].get(pod) or state["late_pdb_blocks"].get(pod)
                if pdb:
                    blockers.append(_blocker(pod, pdb))
                    continue
                state["nodes"][node]["pods"].remove(pod)
                state["evictions"].append(pod)
            return tuple(blockers)

    def evictable(self, node: str) -> tuple[str, ...]:
        with locked(self.path) as state:
            return tuple(state["nodes"][node]["pods"])

    def dns(self) -> str | None:
        with locked(self.path) as state:
            return None if state["dns"] else "kubernetes.default does not resolve"

    def ingress(self) -> str | None:
        with locked(self.path) as state:
            return None if state["ingress"] else "no answer through the LB IP"


def _disruption(node: str, pods: list[str], blocks: dict[str, str]) -> Disruption:
    evictable = tuple(p for p in pods if p not in blocks)
    return Disruption(node, evictable, tuple(_blocker(p, blocks[p]) for p in pods if p in blocks))


def _blocker(pod: str, pdb: str) -> Blocker:
    # The text of the API's 429 for an eviction a PDB refuses, as `kubectl drain` logs show it
    # (tests/edges/test_kube_eviction.py meets the real one from the kube-apiserver).
    ns, name = pod.split("/")
    return Blocker(
        ns, name, pdb, "Cannot evict pod as it would violate the pod's disruption budget."
    )


def connect(url: str, cafile: str) -> proxmox.Pve:
    host, port = url.split("//", 1)[1].split(":")
    api = ProxmoxAPI(
        host, port=int(port), user="root@pam", password="secret", verify_ssl=cafile, service="PVE"
    )
    return proxmox.Pve(api, url, "PVE_TOKEN_ID", sleep=lambda s: None)


def seed_pve(pve: Any) -> None:
    """The node VMs in a LabPve, running, on the shared LVM-thin storage, guest agent on."""
    pve.storages["local-lvm"].update(type="lvmthin", avail=1024 * GIB, total=2048 * GIB)
    for name, (_ip, vmid, host) in NODES.items():
        pve.add_vm(
            vmid, name, node=host,
            config={"scsi0": f"local-lvm:vm-{vmid}-disk-0,size=8G", "memory": 2048, "agent": "1"},
        )  # fmt: skip
        vm = pve.vm(vmid)
        vm.status = vm.qmpstatus = "running"


@dataclass
class Run:
    """How one `invoke upgrade` of the world is run (what tasks.py does, on the world)."""

    world: World
    build: Path
    clock: Any = None  # a FakeClock, or None for the system clock
    say: Any = None
    boundary: Any = None
    break_lock: bool = False
    wait_lock_s: float = 0
    gate_timeout_s: float = 60

    def __call__(self) -> Any:
        from rich.console import Console

        from mk8s.day2 import preflight, upgrade_run
        from mk8s.day2.operation import Options
        from mk8s.day2.upgrade_flow import (
            Settings,
            build_actions,
            old_channels,
            run_id,
            snapshot_of,
        )
        from mk8s.day2.upgrade_plan import UpgradeInputs, plan_upgrade

        env = load_environment(ENV)
        facts = self.world.facts()
        inputs = UpgradeInputs(
            now=facts.taken_at, api_use=(), resuming=upgrade_run.resuming(self.build)
        )
        plan = plan_upgrade(env, facts, inputs)
        settings = Settings(
            ENV, TARGET, snapshot_of(plan), old_channels(plan), run_id(plan),
            gate_timeout_s=self.gate_timeout_s, conformance_timeout_s=20, settle_s=5,
            interval_s=2,
        )  # fmt: skip
        policy = preflight.Policy(rpo_minutes=env.slo.rpo_minutes)

        def gates(f: ClusterFacts) -> Any:
            return preflight.gates(f, preflight.CLUSTER, policy)

        say = self.say or (lambda line: None)

        def replan() -> str:
            fresh = UpgradeInputs(now=facts.taken_at, api_use=())
            return plan_upgrade(env, self.world.facts(), fresh).fingerprint()

        actions = build_actions(
            plan, self.world, settings, gates, clock=self.clock, say=say, replan=replan
        )
        quiet = Console(file=(self.build / "out.txt").open("a"), width=200)
        return upgrade_run.run_upgrade(
            plan, actions, self.build,
            Options(break_lock=self.break_lock, wait_lock_s=self.wait_lock_s),
            out=quiet, clock=self.clock, boundary=self.boundary,
        )  # fmt: skip


def main(argv: list[str]) -> int:
    from mk8s.errors import UserError

    p = argparse.ArgumentParser()
    p.add_argument("state", type=Path)
    p.add_argument("build", type=Path)
    p.add_argument("--pve", nargs=2, required=True)
    p.add_argument("--kill-at", default="")
    p.add_argument("--pause-at", default="")
    p.add_argument("--break-lock", action="store_true")
    p.add_argument("--wait-lock", type=float, default=0)
    args = p.parse_args(argv)
    seen: list[str] = []

    def boundary(label: str) -> None:
        seen.append(label)
        if label == args.kill_at:
            os._exit(137)
        if label == args.pause_at:
            (args.build / "paused").touch()
            while not (args.build / "continue").exists():
                time.sleep(0.05)

    from mk8s.day2.wait import FakeClock

    world = World(args.state, connect(*args.pve))
    run = Run(world, args.build, clock=FakeClock(time.time()), boundary=boundary,
              break_lock=args.break_lock, wait_lock_s=args.wait_lock)  # fmt: skip
    try:
        outcome = run()
    except UserError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return exc.exit_code
    print(json.dumps({"boundaries": seen, "ran": outcome.ran, "adopted": outcome.adopted}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
