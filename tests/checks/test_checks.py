"""Pure verdict logic and parsers of mk8s.checks, on recorded command output and plain facts."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mk8s.checks import Verdict, all_of, cluster, ha, node, serving
from mk8s.checks.rbac import rbac_expectations
from mk8s.checks.record import NOT_MEASURED, CriterionRecord, phase_of
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import IPRange

ROOT = Path(__file__).resolve().parents[2]
POOL = IPRange(start="192.168.10.50", end="192.168.10.69")  # type: ignore[arg-type]


# --- verdicts and evidence properties --------------------------------------------------------


def test_all_of_passes_only_when_every_part_passes() -> None:
    good = Verdict(True, "a", "x", "node1 ok")
    bad = Verdict(False, "b", "x", "node2 broken")
    assert all_of([good, good], "x").passed
    combined = all_of([good, bad], "x")
    assert not combined.passed
    assert combined.message == "node2 broken" and combined.measured == "a; b"


def test_all_of_nothing_observed_is_a_failure() -> None:
    assert not all_of([], "3 nodes").passed


def test_verdict_reads_as_one_line() -> None:
    verdict = Verdict(False, "25.0", "<= 20", "pod p took 25.0s", "s")
    assert str(verdict) == "FAIL: pod p took 25.0s (measured 25.0 s; expected <= 20)"


def test_criterion_record_properties_follow_the_evidence_contract() -> None:
    record = CriterionRecord("phase2.rbac_matrix", unit="decisions")
    record.judge(Verdict(True, "20/20 as expected", "20 access decisions", "ok"))
    assert record.properties() == [
        ("criterion", "phase2.rbac_matrix"),
        ("phase", "phase2"),
        ("measured", "20/20 as expected"),
        ("target", "20 access decisions"),
        ("unit", "decisions"),
    ]


def test_criterion_that_errored_before_measuring_still_names_itself() -> None:
    props = dict(CriterionRecord("phase1.loadbalancer", target="IP in pool").properties())
    assert props == {
        "criterion": "phase1.loadbalancer",
        "phase": "phase1",
        "measured": NOT_MEASURED,
        "target": "IP in pool",
    }


@pytest.mark.parametrize("bad", ["loadbalancer", "phase5.x", "phase1.Load-Balancer", ""])
def test_criterion_ids_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match=r"must look like phase1\.loadbalancer"):
        phase_of(bad)


# --- node output parsers ---------------------------------------------------------------------

SNAP_LIST = (
    "Name      Version  Rev   Tracking     Publisher   Notes  \n"
    "microk8s  v1.33.5  8205  1.33/stable  canonical✓  classic\n"
)


def test_snap_tracking_from_snap_list() -> None:
    assert node.parse_snap_tracking(SNAP_LIST) == "1.33/stable"
    assert node.parse_snap_tracking("error: no matching snaps installed\n") is None
    assert node.snap_channel("n1", read("snap list microk8s", SNAP_LIST), "1.33/stable").passed
    absent = read("snap list microk8s", "", 1, "error: no matching snaps installed\n")
    assert (
        node.snap_channel("n1", absent, "1.33/stable").message == "n1: microk8s snap not installed"
    )
    silent = node.snap_channel("n1", read("snap list microk8s", ""), "1.33/stable")
    assert silent.measured == "could not read"


def read(command: str, stdout: str, status: int = 0, stderr: str = "") -> node.Reading:
    return node.Reading(command, stdout, status, stderr)


SS = """LISTEN 0      4096    192.168.10.11:16443      0.0.0.0:*
LISTEN 0      4096          0.0.0.0:10250      0.0.0.0:*
LISTEN 0      4096                *:25000            *:*
LISTEN 0      4096             [::]:19001         [::]:*
LISTEN 0      4096        127.0.0.1:10255      0.0.0.0:*
LISTEN 0      511     192.168.10.12:80         0.0.0.0:*
"""


def test_ports_listen_on_the_node_address_or_everywhere() -> None:
    verdict = node.ports("n1", "192.168.10.11", read("ss -Htln", SS), (16443, 10250, 25000, 19001))
    assert verdict.passed, verdict


def test_ports_with_nothing_read_is_could_not_read() -> None:
    """sshd listens on every node read over SSH: an empty `ss` is a failed read."""
    verdict = node.ports("n1", "192.168.10.11", read("ss -Htln", ""), (16443,))
    assert not verdict.passed
    assert verdict.message == "n1: could not read `ss -Htln` (no output)"


def test_port_bound_to_another_address_does_not_count() -> None:
    verdict = node.ports("n1", "192.168.10.11", read("ss -Htln", SS), (80,))
    assert not verdict.passed and "port 80 not listening" in verdict.message


def test_loopback_only_read_only_port_is_not_reachable() -> None:
    assert node.ports("n1", "192.168.10.11", read("ss", SS), (16443,), closed=(10255,)).passed


# `ufw status verbose` as ufw 0.36.2 prints it (ufw/backend_iptables.py get_status).
UFW = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), allow (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
Anywhere on cali+          ALLOW IN    Anywhere
Anywhere                   ALLOW IN    10.1.0.0/16
22/tcp                     ALLOW IN    Anywhere
16443/tcp                  ALLOW IN    192.168.10.0/24           # mk8s api
10250:10255/tcp            ALLOW IN    192.168.10.0/24
80,443/tcp                 ALLOW IN    192.168.10.0/24
30000:32767/tcp            DENY IN     Anywhere
22/tcp (v6)                ALLOW IN    Anywhere (v6)

Anywhere                   ALLOW OUT   Anywhere on cali+
"""
SUBNET, INTERNAL = "192.168.10.0/24", ("10.1.0.0/16", "10.152.183.0/24")


