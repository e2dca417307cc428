"""The rendered node firewall (bootstrap/scripts/mk8s-firewall.sh) on a real kernel.

The script that cloud-init would write to a node is taken from the rendered user-data and run
with Debian's ufw and iptables inside namespaces this test creates (tests/bootstrap/netlab.py).
The node carries stand-ins for what MicroK8s adds later, so the probes cross the same tables a
real node's packets do (shared/reference/microk8s-behaviour.md "cloud-init and the node
firewall"):
- the ingress hostPorts 80/443/10254 DNAT-ed to the pod in nat PREROUTING for local
  destinations, as Calico's portmap plugin does, so they pass through FORWARD, not INPUT;
- a NodePort (30080) DNAT-ed to the same pod, as kube-proxy does;
- pod egress masqueraded the way Calico's natOutgoing does (--random-fully); the source ports
  are pinned to 31000-31099, so the reply always comes back to a port in 30000-32767;
- Calico's mangle PREROUTING chain, which accepts established traffic
  (projectcalico/calico felix/rules/static.go StaticManglePreroutingChain), in front of the
  firewall's chain after the first run and behind it after re-runs, so both orders are probed;
- node-exporter 9100, kube-proxy 10249, the API 16443, the kubelet 10250 and a kubelet
  read-only 10255 listening on the node itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.render import cloudinit
from tests.bootstrap.netlab import OUTSIDE_IP, Addresses, Lab, lab

pytestmark = pytest.mark.slow

INGRESS_HOSTPORTS = (80, 443, 10254)
NODEPORT = 30080
POD_PORTS = (*INGRESS_HOSTPORTS, 8080)  # 8080: the NodePort's target
NODE_PORTS = (9100, 10249, 10250, 10255, 16443)
EGRESS_PORT = 8080  # served by `outside`
# Inside the NodePort range. A range, not one port: a connection whose reply was dropped keeps
# its conntrack entry, and with one port the next connection would find no free mapping.
MASQ_PORTS = (31000, 31099)
FIREWALL = f"{cloudinit.SCRIPTS_ON_NODE}/mk8s-firewall.sh"
LEGACY_RAW_DROP = (
    "-A PREROUTING -p tcp ! -s {subnet} -m addrtype --dst-type LOCAL --dport 30000:32767 -j DROP"
)


def _env(monitoring: bool) -> Environment:
    env = load_environment("stage", root=Path(__file__).resolve().parents[2])
    return env.model_copy(
        update={"monitoring": env.monitoring.model_copy(update={"enabled": monitoring})}
    )


def _rendered_firewall(env: Environment) -> str:
    """The firewall script exactly as cloud-init writes it on the first node."""
    doc = cloudinit.user_data_doc(env, env.nodes[0])
    (script,) = [f["content"] for f in doc["write_files"] if f["path"] == FIREWALL]
    assert isinstance(script, str)
    return script


def _data_path(a: Addresses, pod_cidr: str) -> str:
    hostports = "\n".join(
        f"iptables -t nat -A HOSTPORT-DNAT -p tcp --dport {p} -j DNAT --to-destination {a.pod}:{p}"
        for p in INGRESS_HOSTPORTS
    )
    return f"""set -e
iptables -t nat -N HOSTPORT-DNAT
iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j HOSTPORT-DNAT
{hostports}
iptables -t nat -A HOSTPORT-DNAT -p tcp --dport {NODEPORT} -j DNAT --to-destination {a.pod}:8080
iptables -t mangle -N cali-PREROUTING
iptables -t mangle -A cali-PREROUTING -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
iptables -t nat -A POSTROUTING -s {pod_cidr} ! -d {pod_cidr} -p tcp \
  -j MASQUERADE --to-ports {MASQ_PORTS[0]}-{MASQ_PORTS[1]} --random-fully
"""


@pytest.fixture(scope="module")
def node_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = _env(monitoring=True)
    nodes = env.nodes
    addresses = Addresses(
        subnet=env.network.subnet,
        gateway=env.network.gateway,
        node=nodes[0].ip,
        peer=nodes[1].ip,
        pod=env.network.pod_cidr.network_address + 0x1705,  # 10.1.23.5 in a /16
    )
    scratch = tmp_path_factory.mktemp("netlab")
    for monitoring in (True, False):
        (scratch / f"firewall-{monitoring}.sh").write_text(_rendered_firewall(_env(monitoring)))
    with lab(addresses, scratch) as the_lab:
        the_lab.sh("node", _data_path(addresses, str(env.network.pod_cidr)))
        the_lab.serve("pod", POD_PORTS)
        the_lab.serve("node", NODE_PORTS)
        the_lab.serve("outside", (EGRESS_PORT,))
        run_firewall(the_lab, monitoring=True)
        the_lab.sh("node", "iptables -t mangle -I PREROUTING 1 -j cali-PREROUTING")
        yield the_lab


def run_firewall(the_lab: Lab, monitoring: bool) -> None:
    the_lab.sh("node", f"sh -e {the_lab.scratch}/firewall-{monitoring}.sh >/dev/null")


def _targets(ip: object, ports: tuple[int, ...]) -> list[str]:
    return [f"{ip}:{p}" for p in ports]


def test_ingress_hostports_reach_the_pod_from_the_subnet_only(node_lab: Lab) -> None:
    a = node_lab.addr
    from_peer = node_lab.probe("peer", _targets(a.node, INGRESS_HOSTPORTS))
    from_outside = node_lab.probe("outside", _targets(a.node, INGRESS_HOSTPORTS))
    for port in INGRESS_HOSTPORTS:
        # The pod answers, and sees the peer's own address: the path is DNAT + FORWARD.
        assert from_peer[f"{a.node}:{port}"].startswith(f"open {port} {a.peer}:"), from_peer
        assert from_outside[f"{a.node}:{port}"] == "timeout", from_outside


def test_hostports_cross_forward_so_ufw_input_rules_alone_do_not_limit_them(
    node_lab: Lab,
) -> None:
    """Without mk8s-edge, ufw's rules let 10254 through from anywhere: the chain is needed."""
    a = node_lab.addr
    node_lab.sh("node", "/etc/ufw/before.init stop")
    try:
        opened = node_lab.probe("outside", [f"{a.node}:10254"])
    finally:
        node_lab.sh("node", "/etc/ufw/before.init start")
    assert opened[f"{a.node}:10254"].startswith(f"open 10254 {OUTSIDE_IP}:"), opened
    assert node_lab.probe("outside", [f"{a.node}:10254"])[f"{a.node}:10254"] == "timeout"


