"""mk8s tasks: thin wrappers that parse arguments, call the library and print.

Run `invoke --list` for the commands; DESIGN.md and README.md describe the phases.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.tasks import task

from mk8s.cli import arguments, user_errors
from mk8s.cli.confirm import confirm_destructive
from mk8s.errors import OperationFailedError, UserError

if TYPE_CHECKING:
    from mk8s.inventory.model import Environment

ENV_HELP = {"env": "environment name (inventory/NAME.yaml) or path to an inventory YAML file"}
CONFIRM_HELP = {
    "yes": "do not ask for the environment name (not enough on prod: add --confirm prod)",
    "confirm": "the environment's name, confirming without a prompt (required on prod)",
}


@task(help=ENV_HELP)
@user_errors
def check(c: Context, env: str) -> None:
    """Validate an inventory: schema and every cross-field rule; no network."""
    from mk8s.console import console
    from mk8s.inventory.load import load_environment

    environment = load_environment(env)
    console.print(f"{env}: OK ({len(environment.nodes)} nodes, {environment.microk8s.channel})")


@task(help=ENV_HELP)
@user_errors
def plan(c: Context, env: str) -> None:
    """Render everything into build/ENV/ and show what would change; touches no infrastructure."""
    from mk8s.console import console, plan_tables, print_changes
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir, write_plan
    from mk8s.render.plan import build_plan

    environment = load_environment(env)
    the_plan = build_plan(environment)
    for table in plan_tables(the_plan):
        console.print(table)
    out = build_dir(environment.name)
    changes, facts = write_plan(the_plan, out)
    print_changes(changes, facts, str(out))


# --- provision ---


def _say(line: str) -> None:
    from mk8s.console import console

    console.print(line, markup=False, highlight=False, soft_wrap=True)


@task
@user_errors
def tools(c: Context) -> None:
    """Ensure terraform/tofu and the pinned bpg/proxmox provider mirror (offline, cached)."""
    from mk8s.console import console
    from mk8s.edges import tools as tooling

    t = tooling.ensure_tools()
    console.print(f"terraform: {t.binary}")
    console.print(f"provider mirror: {t.mirror} (bpg/proxmox {tooling.PROVIDER_VERSION})")
    console.print(f"CLI config: {t.cli_config}")


@task(
    help={
        **ENV_HELP,
        "dry_run": "stop after showing the Terraform plan",
        "allow_replace": "allow a plan that replaces or deletes existing VMs",
        "module": "Terraform module directory taking the same variables (default: terraform/)",
    }
)
@user_errors
def provision(
    c: Context, env: str, dry_run: bool = False, allow_replace: bool = False, module: str = ""
) -> None:
    """Preflight on Proxmox, Terraform plan + apply, verify the VMs, wait for SSH."""
    from mk8s.console import console
    from mk8s.inventory.load import load_environment
    from mk8s.provision import flow as provisioning
    from mk8s.provision.view import checks_table, plan_table

    environment = load_environment(env)
    module_dir = arguments.module_dir(module)
    report = provisioning.provision(
        environment,
        dry_run=dry_run,
        allow_replace=allow_replace,
        module=module_dir,
        say=_say,
        show_checks=lambda checks: console.print(checks_table(checks)),
        show_plan=lambda chs: console.print(plan_table(chs)),
    )
    if dry_run:
        console.print("dry run: nothing applied")
        return
    verb = "applied" if report.applied else "unchanged"
    console.print(f"{environment.name}: {len(environment.nodes)} VMs {verb}, verified, SSH up")


@task(help=ENV_HELP | CONFIRM_HELP)
@user_errors
def destroy(c: Context, env: str, yes: bool = False, confirm: str = "") -> None:
    """Destroy the environment's VMs (only those in its state, tagged env-NAME); asks first."""
    from mk8s.console import console
    from mk8s.inventory.load import load_environment
    from mk8s.provision import flow as provisioning

    environment = load_environment(env)
    confirm_destructive(environment, "destroy its VMs", yes=yes, confirm_name=confirm)
    gone = provisioning.destroy(environment, say=_say)
    console.print(f"{environment.name}: destroyed {', '.join(gone) or 'nothing'}")