def ufw(text: str) -> node.Reading:
    return read("ufw status verbose", text)


def test_ufw_rules_and_ranges() -> None:
    active, default, rules = node.parse_ufw_status(UFW)
    assert active and default == "deny" and len(rules) == 9
    assert rules[-1].direction == "OUT" and rules[-1].source == "Anywhere on cali+"
    assert rules[0].interface == "cali+" and rules[3].source == SUBNET
    assert node.firewall("n1", ufw(UFW), SUBNET, (16443, 10250, 10255), INTERNAL).passed
    missing = node.firewall("n1", ufw(UFW), SUBNET, (25000,), INTERNAL)
    assert not missing.passed and "no ufw rule allows 25000/tcp" in missing.message
    other_subnet = node.firewall("n1", ufw(UFW), "192.168.20.0/24", (16443,), INTERNAL)
    assert not other_subnet.passed


def test_firewall_fails_when_a_cluster_port_is_open_to_anywhere() -> None:
    opened = UFW.replace(
        "22/tcp (v6)", "16443/tcp                  ALLOW IN    Anywhere\n22/tcp (v6)"
    )
    verdict = node.firewall("n1", ufw(opened), SUBNET, (16443,), INTERNAL)
    assert not verdict.passed
    assert (
        "16443/tcp ALLOW from Anywhere: cluster port 16443 open beyond 192.168.10.0/24"
        in verdict.message
    )


def test_firewall_fails_when_incoming_is_allowed_by_default() -> None:
    verdict = node.firewall(
        "n1", ufw(UFW.replace("deny (incoming)", "allow (incoming)")), SUBNET, (16443,), INTERNAL
    )
    assert not verdict.passed and "default incoming policy is allow, not deny" in verdict.message


def test_firewall_fails_when_a_pod_cidr_rule_allows_a_wider_net() -> None:
    wide = UFW.replace("10.1.0.0/16", "10.0.0.0/8")
    verdict = node.firewall("n1", ufw(wide), SUBNET, (16443,), INTERNAL)
    assert not verdict.passed and "Anywhere ALLOW from 10.0.0.0/8" in verdict.message


def test_firewall_without_the_verbose_default_line_is_could_not_read() -> None:
    plain = UFW.replace("Default: deny (incoming), allow (outgoing), allow (routed)\n", "")
    verdict = node.firewall("n1", ufw(plain), SUBNET, (16443,), INTERNAL)
    assert verdict.measured == "could not read" and "no Default: line" in verdict.message


