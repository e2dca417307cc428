"""Read the facts `mk8s.day2.snapshots` decides on, through the Proxmox edge."""

from __future__ import annotations

import re
from typing import Any

from mk8s.day2.snapshots import Disk, VmSnapFacts
from mk8s.edges.proxmox import Pve, VmFacts, vm_path

DRIVE = re.compile(r"^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$")


def _disks(pve: Pve, config: dict[str, Any]) -> tuple[Disk, ...]:
    stores: dict[str, dict[str, Any]] = {}
    out = []
    for key in sorted(config):
        value = str(config[key])
        if not DRIVE.match(key) or "media=cdrom" in value or ":" not in value:
            continue
        # PVE prints `local-lvm:vm-101-disk-0,size=32G`; a drive string as written to the API
        # may still carry the `file=` key (fakepve keeps what the bpg provider sent).
        volume = value.split(",", 1)[0].removeprefix("file=")
        storage, name = volume.split(":", 1)
        if storage not in stores:
            stores[storage] = dict(pve.get(f"storage/{storage}"))
        store = stores[storage]
        fmt = "qcow2" if name.endswith(".qcow2") else "subvol" if "subvol" in name else "raw"
        chain = str(store.get("snapshot-as-volume-chain", 0)) in ("1", "true")
        out.append(Disk(key, volume, str(store.get("type", "unknown")), fmt, chain))
    return tuple(out)


def _oldest_first(listed: list[dict[str, Any]]) -> tuple[str, ...]:
    """PVE lists snapshots unordered: order by time, then by depth in the parent chain (the
    chain breaks ties between snapshots taken in the same second)."""
    parents = {s["name"]: s.get("parent") for s in listed}

    def depth(name: str) -> int:
        n, seen = 0, set()
        while (name := parents.get(name) or "") and name not in seen:
            seen.add(name)
            n += 1
        return n

    snaps = [s for s in listed if s["name"] != "current"]
    snaps.sort(key=lambda s: (int(s.get("snaptime") or 0), depth(s["name"])))
    return tuple(s["name"] for s in snaps)


def read_vm(pve: Pve, vm: VmFacts, name: str) -> VmSnapFacts:
    base = vm_path(vm)
    config = pve.get(f"{base}/config")
    feature = pve.get(f"{base}/feature", feature="snapshot")
    lock = config.get("lock")
    return VmSnapFacts(
        name,
        vm.vmid,
        _disks(pve, config),
        _oldest_first(pve.get(f"{base}/snapshot")),
        bool(int(feature.get("hasFeature", 0))),
        str(lock) if lock else None,
    )
