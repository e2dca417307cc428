"""A failing boot script fails the boot: the rendered user-data through the real cloud-init.

Debian's cloud-init (22.4, the package scripts/deps.d/bootstrap.apt installs) runs the node's
rendered user-data from a NoCloud seed inside private mount, network and UTS namespaces: /run,
/var/log, /etc/cloud and /usr/local/sbin are private there, so the machine's own cloud-init
state, hostname and network are never touched. Only the `runcmd` and `scripts_user` modules are
enabled: they are what turns runcmd into the boot script and judges its exit status
(cloudinit/config/cc_runcmd.py writes `util.shellify(runcmd)`; cc_scripts_user.py runs it and
fails the module on a non-zero exit). The node's three scripts are replaced by stubs that
record that they ran, one of them failing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.render import cloudinit

pytestmark = pytest.mark.slow

CLOUD_CFG = {
    "datasource_list": ["NoCloud"],
    "network": {"config": "disabled"},
    "cloud_init_modules": [],
    "cloud_config_modules": ["runcmd"],
    "cloud_final_modules": ["scripts_user"],
    "system_info": {
        "distro": "debian",
        # Under the private /run: nothing lands in the machine's /var/lib/cloud.
        "paths": {"cloud_dir": "/run/cloud/", "templates_dir": "/etc/cloud/templates/"},
    },
}

_RAN = re.compile(r"\d+-mk8s-\S+")  # a stub's record: nanoseconds-NAME
BOOT = """set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mount --bind {root}/etc-cloud /etc/cloud
mount --bind {root}/sbin {sbin}
mkdir -p /run/cloud/seed/nocloud /run/cloud-init
cp {root}/seed/user-data {root}/seed/meta-data /run/cloud/seed/nocloud/
# What cloud-init's systemd generator leaves behind on a node (cmd/status.py reads it).
touch /run/cloud-init/enabled
for stage in "init" "modules --mode config" "modules --mode final"; do
  cloud-init $stage >>{root}/cloud-init.log 2>&1 || true
done
cloud-init status --long || echo "exit=$?"
ls /run/ran 2>/dev/null || true
"""


def _env() -> Environment:
    return load_environment("stage", root=Path(__file__).resolve().parents[2])


def _user_data() -> str:
    """The first node's user-data, exactly as `invoke plan` renders it."""
    env = _env()
    return cloudinit.user_data(env, env.nodes[0])


def _boot(tmp_path: Path, user_data: str, failing: str) -> tuple[str, list[str]]:
    """(`cloud-init status --long` output, the scripts that ran in order) after one boot."""
    assert os.geteuid() == 0, "booting cloud-init in private namespaces needs root (CI has it)"
    cloud_init = shutil.which("cloud-init")
    assert cloud_init, "Debian's cloud-init is missing (scripts/deps.d/bootstrap.apt installs it)"
    (tmp_path / "etc-cloud").mkdir()
    (tmp_path / "etc-cloud/cloud.cfg").write_text(yaml.safe_dump(CLOUD_CFG))
    (tmp_path / "sbin").mkdir()
    for script in cloudinit.SCRIPTS:
        fails = "exit 3" if script == failing else "exit 0"
        stub = tmp_path / "sbin" / script
        stub.write_text(
            f"#!/bin/sh\nmkdir -p /run/ran\ntouch /run/ran/$(date +%s%N)-{script}\n{fails}\n"
        )
        stub.chmod(0o755)
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed/user-data").write_text(user_data)
    (tmp_path / "seed/meta-data").write_text("instance-id: iid-mk8s-test\n")
    script = BOOT.format(root=tmp_path, sbin=cloudinit.SCRIPTS_ON_NODE)
    done = subprocess.run(
        ["unshare", "--mount", "--net", "--uts", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    ran = sorted(line for line in lines if _RAN.fullmatch(line))
    status = "\n".join(line for line in lines if not _RAN.fullmatch(line))
    return status, [line.split("-", 1)[1] for line in ran]


@pytest.mark.parametrize("failing", cloudinit.SCRIPTS)
def test_any_failing_boot_script_makes_cloud_init_report_error(
    tmp_path: Path, failing: str
) -> None:
    status, ran = _boot(tmp_path, _user_data(), failing)
    assert "status: error" in status and "exit=1" in status, status
    assert "scripts_user" in status, status
    # The scripts run in order and the boot stops at the failing one.
    assert ran == list(cloudinit.SCRIPTS[: cloudinit.SCRIPTS.index(failing) + 1])


def test_without_set_e_cloud_init_reports_done_although_the_firewall_failed(
    tmp_path: Path,
) -> None:
    """Why runcmd starts with `set -e`: cloud-init only sees the last line's exit status."""
    env = _env()
    doc: dict[str, Any] = cloudinit.user_data_doc(env, env.nodes[0])
    doc["runcmd"] = [line for line in doc["runcmd"] if line != "set -e"]
    user_data = "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)
    status, ran = _boot(tmp_path, user_data, failing="mk8s-firewall.sh")
    assert "status: done" in status and "exit=" not in status, status
    assert ran == list(cloudinit.SCRIPTS)


def test_a_clean_boot_reports_done(tmp_path: Path) -> None:
    status, ran = _boot(tmp_path, _user_data(), failing="")
    assert "status: done" in status and "exit=" not in status, status
    assert ran == list(cloudinit.SCRIPTS)
