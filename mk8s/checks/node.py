"""Node exit criteria, judged from command output read over SSH (pytest-testinfra).

Parsers take the text a real Ubuntu node prints (`snap list`, `ss -Htln`, `ufw status verbose`,
`/proc/swaps`, `timedatectl show`, `apt-config dump`, `sshd -T`,
`microk8s status --format yaml`) and tolerate the noise real output carries (headers, trailing
spaces, notes). Each check returns a Verdict naming the node.

Every check takes a `Reading` (stdout, exit status, stderr) and fails with "could not read"
when the command failed or printed nothing it must print: a missing binary, a sudo refusal
or a dead session is never taken for "no swap", "no passwords", "synchronised". Where the
healthy answer would be empty (no swap areas), the command read is one whose healthy output
is not (`/proc/swaps` always starts with its header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network

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


@dataclass(frozen=True)
class Reading:
    """What one command printed on a node, and how it exited."""

    command: str
    stdout: str
    exit_status: int = 0
    stderr: str = ""


def cannot_read(node: str, reading: Reading, expected: str, why: str) -> Verdict:
    said = " ".join(reading.stderr.split())[:160]
    return failed(
        "could not read",
        expected,
        f"{node}: could not read `{reading.command}` ({why}{': ' + said if said else ''})",
    )


def unreadable(
    node: str, reading: Reading, expected: str, ok_status: Sequence[int] = (0,)
) -> Verdict | None:
    """FAIL "could not read" when the command failed or printed nothing; else None."""
    if reading.exit_status not in ok_status:
        return cannot_read(node, reading, expected, f"exit {reading.exit_status}")
    if not reading.stdout.strip():
        return cannot_read(node, reading, expected, "no output")
    return None


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


def snap_channel(node: str, snap_list: Reading, wanted: str) -> Verdict:
    expected = f"microk8s tracking {wanted}"
    # `snap list NAME` exits 1 with "error: no matching snaps installed" when it is absent.
    if snap_list.exit_status == 1 and "no matching snaps" in snap_list.stderr:
        return failed("not installed", expected, f"{node}: microk8s snap not installed")
    if bad := unreadable(node, snap_list, expected):
        return bad
    tracking = parse_snap_tracking(snap_list.stdout)
    if tracking is None:
        return failed("not installed", expected, f"{node}: microk8s snap not installed")
    if tracking != wanted:
        return failed(tracking, expected, f"{node}: microk8s tracks {tracking}, not {wanted}")
    return passed(tracking, expected, f"{node}: microk8s on {tracking}")


# `systemctl is-active` prints one state per unit; it exits 3 when one is not active.
UNIT_STATES = {"active", "inactive", "failed", "activating", "deactivating", "reloading", "unknown"}


def services_active(
    node: str, reading: Reading, units: Sequence[str] = MICROK8S_SERVICES
) -> Verdict:
    """`reading`: `systemctl is-active UNIT...`, one state line per unit, in order."""
    expected = "active: " + ", ".join(units)
    lines = reading.stdout.split()
    if len(lines) != len(units) or not set(lines) <= UNIT_STATES:
        why = f"exit {reading.exit_status}, {len(lines)} states for {len(units)} units"
        return cannot_read(node, reading, expected, why)
    states: Mapping[str, str] = dict(zip(units, lines, strict=True))
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
    ss: Reading,
    wanted: Sequence[int],
    closed: Sequence[int] = MUST_BE_CLOSED,
) -> Verdict:
    """Every expected port listens on the node's address (or all addresses); closed ones do not.

    sshd listens on every node we read from, so an empty `ss` answer is a failed read."""
    expected = f"listening {', '.join(map(str, wanted))}; closed {', '.join(map(str, closed))}"
    if bad := unreadable(node, ss, expected):
        return bad
    listening = parse_listening(ss.stdout)
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
    to: str  # ports (`16443/tcp`, `10250:10255/tcp`) or `Anywhere`; `(v6)` and `on IF` split off
    action: str
    source: str  # `192.168.10.0/24`, `Anywhere`, `Anywhere (v6)`
    interface: str = ""
    direction: str = "IN"  # IN | OUT | FWD (plain `ufw status` omits IN)


# `ufw status verbose` (ufw 0.36.2 ufw/backend_iptables.py get_status): "Default: %(in)s
# (incoming), %(out)s (outgoing), %(routed)s (routed)", then rules as "%-26s %-12s%-26s" of
# To (with " (v6)" and " on IFACE"), "ACTION DIR", From, and an optional " # comment".
_DEFAULT = re.compile(r"^Default:\s*(?P<incoming>\w+) \(incoming\)", re.M)
_RULE = re.compile(
    r"^(?P<to>\S.*?)\s+(?P<action>ALLOW|DENY|REJECT|LIMIT)(?: (?P<dir>IN|OUT|FWD))?\s+"
    r"(?P<src>\S.*?)(?:\s+#.*)?\s*$"
)
# Interfaces ufw may open to anything: Calico's pod interfaces (bootstrap/scripts/mk8s-firewall.sh).
POD_INTERFACES = ("cali+", "vxlan.calico")


def parse_ufw_status(text: str) -> tuple[bool, str | None, list[UfwRule]]:
    """(active, default incoming policy, rules) from `ufw status verbose`."""
    active = bool(re.search(r"^Status:\s*active\s*$", text, re.M))
    default = _DEFAULT.search(text)
    rules = []
    for line in text.splitlines():
        match = _RULE.match(line)
        if not match or match["to"] in ("To", "--"):
            continue
        to, _, interface = match["to"].partition(" on ")
        rules.append(UfwRule(to.removesuffix(" (v6)").strip(), match["action"],
                             match["src"].strip(), interface.strip(), match["dir"] or "IN"))  # fmt: skip
    return active, default["incoming"] if default else None, rules


def _rule_covers(to: str, port: int) -> bool:
    """Does a ufw `To` column (`16443/tcp`, `10250:10255/tcp`, `80`, `Anywhere`) cover tcp `port`?"""
    if to.startswith("Anywhere"):
        return True
    ports, _, proto = to.partition("/")
    if proto not in ("", "tcp"):
        return False
    low, _, high = ports.partition(":")
    if not low.isdigit() or (high and not high.isdigit()):
        return False
    return int(low) <= port <= int(high or low)


def _source_inside(source: str, networks: Sequence[IPv4Network]) -> bool:
    try:
        net = ip_network(source, strict=False)
    except ValueError:
        return False  # Anywhere, Anywhere (v6), a v6 prefix: beyond the environment
    return any(isinstance(net, IPv4Network) and net.subnet_of(n) for n in networks)


def firewall(
    node: str,
    ufw: Reading,
    subnet: str,
    allowed_ports: Sequence[int],
    internal: Sequence[str] = (),
) -> Verdict:
    """ufw active with default-deny incoming; every cluster port allowed from the env subnet
    and from nowhere else (`internal`: the pod and service CIDRs, which may reach anything);
    NodePorts denied from elsewhere."""
    expected = (
        f"ufw active, default deny incoming; {len(allowed_ports)} ports allowed from {subnet} "
        "only; NodePorts denied"
    )
    if bad := unreadable(node, ufw, expected):
        return bad
    active, incoming, rules = parse_ufw_status(ufw.stdout)
    if not active:
        return failed("inactive", expected, f"{node}: ufw is not active")
    if incoming is None:
        return cannot_read(node, ufw, expected, "no Default: line (not `ufw status verbose`?)")
    inside = [ip_network(n) for n in (subnet, *internal)]
    problems = []
    if incoming not in ("deny", "reject"):
        problems.append(f"default incoming policy is {incoming}, not deny")
    allowed = [r.to for r in rules if r.action == "ALLOW" and r.source == subnet]
    problems += [f"no ufw rule allows {p}/tcp from {subnet}" for p in allowed_ports
                 if not any(_rule_covers(to, p) for to in allowed)]  # fmt: skip
    for r in rules:
        # Outgoing and routed rules open no port on the node (`allow out on cali+` prints as
        # "Anywhere ALLOW OUT Anywhere on cali+": the interface under From).
        if r.action not in ("ALLOW", "LIMIT") or r.direction != "IN":
            continue
        if r.interface in POD_INTERFACES:
            continue
        wide = [p for p in allowed_ports if _rule_covers(r.to, p)]
        if wide and not _source_inside(r.source, [n for n in inside if isinstance(n, IPv4Network)]):
            problems.append(
                f"{r.to}{' on ' + r.interface if r.interface else ''} {r.action} from {r.source}: "
                f"cluster port {wide[0]} open beyond {subnet}"
            )
    nodeport_denied = any(
        r.to == f"{NODEPORT_RANGE}/tcp" and r.action in ("DENY", "REJECT") for r in rules
    )
    if not nodeport_denied:
        problems.append(f"NodePorts {NODEPORT_RANGE}/tcp not denied")
    measured = f"active, default {incoming} incoming, {len(rules)} rules"
    if problems:
        return failed(measured, expected, f"{node}: " + "; ".join(problems))
    return passed(
        measured, expected, f"{node}: ufw active, default deny, cluster ports from {subnet} only"
    )


# The mangle PREROUTING chain the firewall script adds for what ufw's INPUT never sees:
# hostPorts 80/443/10254 (Calico's portmap DNATs them to the pod) and NodePorts (kube-proxy
# DNAT). Lines as `iptables -t mangle -S` prints them (iptables 1.8.9, measured in a network
# namespace; `-m tcp`/`-m udp` are added by iptables itself).
EDGE_CHAIN = "mk8s-edge"
EDGE_DROPS = (
    ("hostPorts 80,443,10254/tcp", "-p tcp -m multiport --dports 80,443,10254 -j DROP"),
    ("NodePorts 30000:32767/tcp", "-p tcp -m tcp --dport 30000:32767 -j DROP"),
    ("NodePorts 30000:32767/udp", "-p udp -m udp --dport 30000:32767 -j DROP"),
)


def edge_filter(
    node: str, chain: Reading, prerouting: Reading, subnet: str, pod_cidr: str
) -> Verdict:
    """hostPorts and NodePorts from beyond the subnet are dropped before the DNAT: the chain
    returns only loopback, the subnet and the pod CIDR, drops the rest, and PREROUTING jumps
    to it for new connections."""
    expected = f"{EDGE_CHAIN}: hostPorts and NodePorts only from {subnet}"
    if chain.exit_status != 0 or f"-N {EDGE_CHAIN}" not in chain.stdout:
        # iptables says "No chain/target/match" (legacy) or "incompatible" (nft) for a
        # missing chain, and sudo fails alike: either way the chain is not shown to exist.
        why = f"exit {chain.exit_status}" if chain.exit_status else "no -N line"
        said = " ".join(chain.stderr.split())[:120]
        return failed(
            "could not read",
            expected,
            f"{node}: could not read `{chain.command}` ({why}{': ' + said if said else ''}); "
            f"without {EDGE_CHAIN} hostPorts 80/443 and NodePorts are open beyond {subnet}",
        )
    if bad := unreadable(node, prerouting, expected):
        return bad
    rules = [line.split(f"-A {EDGE_CHAIN} ", 1)[1] for line in chain.stdout.splitlines()
             if line.startswith(f"-A {EDGE_CHAIN} ")]  # fmt: skip
    problems = [f"{what} not dropped" for what, rule in EDGE_DROPS if rule not in rules]
    allowed = {"-i lo -j RETURN", f"-s {subnet} -j RETURN", f"-s {pod_cidr} -j RETURN"}
    problems += [f"{EDGE_CHAIN} lets through {r.removesuffix(' -j RETURN')}"
                 for r in rules if r.endswith("-j RETURN") and r not in allowed]  # fmt: skip
    jumps = [line for line in prerouting.stdout.splitlines()
             if line.startswith("-A PREROUTING") and line.endswith(f"-j {EDGE_CHAIN}")]  # fmt: skip
    if not jumps:
        problems.append(f"PREROUTING does not jump to {EDGE_CHAIN}")
    measured = f"{len(rules)} rules, {'jumped to' if jumps else 'not jumped to'}"
    if problems:
        return failed(measured, expected, f"{node}: " + "; ".join(problems))
    return passed(
        measured, expected, f"{node}: {EDGE_CHAIN} drops hostPorts/NodePorts from beyond {subnet}"
    )


def swap_off(node: str, proc_swaps: Reading) -> Verdict:
    """`/proc/swaps`: a header line, then one line per active swap area; header only = off.

    (`swapon --show` prints nothing both when swap is off and when it failed.)"""
    lines = [line for line in proc_swaps.stdout.splitlines() if line.strip()]
    if proc_swaps.exit_status != 0 or not lines or not lines[0].startswith("Filename"):
        why = f"exit {proc_swaps.exit_status}" if proc_swaps.exit_status else "no header line"
        return cannot_read(node, proc_swaps, "off", why)
    areas = [line.split()[0] for line in lines[1:]]
    if areas:
        return failed("on", "off", f"{node}: swap active on {', '.join(areas)}")
    return passed("off", "off", f"{node}: swap off")


def time_synchronised(node: str, ntp: Reading) -> Verdict:
    """`timedatectl show -p NTPSynchronized --value` (chrony or timesyncd): yes or no."""
    if bad := unreadable(node, ntp, "yes"):
        return bad
    value = ntp.stdout.strip()
    if value not in ("yes", "no"):
        return cannot_read(node, ntp, "yes", f"answer {value!r}")
    if value != "yes":
        return failed(value, "yes", f"{node}: clock not synchronised (NTPSynchronized={value})")
    return passed(value, "yes", f"{node}: clock synchronised")


def unattended_upgrades(node: str, apt_config_dump: Reading, unit_enabled: Reading) -> Verdict:
    """Unattended upgrades at least weekly (APT::Periodic::Unattended-Upgrade is an interval
    in days, 1..7; PRD checklist: weekly) and the unattended-upgrades unit enabled."""
    expected = "periodic=1..7 days, unit enabled"
    if bad := unreadable(node, apt_config_dump, expected):
        return bad
    # `systemctl is-enabled` exits 1 for a disabled unit, and still says so.
    if bad := unreadable(node, unit_enabled, expected, ok_status=(0, 1)):
        return bad
    match = re.search(
        r'^APT::Periodic::Unattended-Upgrade\s+"(\d+)";', apt_config_dump.stdout, re.M
    )
    periodic = match.group(1) if match else "unset"
    enabled = unit_enabled.stdout.strip()
    measured = f"periodic={periodic}, unit {enabled}"
    if periodic.isdigit() and 1 <= int(periodic) <= 7 and enabled == "enabled":
        return passed(measured, expected, f"{node}: unattended upgrades on")
    return failed(measured, expected, f"{node}: unattended upgrades off ({measured})")


def ssh_password_off(node: str, sshd_t: Reading) -> Verdict:
    """Effective sshd config (`sshd -T`): no password or keyboard-interactive logins."""
    expected = "passwordauthentication no, kbdinteractiveauthentication no"
    if bad := unreadable(node, sshd_t, expected):
        return bad
    config = {}
    for line in sshd_t.stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            config[key.lower()] = value.strip().lower()
    found = {
        k: config.get(k, "unknown")
        for k in ("passwordauthentication", "kbdinteractiveauthentication")
    }
    measured = ", ".join(f"{k} {v}" for k, v in found.items())
    if any(v != "no" for v in found.values()):
        return failed(measured, expected, f"{node}: SSH accepts passwords ({measured})")
    return passed(measured, expected, f"{node}: SSH keys only")


def parse_enabled_addons(status_yaml: str) -> list[str]:
    """Enabled add-ons of `microk8s status --format yaml`, in its order (the edge's parser)."""
    return [n for n, st in parse_status(status_yaml).addons.items() if st == "enabled"]
