"""Serve the lab by hand: fakepve + real sshds, and a scratch repo root to run mk8s in.

    /work/venv/bin/python -m tests.provision.lab_shell /tmp/mk8s-lab

prints the environment to export and the commands to run (`invoke provision --env lab` in the
scratch root), and serves until Ctrl-C. The same fixtures as tests/provision/conftest.py.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import yaml

from mk8s.edges.tools import cache_dir
from mk8s.render.build import build_dir
from tests.provision.conftest import LAB, ROOT, TOKEN_ID, TOKEN_SECRET, lab_inventory
from tests.support.fakepve import serve_lab
from tests.support.sshd import SshdCluster


def main(workdir: Path) -> None:
    cluster = SshdCluster(workdir / "sshd", ["pve-host", *(n.name for n in LAB.nodes)]).start()
    try:
        (workdir / "home").mkdir(exist_ok=True)
        host = LAB.proxmox.endpoint.split("//")[1].split(":")[0]
        with serve_lab(host, 8006, workdir / "pve") as served:
            served.pve.apitokens[TOKEN_ID] = TOKEN_SECRET
            root = workdir / "repo"
            (root / "inventory").mkdir(parents=True, exist_ok=True)
            (root / "inventory" / "lab.yaml").write_text(
                yaml.safe_dump(lab_inventory(cluster, served.pve.url), sort_keys=False)
            )
            for shared in ("terraform", "scripts", "tasks.py"):
                if not (root / shared).exists():
                    (root / shared).symlink_to(ROOT / shared)
            ca = build_dir("lab", root) / "fakepve-ca.pem"
            ca.parent.mkdir(parents=True, exist_ok=True)
            ca.write_bytes(Path(served.cafile).read_bytes())  # type: ignore[attr-defined]
            exports = {
                "PVE_TOKEN_ID": TOKEN_ID,
                "PVE_TOKEN_SECRET": TOKEN_SECRET,
                "PROXMOX_VE_SSH_USERNAME": cluster.user,
                "MK8S_CACHE": str(cache_dir()),  # before HOME moves
                "HOME": str(workdir / "home"),
                "PYTHONPATH": str(ROOT),
            }
            print("lab ready: fakepve on", served.pve.url)
            for key, value in exports.items():
                print(f"export {key}={shlex.quote(value)}")
            print(f'export PROXMOX_VE_SSH_PRIVATE_KEY="$(cat {cluster.client_key})"')
            print(f"cd {root} && /work/venv/bin/invoke provision --env lab")
            print("Ctrl-C stops the lab.", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mk8s-lab").resolve())
