"""Bootstrap: MicroK8s on every node, HA formation, add-ons, kubeconfig.

Three moves, as everywhere in mk8s: read facts over SSH (`cloud-init status`, `snap list`,
`microk8s status --format yaml`, machine-id, the API server certificate), compute actions with
the pure functions of `mk8s.bootstrap.formation`, then run them (or print them with `dry_run`).
Re-running converges and changes nothing that is already right. Reaching the nodes (pinned host
keys, sessions, the command journal) is the SSH edge's, `mk8s.edges.ssh`.

Secrets: join tokens come from `microk8s add-node` (one per join, short TTL), travel to the
joiner on the SSH channel's stdin (never in a command line we send, never printed, never
logged: outputs that may contain them are withheld or redacted). The kubeconfig is written to
build/ENV/kubeconfig with mode 0600: the one credential allowed in build/ (gitignored).
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeVar

import yaml
from cryptography import x509
from rich.console import Console
from rich.status import Status

from mk8s.bootstrap import formation, forming
from mk8s.bootstrap.formation import Node, Plan
from mk8s.edges import microk8s as mk
from mk8s.edges.ssh import (
    HostKeySource,
    Journal,
    Login,
    NodeSession,
    NodeUnreachableError,
    Result,
    Target,
    pin_host_keys,
    targets_for,
)
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.model import Environment, NodeSpec

T = TypeVar("T")

KUBECONFIG = "kubeconfig"
KNOWN_HOSTS = "known_hosts"
LOG = "bootstrap.log"
API_PORT = 16443


@dataclass(frozen=True)
class NodePaths:
    """Files mk8s reads or edits on a node (MicroK8s snap layout)."""

    machine_id: str = "/etc/machine-id"
    server_cert: str = "/var/snap/microk8s/current/certs/server.crt"
    csr_template: str = "/var/snap/microk8s/current/certs/csr.conf.template"
    addon_values: str = formation.ADDON_VALUES_DIR


@dataclass(frozen=True)
class Settings:
    user: str
    key_file: str
    paths: NodePaths = NodePaths()
    connect_timeout_s: int = 15
    # cloud-init on a fresh VM (packages, snap install) takes minutes.
    wait_timeout_s: int = 1200
    poll_s: float = 2.0
    join_attempts: int = 4
    backoff_s: float = 5.0
    ha_timeout_s: float = 600.0
    # `status` has been seen to crash now and then (1.28): re-read before calling it unreadable.
    status_attempts: int = 3

    @property
    def login(self) -> Login:
        return Login(self.user, self.key_file, self.connect_timeout_s)


# --- progress -------------------------------------------------------------------------------


class Progress:
    """Per-node progress (rich), thread-safe.

    On a terminal a live status line shows what every node is doing right now, and only
    results (changes, plans, waits) stay on screen; elsewhere (CI logs, tests) every step is
    a line of its own.
    """

    def __init__(self, console: Console, redact: Callable[[str], str]) -> None:
        self._console = console
        self._redact = redact
        self._lock = threading.Lock()
        self._now: dict[str, str] = {}
        self._live: Status | None = None

    def __enter__(self) -> Progress:
        if self._console.is_terminal:
            self._live = self._console.status("starting")
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def step(self, node: str, message: str, *, keep: bool = False) -> None:
        text = self._redact(message)
        with self._lock:
            self._now[node] = text
            if self._live is not None:
                self._live.update(" | ".join(f"[bold]{n}[/bold] {m}" for n, m in self._now.items()))
            if keep or self._live is None:
                self._console.print(f"[bold]{node}[/bold] {text}", soft_wrap=True)


# --- the bootstrap -----------------------------------------------------------------------


@dataclass
class Report:
    changes: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass
class Bootstrap:
    env: Environment
    targets: Mapping[str, Target]
    settings: Settings
    host_keys: HostKeySource
    out_dir: Path
    console: Console
    only: str | None = None
    dry_run: bool = False
    sleep: Callable[[float], None] = time.sleep
    report: Report = field(default_factory=Report)

    def __post_init__(self) -> None:
        if self.only is not None and self.only not in self.targets:
            known = ", ".join(self.targets)
            raise UserError(f"--node {self.only}: not a node of {self.env.name} ({known})")
        self.journal = Journal(None if self.dry_run else self.out_dir / LOG)
        self.progress = Progress(self.console, self.journal.redact)
        self.known_hosts = self.out_dir / KNOWN_HOSTS
        self.sessions: dict[str, NodeSession] = {}
        self.silent: set[str] = set()

    # helpers ----------------------------------------------------------------------------

    @property
    def first(self) -> NodeSpec:
        return self.env.first_node

    def session(self, name: str) -> NodeSession:
        if name not in self.sessions:
            self.sessions[name] = NodeSession(
                self.targets[name], self.settings.login, self.known_hosts, self.journal
            )
        return self.sessions[name]

    def change(self, node: str, what: str) -> None:
        self.report.changes.append(f"{node}: {what}")
        self.progress.step(node, f"[green]changed[/green] {what}", keep=True)

    def plan(self, node: str, what: str) -> None:
        self.report.planned.append(f"{node}: {what}")
        self.progress.step(node, f"[yellow]would[/yellow] {what}", keep=True)

    def parallel(self, names: Sequence[str], fn: Callable[[str], T]) -> dict[str, T]:
        """Run `fn` for every node at once; all errors are reported together."""
        results: dict[str, T] = {}
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            futures = {name: pool.submit(fn, name) for name in names}
            for name, fut in futures.items():
                try:
                    results[name] = fut.result()
                except UserError as exc:
                    errors.extend(exc.lines)
        if errors:
            raise OperationFailedError(*errors)
        return results

    def status(self, name: str) -> mk.Status:
        """This node's own status; an unreadable one (traceback, empty) is re-read a bounded
        number of times before formation names it."""
        for attempt in range(self.settings.status_attempts):
            st = mk.status(self.session(name), timeout=self.settings.wait_timeout_s)
            if st.state != "unreadable" or attempt == self.settings.status_attempts - 1:
                return st
            self.sleep(self.settings.poll_s)
        raise AssertionError("unreachable")

    def observe(self) -> dict[str, mk.Status | None]:
        """Every node's own status at once; None for a node SSH cannot reach."""

        def read(name: str) -> mk.Status | None:
            try:
                return self.status(name)
            except NodeUnreachableError:
                return None

        return self.parallel(list(self.targets), read)

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise OperationFailedError(f"timed out after {timeout:.0f}s waiting until {what}")
            self.sleep(self.settings.poll_s)

    # steps -----------------------------------------------------------------------------

    def run(self) -> Report:
        names = list(self.targets)
        local = [self.only] if self.only else names
        with self.progress:
            for line in pin_host_keys(
                self.known_hosts, list(self.targets.values()), self.host_keys, dry_run=self.dry_run
            ):
                node, _, what = line.partition(": ")
                self.progress.step(node, what, keep=True)
            if self.dry_run and not self.known_hosts.exists():
                self.progress.step(
                    self.env.name, "dry run stops here: no host key pinned yet", keep=True
                )
                return self.report
            try:
                self.parallel(local, self.prepare_or_skip)
                answering = [n for n in names if n not in self.silent]
                machine_ids = self.parallel(answering, self.machine_id)
                if problems := formation.distinct_machine_ids(machine_ids):
                    raise OperationFailedError(*problems)
                self.form_cluster()
                self.enable_addons()
                self.ensure_api_certificate()
                self.write_kubeconfig()
            finally:
                for s in self.sessions.values():
                    s.close()
        return self.report

    def prepare_node(self, name: str) -> None:
        """Node-local, independent of other nodes: runs in parallel."""
        s = self.session(name)
        self.progress.step(name, "waiting for cloud-init")
        ci = mk.cloud_init_status(s, wait=not self.dry_run, timeout=self.settings.wait_timeout_s)
        if ci.code == 1 or (not self.dry_run and "status: done" not in ci.stdout):
            # 0 done, 1 error, 2 degraded (cloud-init docs "cloud-init status").
            raise OperationFailedError(
                f"{name}: cloud-init did not finish cleanly ({ci.stdout.splitlines()[-1:] or ['?']}"
                "); see `cloud-init status --long` on the node"
            )
        channel = self.env.microk8s.channel
        snap = mk.snap_list(s)
        if snap is None:
            if self.dry_run:
                self.plan(name, f"snap install microk8s --classic --channel={channel}")
            else:
                self.checked(name, mk.snap_install(s, channel), "installing MicroK8s")
                self.change(name, f"installed MicroK8s {channel}")
                snap = mk.snap_list(s)
        if snap is not None and snap.channel != channel:
            raise OperationFailedError(
                f"{name}: MicroK8s tracks {snap.channel}, the inventory says "
                f"{channel}; change channels one node at a time (docs/upgrade.md)"
            )
        if snap is None or not snap.held:
            # Auto-refresh has broken HA clusters (#1022, #2491, #4775): upgrades via mk8s only.
            if self.dry_run:
                self.plan(name, "snap refresh --hold microk8s")
            else:
                self.checked(name, mk.snap_hold(s), "holding MicroK8s refreshes")
                self.change(name, "held MicroK8s refreshes")
        if self.dry_run and snap is None:
            return
        # Not `status --wait-ready` (it returns once *any* node is ready, MK common/utils.py
        # is_cluster_ready): formation reads every node's own status and waits for a starting one.
        self.progress.step(name, "ready")

    def prepare_or_skip(self, name: str) -> None:
        """A node SSH cannot reach is left to formation: a listed member may be down (its
        voters keep the cluster), a node that must join may not."""
        try:
            self.prepare_node(name)
        except NodeUnreachableError:
            self.silent.add(name)
            self.note(name, "not reachable over SSH")

    def machine_id(self, name: str) -> str:
        res = self.session(name).run(f"cat {self.settings.paths.machine_id}")
        if not res.ok or not res.stdout.strip():
            raise OperationFailedError(f"{name}: cannot read {self.settings.paths.machine_id}")
        return res.stdout.strip()

    def checked(self, name: str, res: mk.Output, doing: str) -> None:
        if res.code != 0:
            text = Result(res.code, res.stdout, res.stderr)
            raise OperationFailedError(
                f"{name}: {doing} failed (exit {res.code}): {self.last_output(text)}"
            )

    def must(self, name: str, command: str, doing: str) -> Result:
        res = self.session(name).run(command)
        if not res.ok:
            raise OperationFailedError(
                f"{name}: {doing} failed (exit {res.code}): {self.last_output(res)}"
            )
        return res

    def last_output(self, res: Result) -> str:
        lines = [ln for ln in self.journal.redact(res.text).splitlines() if ln.strip()]
        return " / ".join(lines[-3:]) or "(no output)"

    # formation -------------------------------------------------------------------------

    def form_cluster(self) -> None:
        nodes = [Node(n.name, str(n.ip)) for n in self.env.nodes]
        self.formation = forming.form(self, nodes)
        if self.only is None and not self.dry_run:
            self.progress.step(self.via, f"cluster formed: {len(nodes)} nodes", keep=True)

    @property
    def via(self) -> str:
        """A healthy voter (node 1 unless it is down or was rebuilt): add-ons, the certificate
        check and the kubeconfig go through it."""
        plan: Plan | None = getattr(self, "formation", None)
        return plan.via if plan is not None else self.first.name

    def note(self, node: str, what: str) -> None:
        self.progress.step(node, what, keep=True)

    @property
    def join_attempts(self) -> int:
        return self.settings.join_attempts

    @property
    def backoff_s(self) -> float:
        return self.settings.backoff_s

    @property
    def ha_timeout_s(self) -> float:
        return self.settings.ha_timeout_s

    @property
    def wait_timeout_s(self) -> float:
        return self.settings.wait_timeout_s

    @property
    def poll_s(self) -> float:
        return self.settings.poll_s

    @contextmanager
    def secret(self, value: str) -> Iterator[None]:
        """Redact `value` (and its token part) from all output and logs, during and after."""
        self.journal.secrets.extend([value, value.split("/")[0]])
        yield

    # add-ons, certificate, kubeconfig ---------------------------------------------------

    def enable_addons(self) -> None:
        first = self.via
        status = self.status(first)
        values_dir = self.settings.paths.addon_values
        commands = formation.addon_commands(self.env, status, values_dir)
        if commands and not self.dry_run:
            self.upload_addon_values(first, values_dir)
        for argv in commands:
            cmd = shlex.join(argv)
            if self.dry_run:
                self.plan(first, cmd)
                continue
            done = mk.enable(self.session(first), argv[2:], timeout=self.settings.wait_timeout_s)
            if not done.ok:
                raise OperationFailedError(f"{first}: `{cmd}` failed: {done.reason}")
            self.change(first, f"enabled {argv[-1]}")
        if self.dry_run or not commands:
            return
        enabled = self.status(first).enabled_addons  # once more: did they really come up?
        missing = [n for n in formation.wanted_addons(self.env) if n not in enabled]
        if missing:
            raise OperationFailedError(f"{first}: add-ons still not enabled: {', '.join(missing)}")

    def upload_addon_values(self, name: str, values_dir: str) -> None:
        """Values files the add-ons are enabled with; rewritten each time (cheap, idempotent)."""
        for file, text in formation.addon_value_files(self.env).items():
            path = f"{values_dir}/{file}"
            # NodePaths are mk8s' own constants, used unquoted like the others (tests put a
            # per-node $SSHD_NODE in them for the shell to expand).
            cmd = f"mkdir -p {values_dir} && cat > {path}"
            res = self.session(name).run(cmd, stdin=text)
            if not res.ok:
                raise OperationFailedError(
                    f"{name}: writing {path} failed: {self.last_output(res)}"
                )

    def cert_ips(self, name: str) -> list[str]:
        res = self.session(name).run(f"cat {self.settings.paths.server_cert}")
        try:
            cert = x509.load_pem_x509_certificate(res.stdout.encode())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            raise OperationFailedError(
                f"{name}: cannot read the API server certificate {self.settings.paths.server_cert}"
            ) from None
        return [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]

    def ensure_api_certificate(self) -> None:
        """The API address must be in server.crt on the nodes a client may reach through it."""
        address: IPv4Address = self.api_address
        names = list(self.targets) if self.env.network.api_vip else [self.api_node]
        if self.only is not None:
            names = [n for n in names if n == self.only]
        for name in names:
            if not formation.missing_sans(address, self.cert_ips(name)):
                continue
            # extraSANs should have covered it (launch config); a node installed before the
            # address was configured gets it added to the CSR template and a refreshed cert.
            if self.dry_run:
                self.plan(name, f"add {address} to the API certificate and refresh-certs")
                continue
            path = self.settings.paths.csr_template
            template = self.session(name).run(f"cat {path}").stdout
            new = formation.csr_template_with(template, address)
            self.must_stdin(name, f"tee {path} >/dev/null", new, "updating the CSR template")
            self.checked(name, mk.refresh_server_cert(self.session(name)), "refreshing server.crt")
            if formation.missing_sans(address, self.cert_ips(name)):
                raise OperationFailedError(f"{name}: server.crt still does not cover {address}")
            self.change(name, f"API certificate now covers {address}")

    def must_stdin(self, name: str, command: str, stdin: str, doing: str) -> None:
        res = self.session(name).run(command, stdin=stdin)
        if not res.ok:
            raise OperationFailedError(f"{name}: {doing} failed: {self.last_output(res)}")

    @property
    def api_node(self) -> str:
        """The node behind the API address: node 1, or the healthy voter when node 1 is down."""
        plan: Plan | None = getattr(self, "formation", None)
        down = plan.down if plan is not None else ()
        return self.via if self.first.name in down else self.first.name

    @property
    def api_address(self) -> IPv4Address:
        if self.env.network.api_vip or self.api_node == self.first.name:
            return self.env.api_address
        return next(n.ip for n in self.env.nodes if n.name == self.api_node)

    def write_kubeconfig(self) -> None:
        first = self.via
        path = self.out_dir / KUBECONFIG
        if self.dry_run:
            if not path.exists():
                self.plan(first, f"write {path} (server https://{self.api_address}:{API_PORT})")
            return
        try:
            config = mk.config(self.session(first))
        except mk.MicroK8sError as exc:
            raise OperationFailedError(f"{first}: {exc}") from None
        text = kubeconfig_for(config, self.api_address)
        if path.exists() and path.read_text() == text and (path.stat().st_mode & 0o777) == 0o600:
            return
        write_private(path, text)
        self.change(
            first, f"wrote {path} (mode 0600, server https://{self.api_address}:{API_PORT})"
        )


def kubeconfig_for(text: str, address: IPv4Address) -> str:
    """`microk8s config` with every cluster's server set to the API address."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise OperationFailedError("`microk8s config` printed no kubeconfig")
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = f"https://{address}:{API_PORT}"
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Write a credential: created 0600 (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def bootstrap(
    env: Environment,
    out_dir: Path,
    host_keys: HostKeySource,
    *,
    console: Console,
    targets: Mapping[str, Target] | None = None,
    settings: Settings | None = None,
    only: str | None = None,
    dry_run: bool = False,
) -> Report:
    """`invoke bootstrap`: converge every node of `env`; safe to re-run at any point."""
    return Bootstrap(
        env=env,
        targets=targets or targets_for(env),
        settings=settings or Settings(user=env.ssh.user, key_file=env.ssh.private_key_file),
        host_keys=host_keys,
        out_dir=out_dir,
        console=console,
        only=only,
        dry_run=dry_run,
    ).run()
