"""The model's behaviours that real outputs do not show, each against the source it cites
(MK = canonical/microk8s@1.33, CA = canonical/microk8s-cluster-agent@1.33,
GD = canonical/go-dqlite@v2.0.0)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.microk8s.rig import Rig

IPS = {"m1": "10.7.0.11", "m2": "10.7.0.12", "m3": "10.7.0.13", "m4": "10.7.0.14"}


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path / "model")
    rig.seed(IPS)
    return rig


def url(rig: Rig, via: str, *args: str) -> str:
    _, out, _ = rig.run(via, "microk8s", "add-node", "--format", "json", *args)
    return f"{IPS[via]}:25000/{json.loads(out)['token']}"


def join(rig: Rig, joiner: str, via: str = "m1") -> int:
    return rig.run(joiner, "microk8s", "join", url(rig, via))[0]


def test_install_is_a_lone_loopback_voter_and_the_first_join_rebinds_it(rig: Rig) -> None:
    assert rig.members("m1") == [("127.0.0.1:19001", "voter")]  # MK utils.sh init_cluster
    assert join(rig, "m2") == 0
    # CA dqlite.go: the receiver rebinds; GD app.go: the joiner is a spare; roles.go: one voter
    assert rig.members("m1") == [("10.7.0.11:19001", "voter"), ("10.7.0.12:19001", "spare")]


def test_roles_three_voters_then_standbys_on_the_leaders_clock(rig: Rig) -> None:
    rig.configure(promote_delay_s=3600)
    join(rig, "m2")
    join(rig, "m3")
    assert [r for _, r in rig.members("m1")] == ["voter", "spare", "spare"]
    rig.configure(promote_delay_s=0)
    join(rig, "m4")
    assert [r for _, r in rig.members("m1")] == ["voter", "voter", "voter", "standby"]


def test_a_powered_off_voter_stays_listed_until_another_can_take_its_place(rig: Rig) -> None:
    rig.form(["m1", "m2", "m3"])
    rig.power_off("m3")
    assert ("10.7.0.13:19001", "voter") in rig.members("m1")  # microk8s#2400
    join(rig, "m4")  # GD roles.go Adjust: promote an online node, then demote the offline voter
    roles = dict(rig.members("m1"))
    assert roles["10.7.0.14:19001"] == "voter" and roles["10.7.0.13:19001"] == "spare"


def test_leave_resets_to_loopback_and_leaves_the_node_object(rig: Rig) -> None:
    rig.form(["m1", "m2", "m3"])
    assert rig.run("m3", "microk8s", "leave")[0] == 0  # MK leave.py
    assert rig.members("m3") == [("127.0.0.1:19001", "voter")]
    assert "10.7.0.13:19001" not in dict(rig.members("m1"))


def test_remove_node_refuses_a_registered_member_without_force(rig: Rig) -> None:
    rig.form(["m1", "m2", "m3"])
    code, out, _ = rig.run("m1", "microk8s", "remove-node", "10.7.0.13")
    assert code == 1 and "Removal failed. Node m3 is registered with dqlite" in out
    assert rig.run("m1", "microk8s", "remove-node", "10.7.0.13", "--force")[0] == 0
    assert "10.7.0.13:19001" not in dict(rig.members("m1"))


def test_remove_node_force_of_a_node_unknown_to_kubernetes_exits_1_after_removing(
    rig: Rig,
) -> None:
    rig.form(["m1", "m2", "m3"])
    rig.forget_k8s_node("m3")
    code, out, _ = rig.run("m1", "microk8s", "remove-node", "10.7.0.13", "--force")
    assert code == 1  # MK remove_node.py: exit 1 even after removing it from dqlite
    assert out.splitlines() == [
        "Node 10.7.0.13 does not exist in Kubernetes.",
        "Attempting to remove 10.7.0.13 from dqlite.",
        "Removing node entry found in dqlite.",
    ]
    assert "10.7.0.13:19001" not in dict(rig.members("m1"))
    code, out, _ = rig.run("m1", "microk8s", "remove-node", "10.7.0.12")
    assert code == 1 and "registered with dqlite" in out


def test_a_rebuilt_node_is_already_known_until_removed(rig: Rig) -> None:
    rig.form(["m1", "m2", "m3"])
    rig.rebuild("m2")  # same IP, fresh install (#2212, #3694)
    code, out, _ = rig.run("m2", "microk8s", "join", url(rig, "m1"))
    assert code == 6 and "is already known to dqlite (500)." in out
    assert rig.run("m1", "microk8s", "remove-node", "10.7.0.12", "--force")[0] == 0
    assert join(rig, "m2") == 0


def test_tokens_single_use_unless_they_have_a_ttl(rig: Rig) -> None:
    """CA snap.go ConsumeClusterToken: consumed when valid and without TTL, before any check."""
    single, ttl = url(rig, "m1"), url(rig, "m1", "--token-ttl", "300")
    rig.fault("m1", not_ha=True)  # the join fails after the token was looked at
    assert rig.run("m2", "microk8s", "join", single)[0] == 6
    assert rig.run("m2", "microk8s", "join", ttl)[0] == 6
    rig.fault("m1", not_ha=False)
    code, out, _ = rig.run("m2", "microk8s", "join", single)
    assert code == 6 and "Invalid token (500)." in out
    assert rig.run("m2", "microk8s", "join", ttl)[0] == 0


def test_the_check_changes_after_refresh_certs(rig: Rig) -> None:
    before = rig.check("m1")
    rig.run("m1", "microk8s", "refresh-certs", "--cert", "server.crt")
    assert rig.check("m1") != before and len(before) == 12


def test_a_join_cut_short_leaves_the_join_in_progress_lock(rig: Rig) -> None:
    rig.fault("m2", join_drop=True)
    rig.run("m2", "microk8s", "join", url(rig, "m1"))
    assert rig.node("m2")["join_lock"]  # MK join.py: cleared only on success
    assert rig.run("m2", "microk8s", "status", "--format", "yaml")[0] == 1


def test_wait_ready_means_any_node_is_ready(rig: Rig) -> None:
    rig.form(["m1", "m2"])
    rig.fault("m2", kubelet_not_ready=True)
    start = time.monotonic()
    code, out, _ = rig.run("m2", "microk8s", "status", "--wait-ready", "--format", "yaml")
    assert code == 0 and "running: True" in out and time.monotonic() - start < 10


def test_launch_configuration_add_ons_come_after_start(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "model")
    rig.configure(launch_addons_delay_s=3600)
    rig.seed({"m1": IPS["m1"]}, {"m1": "version: 0.2.0\naddons:\n  - name: dns\n"})
    assert "dns" not in rig.addons("m1")
    rig.set_node("m1", launch_addons_at=0)
    assert "dns" in rig.addons("m1")


def test_observability_enables_its_dependencies(rig: Rig) -> None:
    assert rig.run("m1", "microk8s", "enable", "observability")[0] == 0
    assert {"dns", "helm3", "hostpath-storage", "observability"} <= rig.addons("m1")


def test_stopped_and_worker_print_plain_text(rig: Rig) -> None:
    rig.set_node("m1", stopped=True)
    assert rig.run("m1", "microk8s", "status", "--format", "yaml")[:2] == (
        0,
        "microk8s is not running, try microk8s start\n",
    )
    rig.set_node("m2", worker=True)
    code, out, _ = rig.run("m2", "microk8s", "status", "--format", "yaml")
    assert code == 1 and out.startswith("This MicroK8s deployment is acting as a node")


def test_agent_unreachable_is_a_traceback_and_exit_1(rig: Rig) -> None:
    rig.fault("m1", agent_unreachable=True)
    code, out, err = rig.run("m2", "microk8s", "join", url(rig, "m1"))
    assert code == 1 and out.startswith("Contacting cluster at 10.7.0.11")
    assert err.strip().endswith("ConnectionRefusedError: [Errno 111] Connection refused")


def test_join_duration_and_slow_dqlite_are_configurable(rig: Rig) -> None:
    rig.configure(join_duration_s=0.5)  # MK join.py update_dqlite: ~10 s sleep, then polls
    start = time.monotonic()
    assert join(rig, "m2") == 0
    assert time.monotonic() - start >= 0.5
    rig.fault("m1", dqlite_slow_s=0.5)
    start = time.monotonic()
    assert rig.run("m1", "microk8s", "status", "--format", "yaml")[0] == 0
    assert time.monotonic() - start >= 0.5