def test_firewall_on_a_failed_sudo_is_could_not_read() -> None:
    refused = read("sudo -n ufw status verbose", "", 1, "sudo: a password is required\n")
    verdict = node.firewall("n1", refused, SUBNET, (16443,), INTERNAL)
    assert not verdict.passed
    assert verdict.message == (
        "n1: could not read `sudo -n ufw status verbose` (exit 1: sudo: a password is required)"
    )


# `iptables -t mangle -S` as iptables 1.8.9 printed the firewall script's chain (measured).
EDGE = """-N mk8s-edge
-A mk8s-edge -i lo -j RETURN
-A mk8s-edge -s 192.168.10.0/24 -j RETURN
-A mk8s-edge -s 10.1.0.0/16 -j RETURN
-A mk8s-edge -p tcp -m multiport --dports 80,443,10254 -j DROP
-A mk8s-edge -p tcp -m tcp --dport 30000:32767 -j DROP
-A mk8s-edge -p udp -m udp --dport 30000:32767 -j DROP
"""
JUMP = """-P PREROUTING ACCEPT
-A PREROUTING -m conntrack --ctstate NEW -m addrtype --dst-type LOCAL -j mk8s-edge
"""


def edge(chain: str, prerouting: str = JUMP) -> Verdict:
    return node.edge_filter(
        "n1", read("iptables -t mangle -S mk8s-edge", chain),
        read("iptables -t mangle -S PREROUTING", prerouting), SUBNET, INTERNAL[0],
    )  # fmt: skip


def test_edge_chain_holds_hostports_and_nodeports_to_the_subnet() -> None:
    assert edge(EDGE).passed
    no_80 = edge(
        EDGE.replace("-A mk8s-edge -p tcp -m multiport --dports 80,443,10254 -j DROP\n", "")
    )
    assert no_80.message == "n1: hostPorts 80,443,10254/tcp not dropped"
    wide = edge(EDGE.replace("-s 10.1.0.0/16", "-s 10.0.0.0/8"))
    assert "mk8s-edge lets through -s 10.0.0.0/8" in wide.message
    unjumped = edge(EDGE, "-P PREROUTING ACCEPT\n")
    assert unjumped.message == "n1: PREROUTING does not jump to mk8s-edge"


def test_a_missing_edge_chain_fails_saying_what_is_open() -> None:
    missing = node.edge_filter(
        "n1", read("iptables -t mangle -S mk8s-edge", "", 1, "iptables: No chain/target/match by that name."),
        read("iptables -t mangle -S PREROUTING", JUMP), SUBNET, INTERNAL[0],
    )  # fmt: skip
    assert not missing.passed and missing.measured == "could not read"
    assert missing.message.endswith(
        "hostPorts 80/443 and NodePorts are open beyond 192.168.10.0/24"
    )


STATUS = """microk8s:
  running: True
high-availability:
  enabled: True
  nodes:
  - address: 192.168.10.11:19001
    role: voter
  - address: 192.168.10.12:19001
    role: voter
  - address: 192.168.10.13:19001
    role: standby
addons:
- name: dns
  repository: core
  status: enabled
- name: metallb
  repository: core
  status: disabled
"""
IPS = ["192.168.10.11", "192.168.10.12", "192.168.10.13"]


def views(text: str, down: tuple[str, ...] = ()) -> list[ha.NodeView]:
    return [
        ha.NodeView.read(f"n{i}", ip, None if f"n{i}" in down else text)
        for i, ip in enumerate(IPS, start=1)
    ]


ALL_OPEN = {"n1": True, "n2": True, "n3": True}


def test_ha_needs_three_voters_not_two_and_a_standby() -> None:
    verdict = ha.ha_voters(views(STATUS), ALL_OPEN)
    assert not verdict.passed and "2 voters listed (n1, n2)" in verdict.message
    three = STATUS.replace("role: standby", "role: voter")
    verdict = ha.ha_voters(views(three), ALL_OPEN)
    assert verdict.passed and verdict.measured == "3 voters"


def test_ha_voter_outside_the_inventory_fails() -> None:
    three = STATUS.replace("role: standby", "role: voter").replace("10.13", "10.99")
    verdict = ha.ha_voters(views(three), ALL_OPEN)
    assert not verdict.passed and "not in the inventory: 192.168.10.99" in verdict.message