# Long flags only: across tasks -n means --node and -d --dry-run; a short -n for --name here
# (or -d for --duration below) would mean something else than it does everywhere else.
@task(
    help={**ENV_HELP, "name": "snapshot name", "node": "comma-separated node names (default all)"},
    auto_shortflags=False,
)
@user_errors
def snapshot(c: Context, env: str, name: str, node: str = "") -> None:
    """Snapshot the environment's VMs (skips nodes that already have it)."""
    from mk8s.console import console
    from mk8s.inventory.load import load_environment
    from mk8s.provision import flow as provisioning

    environment = load_environment(env)
    name = arguments.snapshot_name(name)
    nodes = arguments.node_names(node, environment.name, [n.name for n in environment.nodes])
    done = provisioning.snapshot(environment, name, nodes, say=_say)
    console.print(f"snapshot {name}: {', '.join(done) or 'nothing to do'}")


@task(
    help={
        **ENV_HELP,
        **CONFIRM_HELP,
        "name": "snapshot name",
        "node": "comma-separated node names; anything short of every node is refused (a "
        "subset would rewind part of the datastore)",
    },
    auto_shortflags=False,
)
@user_errors
def rollback(
    c: Context, env: str, name: str, node: str = "", yes: bool = False, confirm: str = ""
) -> None:
    """Roll the environment's VMs back to a snapshot and start them."""
    from mk8s.console import console
    from mk8s.inventory.load import load_environment
    from mk8s.provision import flow as provisioning

    environment = load_environment(env)
    name = arguments.snapshot_name(name)
    nodes = arguments.node_names(node, environment.name, [n.name for n in environment.nodes])
    what = f"roll {', '.join(nodes) or 'every VM'} back to {name}"
    confirm_destructive(environment, what, yes=yes, confirm_name=confirm)
    done = provisioning.rollback(environment, name, nodes, say=_say)
    console.print(f"rolled back to {name}: {', '.join(done)}")


@task(
    help={
        **ENV_HELP,
        **CONFIRM_HELP,
        "action": "start, stop, shutdown, reboot or reset (stop, shutdown, reset ask first)",
        "node": "comma-separated node names (default all)",
    }
)
@user_errors
def power(
    c: Context, env: str, action: str, node: str = "", yes: bool = False, confirm: str = ""
) -> None:
    """Power actions on the environment's VMs (start/stop/shutdown skip VMs already there)."""
    from mk8s.console import console
    from mk8s.inventory.load import load_environment
    from mk8s.provision import flow as provisioning

    environment = load_environment(env)
    action = arguments.power_action(action)
    nodes = arguments.node_names(node, environment.name, [n.name for n in environment.nodes])
    if action in arguments.DESTRUCTIVE_POWER:
        what = f"{action} {', '.join(nodes) or 'every VM'}"
        confirm_destructive(environment, what, yes=yes, confirm_name=confirm)
    done = provisioning.power(environment, action, nodes, say=_say)
    console.print(f"{action}: {', '.join(done) or 'nothing to do'}")


# --- bootstrap ---


@task(
    help={
        **ENV_HELP,
        "node": "limit node-local steps (cloud-init wait, install, join) to this node",
        "dry_run": "read the nodes' state and print the actions; change nothing",
    }
)
@user_errors
def bootstrap(c: Context, env: str, node: str | None = None, dry_run: bool = False) -> None:
    """MicroK8s on every node, HA cluster formation, add-ons, kubeconfig; safe to re-run."""
    from mk8s.bootstrap import flow as bootstrap_flow
    from mk8s.console import console
    from mk8s.edges import ssh
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir

    environment = load_environment(env)
    if node is not None:
        arguments.node_names(node, environment.name, [n.name for n in environment.nodes])
    out = build_dir(environment.name)
    report = bootstrap_flow.bootstrap(
        environment,
        out,
        ssh.ProxmoxHostKeys(environment),
        console=console,
        only=node,
        dry_run=dry_run,
    )
    if dry_run:
        console.print(f"{environment.name}: dry run, {len(report.planned)} action(s) planned")
    elif report.changed:
        console.print(f"{environment.name}: bootstrapped, {len(report.changes)} change(s)")
    else:
        console.print(f"{environment.name}: already bootstrapped, nothing changed")


