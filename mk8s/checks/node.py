"""Node exit criteria, judged from command output read over SSH (pytest-testinfra).

Parsers take the text a real Ubuntu node prints (`snap list`, `ss -Htln`, `ufw status`,
`swapon --show`, `timedatectl show`, `apt-config dump`, `sshd -T`,
`microk8s status --format yaml`) and tolerate the noise real output carries (headers, trailing
spaces, notes). Each check returns a Verdict naming the node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mk8s.checks.verdict import Verdict, failed, passed
from mk8s.edges.microk8s import parse_status
from mk8s.inventory.model import Environment

# The MicroK8s services that must run on every control-plane node (1.28+ snap layout).
MICROK8S_SERVICES = (
    "snap.microk8s.daemon-kubelite",
    "snap.microk8s.daemon-containerd",
    "snap.microk8s.daemon-k8s-dqlite",
    "snap.microk8s.daemon-cluster-agent",
)
# shared/reference/microk8s.md "Ports": API, kubelet, cluster agent, dqlite.
CONTROL_PLANE_PORTS = (16443, 10250, 25000, 19001)
INGRESS_PORTS = (80, 443)
# Kubelet's read-only port is off on MicroK8s; it must stay closed.
MUST_BE_CLOSED = (10255,)
NODEPORT_RANGE = "30000:32767"


def expected_ports(env: Environment) -> tuple[int, ...]:
    ports = list(CONTROL_PLANE_PORTS)
    if "ingress" in env.microk8s.addons:
        ports += INGRESS_PORTS
    return tuple(ports)


def parse_snap_tracking(text: str, snap: str = "microk8s") -> str | None:
    """The Tracking column of `snap list SNAP` (None when the snap is not installed)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0][:1] != ["Name"]:
        return None
    header = lines[0]
    if "Tracking" not in header:
        return None
    column = header.index("Tracking")
    for row in lines[1:]:
        if row and row[0] == snap and len(row) > column:
            return row[column]
    return None


def snap_channel(node: str, snap_list: str, wanted: str) -> Verdict:
    expected = f"microk8s tracking {wanted}"
    tracking = parse_snap_tracking(snap_list)
    if tracking is None:
        return failed("not installed", expected, f"{node}: microk8s snap not installed")
    if tracking != wanted:
        return failed(tracking, expected, f"{node}: microk8s tracks {tracking}, not {wanted}")
    return passed(tracking, expected, f"{node}: microk8s on {tracking}")


def services_active(node: str, states: Mapping[str, str]) -> Verdict:
    """`states`: unit -> `systemctl is-active` answer."""
    expected = "active: " + ", ".join(states)
    down = [
        f"{unit} is {state or 'unknown'}" for unit, state in states.items() if state != "active"
    ]
    measured = f"{len(states) - len(down)}/{len(states)} active"
    if down:
        return failed(measured, expected, f"{node}: " + "; ".join(down))
    return passed(measured, expected, f"{node}: all {len(states)} services active")


def parse_listening(ss_output: str) -> set[tuple[str, int]]:
    """(address, port) pairs from `ss -Htln` (state, recv-q, send-q, local, peer)."""
    out = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3] if fields[0] == "LISTEN" else fields[-2]
        addr, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        addr = addr.strip("[]").split("%")[0]
        out.add((addr, int(port)))
    return out


def _reachable_on(listening: Iterable[tuple[str, int]], node_ip: str, port: int) -> bool:
    return any(p == port and addr in (node_ip, "0.0.0.0", "*", "::", "") for addr, p in listening)


def ports(
    node: str,
    node_ip: str,
    ss_output: str,
    wanted: Sequence[int],
    closed: Sequence[int] = MUST_BE_CLOSED,
) -> Verdict:
    """Every expected port listens on the node's address (or all addresses); closed ones do not."""
    listening = parse_listening(ss_output)
    expected = f"listening {', '.join(map(str, wanted))}; closed {', '.join(map(str, closed))}"
    missing = [p for p in wanted if not _reachable_on(listening, node_ip, p)]
    open_bad = [p for p in closed if _reachable_on(listening, node_ip, p)]
    up = [p for p in wanted if p not in missing]
    measured = f"listening {', '.join(map(str, up)) or 'none'}"
    problems = [f"port {p} not listening" for p in missing] + [
        f"port {p} is open but must be closed" for p in open_bad
    ]
    if problems:
        return failed(measured, expected, f"{node} ({node_ip}): " + "; ".join(problems))
    return passed(measured, expected, f"{node}: expected ports listening")


@dataclass(frozen=True)
class UfwRule:
    to: str
    action: str
    source: str