def test_ha_a_listed_voter_that_is_off_fails() -> None:
    three = STATUS.replace("role: standby", "role: voter")
    verdict = ha.ha_voters(views(three, down=("n3",)), {**ALL_OPEN, "n3": False})
    assert not verdict.passed and verdict.measured == "2 of 3 voters live"
    assert "voter n3 (192.168.10.13) is listed but not answering" in verdict.message
    assert "port 19001 closed" in verdict.message


def test_enabled_addons_from_status_yaml() -> None:
    assert node.parse_enabled_addons(STATUS) == ["dns"]
    assert node.parse_enabled_addons("microk8s is not running\n: [") == []


SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def test_ssh_and_upgrades_and_time_and_swap() -> None:
    sshd = "sshd -T"
    assert node.ssh_password_off(
        "n", read(sshd, "passwordauthentication no\nkbdinteractiveauthentication no")
    ).passed
    assert not node.ssh_password_off("n", read(sshd, "passwordauthentication no")).passed
    dump = read("apt-config dump", 'APT::Periodic::Unattended-Upgrade "1";\n')
    enabled = read("systemctl is-enabled unattended-upgrades", "enabled\n")
    disabled = read("systemctl is-enabled unattended-upgrades", "disabled\n", 1)
    assert node.unattended_upgrades("n", dump, enabled).passed
    assert not node.unattended_upgrades("n", dump, disabled).passed
    weekly = read("apt-config dump", 'APT::Periodic::Unattended-Upgrade "7";\n')
    assert node.unattended_upgrades("n", weekly, enabled).passed
    monthly = read("apt-config dump", 'APT::Periodic::Unattended-Upgrade "30";\n')
    assert not node.unattended_upgrades("n", monthly, enabled).passed
    ntp = "timedatectl show -p NTPSynchronized --value"
    assert node.time_synchronised("n", read(ntp, "yes\n")).passed
    assert not node.time_synchronised("n", read(ntp, "no\n")).passed
    assert node.swap_off("n", read("cat /proc/swaps", SWAPS_HEADER)).passed
    on = read("cat /proc/swaps", SWAPS_HEADER + "/dev/dm-1 partition 2097148 0 -2\n")
    assert node.swap_off("n", on).message == "n: swap active on /dev/dm-1"


@pytest.mark.parametrize(
    "check",
    [
        lambda r: node.swap_off("n", r),
        lambda r: node.time_synchronised("n", r),
        lambda r: node.ssh_password_off("n", r),
        lambda r: node.unattended_upgrades("n", r, r),
        lambda r: node.services_active("n", r),
        lambda r: node.firewall("n", r, SUBNET, (16443,), INTERNAL),
        lambda r: node.snap_channel("n", r, "1.33/stable"),
        lambda r: node.ports("n", "192.168.10.11", r, (16443,)),
    ],
    ids=["swap", "time", "ssh", "upgrades", "services", "firewall", "snap", "ports"],
)
def test_every_node_check_fails_on_a_command_that_failed_silently(check: object) -> None:
    """The defect that made `swap_off` pass: the command failed and printed nothing."""
    verdict = check(read("x", "", 127, "sh: 1: x: not found"))  # type: ignore[operator]
    assert not verdict.passed
    assert verdict.measured == "could not read"
    assert verdict.message.startswith("n: could not read `x` (exit 127")
    assert verdict.message.endswith(": sh: 1: x: not found)")


# --- cluster verdicts on plain facts --------------------------------------------------------------


def test_loadbalancer_rejects_a_hostname_ingress() -> None:
    verdict = serving.loadbalancer("svc", ["lb.example.com"], POOL, None, [])
    assert not verdict.passed and "is not an IP address" in verdict.message


def test_pod_start_at_exactly_the_slo_passes() -> None:
    assert cluster.pod_start("p", 20.0, 20).passed
    assert not cluster.pod_start("p", 20.1, 20).passed


def test_certificate_wildcard_and_expiry_boundary() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cert = cluster.CertificateFact("ns", "c", ("*.example.com",), "ClusterIssuer",
                                   "letsencrypt-prod", True, "", now + timedelta(days=30))  # fmt: skip
    assert cluster.certificate(cert, "example.com", "letsencrypt-prod", now).passed
    early = cluster.CertificateFact(**{**cert.__dict__, "not_after": now + timedelta(days=29)})
    assert not cluster.certificate(early, "example.com", "letsencrypt-prod", now).passed


