"""`invoke certs`' reader over the MicroK8s model's nodes: the certificates the model issues
(tests/support/microk8s/certs.py) are read over real sshd through the FS shim, at MicroK8s'
paths, exactly as on a real node; healthy next to a node installed without extraSANs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mk8s.day2 import certs_flow
from mk8s.day2.certs import Level
from mk8s.inventory.load import parse_inventory
from mk8s.render.launchconfig import launch_config
from tests.day2.test_certs_ssh import NAMES, inventory
from tests.support.microk8s.rig import BIN, FS, Rig
from tests.support.sshd import SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

pytestmark = pytest.mark.slow


def lab(factory: SshdFactory, tmp_path: Path, *, bare: str | None = None) -> certs_flow.CertReport:
    rig = Rig(tmp_path / "model")
    cluster = factory(NAMES, path_dirs=[BIN, FS], env=rig.session_env())
    data = inventory(cluster)
    env = parse_inventory(yaml.safe_dump(data), source="lab")
    configs = {n.name: yaml.safe_dump(launch_config(env, n)) for n in env.nodes}
    if bare is not None:
        configs[bare] = "version: 0.2.0\n"  # no extraSANs: server.crt names only its own IP
    rig.seed({n: cluster.nodes[n].host for n in NAMES}, configs)
    rig.form(list(NAMES))
    build = tmp_path / "build"
    build.mkdir()
    (build / "known_hosts").write_text(cluster.known_hosts())
    return certs_flow.check(env, build, datetime.now(UTC))


def test_the_models_certificates_pass_invoke_certs(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    report = lab(sshd_factory, tmp_path)
    assert report.level is Level.OK, [v for v in report.verdicts if v.level is not Level.OK]
    read = {(v.node, v.name) for v in report.verdicts}
    for node in NAMES:  # every certificate of every node was read, none missing
        assert {(node, f) for f in ("server.crt", "front-proxy-client.crt", "ca.crt")} <= read
    server = next(v for v in report.verdicts if v.name == "server.crt")
    assert server.days_left == 364  # 365 days from issue (MK utils.sh gen_server_cert)


def test_a_node_without_extra_sans_fails_naming_it(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    report = lab(sshd_factory, tmp_path, bare=NAMES[1])
    failing = [v for v in report.verdicts if v.level is Level.FAIL]
    assert failing and {v.node for v in failing} == {NAMES[1]}
    assert "lacks IP SAN" in failing[0].message
