"""`NodePower` over real sshd nodes running the MicroK8s model (tests/support/microk8s/):
the reboot command mk8s sends, the session dropping under it, and the boot id read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mk8s.day2.maintenance import NodePower
from mk8s.edges.microk8s import reboot_required
from mk8s.inventory.load import parse_inventory
from tests.day2.test_certs_ssh import NAMES, inventory
from tests.support.microk8s.rig import BIN, FS, Rig
from tests.support.sshd import SshdFactory, sshd_factory

__all__ = ["sshd_factory"]
pytestmark = pytest.mark.slow


def test_reboot_over_ssh_survives_the_dropped_session(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    rig = Rig(tmp_path / "model")
    cluster = sshd_factory(list(NAMES), path_dirs=[BIN, FS], env=rig.session_env())
    rig.seed({n: cluster.nodes[n].host for n in NAMES})
    data = inventory(cluster)  # the lab inventory of the certs tests, on these sshd nodes
    env = parse_inventory(yaml.safe_dump(data), source="lab")
    build = tmp_path / "build"
    build.mkdir()
    (build / "known_hosts").write_text(cluster.known_hosts())
    power = NodePower(env, build, pve=None)  # type: ignore[arg-type]  # SSH only here
    # The model keeps a boot id per node (the nodes share this machine's kernel); mk8s reads
    # it with the command it sends a real node, and a reboot must change it.
    before = power.boot_id(NAMES[0])
    assert re.fullmatch(r"[0-9a-f-]{36}", before)
    assert before != power.boot_id(NAMES[1])
    rig.reboot_required(NAMES[0], packages=["linux-image-generic"])
    session = power._session(NAMES[0])
    assert reboot_required(session) is True
    power.reboot(NAMES[0])  # the model kills the session, as a real reboot does: no error
    assert ("lab-k8s-1", "reboot") in rig.event_names()
    assert ("lab-k8s-2", "reboot") not in rig.event_names()
    assert reboot_required(power._session(NAMES[0])) is False  # /run is a tmpfs
    assert ["reboot"] in rig.commands_since(0)
    assert power.boot_id(NAMES[0]) != before  # what the drain's reboot step waits for
