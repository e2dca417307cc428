"""invoke's own usage errors, for every task: exit 2 and one `error:` line (issue 12).

invoke 2.2.1 exits 1 for these (Program.run maps ParseError to 1); mk8s.program wraps it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contracts.support import ALL_TASKS, ENV_TASKS, run_task


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(ENV_TASKS))
def test_missing_env(task: str, tmp_path: Path) -> None:
    outcome = run_task(task, *ENV_TASKS[task], cwd=tmp_path)
    outcome.assert_one_line(2, task, "--env", "required")


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(ENV_TASKS))
def test_unknown_flag(task: str, tmp_path: Path) -> None:
    outcome = run_task(task, "--env", "lab", "--frobnicate", *ENV_TASKS[task], cwd=tmp_path)
    outcome.assert_one_line(2, "--frobnicate", "unknown option")


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(ENV_TASKS))
def test_flag_given_twice(task: str, tmp_path: Path) -> None:
    outcome = run_task(task, "--env", "lab", "--env", "dev", *ENV_TASKS[task], cwd=tmp_path)
    outcome.assert_one_line(2, "--env", "twice")


def test_unknown_flag_in_place_of_env_is_not_taken_as_its_value(tmp_path: Path) -> None:
    # invoke fills a missing positional with the next token, even `--bogus`.
    run_task("check", "--bogus", cwd=tmp_path).assert_one_line(2, "unknown option --bogus")


def test_unknown_task(tmp_path: Path) -> None:
    run_task("frobnicate", cwd=tmp_path).assert_one_line(2, "'frobnicate'", "invoke --list")


def test_value_missing(tmp_path: Path) -> None:
    run_task("check", "--env", cwd=tmp_path).assert_one_line(2, "--env")


def test_help_of_unknown_task(tmp_path: Path) -> None:
    run_task("--help", "frobnicate", cwd=tmp_path).assert_one_line(2, "frobnicate")


def test_help_still_works(tmp_path: Path) -> None:
    outcome = run_task("--help", "check", cwd=tmp_path)
    assert outcome.code == 0, outcome.stderr
    assert "--env" in outcome.stdout


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(set(ALL_TASKS) - set(ENV_TASKS)))
def test_unknown_flag_on_a_task_without_env(task: str, tmp_path: Path) -> None:
    outcome = run_task(task, "--frobnicate", cwd=tmp_path)
    outcome.assert_one_line(2, task, "unknown option --frobnicate")
