"""Command doubles for `microk8s`, `snap` and `cloud-init` on test nodes (real sshd sessions).

Small and faithful to the documented CLI: every output below cites where its text comes from
(MK = canonical/microk8s scripts/wrappers/*.py; CA = canonical/microk8s-cluster-agent;
REF = shared/reference/microk8s.md "CLI output facts"). State lives in one JSON file under
$MK8S_DOUBLE_STATE (flock-protected: nodes run commands in parallel):

- per node: ip, installed/held/running, the dqlite cluster it belongs to, machine-id file,
  server certificate (a real x509 with the SANs the launch configuration asked for);
- per cluster: dqlite members (ip, role), enabled add-ons, add-node tokens, cert fingerprint;
- faults, per node, set by tests: `join_drop` (register in dqlite, then drop the SSH
  connection, leaving the node half-joined), `join_fail` (always fail with a message),
  `cloud_init` (status to report);
- `delay_s`: how long each node step (cloud-init wait, status --wait-ready) takes.

Every invocation is appended to journal.jsonl ({node, argv}) so tests assert on what mk8s ran.
The node is told by $SSHD_NODE (set by tests/support/sshd.py), or by the server address in
$SSH_CONNECTION as on a real machine.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("MK8S_DOUBLE_STATE", "/nonexistent"))
VERSION = "v1.33.5"
REVISION = "8205"
CLUSTER_AGENT_PORT = 25000


def _site() -> None:
    """The wrappers start Python with -S (each command is a process: startup time counts);
    the few commands that need site-packages (yaml, cryptography) load it on demand."""
    import site

    site.main()


# --- state ---------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(root: Path = ROOT) -> Iterator[dict[str, Any]]:
    """Read-modify-write the state under an exclusive lock."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "state.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "state.json"
        state = json.loads(path.read_text()) if path.exists() else {"nodes": {}, "clusters": {}}
        try:
            yield state
        finally:  # commands that fail half-way (remove-node, a dropped join) still change state
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
            tmp.replace(path)


def node_dir(name: str, root: Path = ROOT) -> Path:
    return root / name


def _write_cert(root: Path, name: str, ips: list[str]) -> None:
    """A real self-signed server certificate with these IP SANs (what `server.crt` holds)."""
    _site()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))  # REF: server.crt 365 days
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    certs = node_dir(name, root) / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _template_ips(root: Path, name: str) -> list[str]:
    path = node_dir(name, root) / "certs" / "csr.conf.template"
    if not path.exists():
        return []
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.strip().startswith("IP.") and "=" in line
    ]


def _server_cert_ips(root: Path, name: str, node: Mapping[str, Any]) -> list[str]:
    # MicroK8s signs server.crt for 127.0.0.1, the service IP, the host IPs and the
    # `#MOREIPS` it fills from extraSANs (MK: microk8s-resources/certs/csr.conf.template).
    return [
        "127.0.0.1",
        "10.152.183.1",
        node["ip"],
        *node["extra_sans"],
        *_template_ips(root, name),
    ]


def install(state: dict[str, Any], root: Path, name: str, channel: str) -> None:
    """`snap install microk8s`: reads the launch configuration and starts a 1-node cluster.

    REF "Launch configuration": read at install from /etc/microk8s.yaml (here the node's
    state directory stands in for /etc); its add-ons run on install; extraSANs go into the
    server certificate.
    """
    _site()
    import yaml

    node = state["nodes"][name]
    lc_path = node_dir(name, root) / "microk8s.yaml"
    lc = yaml.safe_load(lc_path.read_text()) if lc_path.exists() else {"addons": [{"name": "dns"}]}
    cluster_id = uuid.uuid4().hex[:12]
    state["clusters"][cluster_id] = {
        "members": [{"ip": node["ip"], "role": "voter"}],
        "addons": {
            a["name"]: a.get("args", []) for a in lc.get("addons") or [] if not a.get("disable")
        },
        "tokens": {},
        "check": secrets.token_hex(16),  # the server cert fingerprint in join URLs
        "k8s_nodes": [name],
    }
    node.update(installed=True, channel=channel, held=False, running=True, cluster=cluster_id)
    node["extra_sans"] = [str(s) for s in lc.get("extraSANs") or []]
    _write_cert(root, name, _server_cert_ips(root, name, node))


