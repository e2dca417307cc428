"""The MicroK8s model's state: one JSON file shared by every node of a test rig.

A claim about the real system, read from its sources (cited beside each behaviour):
MK = canonical/microk8s@1.33, CA = canonical/microk8s-cluster-agent@1.33,
GD = canonical/go-dqlite@v2.0.0 (the roles code of v2.0.1, which MicroK8s 1.33's k8s-dqlite uses),
OUT = shared/reference/microk8s-outputs.md (real pastes).

State, under an exclusive flock (nodes run commands in parallel):
- nodes: ip, hostname, installed/held/channel, `stopped` (MK var/lock/stopped.lock), `running`
  (kubelite up), `powered`, `worker` (MK var/lock/clustered.lock), `join_lock`
  (MK var/lock/join-in-progress), the dqlite cluster it belongs to, its add-node tokens
  (CA credentials/cluster-tokens.txt is per node), pending launch-configuration add-ons, faults;
- clusters: dqlite members {address, node, role}, enabled add-ons, Kubernetes nodes.

The CLI verbs live in tests/support/microk8s/cli.py; tests drive the rig through rig.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DQLITE_PORT = 19001
LOOPBACK_MEMBER = f"127.0.0.1:{DQLITE_PORT}"
# GD app/roles.go minVoters and app/options.go defaultOptions (Voters 3, StandBys 3).
MIN_VOTERS = 3
VOTERS = 3
STANDBYS = 3

State = dict[str, Any]


def root() -> Path:
    return Path(os.environ.get("MK8S_MODEL_STATE", "/nonexistent"))


@contextlib.contextmanager
def locked(where: Path | None = None) -> Iterator[State]:
    """Read-modify-write the rig's state; role adjustments due by now are applied first."""
    base = where or root()
    base.mkdir(parents=True, exist_ok=True)
    with (base / "state.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = base / "state.json"
        state: State = json.loads(path.read_text()) if path.exists() else empty()
        apply_due(state)
        try:
            yield state
        finally:  # a command failing half-way (a dropped join) still changes the state
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
            tmp.replace(path)


def empty() -> State:
    return {
        "nodes": {},
        "clusters": {},
        "version": "1.33",
        # GD app/options.go RolesAdjustmentFrequency is 30 s; tests shorten it.
        "promote_delay_s": 0.0,
        # MK scripts/wrappers/join.py update_dqlite: sleep(10) then polls up to 10 x 5 s.
        "join_duration_s": 0.0,
        # CA pkg/k8sinit: the launch loop applies add-ons after start, in 5 s ticks.
        "launch_addons_delay_s": 0.0,
        "delay_s": 0.0,  # cloud-init --wait and status --wait-ready, for the benchmark
        # The store, channel -> {revision, version}: what `snap info` lists and a refresh gets.
        "store": dict(DEFAULT_STORE),
        # How long kubelite is down after `snapctl restart` (refresh, refresh-certs).
        "restart_s": 0.0,
        # How long a rebooted node's kubelite stays down (the VM boots, snapd starts it).
        "boot_s": 0.0,
    }


# Revisions the suite has always used per minor (tests/support/microk8s/cli.py before day 2).
DEFAULT_STORE = {
    "1.28/stable": {"revision": "6089", "version": "v1.28.5"},
    "1.29/stable": {"revision": "6364", "version": "v1.29.5"},
    "1.33/stable": {"revision": "8205", "version": "v1.33.5"},
}


def kubelite_up(node: dict[str, Any]) -> bool:
    """kubelite runs: installed, started, not restarting, not broken by a refresh."""
    return bool(
        node["installed"]
        and node["running"]
        and not node["stopped"]
        and time.time() >= float(node.get("restart_until") or 0)
    )


def event(node: str, what: str, **detail: Any) -> None:
    """Something a node did besides answering a command (service restarts, refreshes,
    reverts), appended to events.jsonl so tests assert on it."""
    with events_path().open("a") as f:
        f.write(json.dumps({"node": node, "event": what, "at": time.time(), **detail}) + "\n")


def events_path(where: Path | None = None) -> Path:
    return (where or root()) / "events.jsonl"


def version_at_least(state: State, minor: int) -> bool:
    return int(str(state["version"]).split(".")[1]) >= minor


# --- dqlite membership -----------------------------------------------------------------------


def new_cluster(state: State, name: str) -> str:
    """A fresh dqlite: one voter at 127.0.0.1:19001 (MK microk8s-resources/actions/common/
    utils.sh init_cluster writes `Address: 127.0.0.1:19001`; OUT 1.29.2 single node)."""
    cid = uuid.uuid4().hex[:12]
    state["clusters"][cid] = {
        "members": [{"address": LOOPBACK_MEMBER, "node": name, "role": "voter"}],
        "addons": {"ha-cluster": []},  # MK: ha-cluster is on from install (OUT 1.29.2)
        "k8s_nodes": [name],
        "last_adjust": time.time(),
    }
    state["nodes"][name]["cluster"] = cid
    return cid


def cluster_of(state: State, name: str) -> dict[str, Any]:
    cluster: dict[str, Any] = state["clusters"][state["nodes"][name]["cluster"]]
    return cluster


def member_address(state: State, name: str) -> str:
    """How the other members list this node: by IP, or by hostname when it advertises one
    (MK join.py update_dqlite `host`: "the hostname others see of this node")."""
    node = state["nodes"][name]
    host = node["hostname"] if node["faults"].get("advertise_hostname") else node["ip"]
    return f"{host}:{DQLITE_PORT}"


def rebind_lone_loopback(state: State, name: str) -> None:
    """CA pkg/snap/util/dqlite.go MaybeUpdateDqliteBindAddress: the node receiving a join
    rebinds only while it is the lone 127.0.0.1 member."""
    members = cluster_of(state, name)["members"]
    if len(members) == 1 and members[0]["address"].startswith("127.0.0.1:"):
        members[0]["address"] = member_address(state, name)


def add_member(state: State, cid: str, name: str) -> None:
    """GD app/app.go: a joining node is added as a spare; the leader promotes it later."""
    cluster = state["clusters"][cid]
    cluster["members"].append(
        {"address": member_address(state, name), "node": name, "role": "spare"}
    )
    if name not in cluster["k8s_nodes"]:
        cluster["k8s_nodes"].append(name)
    cluster["last_adjust"] = time.time()


def drop_member(state: State, cid: str, address: str) -> bool:
    cluster = state["clusters"][cid]
    before = len(cluster["members"])
    cluster["members"] = [m for m in cluster["members"] if m["address"] != address]
    return len(cluster["members"]) < before


def online(state: State, member: dict[str, Any]) -> bool:
    node = state["nodes"].get(member["node"])
    return bool(node and node["installed"] and node["powered"] and not node["stopped"])


# --- go-dqlite roles --------------------------------------------------------------------------


def adjust_once(state: State, cluster: dict[str, Any]) -> bool:
    """One run of the leader's roles adjustment (GD app/roles.go RolesChanges.Adjust), without
    failure domains (k8s-dqlite sets none; microk8s#4024). Returns whether a role changed."""
    members = cluster["members"]
    if len(members) <= 1:
        return False

    def pick(role: str, up: bool) -> list[dict[str, Any]]:
        return [m for m in members if m["role"] == role and online(state, m) == up]

    voters_up = pick("voter", True)
    leader = voters_up[0] if voters_up else None
    if len(members) < MIN_VOTERS:  # "cluster too small, make sure we have just one voter"
        extra = [m for m in members if m["role"] == "voter" and m is not leader]
        if extra and leader is not None:
            extra[0]["role"] = "spare"
            return True
        return False
    standbys_up = pick("standby", True)
    if len(voters_up) < VOTERS:
        candidates = standbys_up + pick("spare", True)
        if candidates:
            candidates[0]["role"] = "voter"
            return True
        return False
    if len(voters_up) > VOTERS:
        demote = [m for m in voters_up if m is not leader]
        demote[-1]["role"] = "spare"
        return True
    if offline_voters := pick("voter", False):  # a powered-off voter stays listed until here
        offline_voters[0]["role"] = "spare"
        return True
    if len(standbys_up) < STANDBYS and (spares := pick("spare", True)):
        spares[0]["role"] = "standby"
        return True
    if len(standbys_up) > STANDBYS:
        standbys_up[-1]["role"] = "spare"
        return True
    return False


def apply_due(state: State) -> None:
    """Role adjustments every `promote_delay_s` (GD RolesAdjustmentFrequency), one change per
    run, and launch-configuration add-ons whose time has come."""
    now = time.time()
    delay = float(state.get("promote_delay_s") or 0)
    for cluster in state["clusters"].values():
        for _ in range(32):
            if delay and now - cluster["last_adjust"] < delay:
                break
            cluster["last_adjust"] = cluster["last_adjust"] + delay if delay else now
            if not adjust_once(state, cluster):
                break
    for name, node in state["nodes"].items():
        due = node.get("launch_addons_at")
        if due is not None and now >= due and node.get("cluster"):
            cluster_of(state, name)["addons"].update(node.pop("launch_addons"))
            node.pop("launch_addons_at")


def journal_path(where: Path | None = None) -> Path:
    return (where or root()) / "journal.jsonl"


def new_boot_id(where: Path, name: str) -> None:
    """The kernel draws /proc/sys/kernel/random/boot_id once per boot: a random UUID made on
    first read into storage that starts zeroed (linux drivers/char/random.c proc_do_uuid, read
    in a 3.x copy)."""
    (where / name).mkdir(parents=True, exist_ok=True)
    (where / name / "boot_id").write_text(str(uuid.uuid4()) + "\n")


def reboot(state: State, name: str, where: Path | None = None) -> None:
    """`reboot`: /run is a tmpfs, so /var/run/reboot-required is gone after boot; MicroK8s'
    services come back with the snap unless `microk8s stop` disabled them (stopped.lock stays),
    after `boot_s`."""
    node = state["nodes"][name]
    run = (where or root()) / name / "var" / "run"
    for f in ("reboot-required", "reboot-required.pkgs"):
        (run / f).unlink(missing_ok=True)
    node["restart_until"] = time.time() + float(state.get("boot_s") or 0)
    node["running"] = node["installed"] and not node.get("kubelite_broken")
    node["boots"] = int(node.get("boots") or 0) + 1
    new_boot_id(where or root(), name)
    event(name, "reboot")
