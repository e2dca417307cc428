"""Confirmation before a destructive action (rollback, power stop/shutdown/reset, destroy).

The operator types the environment's name, or passes `--yes`; with no terminal to ask on and no
`--yes`, the action is refused (exit 2) instead of dying on a closed stdin. On prod `--yes` alone
is refused: the command must name the environment too (`--confirm prod`), so a `--yes` pasted
from a dev runbook cannot take prod down (issue 12).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mk8s.errors import UserError
from mk8s.inventory.model import Environment


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached stdin
        return False


def _ask(prompt: str) -> str:
    return input(prompt)


def ask_on_stderr(prompt: str) -> str:
    """The prompt on stderr, the answer from stdin: with `--json` stdout holds only the plan,
    so `invoke drain ... --json | jq` still shows the question on the terminal."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return input()


def confirm(
    env_name: str,
    tier: str,
    action: str,
    *,
    yes: bool = False,
    confirm_name: str = "",
    ask: Callable[[str], str] | None = None,
    terminal: Callable[[], bool] | None = None,
) -> None:
    """Return when the operator has confirmed `action` on `env_name`; else raise UserError."""
    ask = ask or _ask
    terminal = terminal or _stdin_is_terminal
    nothing = f"nothing done ({action})"
    if confirm_name:
        if confirm_name != env_name:
            raise UserError(f"--confirm {confirm_name}: does not match {env_name}; {nothing}")
        return
    if yes and tier != "prod":
        return
    if yes:
        raise UserError(
            f"{env_name} is a prod environment: --yes is not enough, add --confirm {env_name}"
        )
    if not terminal():
        raise UserError(
            f"{action} on {env_name} needs confirmation and there is no terminal to ask on: "
            f"pass {'--confirm ' + env_name if tier == 'prod' else '--yes'}; {nothing}"
        )
    try:
        answer = ask(f"Type the environment name ({env_name}) to {action}: ")
    except EOFError:
        raise UserError(f"{action} on {env_name}: no answer; {nothing}") from None
    if answer.strip() != env_name:
        raise UserError(f"{action} on {env_name}: confirmation did not match; {nothing}")


def confirm_destructive(
    env: Environment,
    action: str,
    *,
    yes: bool = False,
    confirm_name: str = "",
    ask: Callable[[str], str] | None = None,
) -> None:
    confirm(env.name, env.effective_tier, action, yes=yes, confirm_name=confirm_name, ask=ask)