# --- deploy ---


@task(
    help=ENV_HELP
    | {
        "dry_run": "server-side dry run only: show what would change, change nothing",
        "kubeconfig": "kubeconfig to use (default: $KUBECONFIG, else build/ENV/kubeconfig)",
        "timeout": "seconds to wait for rollouts (default 600)",
    }
)
@user_errors
def deploy(
    c: Context, env: str, dry_run: bool = False, kubeconfig: str = "", timeout: str = "600"
) -> None:
    """Platform manifests (kustomize overlay of ENV) applied server-side; prune; wait."""
    from mk8s.console import console
    from mk8s.deploy import flow as deploy_flow
    from mk8s.edges import kube, kustomize
    from mk8s.inventory.load import load_environment
    from mk8s.inventory.secrets import load_secrets_file
    from mk8s.render import manifests
    from mk8s.render.build import build_dir, write_plan
    from mk8s.render.plan import build_plan

    environment = load_environment(env)
    wait_s = arguments.seconds("--timeout", timeout)
    given_kubeconfig = arguments.existing_file("--kubeconfig", kubeconfig)
    out = build_dir(environment.name)
    write_plan(build_plan(environment), out)  # deploy applies exactly what plan renders now
    objects = kustomize.build(out / manifests.DIR)
    secrets = deploy_flow.build_secrets(
        deploy_flow.load_secret_refs(out / manifests.SECRETS_JSON),
        {**load_secrets_file(environment.secrets_file), **os.environ},
        environment.name,
    )
    api = kube.KubeApi(given_kubeconfig or kube.default_kubeconfig(out))
    with console.status("deploy") as status:
        result = deploy_flow.deploy(
            api,
            objects,
            secrets,
            environment.name,
            dry_run,
            float(wait_s),
            lambda msg: status.update(f"[bold]{environment.name}[/bold]: {msg}"),
        )
    for line in deploy_flow.describe(result):
        console.print(line, soft_wrap=True)
    console.print(
        f"{environment.name}: dry run, nothing applied"
        if dry_run
        else f"{environment.name}: deployed; sample app at https://{manifests.app_host(environment)}/"
    )


@task(help=ENV_HELP | {"dry_run": "list the files that would be committed, touch no repository"})
@user_errors
def publish(c: Context, env: str, dry_run: bool = False) -> None:
    """Commit the built platform manifests of ENV to gitops.repo_url (path, branch) for Argo CD."""
    from mk8s.console import console
    from mk8s.deploy import publish as publishing
    from mk8s.edges import kustomize
    from mk8s.inventory.load import load_environment
    from mk8s.render import manifests
    from mk8s.render.build import build_dir, write_plan
    from mk8s.render.plan import build_plan

    environment = load_environment(env)
    publishing.check_publishable(environment)
    out = build_dir(environment.name)
    write_plan(build_plan(environment), out)  # publish commits exactly what plan renders now
    objects = kustomize.build(out / manifests.DIR)
    result = publishing.publish(environment, out, objects, dry_run=dry_run)
    where = f"{result.repo_url} {result.branch}:{result.root}"
    for name in result.files:
        console.print(f"  {result.root}/{name}", soft_wrap=True, markup=False)
    if dry_run:
        console.print(f"{environment.name}: dry run, would publish to {where}", markup=False)
    elif result.commit is None:
        console.print(f"{environment.name}: {where} already up to date", markup=False)
    else:
        console.print(
            f"{environment.name}: published {result.commit[:12]} to {where}", markup=False
        )


# --- day 2 ---