def seed(
    root: Path,
    nodes: Mapping[str, str],
    launch_configs: Mapping[str, str],
    *,
    channel: str = "1.33/stable",
    held: bool = True,
) -> None:
    """The nodes as cloud-init leaves them: launch config written, MicroK8s installed, held."""
    with locked(root) as state:
        for name, ip in nodes.items():
            node_dir(name, root).mkdir(parents=True, exist_ok=True)
            (node_dir(name, root) / "microk8s.yaml").write_text(launch_configs[name])
            (node_dir(name, root) / "machine-id").write_text(uuid.uuid4().hex + "\n")
            state["nodes"][name] = {"ip": ip, "installed": False, "faults": {}}
            install(state, root, name, channel)
            state["nodes"][name]["held"] = held


def form(root: Path, names: list[str], addons: Mapping[str, list[str]]) -> None:
    """Test shortcut: the state a finished bootstrap leaves (all joined, 3 voters, add-ons on),
    for tests whose subject is not formation itself."""
    with locked(root) as state:
        first = state["nodes"][names[0]]
        cluster = state["clusters"][first["cluster"]]
        for i, name in enumerate(names[1:], start=1):
            node = state["nodes"][name]
            state["clusters"].pop(node["cluster"], None)
            node["cluster"] = first["cluster"]
            role = "voter" if i < 3 else "standby"
            cluster["members"].append({"ip": node["ip"], "role": role})
            cluster["k8s_nodes"].append(name)
        cluster["addons"].update(addons)


def set_fault(root: Path, name: str, **faults: Any) -> None:
    with locked(root) as state:
        state["nodes"][name]["faults"].update(faults)


def set_delay(root: Path, seconds: float) -> None:
    with locked(root) as state:
        state["delay_s"] = seconds


