"""fakepve as the lab's Proxmox: a cluster pve1..pve3 with a cloud-init template, served on a
fixed 127.0.0.x address for the inventory's endpoint.

fakepve fakes the PVE API only. Two things the bpg/proxmox provider and mk8s need come from
outside the API on a real PVE host, and `LabPve` adds them through fakepve's extension point
(subclassing `FakePve`, whose behaviour lives in overridable methods):

* Snippets: the provider uploads snippet files over SSH (`tee` into `<storage path>/snippets/`,
  provider source proxmox/ssh/client.go) because PVE's upload API refuses `snippets`. The
  fixture points the storage `path` at a temporary directory that a real local sshd writes to,
  and `_volumes` lists the files found there, as PVE lists a directory storage;
  `_content_delete` removes the file, as PVE does.
* Typed config: PVE answers `GET .../config` with integers for integer options (`cores: 4`);
  fakepve keeps form-encoded writes as the strings it received, which the provider cannot
  decode ("cannot unmarshal string into ... cores of type int64"). `_apply_config` converts
  written values to the types of PVE's own schema (shipped with fakepve) before storing them.
* Disk resize: `PUT .../resize` is one of fakepve's generic endpoints (accepted, no effect),
  so a clone would keep the template's disk size and every plan would want to grow it again.
  `_routes_lab` (fakepve registers every `_routes_*` method's routes) serves it as PVE does:
  a `qmresize` task that takes the config lock and sets the drive's new size.
* Trailing slash: the provider deletes a VM with `DELETE /nodes/N/qemu/ID/?purge=1...`
  (note the slash: `ExpandPath("")`). PVE's router ignores it; fakepve's route for the VM has
  no slash, so the request falls through to the generic schema endpoint, which answers with a
  task and deletes nothing, and `terraform destroy` waits for ever. `_register_stateful` also
  serves the slashed path with fakepve's own destroy handler.
* Slow tasks: `slow_tasks` (task type -> PVE seconds, e.g. {"qmclone": 30}) makes those
  tasks run that long before their work, so clients must poll them; with a non-zero
  `time_scale` they really take time. (fakepve has per-VM start/stop durations, but none for
  clones of VMs that do not exist yet.)
* Failing tasks: fakepve's error catalogue has no error that ends a *clone* task with
  `TASK ERROR` (all clone errors are synchronous HTTP errors). `fail_tasks(ttype, message,
  times)` makes the next tasks of that type end with `TASK ERROR: message` through fakepve's
  own task runner; a failed clone is cleaned up as PVE does (the half-made VM disappears).
* The guest agent: a real guest runs cloud-init and qemu-guest-agent. `_agent_call` gives a
  running VM with `agent: 1` an agent that reports the address of its `ipconfig0`, as the
  booted guest would. The provider waits until the agent reports a *global unicast* address
  (proxmox/nodes/vms/vms.go, WaitForNetworkInterfacesFromVMAgent) and the lab's node
  addresses are loopback ones (127.0.x.y, so that a local sshd can answer for them); the
  guest therefore also reports an IPv6 SLAAC address from the documentation prefix 2001:db8::/64,
  as a guest on an IPv6-enabled VLAN would.
* Snapshots by storage: fakepve takes and rolls back snapshots on any snapshot-capable
  storage alike. PVE asks each disk's storage first (proxmox/qemu-server@e6352be6:
  src/PVE/QemuConfig.pm `__snapshot_rollback_vol_possible` calls
  PVE::Storage::volume_rollback_is_possible): ZFS refuses any snapshot but the newest
  (proxmox/pve-storage@0c56bad: src/PVE/Storage/ZFSPoolPlugin.pm `volume_rollback_is_possible`,
  "can't rollback, 'S' is not most recent snapshot on 'VOLID'"), LVM-thin allows any
  (LvmThinPlugin.pm: `return 1`), Ceph/RBD and directory qcow2 inherit Plugin.pm's `return 1`
  (unless the storage keeps snapshots as a volume chain). Raw disks on a directory storage
  cannot be snapshotted at all (Plugin.pm `volume_has_feature`: snapshot only for qcow2), which
  fakepve already refuses. A rollback to a snapshot with RAM (`vmstate`) starts the VM again
  (proxmox/pve-guest-common@4a8f6cb: src/PVE/AbstractConfig.pm `snapshot_rollback` calls
  `__snapshot_rollback_vm_start` when the snapshot has a vmstate). `GET .../feature` answers
  as PVE's `vm_feature` (qemu-server src/PVE/API2/Qemu.pm): `hasFeature` 1/0 from
  `has_feature` (QemuConfig.pm: every non-CD-ROM disk must have it) and the `nodes` list.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fakepve import FakePve, PveError, TaskError, settle
from fakepve import schema as pve_schema
from fakepve.certs import make_cert
from fakepve.qemu import drives_of, volume_ref

TEMPLATE_VMID = 9000
# The config lock each snapshot task holds while it runs (PVE's `lock` values).
TASK_LOCKS = {
    "qmsnapshot": "snapshot",
    "qmrollback": "rollback",
    "qmdelsnapshot": "snapshot-delete",
}
VMID_IN_PATH = re.compile(r"/qemu/(\d+)/snapshot(?:/([^/]+)/rollback)?$")
TEMPLATE_NAME = "ubuntu-2204-cloudinit"
START_TIMEOUT = 30


class LabPve(FakePve):  # type: ignore[misc]
    """A FakePve whose directory storages list real snippet files and whose guests boot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slow_tasks: dict[str, float] = {}
        self.failing_tasks: dict[str, list[str]] = {}
        self._rollback_to: dict[int, str] = {}
        self._with_ram: dict[int, bool] = {}

    def fail_tasks(self, ttype: str, message: str, times: int = 1) -> None:
        """The next `times` tasks of type `ttype` end with `TASK ERROR: message`."""
        self.failing_tasks.setdefault(ttype, []).extend([message] * times)

    async def task(self, node: str, ttype: str, tid: Any, user: str, body: Any, **kw: Any) -> Any:
        secs = self.slow_tasks.get(ttype, 0)
        queue = self.failing_tasks.get(ttype)
        failure = queue.pop(0) if queue else None
        new_vm: Any = kw.get("vm")

        snapname = self._rollback_to.pop(new_vm.vmid, None) if ttype == "qmrollback" else None
        with_ram = self._with_ram.pop(new_vm.vmid, False) if ttype == "qmsnapshot" else False

        async def lab_body() -> Any:
            await self._locked_pause(new_vm, TASK_LOCKS.get(ttype), secs)
            if failure is not None:
                if ttype == "qmclone" and new_vm in self.vms:
                    self.vms.remove(new_vm)  # PVE removes the half-made clone
                raise TaskError(failure)
            if ttype == "qmsnapshot":
                return await self._frozen_snapshot(new_vm, with_ram, body)
            if snapname is None:
                return await body()
            snap = new_vm.snapshots.get(snapname)
            if snap is not None:
                self._rollback_possible(new_vm, snapname, snap)
            result = await body()
            if snap is not None and snap.get("vmstate") and new_vm.status != "running":
                new_vm.status = new_vm.qmpstatus = "running"  # RAM snapshot: the VM runs again
            return result

        return await super().task(node, ttype, tid, user, lab_body, **kw)

    async def _locked_pause(self, vm: Any, lock: str | None, secs: float) -> None:
        """The task's duration, under PVE's config lock for snapshot tasks."""
        if lock is None or vm is None:
            await self.pause(secs)
            return
        if vm.lock:
            raise TaskError(f"VM is locked ({vm.lock})")  # AbstractConfig.pm check_lock
        self._qm_lock(vm, lock)
        try:
            await self.pause(secs)
        finally:
            self._qm_lock(vm, None)  # fakepve's body takes it again for its instant part

    async def _frozen_snapshot(self, vm: Any, with_ram: bool, body: Any) -> Any:
        """QemuConfig.pm: freeze only when running, disk-only, agent enabled with freeze-fs."""
        note = None
        freeze = False
        if vm.status == "running" and not with_ram:
            if not _agent_enabled(vm.config) or not _freeze_fs(vm.config):
                note = "skipping guest filesystem freeze - disabled in VM options"
            else:
                if vm.agent is None:  # the booted guest's agent (see _agent_call)
                    vm.agent = {"interfaces": _interfaces(vm.config)}
                freeze = True
        if freeze:
            vm.agent_requests.append(("fsfreeze-freeze", {}))
            vm.agent_frozen = True
        try:
            result = await body()
        finally:
            if freeze:
                vm.agent_requests.append(("fsfreeze-thaw", {}))
                vm.agent_frozen = False
        return result if result is not None else note

    async def _qm_snapshot(self, v: dict[str, Any], user: str) -> Any:
        vm = self.find(v["node"], v["vmid"])
        self._with_ram[vm.vmid] = str(v.get("vmstate") or "0") in ("1", "true")
        return await super()._qm_snapshot(v, user)

    def snapshot_requests(self) -> list[tuple[int, str]]:
        """(vmid, snapname) of every snapshot create the API received, in order."""
        out = []
        for method, path, body in self.requests:
            found = VMID_IN_PATH.search(path)
            if method == "POST" and found and not found.group(2):
                out.append((int(found.group(1)), _form(body).get("snapname", "")))
        return out

    def rollback_requests(self) -> list[tuple[int, str]]:
        """(vmid, snapname) of every rollback the API received, in order."""
        out = []
        for method, path, _body in self.requests:
            found = VMID_IN_PATH.search(path)
            if method == "POST" and found and found.group(2):
                out.append((int(found.group(1)), found.group(2)))
        return out

    def _volumes(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = super()._volumes(name)
        store = self.storages[name]
        path = store.get("path")
        if path and "snippets" in str(store.get("content", "")).split(","):
            for file in sorted((Path(path) / "snippets").glob("*")):
                stat = file.stat()
                out[f"snippets/{file.name}"] = {
                    "content": "snippets",
                    "format": "snippet",
                    "size": stat.st_size,
                    "ctime": int(stat.st_mtime),
                }
        return out

    def _register_stateful(self, router: Any, prefixes: Any) -> None:
        super()._register_stateful(router, prefixes)
        template = "/nodes/{node}/qemu/{vmid}"
        for prefix in prefixes:
            router.add_route(
                "DELETE",
                prefix + template + "/",
                self._stateful_handler(template, self._qm_destroy),
            )

    def _routes_lab(self) -> list[tuple[str, str, Any]]:
        return [
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._lab_resize),
            ("GET", "/nodes/{node}/qemu/{vmid}/feature", self._lab_feature),
        ]

    async def _qm_rollback(self, v: dict[str, Any], user: str) -> Any:
        vm = self.find(v["node"], v["vmid"])
        self._rollback_to[vm.vmid] = str(v["snapname"])
        return await super()._qm_rollback(v, user)

    def _rollback_possible(self, vm: Any, name: str, snap: dict[str, Any]) -> None:
        """ZFS rolls back only to the newest snapshot of each volume; the others to any."""
        later = list(vm.snapshots)[list(vm.snapshots).index(name) + 1 :]
        for _key, volume, _props in drives_of(snap, skip_cdrom=True):
            sid, _name = volume_ref(volume)
            if later and self.storages.get(sid or "", {}).get("type") == "zfspool":
                raise TaskError(
                    f"can't rollback, '{name}' is not most recent snapshot on '{volume}'"
                )

    async def _lab_feature(self, v: dict[str, Any], user: str) -> Any:
        vm = self.find(v["node"], v["vmid"])
        self.require(user, f"/vms/{vm.vmid}", "VM.Audit")
        feature, snapname = v.get("feature"), v.get("snapname")
        if feature != "snapshot":  # clone/copy: not modelled here, so not answered
            raise PveError(501, f"feature '{feature}': not modelled by the lab")
        config = vm.config
        if snapname:
            if snapname not in vm.snapshots:
                raise PveError(500, f"snapshot '{snapname}' does not exist")
            config = vm.snapshots[snapname]
        has = self._qm_can_snapshot(config) and (not snapname or self._snap_of_snap(config))
        return {"hasFeature": 1 if has else 0, "nodes": self._shared_nodes(vm, config)}

    def _snap_of_snap(self, config: dict[str, Any]) -> bool:
        """volume_has_feature('snapshot', snapname=...): ZFS and RBD `snap => 1`, LVM-thin only
        `current` (pve-storage LvmThinPlugin.pm, ZFSPoolPlugin.pm, RBDPlugin.pm)."""
        for _key, volume, _props in drives_of(config, skip_cdrom=True):
            sid, _name = volume_ref(volume)
            if self.storages.get(sid or "", {}).get("type") == "lvmthin":
                return False
        return True

    def _shared_nodes(self, vm: Any, config: dict[str, Any]) -> list[str]:
        """Nodes that see every disk: all online nodes when each disk's storage is shared,
        else the VM's own node (a simplification of qemu-server's `shared_nodes`)."""
        stores = [volume_ref(vol)[0] for _k, vol, _p in drives_of(config, skip_cdrom=True)]
        if all(self.storages.get(s or "", {}).get("shared") for s in stores):
            return sorted(n for n, info in self.nodes.items() if info.get("online", True))
        return [vm.node]

    async def _lab_resize(self, v: dict[str, Any], user: str) -> Any:
        vm = self.find(v["node"], v["vmid"])
        disk, size = str(v["disk"]), str(v["size"])
        if disk not in vm.config:
            raise PveError(500, f"disk '{disk}' does not exist")
        self._check_lock(vm)
        props = str(vm.config[disk]).split(",")
        current = next((_bytes(p[5:]) for p in props if p.startswith("size=")), 0)
        wanted = current + _bytes(size[1:]) if size.startswith("+") else _bytes(size)
        if wanted < current:
            raise PveError(500, "shrinking disks is not supported")

        async def body() -> None:
            rest = [p for p in props if not p.startswith("size=")]
            vm.config[disk] = ",".join([*rest, f"size={_size_text(wanted)}"])

        return await self.task(vm.node, "qmresize", vm.vmid, user, body, vm=vm)

    async def _apply_config(self, vm: Any, user: str, p: dict[str, Any]) -> Any:
        return await super()._apply_config(vm, user, _typed_config(p))

    async def _content_delete(self, v: dict[str, Any], user: str) -> Any:
        result = await super()._content_delete(v, user)
        sid, _, volname = str(v["volume"]).rpartition(":")
        path = self.storages.get(sid or v["storage"], {}).get("path")
        if path and volname.startswith("snippets/"):
            (Path(path) / volname).unlink(missing_ok=True)
        return result

    async def _agent_call(self, match: Any, values: dict[str, Any]) -> Any:
        vm = self.find(values["node"], values["vmid"])
        if vm.agent is None and vm.status == "running" and _agent_enabled(vm.config):
            vm.agent = {"interfaces": _interfaces(vm.config)}
        return await super()._agent_call(match, values)


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _bytes(text: str) -> int:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip(), re.I)
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()]) if found else 0


