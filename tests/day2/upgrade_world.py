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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxmoxer import ProxmoxAPI

from mk8s.day2.facts import Blocker, ClusterFacts, NodeFacts, SnapFacts, VmState
from mk8s.day2.snapshot_facts import read_vm
from mk8s.day2.snapshots import VmSnapFacts
from mk8s.edges import proxmox
from mk8s.edges.microk8s import Member

REVISIONS = {"1.32/stable": ("7964", "v1.32.9"), "1.33/stable": ("8148", "v1.33.5")}
NODES = {"n1": ("127.0.0.1", 101), "n2": ("127.0.0.2", 102), "n3": ("127.0.0.3", 103)}
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
        for name, (ip, vmid) in NODES.items()
    }  # fmt: skip
    return {
        "nodes": nodes, "pdb_blocks": {}, "faults": {}, "log": [], "dns": True,
        "ingress": True, "disks": {}, "evictions": [], "polls": {},
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
        vmid = NODES[name][1]
        status = self.pve.get(f"nodes/pve1/qemu/{vmid}/status/current")
        return proxmox.VmFacts(vmid, name, "pve1", str(status.get("status")), False, ())

    def running(self, name: str) -> bool:
        return self._vm(name).status == "running"

    def vm_snapshots(self) -> dict[str, VmSnapFacts]:
        return {n: read_vm(self.pve, self._vm(n), n) for n in NODES}

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

    def _node_facts(self, state: dict[str, Any], name: str) -> NodeFacts:
        n = state["nodes"][name]
        vm = self._vm(name)
        up = vm.status == "running"
        if state["polls"].get(name):
            state["polls"][name] -= 1
            if not state["polls"][name]:
                n["ready"] = True
        ips = {k: v["ip"] for k, v in state["nodes"].items()}
        members = tuple(Member(f"{ips[m]}:19001", role) for m, role in n["members"])
        snap = SnapFacts(n["channel"], n["revision"], n["version"], n["held"]) if up else None
        return NodeFacts(
            name, n["ip"], vm=VmState(vm.status, "pve1"), ssh=up,
            ssh_error=None if up else "no route to host", snap=snap,
            ready=n["ready"] and up, kubelet_version=n["kubelet"] if up else None,
            unschedulable=n["unschedulable"], cordoned_by=n["cordoned_by"],
            members=members if up and n["installed"] else None, api=n["api"] and up,
            cni_ready=n["cni"] and up,
        )  # fmt: skip

    def facts(self) -> ClusterFacts:
        with locked(self.path) as state:
            nodes = tuple(self._node_facts(state, name) for name in NODES)
        return ClusterFacts("lab", datetime.now(UTC), nodes, leader="n1", endpoint_node="n1")

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
                pdb = state["pdb_blocks"].get(pod)
                if pdb:
                    ns, name = pod.split("/")
                    msg = "Cannot evict pod as it would violate the pod's disruption budget."
                    blockers.append(Blocker(ns, name, pdb, msg))
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


def connect(url: str, cafile: str) -> proxmox.Pve:
    host, port = url.split("//", 1)[1].split(":")
    api = ProxmoxAPI(
        host, port=int(port), user="root@pam", password="secret", verify_ssl=cafile, service="PVE"
    )
    return proxmox.Pve(api, url, "PVE_TOKEN_ID", sleep=lambda s: None)


def seed_pve(pve: Any) -> None:
    """The three node VMs in a LabPve, running, on LVM-thin, guest agent on."""
    for name, (_ip, vmid) in NODES.items():
        pve.add_vm(
            vmid, name, node="pve1",
            config={"scsi0": f"local-lvm:vm-{vmid}-disk-0,size=8G", "memory": 2048, "agent": "1"},
        )  # fmt: skip
        vm = pve.vm(vmid)
        vm.status = vm.qmpstatus = "running"


def main(argv: list[str]) -> int:
    from rich.console import Console

    from mk8s.day2.operation import Options
    from mk8s.day2.upgrade_flow import Settings, build_actions, old_channels, snapshot_name
    from mk8s.day2.upgrade_run import plan_for_run, run_upgrade
    from mk8s.day2.upgrade_standins import plan_steps, preflight
    from mk8s.day2.wait import FakeClock
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
    world = World(args.state, connect(*args.pve))
    target = "1.33/stable"
    seen: list[str] = []

    def boundary(label: str) -> None:
        seen.append(label)
        if label == args.kill_at:
            os._exit(137)
        if label == args.pause_at:
            (args.build / "paused").touch()
            while not (args.build / "continue").exists():
                time.sleep(0.05)

    def fresh() -> Any:
        facts = world.facts()
        name = f"mk8s-up-1-33-{int(time.time())}"
        return plan_steps("lab", facts, target, name)

    plan = plan_for_run(args.build, target, fresh)
    settings = Settings(
        "lab", target, snapshot_name(plan, target), old_channels(plan), gate_timeout_s=60,
        conformance_timeout_s=30, settle_s=1, interval_s=1,
    )  # fmt: skip
    err = Console(file=sys.stderr, width=200)
    actions = build_actions(plan, world, settings, preflight, clock=FakeClock(time.time()),
                            say=lambda line: err.print(line, markup=False))  # fmt: skip
    try:
        outcome = run_upgrade(
            plan, actions, args.build,
            Options(break_lock=args.break_lock, wait_lock_s=args.wait_lock),
            out=err, boundary=boundary,
        )  # fmt: skip
    except UserError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return exc.exit_code
    assert outcome is not None
    print(json.dumps({"boundaries": seen, "ran": outcome.ran, "adopted": outcome.adopted}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