def journal(root: Path) -> list[dict[str, Any]]:
    path = root / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def cluster_of(state: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    cid = state["nodes"][name].get("cluster")
    return state["clusters"].get(cid) if cid else None


# --- the commands --------------------------------------------------------------------------


class ExitError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def out(*lines: str) -> None:
    for line in lines:
        print(line)


def err(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def whoami(state: Mapping[str, Any]) -> str:
    name = os.environ.get("SSHD_NODE")
    if name:
        return name
    server_ip = os.environ.get("SSH_CONNECTION", "").split()[2:3]
    for n, node in state["nodes"].items():
        if [node["ip"]] == server_ip:
            return n
    err("double: cannot tell which node this is (no SSHD_NODE, unknown SSH_CONNECTION)")
    raise ExitError(99)


def _delay(state: Mapping[str, Any]) -> None:
    delay = float(state.get("delay_s") or 0)
    if delay:
        time.sleep(delay)


def cmd_cloud_init(name: str, argv: list[str]) -> None:
    # cloud-init status [--wait] [--long]: `status: done` and exit 0; `status: error` exit 1;
    # 23.4+ exit 2 for degraded/recoverable errors (cloud-init docs, "cloud-init status").
    with locked() as state:
        fault = state["nodes"][name]["faults"].get("cloud_init", "done")
    if argv[:1] != ["status"]:
        err(f"double: cloud-init {' '.join(argv)} is not modelled")
        raise ExitError(2)
    if "--wait" in argv:
        _delay(state)
    out(f"status: {fault}")
    raise ExitError({"done": 0, "error": 1}.get(fault, 2))


def cmd_snap(name: str, argv: list[str]) -> None:
    with locked() as state:
        node = state["nodes"][name]
        if argv[:2] == ["list", "microk8s"]:
            if not node["installed"]:
                # snapd: `error: no matching snaps installed`, exit 1.
                err("error: no matching snaps installed")
                raise ExitError(1)
            notes = "classic,held" if node["held"] else "classic"  # snapd >= 2.58 notes
            out(
                "Name      Version  Rev   Tracking     Publisher   Notes",
                f"microk8s  {VERSION}  {REVISION}  {node['channel']}  canonical✓  {notes}",
            )
            return
        if argv[:1] == ["install"] and "microk8s" in argv:
            channel = next((a.split("=", 1)[1] for a in argv if a.startswith("--channel=")), "")
            if node["installed"]:
                out("snap \"microk8s\" is already installed, see 'snap help refresh'")
                return
            install(state, ROOT, name, channel or "latest/stable")
            out(f"microk8s ({channel}) {VERSION} from Canonical✓ installed")
            return
        if argv[:3] == ["refresh", "--hold", "microk8s"]:
            node["held"] = True
            out('General refreshes of "microk8s" held indefinitely')
            return
    err(f"double: snap {' '.join(argv)} is not modelled")
    raise ExitError(2)


def _status_yaml(state: dict[str, Any], name: str) -> None:
    # MK scripts/wrappers/status.py print_yaml (1.28+): microk8s.running, high-availability
    # {enabled, nodes[{address ip:19001, role}]}, addons[{name, repository, description,
    # version, status}]. Not running: `message:` and exit 1 (REF).
    node = state["nodes"][name]
    cluster = cluster_of(state, name)
    running = node["installed"] and node["running"] and cluster is not None
    out("microk8s:", f"  running: {running}")
    if not running:
        out(
            "high-availability:",
            "  message: microk8s is not running. Use microk8s inspect for a deeper inspection.",
        )
        raise ExitError(1)
    assert cluster is not None
    _settle(cluster)
    out("high-availability:", f"  enabled: {len(cluster['members']) > 1}", "  nodes:")
    for m in cluster["members"]:
        out(f"    - address: {m['ip']}:19001", f"      role: {m['role']}")
    out("addons:")
    # A few core add-ons always show up (as disabled) so that parsers meet both states.
    for addon in sorted({*cluster["addons"], "dashboard", "metallb", "registry"}):
        status = "enabled" if addon in cluster["addons"] else "disabled"
        out(
            f"  - name: {addon}",
            f"    repository: {'community' if addon == 'argocd' else 'core'}",
            f"    description: the {addon} add-on",
            "    version: 1.33",
            f"    status: {status}",
        )


def _settle(cluster: dict[str, Any]) -> None:
    """A joined node shows up as `spare` first and gets its role at the next look (dqlite
    promotes asynchronously): first 3 voters, next 3 standby, rest spare (REF "HA")."""
    for m in cluster["members"]:
        if m["role"] == "joining":
            m["role"] = "spare"
            return
    for m in cluster["members"]:
        if m["role"] == "spare":
            voters = sum(1 for x in cluster["members"] if x["role"] == "voter")
            standby = sum(1 for x in cluster["members"] if x["role"] == "standby")
            m["role"] = "voter" if voters < 3 else "standby" if standby < 3 else "spare"
            if m["role"] != "spare":
                return


def _add_node(state: dict[str, Any], name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/add_token.py: -l/--token-ttl (default -1 = single use), -t/--token
    # (>= 32 chars), --format pretty|short|token|token-check|json|yaml.
    cluster = cluster_of(state, name)
    assert cluster is not None
    ttl, fmt, token = -1, "pretty", secrets.token_hex(16)
    it = iter(argv)
    for arg in it:
        if arg in ("-l", "--token-ttl"):
            ttl = int(next(it))
        elif arg in ("-t", "--token"):
            token = next(it)
        elif arg.startswith("--format"):
            fmt = arg.split("=", 1)[1] if "=" in arg else next(it)
    if len(token) < 32:
        out("Invalid token size.  It must be 32 characters long.")
        raise ExitError(1)
    cluster["tokens"][token] = -1 if ttl == -1 else time.time() + ttl
    ip, check = state["nodes"][name]["ip"], cluster["check"]
    url = f"{ip}:{CLUSTER_AGENT_PORT}/{token}/{check}"
    if fmt == "json":
        out(json.dumps({"token": f"{token}/{check}", "urls": [url]}, indent=2))
    elif fmt == "token-check":
        out(f"{token}/{check}")
    elif fmt == "token":
        out(token)
    else:
        out(
            "From the node you wish to join to this cluster, run the following:",
            f"microk8s join {url}",
            "",
        )


def _kill_my_ssh_session() -> None:
    """Drop the SSH connection this command runs in: kill the nearest sshd ancestor."""
    pid = os.getppid()
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm == "sshd":
            os.kill(pid, signal.SIGKILL)
            return
        pid = int(stat.rsplit(")", 1)[1].split()[1])


def _join(state: dict[str, Any], name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/join.py + CA join handler; texts from REF "join".
    node = state["nodes"][name]
    url = next((a for a in argv if not a.startswith("-")), "")
    host, _, rest = url.partition(":")
    port, _, secret = rest.partition("/")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        out(f"Invalid connection: {url.split('/')[0]} is not an IP address")  # 1.29+ (REF)
        raise ExitError(1) from None
    out(f"Contacting cluster at {host}")
    fault = node["faults"].get("join_fail")
    if fault:
        out(f"Connection failed. {fault}.")
        raise ExitError(6)
    target = next((n for n, v in state["nodes"].items() if v["ip"] == host), None)
    cluster = cluster_of(state, target) if target else None
    token, _, check = secret.partition("/")
    if cluster is None or port != str(CLUSTER_AGENT_PORT):
        out(f"Connection failed. Failed to connect to {host}:{port} (502).")
        raise ExitError(6)
    expiry = cluster["tokens"].get(token)
    if expiry is None or (expiry != -1 and expiry < time.time()):
        out("Connection failed. Invalid token (500).")
        raise ExitError(6)
    if check and check != cluster["check"]:
        out("Connection failed. Certificate fingerprint does not match (500).")
        raise ExitError(6)
    if any(m["ip"] == node["ip"] for m in cluster["members"]):
        # CA 1.29+: 500, "Failed to retrieve dqlite cluster nodes:" prefix (REF).
        out(
            "Connection failed. Failed to retrieve dqlite cluster nodes: "
            f"the joining node ({node['ip']}) is already known to dqlite (500)."
        )
        raise ExitError(6)
    if expiry == -1:
        del cluster["tokens"][token]  # single-use token (add_token.py)
    cluster["members"].append({"ip": node["ip"], "role": "joining"})
    if node["faults"].pop("join_drop", None):
        # dqlite has registered the node, the node never hears back: half-joined (#3694).
        raise DropConnectionError
    old = node["cluster"]
    node["cluster"] = state["nodes"][target]["cluster"] if target else None
    if old and old != node["cluster"]:
        state["clusters"].pop(old, None)
    cluster["k8s_nodes"].append(name)  # now a Kubernetes node too (remove-node tells apart)
    out(
        "Waiting for this node to finish joining the cluster. .. .. .. ..",
        "Successfully joined the cluster.",
    )


class DropConnectionError(Exception):
    pass


def _remove_node(state: dict[str, Any], name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/remove_node.py: a node unknown to Kubernetes but still in dqlite is
    # removed from dqlite with --force, after printing these lines, and the command exits 1.
    cluster = cluster_of(state, name)
    assert cluster is not None
    target = next((a for a in argv if not a.startswith("-")), "")
    force = "--force" in argv
    by_ip = {state["nodes"][n]["ip"]: n for n in cluster["k8s_nodes"]}
    k8s_name = by_ip.get(target, target if target in cluster["k8s_nodes"] else None)
    if k8s_name is None:
        out(f"Node {target} does not exist in Kubernetes.")
        if force:
            out(f"Attempting to remove {target} from dqlite.")
            before = len(cluster["members"])
            cluster["members"] = [m for m in cluster["members"] if m["ip"] != target]
            if len(cluster["members"]) < before:
                out("Removing node entry found in dqlite.")
        raise ExitError(1)
    ip = state["nodes"][k8s_name]["ip"]
    if not force:
        out(f"Removal failed. Node {k8s_name} is registered with dqlite. ")
        raise ExitError(1)
    cluster["members"] = [m for m in cluster["members"] if m["ip"] != ip]
    cluster["k8s_nodes"].remove(k8s_name)


def _enable(state: dict[str, Any], name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/enable.py and REF "enable/disable".
    cluster = cluster_of(state, name)
    assert cluster is not None
    spec = argv[0]
    addon, _, args = spec.partition(":")
    known = {
        "dns",
        "rbac",
        "hostpath-storage",
        "metrics-server",
        "dashboard",
        "metallb",
        "ingress",
        "cert-manager",
        "registry",
        "observability",
        "community",
    }
    # Community add-ons resolve only once `community` added its repository; before that MK
    # scripts/wrappers/common/utils.py (1.33) parse_xable_addon_args names the repository.
    community = {"argocd"} if "community" in cluster["addons"] else set()
    if addon not in known | community:
        out(f"Addon {addon} was not found in any repository")
        if addon == "argocd":
            out("To use the community maintained flavor enable the respective repository:")
            out("", "    microk8s enable community", "")
        raise ExitError(1)
    repo = "community" if addon in community else "core"
    err(f"Infer repository {repo} for addon {addon}")
    if addon in cluster["addons"]:
        out(f"Addon {repo}/{addon} is already enabled")
        return
    if addon == "metallb" and not args:
        out(
            "Enter each IP address range delimited by comma (e.g. '10.64.140.43-10.64.140.49,192.168.0.105-192.168.0.111'):"
        )
        raise ExitError(1)  # would prompt; non-interactive sessions fail
    cluster["addons"][addon] = [args] if args else []
    out(
        f"Enabling {addon}",
        f"{addon.capitalize()} is enabled" if addon != "dns" else "DNS is enabled",
    )


def _config(state: dict[str, Any], name: str) -> None:
    # `microk8s config`: admin kubeconfig, server on port 16443 at the default-route IP (REF).
    ip = state["nodes"][name]["ip"]
    cluster = cluster_of(state, name)
    assert cluster is not None
    out(
        "apiVersion: v1",
        "clusters:",
        "- cluster:",
        "    certificate-authority-data: TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ==",
        f"    server: https://{ip}:16443",
        "  name: microk8s-cluster",
        "contexts:",
        "- context:",
        "    cluster: microk8s-cluster",
        "    user: admin",
        "  name: microk8s",
        "current-context: microk8s",
        "kind: Config",
        "preferences: {}",
        "users:",
        "- name: admin",
        "  user:",
        f"    client-certificate-data: {cluster['check']}",
        f"    client-key-data: {cluster['check']}",
    )


def cmd_microk8s(name: str, argv: list[str]) -> None:
    verb, rest = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "status" and "--wait-ready" in rest:
        with locked() as state:
            pass
        _delay(state)
    with locked() as state:
        node = state["nodes"][name]
        if not node["installed"]:
            err("microk8s: command not found")
            raise ExitError(127)
        if verb == "status" and "yaml" in rest:
            _status_yaml(state, name)
        elif verb == "add-node":
            _add_node(state, name, rest)
        elif verb == "join":
            _join(state, name, rest)
        elif verb == "remove-node":
            _remove_node(state, name, rest)
        elif verb == "enable":
            _enable(state, name, rest)
        elif verb == "config":
            _config(state, name)
        elif verb == "refresh-certs" and "server.crt" in rest:
            # MK refresh_certs.py: regenerates server.crt from csr.conf.template.
            _write_cert(ROOT, name, _server_cert_ips(ROOT, name, node))
            out(
                "Taking a backup of the current certificates under /var/snap/microk8s/current/certs-backup/",
                "Creating new certificates",
                "Restarting service kubelite.",
            )
        else:
            err(f"double: microk8s {' '.join(argv)} is not modelled")
            raise ExitError(2)


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    with locked() as state:
        name = whoami(state)
    with (ROOT / "journal.jsonl").open("a") as j:
        j.write(json.dumps({"node": name, "argv": [command, *args]}) + "\n")
    handler = {"microk8s": cmd_microk8s, "snap": cmd_snap, "cloud-init": cmd_cloud_init}[command]
    try:
        handler(name, args)
    except ExitError as exc:
        return exc.code
    except DropConnectionError:
        sys.stdout.flush()
        _kill_my_ssh_session()
        return 255
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
