"""Destructive actions ask first: closed stdin without --yes is refused (exit 2) before any
Proxmox call; prod needs --confirm prod, --yes alone is not enough (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mk8s.cli.confirm import confirm
from mk8s.errors import UserError
from tests.contracts.support import Listener, inventory, run_task, write_inventory

DESTRUCTIVE = [
    ["destroy"],
    ["rollback", "--name", "s1"],
    ["power", "--action", "stop"],
    ["power", "--action", "shutdown"],
    ["power", "--action", "reset"],
]


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[Path, Listener]]:
    listener = Listener()
    url = f"https://127.0.0.1:{listener.port}"
    write_inventory(tmp_path, inventory("lab", proxmox_endpoint=url))
    write_inventory(tmp_path, inventory("prod", proxmox_endpoint=url))
    yield tmp_path, listener
    listener.close()


@pytest.mark.slow
@pytest.mark.parametrize("args", DESTRUCTIVE, ids=" ".join)
def test_closed_stdin_without_yes_is_refused(
    args: list[str], endpoint: tuple[Path, Listener]
) -> None:
    root, listener = endpoint
    outcome = run_task(args[0], "--env", "lab", *args[1:], cwd=root)
    outcome.assert_one_line(2, "lab", "--yes", "no terminal")
    assert listener.connections == 0


@pytest.mark.slow
@pytest.mark.parametrize("args", DESTRUCTIVE, ids=" ".join)
def test_prod_yes_alone_is_refused(args: list[str], endpoint: tuple[Path, Listener]) -> None:
    root, listener = endpoint
    outcome = run_task(args[0], "--env", "prod", *args[1:], "--yes", cwd=root)
    outcome.assert_one_line(2, "--confirm prod")
    assert listener.connections == 0


@pytest.mark.slow
def test_confirm_naming_another_environment_is_refused(endpoint: tuple[Path, Listener]) -> None:
    root, listener = endpoint
    outcome = run_task("power", "--env", "prod", "--action", "stop", "--confirm", "stage", cwd=root)
    outcome.assert_one_line(2, "--confirm stage", "prod")
    assert listener.connections == 0


@pytest.mark.slow
def test_yes_lets_a_lab_action_reach_proxmox(endpoint: tuple[Path, Listener]) -> None:
    """The other side of the refusals above: confirmed, the task does call the endpoint."""
    root, listener = endpoint
    outcome = run_task("power", "--env", "lab", "--action", "stop", "--yes", cwd=root, timeout=60)
    assert outcome.code == 1, outcome.stderr
    assert listener.connections > 0


def test_non_destructive_power_needs_no_confirmation() -> None:
    from mk8s.cli.arguments import DESTRUCTIVE_POWER

    assert set(DESTRUCTIVE_POWER) == {"stop", "shutdown", "reset"}


def _no_terminal() -> bool:
    return False


def _terminal() -> bool:
    return True


def test_typed_name_confirms() -> None:
    confirm("stage", "stage", "destroy", ask=lambda _: "stage\n", terminal=_terminal)
    confirm("prod", "prod", "destroy", ask=lambda _: "prod", terminal=_terminal)


@pytest.mark.parametrize("answer", ["", "prod ", "yes", "stag"])
def test_wrong_answer_refuses(answer: str) -> None:
    with pytest.raises(UserError, match="did not match"):
        confirm("stage", "stage", "destroy", ask=lambda _: answer, terminal=_terminal)


def test_eof_at_the_prompt_refuses() -> None:
    def eof(_: str) -> str:
        raise EOFError

    with pytest.raises(UserError, match="no answer"):
        confirm("dev", "dev", "rollback", ask=eof, terminal=_terminal)


def test_prod_with_confirm_and_no_terminal_goes_ahead() -> None:
    confirm("prod", "prod", "power stop", yes=True, confirm_name="prod", terminal=_no_terminal)
    confirm("prod", "prod", "power stop", confirm_name="prod", terminal=_no_terminal)
