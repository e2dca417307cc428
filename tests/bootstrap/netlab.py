"""A throw-away network of namespaces on the real kernel, for running the node firewall.

One `unshare --mount --net` holder process owns a private mount namespace (tmpfs on /run,
private copies of /etc/ufw, /etc/default/ufw and /lib/ufw) and a network namespace that plays
the LAN switch and the router to the outside. Inside it, `ip netns` creates:

    node     the MicroK8s node under test: eth0 on the LAN, a Calico-style cali* veth to `pod`
    peer     another node of the environment subnet (same LAN)
    outside  a host outside the subnet, reached through the router
    pod      a pod on `node` (a /32 behind 169.254.1.1, the way Calico wires workloads)

Nothing leaves these namespaces: the machine's own firewall, /etc and /run are never touched,
and everything dies with the holder process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

OUTSIDE_IP = IPv4Address("203.0.113.10")  # TEST-NET-3: never a real host
ROUTER_OUTSIDE_IP = IPv4Address("203.0.113.1")
CALICO_GATEWAY = "169.254.1.1"  # the link-local next hop Calico gives every workload
POD_VETH = "cali0a1b2c3d4e5"  # matches ufw's `allow in on cali+`, like Calico's veths
# Paths the firewall script and ufw write, shadowed by private copies (ufw: /etc/ufw,
# /etc/default/ufw, and its state dir /lib/ufw, ufw/common.py state_dir).
UFW_PATHS = ("/etc/ufw", "/etc/default/ufw", "/lib/ufw")

SERVER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ, int(port))
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, (ip, peer_port) = key.fileobj.accept()
        conn.sendall(f"{key.data} {ip}:{peer_port}\n".encode())
        conn.close()
"""

PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    ip, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(float(sys.argv[1]))
    try:
        s.connect((ip, int(port)))
        return "open " + s.recv(200).decode().strip()
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as e:
        return "error " + str(e)
    finally:
        s.close()
with ThreadPoolExecutor(16) as pool:
    print(json.dumps(dict(zip(sys.argv[2:], pool.map(probe, sys.argv[2:])))))
"""


@dataclass(frozen=True)
class Addresses:
    subnet: IPv4Network
    gateway: IPv4Address
    node: IPv4Address
    peer: IPv4Address
    pod: IPv4Address


class Lab:
    def __init__(self, holder: subprocess.Popen[bytes], addresses: Addresses, scratch: Path):
        self._holder = holder
        self.addr = addresses
        self.scratch = scratch  # a host directory the namespaces see too
        self._servers: list[subprocess.Popen[str]] = []

    def _argv(self, ns: str | None, argv: Sequence[str]) -> list[str]:
        enter = ["nsenter", "-t", str(self._holder.pid), "-m", "-n", "--"]
        return enter + (["ip", "netns", "exec", ns] if ns else []) + list(argv)

    def sh(self, ns: str | None, script: str, check: bool = True) -> str:
        """Run `sh -c script` in namespace `ns` (None: the router); its stdout."""
        done = subprocess.run(
            self._argv(ns, ["sh", "-c", script]), capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"in {ns or 'router'}: {script}\n{done.stdout}{done.stderr}")
        return done.stdout

    def serve(self, ns: str, ports: Sequence[int]) -> None:
        """Listen on `ports` in `ns`; each connection gets `PORT PEER_IP:PEER_PORT`."""
        argv = ["python3", "-c", SERVER, *map(str, ports)]
        proc = subprocess.Popen(self._argv(ns, argv), stdout=subprocess.PIPE, text=True)
        self._servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def probe(self, ns: str, targets: Sequence[str], timeout_s: float = 1.0) -> dict[str, str]:
        """Connect from `ns` to each `IP:PORT`: `open <reply>`, `refused` or `timeout`."""
        out = self.sh(ns, " ".join(["python3", "-c", _quote(PROBE), str(timeout_s), *targets]))
        result: dict[str, str] = json.loads(out)
        return result

    def close(self) -> None:
        procs: list[subprocess.Popen[Any]] = [*self._servers, self._holder]
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def require_root() -> None:
    if os.geteuid() != 0:
        raise AssertionError(
            "the firewall test creates network and mount namespaces and needs root "
            "(CI runs as root); run it as root or in a container"
        )


@contextmanager
def lab(addresses: Addresses, scratch: Path) -> Iterator[Lab]:
    require_root()
    for tool in ("unshare", "nsenter", "ip", "iptables", "ufw"):
        assert shutil.which(tool), f"{tool} is missing (scripts/deps.d/bootstrap.apt installs it)"
    holder = subprocess.Popen(
        ["unshare", "--mount", "--net", "--propagation", "private", "sleep", "infinity"]
    )
    the_lab = Lab(holder, addresses, scratch)
    try:
        _wait_for_namespaces(holder.pid)
        _private_files(the_lab, scratch)
        _wire(the_lab)
        yield the_lab
    finally:
        the_lab.close()


def _wait_for_namespaces(pid: int) -> None:
    mine = Path("/proc/self/ns/net").readlink()
    for _ in range(100):
        try:
            if Path(f"/proc/{pid}/ns/net").readlink() != mine:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise AssertionError("unshare did not create a network namespace")


def _private_files(lab: Lab, scratch: Path) -> None:
    binds = []
    for path in UFW_PATHS:
        copy = scratch / path.strip("/").replace("/", "_")
        if Path(path).is_dir():
            shutil.copytree(path, copy, symlinks=True)
        else:
            shutil.copy2(path, copy)
        binds.append(f"mount --bind {copy} {path}")
    lab.sh(None, " && ".join(["mount -t tmpfs tmpfs /run", "mkdir /run/netns", *binds]))


def _wire(lab: Lab) -> None:
    a = lab.addr
    prefix = a.subnet.prefixlen
    lab.sh(
        None,
        f"""set -e
for ns in node peer outside pod; do ip netns add $ns; ip -n $ns link set lo up; done
ip link set lo up
sysctl -qw net.ipv4.ip_forward=1
ip link add lan type bridge && ip addr add {a.gateway}/{prefix} dev lan && ip link set lan up
for ns in node peer; do
  ip link add lan-$ns type veth peer name eth0 netns $ns
  ip link set lan-$ns master lan up
done
ip link add wan type veth peer name eth0 netns outside
ip addr add {ROUTER_OUTSIDE_IP}/24 dev wan && ip link set wan up
ip -n node addr add {a.node}/{prefix} dev eth0 && ip -n node link set eth0 up
ip -n node route add default via {a.gateway}
ip -n peer addr add {a.peer}/{prefix} dev eth0 && ip -n peer link set eth0 up
ip -n peer route add default via {a.gateway}
ip -n outside addr add {OUTSIDE_IP}/24 dev eth0 && ip -n outside link set eth0 up
ip -n outside route add default via {ROUTER_OUTSIDE_IP}
ip -n node link add {POD_VETH} type veth peer name eth0 netns pod
ip -n node link set {POD_VETH} up
ip netns exec node sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.{POD_VETH}.proxy_arp=1
ip -n node route add {a.pod}/32 dev {POD_VETH}
ip -n pod addr add {a.pod}/32 dev eth0 && ip -n pod link set eth0 up
ip -n pod route add {CALICO_GATEWAY} dev eth0 && ip -n pod route add default via {CALICO_GATEWAY}
""",
    )