@task(
    help=ENV_HELP
    | {
        "refresh": "renew server.crt then front-proxy-client.crt, one node at a time "
        "(plan first; docs/certificates.md)",
        "cert": "with --refresh: only this certificate (server.crt or front-proxy-client.crt)",
        "dry_run": "with --refresh: show the plan, change nothing",
        "json": "with --refresh: the plan as JSON on stdout",
        "break_lock": "take over a stale day-2 lock (check nobody is working first)",
    }
)
@user_errors
def certs(
    c: Context,
    env: str,
    refresh: bool = False,
    cert: str = "",
    dry_run: bool = False,
    json: bool = False,
    break_lock: bool = False,
) -> None:
    """Read every node's MicroK8s certificates over SSH: warn < 60 days, fail < 15, SANs;
    --refresh renews server.crt and front-proxy-client.crt node by node."""
    from datetime import UTC, datetime

    from mk8s.day2 import certs_flow
    from mk8s.day2.certs import Level
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir

    environment = load_environment(env)
    if refresh:
        _refresh_certs(environment, env, cert, dry_run, json, break_lock)
        return
    if cert or dry_run or json or break_lock:
        raise UserError("--cert, --dry-run, --json and --break-lock go with --refresh")
    report = certs_flow.check(environment, build_dir(environment.name), datetime.now(UTC))
    colour = {Level.OK: "green", Level.WARN: "yellow", Level.FAIL: "red"}
    for verdict in report.verdicts:
        _say_level(f"{verdict.level.upper():4} {verdict.message}", colour[verdict.level])
    failed = [v for v in report.verdicts if v.level is Level.FAIL]
    if failed:
        raise OperationFailedError(f"{environment.name}: {len(failed)} certificate problem(s)")
    _say(f"{environment.name}: certificates {report.level}")


def _refresh_certs(
    environment: Environment, env: str, cert: str, dry_run: bool, json: bool, break_lock: bool
) -> None:
    from rich.console import Console

    from mk8s.console import console
    from mk8s.day2 import certs_refresh
    from mk8s.day2.operation import Options
    from mk8s.render.build import build_dir

    certs = (cert,) if cert else certs_refresh.RENEWED
    out = Console(stderr=False, highlight=False) if json else console
    err = Console(stderr=True, highlight=False) if json else None
    options = Options(dry_run=dry_run, json=json, break_lock=break_lock)
    build = build_dir(environment.name)
    lease = None
    if not dry_run:  # the Lease beside the lock file: a second operator elsewhere waits too
        from mk8s.edges.kube import KubeApi, default_kubeconfig

        lease = KubeApi(default_kubeconfig(build))
    recorded = certs_refresh.refresh(
        environment, build, options, out=out, err=err, certs=certs, inventory=env,
        lease_api=lease,
    )  # fmt: skip
    if recorded is not None:
        (err or console).print(f"{environment.name}: certificates renewed; evidence in {recorded}")


@task(help=ENV_HELP | {"json": "print the facts and the verdict as JSON instead of a table"})
@user_errors
def status(c: Context, env: str, json: bool = False) -> None:
    """Read-only health of ENV: per node VM, SSH, snap, Ready, datastore view, certs, drain
    verdict. Exit 0 healthy, 1 degraded (one line per problem), 3 no node answers."""
    from datetime import UTC, datetime

    from mk8s.console import console
    from mk8s.day2 import cluster_facts
    from mk8s.day2 import status as day2_status
    from mk8s.day2.preflight import Policy
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir

    environment = load_environment(env)
    facts = cluster_facts.read(environment, build_dir(environment.name), datetime.now(UTC))
    policy = Policy(rpo_minutes=environment.slo.rpo_minutes)
    report = day2_status.judge_status(facts, policy)
    if json:
        print(day2_status.to_json(report))
    else:
        console.print(day2_status.table(report))
        for line in day2_status.lines(report, policy):
            console.print(line, soft_wrap=True, highlight=False, markup=False)
    failure = day2_status.outcome(report)
    if failure is not None:
        raise failure
    if not json:
        _say(f"{environment.name}: healthy")


DRAIN_HELP = {
    **ENV_HELP,
    **CONFIRM_HELP,
    "node": "the node to drain",
    "reboot": "reboot it over SSH after the drain (the default)",
    "stop": "shut its VM down through Proxmox and wait until it runs again (host work)",
    "dry_run": "print the plan and stop",
    "json": "print the plan as JSON on stdout",
    "break_lock": "take over a stale day-2 lock (after checking nobody is working)",
}