def test_dns_must_point_at_this_environment() -> None:
    nodes = ["192.168.10.11"]
    assert cluster.dns_resolves("h", ["192.168.10.55"], nodes, POOL).passed
    assert cluster.dns_resolves("h", ["192.168.10.11"], nodes, POOL).passed
    stray = cluster.dns_resolves("h", ["203.0.113.7"], nodes, POOL)
    assert not stray.passed and "203.0.113.7" in stray.message
    assert not cluster.dns_resolves("h", [], nodes, POOL).passed


def test_monitoring_and_alerting_need_their_components() -> None:
    ready = [cluster.WorkloadFact("observability", "Deployment", n, 1, 1)
             for n in ("kube-prom-stack-grafana", "prometheus-kube-prom-stack-prometheus",
                       "alertmanager-kube-prom-stack-alertmanager")]  # fmt: skip
    assert cluster.monitoring("observability", ready, dashboards=12).passed
    assert not cluster.monitoring("observability", ready[1:], dashboards=12).passed  # no grafana
    no_boards = cluster.monitoring("observability", ready, dashboards=0)
    assert not no_boards.passed and "no Grafana dashboards" in no_boards.message
    assert cluster.alerting(12, ready[2:]).passed
    assert not cluster.alerting(0, ready[2:]).passed
    assert not cluster.alerting(12, []).passed


# --- RBAC matrix from the inventory -----------------------------------------------------------


def test_rbac_matrix_has_allowed_and_denied_cells_for_every_role() -> None:
    env = load_environment("dev", ROOT)
    cells = rbac_expectations(env)
    for role in ("cluster-admin", "auditor", "namespace-admin", "developer"):
        mine = [c for c in cells if c.role == role]
        assert any(c.allowed for c in mine), role
        if role != "cluster-admin":
            assert any(not c.allowed for c in mine), role
    team = env.teams[0]
    assert any(c.group == team.developers_group and c.namespace == team.name for c in cells)


# --- the nox session's argument handling ------------------------------------------------------


def _noxfile() -> object:
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nox_conformance_reads_the_env_name() -> None:
    nox_module: object = _noxfile()
    env_option = getattr(nox_module, "_env_option")  # noqa: B009
    env_name = getattr(nox_module, "_env_name")  # noqa: B009
    assert env_option(["--env", "dev", "-m", "phase1"]) == "dev"
    assert env_option(["-m", "phase1", "--env=inventory/stage.yaml"]) == "inventory/stage.yaml"
    assert env_name("inventory/stage.yaml") == "stage"
    assert env_name("prod") == "prod"
    with pytest.raises(ValueError, match="missing --env"):
        env_option(["-m", "phase1"])


def test_runbooks_cover_every_topic_of_the_design() -> None:
    full = ["onboarding.md", "upgrade.md", "node-drain.md", "restore-drill.md",
            "dr.md", "troubleshooting.md", "conformance.md"]  # fmt: skip
    at = "docs/ at 0123456789ab"
    verdict = cluster.runbooks(full, at)
    assert verdict.passed
    # Evidence must not read it as a cluster fact: it names the revision and says what it is.
    assert verdict.measured == "6/6 topics in docs/ at 0123456789ab"
    assert verdict.message.startswith("document check (not a cluster fact)")
    partial = cluster.runbooks(["conformance.md", "bootstrap.md", "upgrade.md"], at)
    assert not partial.passed
    assert partial.message == (
        "document check: no runbook in docs/ at 0123456789ab for: onboarding, drain, "
        "restore drill, disaster recovery, troubleshooting"
    )
    assert cluster.runbooks([*full[:4], "disaster-recovery.md", "troubleshooting.md"], at).passed
    # "drain" is not "dr": a drain runbook does not count as disaster recovery.
    no_dr = cluster.runbooks([n for n in full if n != "dr.md"], at)
    assert not no_dr.passed and no_dr.message.endswith("disaster recovery")
