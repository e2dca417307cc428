"""Test-side handle on the MicroK8s model: seed nodes, shape the cluster, inject faults, read
the command log. The nodes themselves run bin/ over real sshd (tests/support/sshd.py).

    rig = Rig(tmp_path / "mk8s-state")
    cluster = sshd_factory(names, path_dirs=[BIN, FS], env=rig.session_env())
    rig.seed({"n1": "127.0.5.10", ...}, launch_configs)

FS (optional on the PATH) maps /var/snap/microk8s/current/ and /var/run/ for `cat` and `grep` to
each node's directory, so `invoke certs` and the reboot-required check read the model's files.

Day 2: `set_store({"1.34/stable": ("8450", "v1.34.1")})` is what `snap info` lists and a refresh
gets; nodes carry channel, revision, version and held (`node(name)`); faults refresh_fails=TEXT,
unhealthy_after_refresh, refresh_conflict; `configure(restart_s=...)` keeps kubelite down after
each restart and `boot_s` after `reboot` (the SSH session drops); `reboot_required(name)`;
`snap remove microk8s` leaves the member listed until `remove-node` (the rebuild-node path);
`events()` logs refreshes, reverts, removals, reboots, reissued certificates and service
restarts (assert e.g. that no voter was ever reverted).

Nodes in a real kube-apiserver (tests/support/microk8s/kubelets.py): `Kubelets(rig,
kube_apiserver.api_client(), prefix="t1-")`; call `.sync()` after each model change, or run it in
the background with `with kubelets.running(0.2): ...`. Ready follows kubelite (Unknown while it
is down or the VM is off, False with `kubelet_not_ready`), nodeInfo.kubeletVersion the snap
version, and a calico-node pod per node in kube-system is Ready with it; cordons are left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.microk8s import certs, cli, model

BIN = Path(__file__).resolve().parent / "bin"
FS = Path(__file__).resolve().parent / "fs"


class Rig:
    def __init__(self, root: Path) -> None:
        self.root = root

    def session_env(self) -> dict[str, str]:
        return {"MK8S_MODEL_STATE": str(self.root), "MK8S_MODEL_PYTHON": sys.executable}

    def _locked(self) -> Any:
        return model.locked(self.root)

    def configure(self, **settings: Any) -> None:
        """version ("1.28", "1.29", "1.33"), promote_delay_s, join_duration_s,
        launch_addons_delay_s, delay_s."""
        with self._locked() as state:
            unknown = set(settings) - set(model.empty())
            assert not unknown, f"unknown model settings: {unknown}"
            state.update(settings)

    def seed(
        self,
        nodes: Mapping[str, str],
        launch_configs: Mapping[str, str] | None = None,
        *,
        channel: str = "1.33/stable",
        held: bool = True,
        installed: bool = True,
    ) -> None:
        """The nodes as cloud-init leaves them: launch configuration written, MicroK8s
        installed (a lone 127.0.0.1 dqlite each) and held."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked() as state:
            for name, ip in nodes.items():
                d = self.root / name
                (d / "certs").mkdir(parents=True, exist_ok=True)
                if launch_configs is not None:
                    (d / "microk8s.yaml").write_text(launch_configs[name])
                (d / "machine-id").write_text(uuid.uuid4().hex + "\n")
                model.new_boot_id(self.root, name)
                (d / "certs" / "csr.conf.template").write_text(
                    "[ alt_names ]\nDNS.1 = kubernetes\nIP.1 = 127.0.0.1\n"
                    "IP.2 = 10.152.183.1\n#MOREIPS\n"
                )
                state["nodes"][name] = {
                    "ip": ip,
                    "hostname": name,
                    "installed": False,
                    "held": False,
                    "channel": "",
                    "running": False,
                    "stopped": False,
                    "powered": True,
                    "worker": False,
                    "join_lock": False,
                    "tokens": {},
                    "faults": {},
                    "cluster": None,
                }
                if installed:
                    cli.install(state, name, channel, self.root)
                    state["nodes"][name]["held"] = held

    def form(self, names: Sequence[str], addons: Mapping[str, list[str]] | None = None) -> None:
        """Shortcut to what a finished formation leaves (rebind, members, settled roles), for
        tests whose subject is not formation; the same model functions the join uses."""
        with self._locked() as state:
            first = names[0]
            cid = state["nodes"][first]["cluster"]
            model.rebind_lone_loopback(state, first)
            for name in names[1:]:
                old = state["nodes"][name]["cluster"]
                model.add_member(state, cid, name)
                state["nodes"][name]["cluster"] = cid
                state["clusters"].pop(old, None)
            cluster = state["clusters"][cid]
            for _ in range(64):
                if not model.adjust_once(state, cluster):
                    break
            cluster["addons"].update(addons or {})
            for name in names:
                state["nodes"][name].pop("launch_addons_at", None)

    def set_addons(self, addons: Mapping[str, list[str]]) -> None:
        """Exactly these add-ons on every cluster (a contract scenario's starting point)."""
        with self._locked() as state:
            for cluster in state["clusters"].values():
                cluster["addons"] = dict(addons)

    def set_roles(self, name: str, roles: Sequence[str]) -> None:
        """Force the roles of `name`'s cluster members, in order (a moment between two role
        adjustments); set promote_delay_s so the next adjustment does not undo it at once."""
        with self._locked() as state:
            for member, role in zip(model.cluster_of(state, name)["members"], roles, strict=True):
                member["role"] = role

    def fault(self, name: str, **faults: Any) -> None:
        """advertise_hostname, dqlite_query_fails, dqlite_slow_s, status_traceback (count),
        agent_unreachable, not_ha, hostname_unresolvable, empty_error, bind_address_missing,
        join_drop, kubelet_not_ready, cloud_init, refresh_fails=TEXT (configure hook error),
        unhealthy_after_refresh, refresh_conflict; on a joiner, one-shot before its next join:
        refresh_certs_of=NODE (fingerprint changes), expire_tokens_of=NODE."""
        with self._locked() as state:
            state["nodes"][name]["faults"].update(faults)

    def set_node(self, name: str, **values: Any) -> None:
        """stopped, running, worker, powered, other_ips, join_lock, ..."""
        with self._locked() as state:
            state["nodes"][name].update(values)

    def forget_k8s_node(self, name: str) -> None:
        """The Node object is gone (deleted, or its kubelet never registered); dqlite still
        lists the member."""
        with self._locked() as state:
            for cluster in state["clusters"].values():
                if name in cluster["k8s_nodes"]:
                    cluster["k8s_nodes"].remove(name)

    def power_off(self, name: str) -> None:
        self.set_node(name, powered=False)

    def rebuild(self, name: str, launch_config: str | None = None, channel: str = "1.33/stable"):  # type: ignore[no-untyped-def]
        """The VM is recreated on the same IP: a fresh install, unknown to its old cluster, whose
        members still list it (canonical/microk8s#2212, #3694)."""
        with self._locked() as state:
            ip = state["nodes"][name]["ip"]
        self.seed({name: ip}, {name: launch_config} if launch_config else None, channel=channel)

    def set_store(self, releases: Mapping[str, tuple[str, str]], *, replace: bool = False) -> None:
        """channel -> (revision, version) in the store (added to the default table unless
        `replace`)."""
        with self._locked() as state:
            table = {} if replace else state["store"]
            for channel, (revision, version) in releases.items():
                table[channel] = {"revision": revision, "version": version}
            state["store"] = table

    def reboot_required(
        self, name: str, required: bool = True, packages: Sequence[str] = ()
    ) -> None:
        """/var/run/reboot-required and .pkgs as Ubuntu's update-notifier leaves them."""
        run = self.root / name / "var" / "run"
        run.mkdir(parents=True, exist_ok=True)
        flag, pkgs = run / "reboot-required", run / "reboot-required.pkgs"
        if required:
            flag.write_text("*** System restart required ***\n")
            pkgs.write_text("".join(f"{p}\n" for p in packages))
        else:
            flag.unlink(missing_ok=True)
            pkgs.unlink(missing_ok=True)

    def events(self, node: str | None = None) -> list[dict[str, Any]]:
        path = model.events_path(self.root)
        if not path.exists():
            return []
        found = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [e for e in found if node is None or e["node"] == node]

    def event_names(self, node: str | None = None) -> list[tuple[str, str]]:
        return [(e["node"], e["event"]) for e in self.events(node)]

    def cert_path(self, name: str, cert: str = "server.crt") -> Path:
        return self.root / name / "certs" / cert

    def members(self, name: str) -> list[tuple[str, str]]:
        with self._locked() as state:
            return [(m["address"], m["role"]) for m in model.cluster_of(state, name)["members"]]

    def addons(self, name: str) -> set[str]:
        with self._locked() as state:
            return set(model.cluster_of(state, name)["addons"])

    def node(self, name: str) -> dict[str, Any]:
        with self._locked() as state:
            return dict(state["nodes"][name])

    def check(self, name: str) -> str:
        return certs.check(self.root, name)

    def run(self, name: str, command: str, *args: str) -> tuple[int, str, str]:
        """Run a verb on node `name` without SSH (facts for the pure decisions' tests); the
        suite's bootstrap tests go over real sshd instead."""
        env = {**os.environ, **self.session_env(), "SSHD_NODE": name}
        res = subprocess.run(
            [str(BIN / command), *args], env=env, capture_output=True, text=True, timeout=60
        )
        return res.returncode, res.stdout, res.stderr

    def journal(self) -> list[dict[str, Any]]:
        path = model.journal_path(self.root)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def mark(self) -> int:
        return len(self.journal())

    def commands_since(self, mark: int) -> list[list[str]]:
        return [e["argv"] for e in self.journal()[mark:]]
