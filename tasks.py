"""mk8s tasks: thin wrappers that parse arguments, call the library and print.

Run `invoke --list` for the commands; DESIGN.md and README.md describe the phases.
"""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from mk8s import provision as provisioning
from mk8s import tools as tooling
from mk8s.build import build_dir, write_plan
from mk8s.cli import user_errors
from mk8s.console import console, plan_tables, print_changes
from mk8s.errors import UserError
from mk8s.load import load_environment
from mk8s.plan import build_plan
from mk8s.provision_view import checks_table, plan_table

ENV_HELP = {"env": "environment name (inventory/NAME.yaml) or path to an inventory YAML file"}


@task(help=ENV_HELP)
@user_errors
def check(c: Context, env: str) -> None:
    """Validate an inventory: schema and every cross-field rule; no network."""
    environment = load_environment(env)
    console.print(f"{env}: OK ({len(environment.nodes)} nodes, {environment.microk8s.channel})")


@task(help=ENV_HELP)
@user_errors
def plan(c: Context, env: str) -> None:
    """Render everything into build/ENV/ and show what would change; touches no infrastructure."""
    environment = load_environment(env)
    the_plan = build_plan(environment)
    for table in plan_tables(the_plan):
        console.print(table)
    out = build_dir(environment.name)
    print_changes(write_plan(the_plan, out), str(out))


# --- provision ---


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _nodes(node: str) -> list[str]:
    return [n for n in node.split(",") if n]


@task
@user_errors
def tools(c: Context) -> None:
    """Ensure terraform/tofu and the pinned bpg/proxmox provider mirror (offline, cached)."""
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
    environment = load_environment(env)
    report = provisioning.provision(
        environment,
        dry_run=dry_run,
        allow_replace=allow_replace,
        module=Path(module) if module else None,
        say=_say,
        show_checks=lambda checks: console.print(checks_table(checks)),
        show_plan=lambda chs: console.print(plan_table(chs)),
    )
    if dry_run:
        console.print("dry run: nothing applied")
        return
    verb = "applied" if report.applied else "unchanged"
    console.print(f"{environment.name}: {len(environment.nodes)} VMs {verb}, verified, SSH up")


@task(help={**ENV_HELP, "yes": "do not ask for the environment name"})
@user_errors
def destroy(c: Context, env: str, yes: bool = False) -> None:
    """Destroy the environment's VMs (only those in its state, tagged env-NAME); asks first."""
    environment = load_environment(env)
    if not yes:
        answer = input(f"Type the environment name ({environment.name}) to destroy its VMs: ")
        if answer.strip() != environment.name:
            raise UserError("destroy: confirmation did not match; nothing destroyed")
    gone = provisioning.destroy(environment, say=_say)
    console.print(f"{environment.name}: destroyed {', '.join(gone) or 'nothing'}")


@task(
    help={**ENV_HELP, "name": "snapshot name", "node": "comma-separated node names (default all)"}
)
@user_errors
def snapshot(c: Context, env: str, name: str, node: str = "") -> None:
    """Snapshot the environment's VMs (skips nodes that already have it)."""
    done = provisioning.snapshot(load_environment(env), name, _nodes(node), say=_say)
    console.print(f"snapshot {name}: {', '.join(done) or 'nothing to do'}")


@task(
    help={**ENV_HELP, "name": "snapshot name", "node": "comma-separated node names (default all)"}
)
@user_errors
def rollback(c: Context, env: str, name: str, node: str = "") -> None:
    """Roll the environment's VMs back to a snapshot and start them."""
    done = provisioning.rollback(load_environment(env), name, _nodes(node), say=_say)
    console.print(f"rolled back to {name}: {', '.join(done)}")


@task(
    help={
        **ENV_HELP,
        "action": "start, stop, shutdown, reboot or reset",
        "node": "comma-separated node names (default all)",
    }
)
@user_errors
def power(c: Context, env: str, action: str, node: str = "") -> None:
    """Power actions on the environment's VMs (start/stop/shutdown skip VMs already there)."""
    done = provisioning.power(load_environment(env), action, _nodes(node), say=_say)
    console.print(f"{action}: {', '.join(done) or 'nothing to do'}")
