"""mk8s tasks: thin wrappers that parse arguments, call the library and print.

Run `invoke --list` for the commands; DESIGN.md and README.md describe the phases.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from mk8s import nodes
from mk8s.build import build_dir, write_plan
from mk8s.cli import user_errors
from mk8s.console import console, plan_tables, print_changes
from mk8s.load import load_environment
from mk8s.plan import build_plan

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
    environment = load_environment(env)
    out = build_dir(environment.name)
    report = nodes.bootstrap(
        environment,
        out,
        nodes.ProxmoxHostKeys(environment),
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