def parse_ufw_status(text: str) -> tuple[bool, list[UfwRule]]:
    """(active, rules) from `ufw status`; IPv6 duplicates `(v6)` are folded in."""
    active = bool(re.search(r"^Status:\s*active\s*$", text, re.M))
    rules = []
    for line in text.splitlines():
        match = re.match(
            r"^(?P<to>\S+(?: \(v6\))?)\s+(?P<action>ALLOW|DENY|REJECT|LIMIT)(?: IN| OUT)?\s+"
            r"(?P<src>.+?)\s*$",
            line,
        )
        if match:
            rules.append(UfwRule(match["to"].removesuffix(" (v6)"), match["action"], match["src"]))
    return active, rules


def _rule_covers(to: str, port: int) -> bool:
    """Does a ufw `To` column (`16443/tcp`, `10250:10255/tcp`, `80`) cover tcp `port`?"""
    ports, _, proto = to.partition("/")
    if proto not in ("", "tcp"):
        return False
    low, _, high = ports.partition(":")
    if not low.isdigit() or (high and not high.isdigit()):
        return False
    return int(low) <= port <= int(high or low)


def firewall(node: str, ufw_status: str, subnet: str, allowed_ports: Sequence[int]) -> Verdict:
    """ufw active; cluster ports allowed from the env subnet; NodePorts denied from elsewhere."""
    active, rules = parse_ufw_status(ufw_status)
    expected = f"ufw active; {len(allowed_ports)} ports allowed from {subnet}; NodePorts denied"
    if not active:
        return failed("inactive", expected, f"{node}: ufw is not active")
    allowed = [r.to for r in rules if r.action == "ALLOW" and r.source == subnet]
    missing = [p for p in allowed_ports if not any(_rule_covers(to, p) for to in allowed)]
    nodeport_denied = any(
        r.to == f"{NODEPORT_RANGE}/tcp" and r.action in ("DENY", "REJECT") for r in rules
    )
    problems = [f"no ufw rule allows {p}/tcp from {subnet}" for p in missing]
    if not nodeport_denied:
        problems.append(f"NodePorts {NODEPORT_RANGE}/tcp not denied")
    measured = f"active, {len(rules)} rules"
    if problems:
        return failed(measured, expected, f"{node}: " + "; ".join(problems))
    return passed(measured, expected, f"{node}: ufw active with the cluster rules")


def swap_off(node: str, swapon_show: str) -> Verdict:
    """`swapon --show --noheadings` prints one line per active swap area; none means off."""
    areas = [line.split()[0] for line in swapon_show.splitlines() if line.strip()]
    if areas:
        return failed("on", "off", f"{node}: swap active on {', '.join(areas)}")
    return passed("off", "off", f"{node}: swap off")


def time_synchronised(node: str, ntp_synchronized: str) -> Verdict:
    """`timedatectl show -p NTPSynchronized --value` (chrony or timesyncd)."""
    value = ntp_synchronized.strip() or "unknown"
    if value != "yes":
        return failed(value, "yes", f"{node}: clock not synchronised (NTPSynchronized={value})")
    return passed(value, "yes", f"{node}: clock synchronised")


def unattended_upgrades(node: str, apt_config_dump: str, unit_enabled: str) -> Verdict:
    """Unattended upgrades at least weekly (APT::Periodic::Unattended-Upgrade is an interval
    in days, 1..7; PRD checklist: weekly) and the unattended-upgrades unit enabled."""
    match = re.search(r'^APT::Periodic::Unattended-Upgrade\s+"(\d+)";', apt_config_dump, re.M)
    periodic = match.group(1) if match else "unset"
    enabled = unit_enabled.strip() or "unknown"
    measured = f"periodic={periodic}, unit {enabled}"
    expected = "periodic=1..7 days, unit enabled"
    if periodic.isdigit() and 1 <= int(periodic) <= 7 and enabled == "enabled":
        return passed(measured, expected, f"{node}: unattended upgrades on")
    return failed(measured, expected, f"{node}: unattended upgrades off ({measured})")


def ssh_password_off(node: str, sshd_t: str) -> Verdict:
    """Effective sshd config (`sshd -T`): no password or keyboard-interactive logins."""
    config = {}
    for line in sshd_t.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            config[key.lower()] = value.strip().lower()
    found = {
        k: config.get(k, "unknown")
        for k in ("passwordauthentication", "kbdinteractiveauthentication")
    }
    measured = ", ".join(f"{k} {v}" for k, v in found.items())
    expected = "passwordauthentication no, kbdinteractiveauthentication no"
    if any(v != "no" for v in found.values()):
        return failed(measured, expected, f"{node}: SSH accepts passwords ({measured})")
    return passed(measured, expected, f"{node}: SSH keys only")


def parse_enabled_addons(status_yaml: str) -> list[str]:
    """Enabled add-ons of `microk8s status --format yaml`, in its order (the edge's parser)."""
    return [n for n, st in parse_status(status_yaml).addons.items() if st == "enabled"]