def _size_text(size: int) -> str:
    """PVE's spelling of a size: the largest unit that divides it."""
    for unit in "TGMK":
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def _config_properties() -> dict[str, Any]:
    match = pve_schema.load().match("/nodes/pve1/qemu/100/config")
    props: dict[str, Any] = match.methods["PUT"]["parameters"]["properties"]
    return props


def _typed_config(values: dict[str, Any]) -> dict[str, Any]:
    """Config values as PVE stores them: integers and numbers as such, not form strings."""
    props = _config_properties()
    out = dict(values)
    for key, value in values.items():
        kind = props.get(re.sub(r"\d+$", "[n]", key), props.get(key, {})).get("type")
        if not isinstance(value, str):
            continue
        if kind in ("integer", "boolean") and re.fullmatch(r"-?\d+", value):
            out[key] = int(value)
        elif kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
            out[key] = float(value) if "." in value else int(value)
    return out


def _agent_enabled(config: dict[str, Any]) -> bool:
    value = str(config.get("agent", "0"))
    return value.split(",")[0] in ("1", "enabled=1")


def _form(body: Any) -> dict[str, str]:
    """A recorded request body (form-encoded bytes, or JSON) as a flat dict."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    if text.startswith("{"):
        return {k: str(v) for k, v in json.loads(text).items()}
    return {k: v[0] for k, v in parse_qs(text).items()}


def _freeze_fs(config: dict[str, Any]) -> bool:
    """`agent: 1,freeze-fs=0` turns the freeze off; it defaults to on (Agent.pm should_fs_freeze).
    `freeze-fs-on-backup` and `guest-fsfreeze` are its aliases (Agent.pm agent_fmt)."""
    for part in str(config.get("agent", "0")).split(",")[1:]:
        key, _, value = part.partition("=")
        if key in ("freeze-fs", "freeze-fs-on-backup", "guest-fsfreeze"):
            return value.strip() not in ("0", "false", "no", "off")
    return True


def _interfaces(config: dict[str, Any]) -> list[dict[str, Any]]:
    """What `network-get-interfaces` returns in a guest configured from ipconfig0/net0."""
    mac = re.search(r"=([0-9A-Fa-f:]{17})", str(config.get("net0", "")))
    ip = re.search(r"ip=([0-9.]+)/(\d+)", str(config.get("ipconfig0", "")))
    eth0: dict[str, Any] = {
        "name": "eth0",
        "hardware-address": (mac.group(1) if mac else "bc:24:11:00:00:01").lower(),
        "ip-addresses": [],
    }
    if ip:
        eth0["ip-addresses"].append(
            {"ip-address": ip.group(1), "ip-address-type": "ipv4", "prefix": int(ip.group(2))}
        )
    octets = [int(x, 16) for x in eth0["hardware-address"].split(":")]
    slaac = f"2001:db8::{(octets[0] ^ 2) << 8 | octets[1]:x}:{octets[2]:x}ff:fe{octets[3]:x}:{octets[4] << 8 | octets[5]:x}"
    eth0["ip-addresses"].append({"ip-address": slaac, "ip-address-type": "ipv6", "prefix": 64})
    lo = {
        "name": "lo",
        "hardware-address": "00:00:00:00:00:00",
        "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}],
    }
    return [lo, eth0]


def seed_lab(
    pve: LabPve, snippets_dir: Path, *, nodes: tuple[str, ...] = ("pve1", "pve2", "pve3")
) -> None:
    """The cluster a lab inventory expects: three nodes, shared VM storage, a template."""
    for node in nodes:
        pve.add_node(node)
    # PVE creates the content subdirectories of a directory storage; the SSH upload expects them.
    (snippets_dir / "snippets").mkdir(parents=True, exist_ok=True)
    pve.storages["local"].update(
        content="iso,vztmpl,backup,snippets", path=str(snippets_dir), avail=200 * 1024**3
    )
    # Shared VM storage (Ceph/NFS-like) so clones can land on any node.
    pve.storages["local-lvm"].update(shared=1, total=2048 * 1024**3)
    pve.add_vm(
        TEMPLATE_VMID,
        TEMPLATE_NAME,
        node=nodes[0],
        template=True,
        config={
            "template": 1,
            "scsi0": "local-lvm:base-9000-disk-0,size=3584M",
            "ide2": "local-lvm:vm-9000-cloudinit,media=cdrom",
            "scsihw": "virtio-scsi-pci",
            "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0",
            "boot": "order=scsi0",
            "serial0": "socket",
            "agent": "1",
            "cores": 2,
            "memory": 2048,
        },
    )


class ServedPve:
    """A LabPve served on its own event loop in a daemon thread (tests stay synchronous)."""

    def __init__(self, pve: LabPve, certfile: str, keyfile: str) -> None:
        self.pve = pve
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(pve.start(certfile, keyfile))

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine (a fakepve scenario such as hold_config_lock) on the fake's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    def stop(self) -> None:
        try:
            self.call(settle())
            self.call(self.pve.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(START_TIMEOUT)


@contextmanager
def serve_lab(host: str, port: int, workdir: Path) -> Iterator[ServedPve]:
    """Start the lab cluster on https://host:port; yields it with `.cafile` set."""
    workdir.mkdir(parents=True, exist_ok=True)
    certfile, keyfile, _ = make_cert(str(workdir), hosts=(host,))
    pve = LabPve(user="root@pam", password="secret", host=host, port=port)
    seed_lab(pve, workdir / "snippets-store")
    served = ServedPve(pve, certfile, keyfile)
    served.cafile = certfile  # type: ignore[attr-defined]
    try:
        yield served
    finally:
        served.stop()
