"""mk8s tasks: thin wrappers that parse arguments, call the library and print.

Run `invoke --list` for the commands; DESIGN.md and README.md describe the phases.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

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
    changes, facts = write_plan(the_plan, out)
    print_changes(changes, facts, str(out))
