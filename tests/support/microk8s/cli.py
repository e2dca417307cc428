"""`microk8s`, `snap` and `cloud-init` as the model's nodes answer them (run through bin/).

Texts and exit codes are MicroK8s' own (sources cited per verb; abbreviations as in model.py).
Every invocation is appended to journal.jsonl ({node, argv}) so tests assert on what mk8s ran.
The node is told by $SSHD_NODE (tests/support/sshd.py) or by the server address in
$SSH_CONNECTION, as on a real machine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.microk8s import certs, model, snapcmd
from tests.support.microk8s.model import State, cluster_of, locked

CLUSTER_AGENT_PORT = 25000
TOKEN_MIN_LEN = 32  # MK scripts/wrappers/common/cluster/utils.py TOKEN_MIN_LEN
FINGERPRINT_MIN_LEN = 12
NOT_RUNNING = "microk8s is not running. Use microk8s inspect for a deeper inspection."

# CORE@1.33 addons.yaml: name -> description (`status` lists them sorted by name).
CATALOGUE = {
    "cert-manager": "Cloud native certificate management",
    "cis-hardening": "Apply CIS K8s hardening",
    "community": "The community addons repository",
    "dashboard": "The Kubernetes dashboard",
    "dns": "CoreDNS",
    "ha-cluster": "Configure high availability on the current node",
    "helm": "Helm - the package manager for Kubernetes",
    "helm3": "Helm 3 - the package manager for Kubernetes",
    "hostpath-storage": "Storage class; allocates storage from host directory",
    "ingress": "Ingress controller for external access",
    "metallb": "Loadbalancer for your Kubernetes cluster",
    "metrics-server": "K8s Metrics Server for API access to service metrics",
    "observability": "A lightweight observability stack for logs, traces and metrics",
    "rbac": "Role-Based Access Control for authorisation",
    "registry": "Private image registry exposed on localhost:32000",
}
# Add-ons of the community repository, listed once `microk8s enable community` added it
# (canonical/microk8s-community-addons@0088a22:addons.yaml; mk8s enables only argocd).
COMMUNITY = {"argocd": "Argo CD is a declarative continuous deployment for Kubernetes."}
# CORE@1.33 addons/observability/enable enables these first.
OBSERVABILITY_NEEDS = ("dns", "helm3", "hostpath-storage")


class ExitError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class DropConnectionError(Exception):
    """The SSH link dies mid-command (a half-finished join, canonical/microk8s#3694)."""


def out(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def whoami(state: State) -> str:
    name = os.environ.get("SSHD_NODE")
    if name:
        return name
    server_ip = os.environ.get("SSH_CONNECTION", "").split()[2:3]
    for n, node in state["nodes"].items():
        if [node["ip"]] == server_ip:
            return str(n)
    print("model: cannot tell which node this is", file=sys.stderr)
    raise ExitError(99)


# --- cloud-init and snap ---------------------------------------------------------------------


def cmd_cloud_init(name: str, argv: list[str]) -> None:
    # `cloud-init status [--wait]`: `status: done` exit 0, `status: error` exit 1, 23.4+ exit 2
    # for degraded (cloud-init docs "cloud-init status").
    with locked() as state:
        fault = state["nodes"][name]["faults"].get("cloud_init", "done")
        delay = float(state["delay_s"])
    if argv[:1] != ["status"]:
        raise ExitError(2)
    if "--wait" in argv and delay:
        time.sleep(delay)
    out(f"status: {fault}")
    raise ExitError({"done": 0, "error": 1}.get(fault, 2))


def cmd_snap(name: str, argv: list[str]) -> None:
    try:
        snapcmd.cmd_snap(name, argv, install)
    except snapcmd.SnapExitError as exc:
        raise ExitError(exc.code) from None


def install(state: State, name: str, channel: str, base: Path | None = None) -> None:
    """`snap install microk8s`: the launch configuration (/etc/microk8s.yaml, here the node's
    state directory) is read once; SANs before first start, add-ons after start, asynchronously
    (CA pkg/k8sinit launch loop); a fresh lone dqlite on 127.0.0.1 (MK utils.sh init_cluster)."""
    certs.load_site()
    import yaml

    node = state["nodes"][name]
    base = base or model.root()
    lc_path = base / name / "microk8s.yaml"
    lc = yaml.safe_load(lc_path.read_text()) if lc_path.exists() else {}
    node.update(installed=True, channel=channel, held=False, running=True, stopped=False)
    # The channel's release in the store; a channel the store lacks gets the rig's version.
    minor = str(state["version"])
    fallback = model.DEFAULT_STORE.get(f"{minor}/stable", model.DEFAULT_STORE["1.33/stable"])
    node.update(snapcmd.release(state, channel) or fallback, previous=None)
    node["extra_sans"] = [str(s) for s in lc.get("extraSANs") or []]
    # Without a launch configuration the bundled default enables dns (MK: microk8s.yaml default).
    wanted = lc.get("addons") if lc else [{"name": "dns"}]
    node["launch_addons"] = {
        a["name"]: list(a.get("args") or []) for a in wanted or [] if not a.get("disable")
    }
    node["launch_addons_at"] = time.time() + float(state["launch_addons_delay_s"])
    model.new_cluster(state, name)
    certs.install_certs(base, name, node)


# --- status ----------------------------------------------------------------------------------


def dqlite_info(state: State, name: str) -> list[tuple[str, str]]:
    """MK common/utils.py get_dqlite_info: (address, role) per member, or [] when the query
    failed (it gives up after its retries and returns an empty list)."""
    node = state["nodes"][name]
    if node["faults"].get("dqlite_query_fails"):
        return []
    slow = float(node["faults"].get("dqlite_slow_s") or 0)
    if slow:
        time.sleep(slow)
    return [(m["address"], m["role"]) for m in cluster_of(state, name)["members"]]


def is_ready(state: State, name: str) -> bool:
    """MK common/utils.py is_cluster_ready: the local API answers and *any* node is Ready."""
    node = state["nodes"][name]
    if not model.kubelite_up(node) or node["join_lock"]:
        return False
    cluster = cluster_of(state, name)
    return any(
        not state["nodes"][n]["faults"].get("kubelet_not_ready") and state["nodes"][n]["powered"]
        for n in cluster["k8s_nodes"]
        if n in state["nodes"]
    )


def catalogue(state: State, name: str) -> dict[str, tuple[str, str]]:
    """Add-on -> (repository, description) of the repositories this cluster has added."""
    known = {a: ("core", d) for a, d in CATALOGUE.items()}
    if "community" in cluster_of(state, name)["addons"]:
        known |= {a: ("community", d) for a, d in COMMUNITY.items()}
    return known


def addon_lists(state: State, name: str) -> tuple[list[str], list[str]]:
    enabled = cluster_of(state, name)["addons"]
    names = sorted(catalogue(state, name))
    return [a for a in names if a in enabled], [a for a in names if a not in enabled]


def print_pretty(state: State, name: str, ready: bool) -> None:
    # MK scripts/wrappers/status.py print_pretty; `high-availability: yes` when voters > 2.
    if not ready:
        out(NOT_RUNNING)
        return
    info = dqlite_info(state, name)
    out("microk8s is running")
    voters = [a for a, r in info if r == "voter"]
    standby = [a for a, r in info if r == "standby"]
    out(f"high-availability: {'yes' if len(voters) > 2 else 'no'}")
    out(f"  datastore master nodes: {' '.join(voters) or 'none'}")
    out(f"  datastore standby nodes: {' '.join(standby) or 'none'}")
    enabled, disabled = addon_lists(state, name)
    known = catalogue(state, name)
    out("addons:")
    for label, group in (("enabled", enabled), ("disabled", disabled)):
        if group:
            out(f"  {label}:")
            out(*(f"    {a:<20} # ({known[a][0]}) {known[a][1]}" for a in group))


def print_yaml(state: State, name: str, ready: bool) -> None:
    # MK status.py print_yaml: `enabled` is the ha-cluster lock, nodes are printed running or
    # not; not running adds `message:` under high-availability.
    out("microk8s:", f"  running: {ready}", "high-availability:")
    ha = "ha-cluster" in cluster_of(state, name)["addons"]
    out(f"  enabled: {ha}")
    if ha:
        out("  nodes:")
        for address, role in dqlite_info(state, name):
            out(f"    - address: {address}", f"      role: {role}")
    if not ready:
        out(f"  message: {NOT_RUNNING}")
        return
    enabled, disabled = addon_lists(state, name)
    known = catalogue(state, name)
    out("addons:")
    for group, status in ((enabled, "enabled"), (disabled, "disabled")):
        for a in group:
            out(
                f"  - name: {a}",
                f"    repository: {known[a][0]}",
                f"    description: {known[a][1]}",
                "    version: 1.33",
                f"    status: {status}",
            )


def print_short(state: State, name: str, ready: bool) -> None:
    if not ready:
        out(NOT_RUNNING)
        return
    enabled, disabled = addon_lists(state, name)
    known = catalogue(state, name)
    out("microk8s is running", "addons:")
    out(
        *(f"{known[a][0]}/{a}: enabled" for a in enabled),
        *(f"{known[a][0]}/{a}: disabled" for a in disabled),
    )


TRACEBACK = """Traceback (most recent call last):
  File "/snap/microk8s/current/scripts/wrappers/status.py", line 221, in <module>
    enabled, disabled = get_status(available_addons, is_ready)
  File "/snap/microk8s/current/scripts/wrappers/common/utils.py", line 558, in get_status
    kube_output = kubectl_get("all,ingress")
subprocess.CalledProcessError: Command '('/snap/microk8s/current/microk8s-kubectl.wrapper', 'get', 'all,ingress', '--all-namespaces')' returned non-zero exit status 1."""


def cmd_status(state: State, name: str, argv: list[str]) -> None:
    node = state["nodes"][name]
    if node["stopped"]:  # MK common/utils.py exit_if_stopped: any --format, exit 0
        out("microk8s is not running, try microk8s start")
        return
    if node["worker"]:  # MK common/utils.py@1.33 is_cluster_locked: exit 1
        out("This MicroK8s deployment is acting as a node in a cluster.")
        out("Please use the master node.")
        raise ExitError(1)
    if node["faults"].get("status_traceback", 0) > 0:  # seen intermittently on 1.28
        node["faults"]["status_traceback"] -= 1
        print(TRACEBACK, file=sys.stderr)
        raise ExitError(1)
    fmt = "pretty"
    for i, arg in enumerate(argv):
        if arg == "--format" and i + 1 < len(argv):
            fmt = argv[i + 1]
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
    ready = is_ready(state, name)
    {"yaml": print_yaml, "short": print_short}.get(fmt, print_pretty)(state, name, ready)
    if not ready:
        raise ExitError(1)


# --- add-node, join, leave, remove-node --------------------------------------------------------


def cmd_add_node(state: State, name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/add_token.py: -l/--token-ttl (default -1: single use), -t/--token,
    # --format pretty|short|token|token-check|json|yaml; check = first 12 hex of the SHA-256 of
    # server.crt in DER (MK utils.sh), so it changes after refresh-certs.
    ttl, fmt, token = -1, "pretty", secrets.token_hex(16)
    it = iter(argv)
    for arg in it:
        if arg in ("-l", "--token-ttl"):
            ttl = int(next(it))
        elif arg in ("-t", "--token"):
            token = next(it)
        elif arg.startswith("--format"):
            fmt = arg.split("=", 1)[1] if "=" in arg else next(it)
    if len(token) < TOKEN_MIN_LEN:
        out("Invalid token size.  It must be 32 characters long.")
        raise ExitError(1)
    node = state["nodes"][name]
    node["tokens"][token] = -1 if ttl == -1 else time.time() + ttl
    check = certs.check(model.root(), name)
    ips = [node["ip"], *node.get("other_ips", [])]  # MK utils.sh get_ips: every host address
    urls = [f"{ip}:{CLUSTER_AGENT_PORT}/{token}/{check}" for ip in ips]
    if fmt == "json":
        out(json.dumps({"token": f"{token}/{check}", "urls": urls}, indent=2))
    elif fmt == "token-check":
        out(f"{token}/{check}")
    elif fmt == "token":
        out(token)
    elif fmt == "short":
        # 1.28/1.29 print the default line, then every address including it again (#4526).
        again = not model.version_at_least(state, 30)
        out(*(f"microk8s join {u}" for u in [urls[0], *urls[0 if again else 1 :]]))
    else:
        out(
            "From the node you wish to join to this cluster, run the following:",
            f"microk8s join {urls[0]}",
            "",
            "Use the '--worker' flag to join a node as a worker not running the control plane, eg:",
            f"microk8s join {urls[0]} --worker",
            "",
            "If the node you are adding is not reachable through the default interface you can "
            "use one of the following:",
            *(f"microk8s join {u}" for u in urls),
        )


def agent_refused(host: str) -> None:
    """Port 25000 closed (agent restarting, node off): MK join.py has no handler for it."""
    print(
        "Traceback (most recent call last):\n"
        '  File "/snap/microk8s/current/scripts/wrappers/join.py", line 1032, in <module>\n'
        '    join(prog_name="microk8s join")\n'
        '  File "/usr/lib/python3.8/http/client.py", line 1418, in connect\n'
        "    super().connect()\n"
        '  File "/usr/lib/python3.8/socket.py", line 796, in create_connection\n'
        "    sock.connect(sa)\n"
        "ConnectionRefusedError: [Errno 111] Connection refused",
        file=sys.stderr,
    )
    raise ExitError(1)


def agent_join(state: State, name: str, target: str, host: str) -> str | None:
    """CA pkg/api/v2/join.go Join, in its order; returns the error text or None."""
    joiner, node = state["nodes"][name], state["nodes"][target]
    faults = node["faults"]
    if faults.get("not_ha"):
        return "Not possible to join. This is not an HA MicroK8s cluster (501)"
    if joiner["ip"] == node["ip"]:
        return f"The joining node has the same IP ({node['ip']}) as the node we contact (503)"
    if faults.get("hostname_unresolvable"):
        return (
            f"The hostname ({joiner['hostname']}) of the joining node does not resolve to the "
            f'IP "{joiner["ip"]}". Refusing join (400)'
        )
    if faults.get("empty_error"):
        return "(500)"
    members = cluster_of(state, target)["members"]
    if any(m["address"].startswith(joiner["ip"] + ":") for m in members):  # CA dqlite.go
        if model.version_at_least(state, 29):
            return (
                "Failed to retrieve dqlite cluster nodes: the joining node "
                f"({joiner['ip']}) is already known to dqlite (500)"
            )
        return f"The joining node ({joiner['ip']}) is already known to dqlite (504)"
    if faults.get("bind_address_missing") and len(members) == 1:
        return (
            "Failed to retrieve dqlite cluster nodes: failed to find matching dqlite bind "
            f"address for {host}:{CLUSTER_AGENT_PORT}: address {host} was not found in any "
            f"host interface. refuse to update dqlite bind address to {host} as it would "
            "break the cluster (500)"
        )
    model.rebind_lone_loopback(state, target)
    return None


def consume_token(node: dict[str, Any], token: str) -> bool:
    """CA pkg/snap/snap.go ConsumeClusterToken: first thing of a join; a token without TTL is
    removed as soon as it is valid, a TTL token stays until it expires."""
    if node["faults"].get("expire_all_tokens"):  # a clock far off, or a TTL shorter than a join
        return False
    expiry = node["tokens"].get(token)
    if expiry is None or (expiry != -1 and expiry < time.time()):
        return False
    if expiry == -1:
        del node["tokens"][token]
    return True


def cmd_join(name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/join.py join(): validate, mark join-in-progress, contact, update dqlite.
    connection = next((a for a in argv if not a.startswith("-")), "")
    parts = connection.split("/")
    endpoint = parts[0].split(":")
    if len(parts) not in (2, 3) or len(endpoint) != 2:
        out(
            "Invalid connection: Expected format: <master_IP>:<master_PORT>/<token>[/<fingerprint>]"
        )
        raise ExitError(1)
    host = endpoint[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        out("Invalid connection: Invalid master IP")  # MK common/cluster/utils.py
        raise ExitError(1) from None
    if len(parts[1]) < TOKEN_MIN_LEN:
        out(f"Invalid connection: Cluster token size should be at least {TOKEN_MIN_LEN} bytes")
        raise ExitError(1)
    with locked() as state:
        faults = state["nodes"][name]["faults"]
        if other := faults.pop("refresh_certs_of", None):  # refresh-certs between add-node/join
            certs.reissue(model.root(), other, state["nodes"][other], "server.crt")
        if other := faults.pop("expire_tokens_of", None):  # the token's TTL ran out meanwhile
            state["nodes"][other]["tokens"].clear()
        state["nodes"][name]["join_lock"] = True  # MK join.py mark_join_in_progress
        out(f"Contacting cluster at {host}")
        target = next((n for n, v in state["nodes"].items() if host in node_ips(v)), None)
        if target is None or not state["nodes"][target]["powered"]:
            agent_refused(host)
        assert target is not None
        if state["nodes"][target]["faults"].get("agent_unreachable"):
            agent_refused(host)
        verify = len(parts) == 3 and "--skip-verify" not in argv
        if verify and not certs.check(model.root(), target).startswith(parts[2]):
            out(  # MK join.py join_request
                f"Joining cluster failed. Could not verify the identity of {host}. "
                "Use '--skip-verify' to skip server certificate check."
            )
            raise ExitError(4)
        if not consume_token(state["nodes"][target], parts[1]):
            out("Connection failed. Invalid token (500).")
            raise ExitError(6)
        error = agent_join(state, name, target, host)
        if error is not None:
            out(f"Connection failed. {error}.")
            raise ExitError(6)
        duration = float(state["join_duration_s"])
        worker = "--worker" in argv
    print("Waiting for this node to finish joining the cluster.", end=" ", flush=True)
    if duration:
        time.sleep(duration)  # MK join.py update_dqlite: services stopped, sleep 10, poll
    with locked() as state:
        node = state["nodes"][name]
        cid = state["nodes"][target]["cluster"]
        old = node["cluster"]
        if worker:  # MK join.py mark_worker_node: clustered.lock, no k8s-dqlite
            node["worker"] = True
            cluster_of(state, target)["k8s_nodes"].append(name)
        else:
            model.add_member(state, cid, name)
            certs.copy_ca(model.root(), target, name)  # MK join.py join_dqlite_master_node
        node["cluster"] = cid
        if old != cid:
            state["clusters"].pop(old, None)
        if node["faults"].pop("join_drop", None):
            raise DropConnectionError  # registered in dqlite, the node never finishes: #3694
        node["join_lock"] = False  # MK join.py unmark_join_in_progress
    print(".. .. .. ..", end=" ", flush=True)
    print(" ", flush=True)
    if model.version_at_least(state, 29):
        out("Successfully joined the cluster.")


def node_ips(node: dict[str, Any]) -> list[str]:
    return [node["ip"], *node.get("other_ips", [])]


def cmd_leave(state: State, name: str) -> None:
    # MK scripts/wrappers/leave.py reset_current_dqlite_installation: refuses the only copy
    # (exit 3); else removes itself from dqlite through the others and re-inits 127.0.0.1.
    cluster = cluster_of(state, name)
    if len(cluster["members"]) == 1 and cluster["members"][0]["node"] == name:
        if len(cluster["k8s_nodes"]) > 1:
            out(
                "This node currently holds the only copy of the Kubernetes database so it "
                "cannot leave the cluster."
            )
            raise ExitError(3)
        return
    model.drop_member(state, state["nodes"][name]["cluster"], model.member_address(state, name))
    out("Generating new cluster certificates.")
    model.new_cluster(state, name)
    state["nodes"][name]["worker"] = False


def cmd_remove_node(state: State, name: str, argv: list[str]) -> None:
    # MK scripts/wrappers/remove_node.py remove_dqlite_node.
    target = next((a for a in argv if not a.startswith("-")), "")
    force = "--force" in argv
    cluster = cluster_of(state, name)
    known = {n: state["nodes"][n]["ip"] for n in cluster["k8s_nodes"] if n in state["nodes"]}
    k8s_name = next((n for n, ip in known.items() if target in (n, ip)), None)
    others = [m for m in cluster["members"] if m["node"] != name]
    if k8s_name is None:
        out(f"Node {target} does not exist in Kubernetes.")
        if force:
            out(f"Attempting to remove {target} from dqlite.")
            for m in others:
                # delete_dqlite_node refuses 127.0.0.1 endpoints.
                if m["address"].startswith(f"{target}:") and "127.0.0.1" not in m["address"]:
                    out("Removing node entry found in dqlite.")
                    model.drop_member(state, state["nodes"][name]["cluster"], m["address"])
        raise ExitError(1)
    address = known[k8s_name]
    entry = next((m for m in others if m["address"].startswith(f"{address}:")), None)
    if entry is not None and not force:
        out(
            f"Removal failed. Node {k8s_name} is registered with dqlite. Please, run first "
            "'microk8s leave' on the departing node. ",
            "If the node is not available anymore and will never attempt to join the cluster "
            "in the future use the '--force' flag ",
            "to unregister the node while removing it.",
        )
        raise ExitError(1)
    if entry is not None:
        model.drop_member(state, state["nodes"][name]["cluster"], entry["address"])
    cluster["k8s_nodes"].remove(k8s_name)  # remove_node: kubectl delete node


# --- add-ons, config, certificates ------------------------------------------------------------


def cmd_enable(state: State, name: str, argv: list[str], enable: bool) -> None:
    # MK scripts/wrappers/enable.py / disable.py, texts from OUT "enable / disable".
    addon, _, args = (argv[0] if argv else "").partition(":")
    known = catalogue(state, name)
    if addon not in known:
        # A community add-on before `enable community`: MK@1.33 scripts/wrappers/common/utils.py
        # parse_xable_addon_args names the repository to enable.
        out(f"Addon {addon} was not found in any repository")
        if addon in COMMUNITY:
            out("To use the community maintained flavor enable the respective repository:")
            out("", "    microk8s enable community", "")
        raise ExitError(1)
    repo = known[addon][0]
    print(f"Infer repository {repo} for addon {addon}", file=sys.stderr)
    addons = cluster_of(state, name)["addons"]
    if enable == (addon in addons):
        out(f"Addon {repo}/{addon} is already {'enabled' if enable else 'disabled'}")
        return
    if not enable:
        del addons[addon]
        out(f"Disabling {addon}", f"{addon} is disabled")
        return
    if addon == "metallb" and not args:
        out("Enter each IP address range delimited by comma (e.g. '10.64.140.43-10.64.140.49'):")
        raise ExitError(1)  # would prompt; a non-interactive session fails
    if addon == "observability":
        for need in OBSERVABILITY_NEEDS:
            addons.setdefault(need, [])
    addons[addon] = [args] if args else [a for a in argv[1:]]
    label = {"metallb": "MetalLB", "ingress": "Ingress", "dns": "DNS"}.get(addon, addon)
    out(f"Enabling {label}", f"{label} is enabled")


def cmd_config(state: State, name: str) -> None:
    # `microk8s config`: the admin kubeconfig, server https://<default IP>:16443.
    ip = state["nodes"][name]["ip"]
    digest = hashlib.sha256(state["nodes"][name]["cluster"].encode()).hexdigest()
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
        f"    client-certificate-data: {digest}",
        f"    client-key-data: {digest}",
    )


def cmd_microk8s(name: str, argv: list[str]) -> None:
    verb, rest = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "join":
        with locked() as state:
            installed = state["nodes"][name]["installed"]
        if not installed:
            raise ExitError(127)
        cmd_join(name, rest)
        return
    if verb == "status" and "--wait-ready" in rest:
        wait_ready(name)
    with locked() as state:
        node = state["nodes"][name]
        if not node["installed"]:
            print("microk8s: command not found", file=sys.stderr)
            raise ExitError(127)
        if verb == "status":
            cmd_status(state, name, rest)
        elif verb == "add-node":
            cmd_add_node(state, name, rest)
        elif verb == "leave":
            cmd_leave(state, name)
        elif verb == "remove-node":
            cmd_remove_node(state, name, rest)
        elif verb in ("enable", "disable"):
            cmd_enable(state, name, rest, verb == "enable")
        elif verb == "config":
            cmd_config(state, name)
        elif verb == "stop":  # MK microk8s-stop: stopped.lock
            node["stopped"] = True
            out("Stopped.")
        elif verb == "start":
            node["stopped"] = False
        elif verb == "refresh-certs":
            if code := certs.cmd_refresh_certs(state, name, rest):
                raise ExitError(code)
        else:
            print(f"model: microk8s {' '.join(argv)} is not modelled", file=sys.stderr)
            raise ExitError(2)


def wait_ready(name: str) -> None:
    """MK status.py --wait-ready: polls is_cluster_ready (any node Ready) every 2 s."""
    with locked() as state:
        delay = float(state["delay_s"])
    if delay:
        time.sleep(delay)
    for _ in range(200):
        with locked() as state:
            if is_ready(state, name) or state["nodes"][name]["stopped"]:
                return
        time.sleep(0.05)


def kill_my_ssh_session() -> None:
    pid = os.getppid()
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.index("(") + 1 : stat.rindex(")")] == "sshd":
            os.kill(pid, signal.SIGKILL)
            return
        pid = int(stat.rsplit(")", 1)[1].split()[1])


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    with locked() as state:
        name = whoami(state)
    with model.journal_path().open("a") as j:
        j.write(json.dumps({"node": name, "argv": [command, *args]}) + "\n")
    if command == "reboot":  # the session dies with the machine, as over real SSH
        with locked() as state:
            model.reboot(state, name)
        sys.stdout.flush()
        kill_my_ssh_session()
        return 0
    handler = {"microk8s": cmd_microk8s, "snap": cmd_snap, "cloud-init": cmd_cloud_init}[command]
    try:
        handler(name, args)
    except ExitError as exc:
        return exc.code
    except DropConnectionError:
        sys.stdout.flush()
        kill_my_ssh_session()
        return 255
    return 0