def test_nodeports_only_from_the_subnet(node_lab: Lab) -> None:
    a = node_lab.addr
    target = f"{a.node}:{NODEPORT}"
    assert node_lab.probe("peer", [target])[target].startswith("open 8080 ")
    assert node_lab.probe("outside", [target])[target] == "timeout"


def test_cluster_and_monitoring_ports_open_between_nodes_only(node_lab: Lab) -> None:
    a = node_lab.addr
    ports = (9100, 10249, 10250, 16443)
    from_peer = node_lab.probe("peer", _targets(a.node, ports))
    from_outside = node_lab.probe("outside", _targets(a.node, ports))
    for port in ports:
        assert from_peer[f"{a.node}:{port}"].startswith(f"open {port} {a.peer}:"), from_peer
        assert from_outside[f"{a.node}:{port}"] == "timeout", from_outside


def _port_of(reply: str) -> str:
    return reply.rsplit(":", 1)[-1]


def test_monitoring_off_closes_9100_and_10249(node_lab: Lab) -> None:
    a = node_lab.addr
    run_firewall(node_lab, monitoring=False)
    try:
        closed = node_lab.probe("peer", _targets(a.node, (9100, 10249, 16443)))
    finally:
        run_firewall(node_lab, monitoring=True)
    assert closed[f"{a.node}:9100"] == closed[f"{a.node}:10249"] == "timeout", closed
    assert closed[f"{a.node}:16443"].startswith("open 16443"), closed


def test_kubelet_read_only_port_and_service_cidr_get_no_rule(node_lab: Lab) -> None:
    a = node_lab.addr
    target = f"{a.node}:10255"
    assert node_lab.probe("peer", [target])[target] == "timeout"
    rules = node_lab.sh("node", "iptables-save")
    assert "10255" not in rules
    service_cidr = str(_env(monitoring=True).network.service_cidr)
    assert service_cidr not in rules


def test_pod_egress_replies_to_a_nodeport_range_source_port_are_not_dropped(
    node_lab: Lab,
) -> None:
    a = node_lab.addr
    target = f"{OUTSIDE_IP}:{EGRESS_PORT}"
    reply = node_lab.probe("pod", [target])[target]
    # The outside server saw the masqueraded source: the node's IP, a port in the range.
    assert reply.startswith(f"open {EGRESS_PORT} {a.node}:"), reply
    assert MASQ_PORTS[0] <= int(_port_of(reply)) <= MASQ_PORTS[1]


def test_the_former_raw_nodeport_drop_broke_pod_egress_and_a_rerun_removes_it(
    node_lab: Lab,
) -> None:
    a = node_lab.addr
    target = f"{OUTSIDE_IP}:{EGRESS_PORT}"
    legacy = LEGACY_RAW_DROP.format(subnet=a.subnet)
    # Two copies, as two ufw reloads of the former before.rules left them.
    node_lab.sh("node", f"iptables -t raw {legacy} && iptables -t raw {legacy}")
    assert node_lab.probe("pod", [target])[target] == "timeout"
    run_firewall(node_lab, monitoring=True)
    assert "-A PREROUTING" not in node_lab.sh("node", "iptables -t raw -S PREROUTING")
    assert node_lab.probe("pod", [target])[target].startswith("open")


def _ruleset(the_lab: Lab) -> str:
    """iptables-save without its timestamps and counters."""
    text = the_lab.sh("node", "iptables-save")
    text = re.sub(r"^#.*\n", "", text, flags=re.MULTILINE)
    return re.sub(r"\[\d+:\d+\]", "[]", text)


def test_rerun_and_ufw_reload_are_idempotent(node_lab: Lab) -> None:
    before = _ruleset(node_lab)
    files_before = node_lab.sh("node", "ls -A /etc/ufw")
    # Back to back: two `ufw reset`s within one second abort if the first one's backups stay.
    run_firewall(node_lab, monitoring=True)
    run_firewall(node_lab, monitoring=True)
    assert _ruleset(node_lab) == before
    node_lab.sh("node", "ufw reload >/dev/null")  # ufw-init stop, then start
    # ufw_reload (ufw-init-functions) runs `before.init start` twice, the second time inside
    # ufw_start: the jump must not be added twice.
    node_lab.sh("node", "/lib/ufw/ufw-init force-reload >/dev/null")
    after = _ruleset(node_lab)
    assert after == before
    assert after.count("-j mk8s-edge") == 1
    assert "-A PREROUTING" not in node_lab.sh("node", "iptables -t raw -S PREROUTING")
    files_after = node_lab.sh("node", "ls -A /etc/ufw")
    assert files_after == files_before
    assert not re.search(r"\.rules\.\d{8}_\d{6}", files_after), files_after
    # The emulated Calico/kube-proxy rules survive: ufw leaves the nat table alone.
    assert "HOSTPORT-DNAT" in after and "MASQUERADE" in after
