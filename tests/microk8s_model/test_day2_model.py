"""Day-2 behaviours of the MicroK8s model, read through mk8s' own edge verbs
(mk8s.edges.microk8s), each healthy next to broken. Sources: SD = canonical/snapd@bee548f,
MK = canonical/microk8s@1.33 (cited in tests/support/microk8s/snapcmd.py and certs.py)."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mk8s.edges import microk8s as mk
from tests.support.microk8s.rig import BIN, FS, Rig
from tests.support.sshd import SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

IPS = {"m1": "10.7.0.11", "m2": "10.7.0.12", "m3": "10.7.0.13"}
NEXT = {"1.34/stable": ("8450", "v1.34.1")}


@dataclass
class Res:
    code: int
    stdout: str
    stderr: str


class Direct:
    """mk8s' Shell protocol over Rig.run (the model's verbs without SSH)."""

    def __init__(self, rig: Rig, name: str) -> None:
        self.rig, self.name = rig, name

    def run(self, command: str, **_: object) -> Res:
        argv = shlex.split(command)
        return Res(*self.rig.run(self.name, argv[0], *argv[1:]))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path / "model")
    rig.seed(IPS, {n: "version: 0.2.0\nextraSANs: [10.7.0.100]\n" for n in IPS})
    rig.form(list(IPS))
    rig.set_store(NEXT)
    return rig


def eventually(check: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def running(rig: Rig, name: str) -> bool:
    return mk.status(Direct(rig, name)).running


def test_snap_list_carries_channel_revision_version_and_held(rig: Rig) -> None:
    snap = mk.snap_list(Direct(rig, "m1"))
    assert snap == mk.Snap("1.33/stable", True, "8205", "v1.33.5", ("classic", "held"))
    rig.set_node("m2", held=False)
    unheld = mk.snap_list(Direct(rig, "m2"))
    assert unheld is not None and not unheld.held
    rig.set_node("m3", installed=False)
    assert mk.read_snap(Direct(rig, "m3")).installed is False


def test_latest_revision_of_a_channel_comes_from_the_store(rig: Rig) -> None:
    node = Direct(rig, "m1")
    assert mk.latest_revision(node, "1.33/stable") == "8205"  # on the latest: fine
    rig.set_store({"1.33/stable": ("8233", "v1.33.6")})
    assert mk.latest_revision(node, "1.33/stable") == "8233"  # behind its channel now
    assert mk.latest_revision(node, "1.34/candidate") == "8450"  # closed: follows stable
    assert mk.latest_revision(node, "1.40/stable") is None


def test_refresh_moves_to_the_channels_revision_keeps_the_hold_and_restarts_kubelite(
    rig: Rig,
) -> None:
    rig.configure(restart_s=2)
    outcome = mk.snap_refresh(Direct(rig, "m1"), "1.34/stable")
    assert not running(rig, "m1")  # kubelite restarting
    assert outcome.result is mk.RefreshResult.REFRESHED, outcome
    assert outcome.reason == "microk8s (1.34/stable) v1.34.1 from Canonical** refreshed"
    assert mk.snap_list(Direct(rig, "m1")) == mk.Snap(
        "1.34/stable", True, "8450", "v1.34.1", ("classic", "held")
    )
    assert ("m1", "restart kubelite") in rig.event_names()
    assert eventually(lambda: running(rig, "m1"))
    assert mk.snap_list(Direct(rig, "m2")) is not None
    assert rig.node("m2")["revision"] == "8205"  # one node at a time: nothing else moved


def test_refresh_within_the_channel_takes_the_newer_revision(rig: Rig) -> None:
    node = Direct(rig, "m1")
    assert mk.snap_refresh(node, "1.33/stable").result is mk.RefreshResult.NO_UPDATE
    rig.set_store({"1.33/stable": ("8233", "v1.33.6")})
    assert mk.snap_refresh(node, "1.33/stable").result is mk.RefreshResult.REFRESHED
    assert rig.node("m1")["revision"] == "8233"


def test_a_refused_refresh_exits_1_with_snapds_text_and_stays_on_the_old_revision(
    rig: Rig,
) -> None:
    rig.fault("m1", refresh_fails="exit status 1")
    outcome = mk.snap_refresh(Direct(rig, "m1"), "1.34/stable")
    assert outcome.result is mk.RefreshResult.FAILED and outcome.code == 1
    assert 'Run configure hook of "microk8s" snap if present' in outcome.reason
    assert rig.node("m1")["revision"] == "8205" and rig.node("m1")["channel"] == "1.33/stable"
    assert ("m1", "restart kubelite") not in rig.event_names()
    assert running(rig, "m1")


def test_a_refresh_can_land_and_leave_kubelite_broken(rig: Rig) -> None:
    rig.fault("m2", unhealthy_after_refresh=True)
    outcome = mk.snap_refresh(Direct(rig, "m2"), "1.34/stable")
    assert outcome.result is mk.RefreshResult.REFRESHED  # snapd is done; kubelite is not
    assert rig.node("m2")["revision"] == "8450"
    assert not running(rig, "m2")
    assert ("m2", "kubelite failing on new revision") in rig.event_names()


def test_conflicts_and_unknown_channels_are_their_own_outcomes(rig: Rig) -> None:
    assert mk.snap_refresh(Direct(rig, "m1"), "1.40/stable").result is mk.RefreshResult.FAILED
    rig.fault("m1", refresh_conflict=True)
    conflict = mk.snap_refresh(Direct(rig, "m1"), "1.34/stable")
    assert conflict.result is mk.RefreshResult.CONFLICT and conflict.code == 10


def test_snap_revert_is_logged_so_tests_can_prove_it_never_happened(rig: Rig) -> None:
    mk.snap_refresh(Direct(rig, "m3"), "1.34/stable")
    assert [e for e in rig.events() if e["event"] == "reverted"] == []
    code, out, _ = rig.run("m3", "snap", "revert", "microk8s")
    assert (code, out.strip()) == (0, "microk8s reverted to v1.33.5")
    assert rig.node("m3")["revision"] == "8205"
    assert ("m3", "reverted") in rig.event_names()
    assert ["snap", "revert", "microk8s"] in rig.commands_since(0)


def _cert(rig: Rig, name: str, cert: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(rig.cert_path(name, cert).read_bytes())


def _ips(cert: x509.Certificate) -> set[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def test_certificates_are_per_node_365_days_and_signed_by_the_cluster_ca(rig: Rig) -> None:
    server = _cert(rig, "m2", "server.crt")
    assert {"127.0.0.1", "10.152.183.1", "10.7.0.12", "10.7.0.100"} <= _ips(server)
    life = server.not_valid_after_utc - server.not_valid_before_utc
    assert life.days == 365
    ca = _cert(rig, "m2", "ca.crt")
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 3650
    assert server.issuer == ca.subject
    front = _cert(rig, "m2", "front-proxy-client.crt")
    assert front.issuer == _cert(rig, "m2", "front-proxy-ca.crt").subject


def test_refresh_certs_reissues_with_the_nodes_sans_and_restarts_its_services(rig: Rig) -> None:
    before = _cert(rig, "m1", "server.crt")
    check = rig.check("m1")
    res = mk.refresh_cert(Direct(rig, "m1"), "server.crt")
    assert res.code == 0 and "Restarting service cluster-agent." in res.stdout
    after = _cert(rig, "m1", "server.crt")
    assert after.serial_number != before.serial_number and _ips(after) == _ips(before)
    assert rig.check("m1") != check  # the join fingerprint follows server.crt
    backup = rig.cert_path("m1", "../certs-backup/server.crt").read_bytes()
    assert backup == before.public_bytes(Encoding.PEM)
    mark = len(rig.events())
    front = mk.refresh_cert(Direct(rig, "m1"), "front-proxy-client.crt")
    assert front.code == 0
    assert [e["event"] for e in rig.events()[mark:]] == ["reissued", "restart kubelite"]
    code, out, _ = rig.run("m1", "microk8s", "refresh-certs", "--check")
    assert code == 0 and "The server certificate will expire in 364 days." in out


def test_refresh_certs_of_a_certificate_mk8s_never_rotates_is_not_modelled(rig: Rig) -> None:
    code, _, _ = rig.run("m1", "microk8s", "refresh-certs", "--cert", "ca.crt")
    assert code == 2


@pytest.mark.slow
def test_edge_verbs_over_real_sshd(sshd_factory: SshdFactory, tmp_path: Path) -> None:
    rig = Rig(tmp_path / "model")
    names = ["s1", "s2"]
    cluster = sshd_factory(names, path_dirs=[BIN, FS], env=rig.session_env())
    rig.seed({n: cluster.nodes[n].host for n in names})
    rig.set_store(NEXT)
    known = tmp_path / "known_hosts"
    known.write_text(cluster.known_hosts())

    class Ssh:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, command: str, **_: object) -> Res:
            argv = [*cluster.ssh_argv(self.name, known), command]
            res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            return Res(res.returncode, res.stdout, res.stderr)

    s1 = Ssh("s1")
    assert mk.snap_list(s1) == mk.Snap("1.33/stable", True, "8205", "v1.33.5", ("classic", "held"))
    assert mk.latest_revision(s1, "1.34/stable") == "8450"
    assert mk.reboot_required(s1) is False
    rig.reboot_required("s1", packages=["linux-image-generic"])
    assert mk.reboot_required(s1) is True
    assert mk.reboot_required(Ssh("s2")) is False
    assert mk.snap_refresh(s1, "1.34/stable").ok
    assert rig.node("s1")["revision"] == "8450"
    pem = s1.run("cat /var/snap/microk8s/current/certs/server.crt").stdout
    assert pem == rig.cert_path("s1").read_text()
    rig.configure(boot_s=3)
    assert s1.run("reboot").code == 255  # the machine goes down under the session
    assert mk.reboot_required(s1) is False  # /run is a tmpfs
    assert not mk.status(s1).running  # booting
    assert eventually(lambda: mk.status(s1).running)
    assert ("s1", "reboot") in rig.event_names() and ("s2", "reboot") not in rig.event_names()


def test_a_reboot_brings_back_what_was_running_and_not_a_broken_kubelite(rig: Rig) -> None:
    rig.reboot_required("m1")
    assert rig.run("m1", "reboot")[0] == 0  # no SSH session to drop here
    assert not (rig.root / "m1" / "var" / "run" / "reboot-required").exists()
    assert running(rig, "m1")
    rig.fault("m2", unhealthy_after_refresh=True)
    mk.snap_refresh(Direct(rig, "m2"), "1.34/stable")
    rig.run("m2", "reboot")
    assert not running(rig, "m2")  # the new revision still breaks kubelite


def test_rebuild_node_path_remove_reinstall_old_channel_remove_node_rejoin(rig: Rig) -> None:
    """--recover rebuild-node on the model: the snap's removal leaves the member listed (and
    no voter up on it), so the re-join is refused until a healthy voter removes it."""
    rig.fault("m3", unhealthy_after_refresh=True)
    mk.snap_refresh(Direct(rig, "m3"), "1.34/stable")
    code, out, _ = rig.run("m3", "snap", "remove", "microk8s", "--purge")
    assert (code, out.strip()) == (0, "microk8s removed")
    assert mk.read_snap(Direct(rig, "m3")).installed is False
    assert ("10.7.0.13:19001", "voter") in rig.members("m1")  # still listed
    rig.set_node("m3", faults={})
    assert (
        rig.run("m3", "snap", "install", "microk8s", "--classic", "--channel=1.33/stable")[0] == 0
    )
    snap = mk.snap_list(Direct(rig, "m3"))
    assert snap is not None and (snap.channel, snap.revision) == ("1.33/stable", "8205")
    _, token, _ = rig.run("m1", "microk8s", "add-node", "--format", "token-check")
    join_url = f"10.7.0.11:25000/{token.strip()}"
    code, out, _ = rig.run("m3", "microk8s", "join", join_url)
    assert code == 6 and "already known to dqlite" in out
    assert rig.run("m1", "microk8s", "remove-node", "10.7.0.13", "--force")[0] == 0
    _, token, _ = rig.run("m1", "microk8s", "add-node", "--format", "token-check")
    assert rig.run("m3", "microk8s", "join", f"10.7.0.11:25000/{token.strip()}")[0] == 0
    assert ("m3", "reverted") not in rig.event_names()