@task(help=DRAIN_HELP)
@user_errors
def drain(
    c: Context,
    env: str,
    node: str,
    reboot: bool = False,
    stop: bool = False,
    dry_run: bool = False,
    json: bool = False,
    break_lock: bool = False,
    yes: bool = False,
    confirm: str = "",
) -> None:
    """Drain one node (cordon, evict with PDBs honoured), reboot or stop it, wait until it is
    back (Ready, voters, its API), uncordon; a drain that cannot finish lifts its own cordon."""
    from mk8s.console import console
    from mk8s.day2 import drain as day2_drain
    from mk8s.day2 import maintenance
    from mk8s.day2.operation import Options
    from mk8s.errors import UserError
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir

    if reboot and stop:
        raise UserError("--reboot and --stop: choose one")
    environment = load_environment(env)
    mode = day2_drain.Mode.STOP if stop else day2_drain.Mode.REBOOT
    build = build_dir(environment.name)
    what = f"drain {node} and {'shut its VM down' if stop else 'reboot it'}"
    options = Options(dry_run=dry_run, json=json, break_lock=break_lock)
    err = _stderr_console() if json else None
    rig = maintenance.real_rig(environment, build)
    asked = _confirm_after_plan(environment, what, yes, confirm)
    if maintenance.run_drain(
        environment, node, mode, rig, build, options, out=console, err=err, confirm=asked
    ):
        _say(f"{environment.name}: {node} drained, {mode}ed, back and uncordoned")


MAINTENANCE_HELP = {
    **{k: v for k, v in DRAIN_HELP.items() if k not in ("node", "reboot", "stop")},
    "pve_node": "drain every node on this Proxmox host (refused when it holds > 1 voter)",
    "outside_window": "start outside maintenance.window (never for prod)",
}


@task(help=MAINTENANCE_HELP)
@user_errors
def maintenance(
    c: Context,
    env: str,
    pve_node: str = "",
    outside_window: bool = False,
    dry_run: bool = False,
    json: bool = False,
    break_lock: bool = False,
    yes: bool = False,
    confirm: str = "",
) -> None:
    """Reboot, one at a time and inside the maintenance window, every node that needs it
    (/var/run/reboot-required); or, with --pve-node, drain and stop every node on one host."""
    from mk8s.console import console
    from mk8s.day2 import maintenance as day2_maintenance
    from mk8s.day2.operation import Options
    from mk8s.inventory.load import load_environment
    from mk8s.render.build import build_dir

    environment = load_environment(env)
    build = build_dir(environment.name)
    what = (
        f"drain and stop every node on {pve_node}" if pve_node else "reboot the nodes in the plan"
    )
    options = Options(dry_run=dry_run, json=json, break_lock=break_lock)
    err = _stderr_console() if json else None
    rig = day2_maintenance.real_rig(environment, build)
    done = day2_maintenance.run_maintenance(
        environment, rig, build, options, pve_node=pve_node or None,
        outside_window=outside_window, out=console, err=err,
        confirm=_confirm_after_plan(environment, what, yes, confirm),
    )  # fmt: skip
    if done:
        _say(f"{environment.name}: maintenance done")


