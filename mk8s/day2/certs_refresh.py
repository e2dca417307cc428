"""`invoke certs --env ENV --refresh`: renew server.crt, then front-proxy-client.crt, one node
at a time, under the day-2 plan, lock and journal (mk8s.day2.operation).

What `microk8s refresh-certs --cert X` does on a node (canonical/microk8s@0950188f:
scripts/wrappers/refresh_certs.py): prints "Taking a backup of the current certificates under
$SNAP_DATA/certs-backup/" and copies certs/ and credentials/ there (exit 10 when it cannot),
prints "Creating new certificates", regenerates the one certificate from the node's CA through
utils.sh (`gen_server_cert` / `gen_proxy_client_cert`), then restarts kubelite ("Restarting
service kubelite.") and, for server.crt, the cluster agent too; a failure to produce prints
"Failed to produce new certificates. Reverting.", restores the backup and exits 20. That
on-node backup is overwritten by the next refresh, so mk8s keeps its own copy.

Per run, in order:
1. `preflight`: every node answers SSH and the cluster is healthy (Ready + voters);
2. `backup`: every node's certificates (server, front-proxy client, CA, kubelet: certificate
   files only, never a private key; the admin kubeconfig is not copied because it embeds one)
   copied to the operator's side, build/ENV/day2/certs-backup/RUN_ID/NODE/;
3. per node: `N:server.crt`, `N:front-proxy-client.crt` (the refresh), `N:verify` (both were
   reissued, and server.crt still names every node IP and extra SAN, certs.san_problems),
   `N:wait` (Ready + voters again); the first failure stops the run before the next node;
4. `finish`: day2.json evidence (mk8s.day2.evidence); a failed run records `failed` too.

CA rotation is refused: `refresh-certs --cert ca.crt` replaces the CA of one node
(reproduce_all_root_ca_certs), after which the other nodes' certificates no longer verify and
every node must re-join; the path is a rebuild of each node (docs/certificates.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rich.console import Console

from mk8s.day2.certs import CERT_FILES, CertFile, facts_of, san_problems
from mk8s.day2.evidence import GateResult, record_day2
from mk8s.day2.journal import Journal, run_file
from mk8s.day2.lock import LeaseApi
from mk8s.day2.operation import Options, operate
from mk8s.day2.plan import Kind, Plan, StepSpec, make_plan
from mk8s.day2.runner import Action
from mk8s.day2.wait import Clock, SystemClock, wait_for
from mk8s.edges import microk8s
from mk8s.edges.ssh import Journal as SshJournal
from mk8s.edges.ssh import Login, NodeSession, Target, targets_for
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import run_id
from mk8s.render.launchconfig import sans

TASK = "certs-refresh"
RENEWED = ("server.crt", "front-proxy-client.crt")  # the order the issue asks for
BACKED_UP = tuple(f for f in CERT_FILES if not f.embedded_in_kubeconfig)  # no private keys
BACKUP_DIR = Path("day2") / "certs-backup"
REFRESH_S = 90  # kubelite restarts; expected, shown in the plan
WAIT_S = 300  # deadline for Ready + voters after a node's refresh

_SAN_NOTE = {"server.crt": "; SANs hold every address", "front-proxy-client.crt": ""}
# A health probe: the reasons the cluster is not healthy now (Ready + voters); empty = healthy.
Health = Callable[[], Sequence[str]]


# --- pure ---------------------------------------------------------------------------------


def refuse_ca(cert: str) -> None:
    """`--cert ca.crt` (or any certificate but the two renewable ones) is refused in one line."""
    if cert == "ca.crt":
        raise UserError(
            "--cert ca.crt: CA rotation is refused: `refresh-certs --cert ca.crt` replaces one "
            "node's CA and every certificate it signed, so the other nodes stop trusting it and "
            "each must re-join; rebuild each node instead (docs/certificates.md, 'The CA')"
        )
    if cert not in RENEWED:
        raise UserError(f"--cert {cert}: must be one of {', '.join(RENEWED)} (or omitted: both)")


def plan_refresh(env: Environment, certs: Sequence[str] = RENEWED) -> Plan:
    """preflight, backup, then per node in inventory order: each cert, verify, wait; finish."""
    for cert in certs:
        refuse_ca(cert)
    specs = [
        StepSpec("preflight", Kind.CHECK, "every node answers; cluster Ready + voters"),
        StepSpec(
            "backup",
            Kind.COMMAND,
            "copy the old certificates (no keys) to build/",
            command="cat -- certs/*.crt",
        ),
    ]
    for node in env.nodes:
        n = node.name
        for cert in certs:
            specs.append(
                StepSpec(
                    f"{n}:{cert}",
                    Kind.COMMAND,
                    f"renew {cert}",
                    node=n,
                    command=f"microk8s refresh-certs --cert {cert}",
                    expected_s=REFRESH_S,
                )
            )
            # Checked and waited for before the next certificate: `refresh-certs --undo` on the
            # node restores only the state before its *last* refresh (refresh_certs.py).
            specs.append(
                StepSpec(
                    f"{n}:verify-{cert}", Kind.CHECK, f"{cert} reissued{_SAN_NOTE[cert]}", node=n
                )
            )
            specs.append(
                StepSpec(
                    f"{n}:wait-{cert}",
                    Kind.WAIT,
                    "wait for the cluster",
                    node=n,
                    waits_for=f"Ready + voters (deadline {WAIT_S}s)",
                    expected_s=30,
                )
            )
    specs.append(StepSpec("finish", Kind.CHECK, "record day2.json evidence"))
    notes = (
        "certificates are copied to the operator's side before anything changes; private "
        "keys never leave the nodes",
        "the first failure stops the run: no later node is touched",
    )
    return make_plan(TASK, env.name, specs, notes=notes)


def fingerprint(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()


def verify_problems(
    node: str, cert: str, old: str | None, new: str | None, wanted_ips: Sequence[str]
) -> list[str]:
    """Why a refresh of `cert` is not good: not reissued, not extended, a SAN of server.crt lost."""
    if new is None:
        return [f"{node}: {cert} cannot be read after the refresh"]
    out = []
    if old is not None and fingerprint(old) == fingerprint(new):
        out.append(f"{node}: {cert} was not reissued (same certificate as before)")
    elif old is not None and _not_after(new) <= _not_after(old):
        out.append(f"{node}: {cert} expires no later than the old one")
    if cert == "server.crt":
        file = next(f for f in CERT_FILES if f.name == "server.crt")
        facts = facts_of(node, file, x509.load_pem_x509_certificate(new.encode()))
        out += [v.message for v in san_problems([facts], wanted_ips)]
    return out


def _not_after(pem: str) -> datetime:
    return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc


# --- flow ---------------------------------------------------------------------------------


@dataclass
class Refresh:
    """What every action of one run shares: the nodes, where the copies go, the gates seen."""

    env: Environment
    build: Path
    sessions: dict[str, NodeSession]
    health: Health
    wanted_ips: Sequence[str]
    clock: Clock = field(default_factory=SystemClock)
    root: Path = Path()
    inventory: str | None = None
    gates: list[GateResult] = field(default_factory=list)
    recorded: Path | None = None  # day2.json, once written

    def run_id(self) -> str:
        journal = Journal.load(run_file(self.build))
        if journal is None:
            raise OperationFailedError(f"{run_file(self.build)}: no journal for this run")
        return run_id(datetime.fromtimestamp(journal.started, UTC))

    def backup_dir(self, node: str) -> Path:
        return self.build / BACKUP_DIR / self.run_id() / node

    def read(self, node: str, files: Sequence[CertFile] = BACKED_UP) -> dict[str, str]:
        """The certificate files of a node as PEM text (missing files are left out)."""
        out = {}
        for f in files:
            res = self.sessions[node].run(f"cat -- {f.path}")
            if res.ok and "BEGIN CERTIFICATE" in res.stdout:
                out[f.name] = res.stdout
        return out

    def saved(self, node: str) -> dict[str, str]:
        where = self.backup_dir(node)
        return {
            f.name: (where / f.name).read_text() for f in BACKED_UP if (where / f.name).is_file()
        }

    def gate(self, step: str, name: str, node: str | None, problems: Sequence[str]) -> None:
        detail = "; ".join(problems) or "ok"
        self.gates.append(
            GateResult(step=step, name=name, node=node, passed=not problems, detail=detail)
        )
        if problems:
            raise OperationFailedError(f"{step}: {detail}; stopping before any other node")


@dataclass
class Preflight:
    r: Refresh

    def run(self) -> None:
        problems = [
            f"{n}: no server.crt readable"
            for n in self.r.sessions
            if "server.crt" not in self.r.read(n, BACKED_UP[:1])
        ]
        self.r.gate("preflight", "nodes-and-health", None, [*problems, *self.r.health()])

    def done(self) -> bool:
        return not self.r.health()


@dataclass
class Backup:
    r: Refresh

    def run(self) -> None:
        for node in self.r.sessions:
            where = self.r.backup_dir(node)
            where.mkdir(parents=True, exist_ok=True)
            for name, pem in self.r.read(node).items():
                (where / name).write_text(pem)

    def done(self) -> bool:
        return all("server.crt" in self.r.saved(n) for n in self.r.sessions)


@dataclass
class Renew:
    r: Refresh
    node: str
    cert: str

    def run(self) -> None:
        cert: microk8s.RefreshableCert = (
            "server.crt" if self.cert == "server.crt" else "front-proxy-client.crt"
        )  # refuse_ca admitted only these two into the plan
        res = microk8s.refresh_cert(self.r.sessions[self.node], cert)
        if res.code != 0:
            text = (res.stdout + res.stderr).strip().splitlines()
            raise OperationFailedError(
                f"{self.node}: `microk8s refresh-certs --cert {self.cert}` failed (exit "
                f"{res.code}): {text[-1] if text else 'no output'}; no other node was touched"
            )

    def done(self) -> bool:
        old = self.r.saved(self.node).get(self.cert)
        new = self.r.read(self.node).get(self.cert)
        return old is not None and new is not None and fingerprint(old) != fingerprint(new)


@dataclass
class Verify:
    r: Refresh
    node: str
    cert: str

    def problems(self) -> list[str]:
        old, new = self.r.saved(self.node).get(self.cert), self.r.read(self.node).get(self.cert)
        return verify_problems(self.node, self.cert, old, new, self.r.wanted_ips)

    def run(self) -> None:
        step = f"{self.node}:verify-{self.cert}"
        self.r.gate(step, "reissued-and-sans", self.node, self.problems())

    def done(self) -> bool:
        return not self.problems()


@dataclass
class Settle:
    r: Refresh
    node: str
    cert: str

    def run(self) -> None:
        what = f"the cluster Ready with its voters after {self.node}'s {self.cert} refresh"
        wait_for(
            what,
            lambda: list(self.r.health()),
            lambda p: not p,
            timeout_s=WAIT_S,
            interval_s=5,
            clock=self.r.clock,
            describe="; ".join,
        )
        self.r.gates.append(
            GateResult(
                step=f"{self.node}:wait-{self.cert}",
                name="ready-and-voters",
                node=self.node,
                passed=True,
            )
        )

    def done(self) -> bool:
        return not self.r.health()


@dataclass
class Finish:
    r: Refresh

    def run(self) -> None:
        record(self.r, "green")

    def done(self) -> bool:
        return False  # writing the record again converges on the same file


def record(r: Refresh, outcome: str, failed_step: str | None = None, message: str = "") -> Path:
    path, _ = record_day2(
        r.env,
        run_file(r.build),
        outcome="green" if outcome == "green" else "failed",
        inventory=r.inventory,
        gates=r.gates,
        failed_step=failed_step,
        message=message,
        root=r.root,
    )
    r.recorded = path
    return path


def actions(r: Refresh, plan: Plan) -> dict[str, Action]:
    out: dict[str, Action] = {"preflight": Preflight(r), "backup": Backup(r), "finish": Finish(r)}
    for step in plan.steps:
        if step.node is None:
            continue
        kind = step.key.split(":", 1)[1]
        if kind.startswith("verify-"):
            out[step.key] = Verify(r, step.node, kind.removeprefix("verify-"))
        elif kind.startswith("wait-"):
            out[step.key] = Settle(r, step.node, kind.removeprefix("wait-"))
        else:
            out[step.key] = Renew(r, step.node, kind)
    return out


def failed_step(build: Path) -> str | None:
    """The step the journal shows started but not done: where the run stopped."""
    journal = Journal.load(run_file(build))
    if journal is None:
        return None
    return next((s["key"] for s in journal.steps if s["state"] == "started"), None)


class SessionFactory(Protocol):
    def __call__(
        self, target: Target, login: Login, known_hosts: Path, journal: SshJournal
    ) -> NodeSession: ...


def cluster_health(env: Environment, build: Path, root: Path) -> Health:
    """Ready + voters from the status reader and its preflight gates (mk8s.day2.preflight)."""
    from mk8s.day2 import cluster_facts, preflight

    def probe() -> list[str]:
        facts = cluster_facts.read(env, build, datetime.now(UTC), cluster_facts.Sources(root=root))
        gates = (preflight.nodes_ready(facts), preflight.voters(facts))
        return [f"{g.name}: {g.detail}" for g in gates if not g.ok]

    return probe


def refresh(
    env: Environment,
    build: Path,
    options: Options,
    *,
    out: Console,
    err: Console | None = None,
    certs: Sequence[str] = RENEWED,
    health: Health | None = None,
    targets: dict[str, Target] | None = None,
    session: SessionFactory = NodeSession,
    clock: Clock | None = None,
    root: Path = Path(),
    inventory: str | None = None,
    lease_api: LeaseApi | None = None,
) -> Path | None:
    """Plan, then (unless --dry-run) renew under the lock; returns day2.json (None: dry run).

    A failure records `failed` evidence naming the step, then raises it unchanged.
    """
    plan = plan_refresh(env, certs)
    known_hosts = build / "known_hosts"
    if not options.dry_run and not known_hosts.is_file():
        raise UserError(
            f"{known_hosts}: no pinned host keys; run `invoke bootstrap --env {env.name}` first"
        )
    login = Login(env.ssh.user, env.ssh.private_key_file)
    chosen = targets or targets_for(env)
    sessions = {
        n.name: session(chosen[n.name], login, known_hosts, SshJournal(None)) for n in env.nodes
    }
    r = Refresh(
        env,
        build,
        sessions,
        health or cluster_health(env, build, root),
        sans(env),
        clock or SystemClock(),
        root,
        inventory,
    )
    try:
        outcome = operate(
            plan, actions(r, plan), build, options, out=out, err=err, clock=clock,
            lease_api=lease_api,
        )  # fmt: skip
        return None if outcome is None else r.recorded
    except OperationFailedError as exc:
        step = failed_step(build)
        if step is not None:
            record(r, "failed", step, exc.lines[0] if exc.lines else str(exc))
        raise
    finally:
        for s in sessions.values():
            s.close()