def _confirm_after_plan(environment: Any, what: str, yes: bool, name: str) -> Any:
    """The confirmation `operate` asks once the plan is printed (prompt on stderr: stdout may
    be the plan's JSON)."""
    from mk8s.cli.confirm import ask_on_stderr

    def asked() -> None:
        confirm_destructive(environment, what, yes=yes, confirm_name=name, ask=ask_on_stderr)

    return asked


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@task(
    help=ENV_HELP
    | CONFIRM_HELP
    | {
        "dry_run": "print the plan (current and target per node, steps) and stop",
        "json": "print the plan as JSON on stdout (progress goes to stderr)",
        "outside_window": "start outside the maintenance window (refused for prod)",
        "break_lock": "take over a stale day-2 lock (check nobody is working first)",
        "wait_lock": "seconds to wait for another day-2 run's lock before refusing",
        "recover": "after a node stayed unhealthy: rebuild-node or rollback-cluster",
    }
)
@user_errors
def upgrade(
    c: Context,
    env: str,
    dry_run: bool = False,
    json: bool = False,
    outside_window: bool = False,
    break_lock: bool = False,
    wait_lock: float = 0,
    recover: str = "",
    yes: bool = False,
    confirm: str = "",
) -> None:
    """Upgrade MicroK8s to the inventory's channel, one node at a time (docs/upgrade.md)."""
    from mk8s.console import console, err_console
    from mk8s.day2.operation import Options
    from mk8s.day2.upgrade_run import invoke_upgrade
    from mk8s.inventory.load import load_environment

    def confirmed(what: str) -> None:
        confirm_destructive(environment, what, yes=yes, confirm_name=confirm)

    options = Options(dry_run=dry_run, json=json, break_lock=break_lock, wait_lock_s=wait_lock)
    # stdout carries the plan (JSON alone with --json); progress goes to stderr
    environment = load_environment(env)
    run_confirmed = _confirm_after_plan(
        environment, f"upgrade every node to {environment.microk8s.channel}", yes, confirm
    )
    lines = invoke_upgrade(
        env, options, outside_window=outside_window, out=console, err=err_console,
        recover_mode=recover, confirm=confirmed, confirm_run=run_confirmed,
    )  # fmt: skip
    for line in lines:
        _say(line)


def _say_level(line: str, colour: str) -> None:
    from rich.text import Text

    from mk8s.console import console

    console.print(Text(line, style=colour), soft_wrap=True, highlight=False)


# --- evidence: load tests, report, promotion ---


@task(
    help=ENV_HELP
    | {
        "host": "base URL to load (default https://app.<ingress.domain>)",
        "duration": "override loadtest.duration_s (seconds, 0 = inventory): a smoke run, which "
        "never counts as evidence",
        "connect": "send the traffic to this URL (the ingress LB IP, e.g. https://192.168.10.50) "
        "with the app's Host header, instead of resolving the app's name",
        "key": "private SSH key that signs the evidence (default $MK8S_EVIDENCE_KEY)",
    },
    auto_shortflags=False,  # -d is --dry-run elsewhere, -h is --help
)
@user_errors
def loadtest(
    c: Context,
    env: str,
    host: str | None = None,
    duration: str = "0",
    connect: str | None = None,
    key: str | None = None,
) -> None:
    """Locust at the inventory's rate; SLO gate (p95, error rate) and per-IP rate-limit check."""
    from mk8s.checks.loadtest import LoadProfile
    from mk8s.checks.loadtest import run as run_loadtest
    from mk8s.console import console
    from mk8s.inventory.load import load_environment
    from mk8s.promotion.evidence import criterion_line, signing_key

    profile = None
    environment = load_environment(env)
    run_s = arguments.seconds("--duration", duration, zero_means="the inventory's duration")
    if host is not None:
        arguments.base_url("--host", host)
    if connect is not None:
        arguments.base_url("--connect", connect)
    if run_s:
        profile = replace(LoadProfile.of(environment), duration_s=run_s)
    signer = signing_key(Path(key) if key else None)
    run_dir, summary = run_loadtest(env, host=host, connect=connect, profile=profile, key=signer)
    for criterion in summary.criteria:
        console.print(criterion_line(criterion), soft_wrap=True, markup=False)
    if profile is not None:
        console.print("smoke run (--duration): recorded, but never counts for promotion")
    console.print(f"evidence: {run_dir}" + ("" if signer else " (UNSIGNED: set MK8S_EVIDENCE_KEY)"))
    if not summary.passed:
        raise OperationFailedError(f"{summary.env}: load test failed (run {summary.run_id})")


@task
@user_errors
def report(c: Context) -> None:
    """Render reports/index.html: every environment, its latest runs, gate state, p95 chart."""
    from mk8s.console import console
    from mk8s.promotion.report import write_report

    console.print(f"report: {write_report()}")


@task(help={"env": "environment to promote into (its promotion.after names the source)"})
@user_errors
def promote(c: Context, env: str) -> None:
    """Build ENV only on fresh green evidence of the previous environment; no override."""
    from mk8s.console import console
    from mk8s.promotion.promote import promote as promote_env

    promote_env(env, echo=lambda line: console.print(line, soft_wrap=True, markup=False))
