"""`invoke upgrade` asks for the environment name once the plan is printed, before the lock;
a refusal leaves no lock, no journal and no step run (the recoveries confirm on their own)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mk8s.cli import confirm as confirm_mod
from mk8s.day2.operation import Options
from mk8s.day2.plan import Kind, StepSpec, make_plan
from mk8s.day2.upgrade_run import run_upgrade
from mk8s.errors import UserError


class Step:
    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    def run(self) -> None:
        self.ran.append("preflight")

    def done(self) -> bool:
        return bool(self.ran)


def test_a_refused_confirmation_runs_nothing_and_locks_nothing(tmp_path: Path) -> None:
    plan = make_plan("upgrade", "lab", [StepSpec("preflight", Kind.CHECK, "preflight gates")])
    ran: list[str] = []
    out = io.StringIO()

    def refuse() -> None:
        assert "preflight gates" in out.getvalue()  # the plan came first
        raise UserError("upgrade every node on lab: confirmation did not match; nothing done")

    with pytest.raises(UserError, match="confirmation did not match"):
        run_upgrade(plan, {"preflight": Step(ran)}, tmp_path, Options(),
                    out=Console(file=out, width=200), confirm=refuse)  # fmt: skip
    assert ran == [] and list(tmp_path.iterdir()) == []
    run_upgrade(plan, {"preflight": Step(ran)}, tmp_path, Options(),
                out=Console(file=io.StringIO()), confirm=lambda: None)  # fmt: skip
    assert ran == ["preflight"]


def test_the_task_hands_the_question_to_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks
    from mk8s.day2 import upgrade_run

    seen: dict[str, Any] = {}

    def fake_invoke_upgrade(*args: Any, **kw: Any) -> tuple[str, ...]:
        seen.update(kw)
        return ()

    monkeypatch.setattr(upgrade_run, "invoke_upgrade", fake_invoke_upgrade)
    monkeypatch.setattr(confirm_mod, "_stdin_is_terminal", lambda: False)
    tasks.upgrade.body(None, env="dev")  # no --yes, no terminal: the question is not asked yet
    with pytest.raises(UserError, match="needs confirmation"):
        seen["confirm_run"]()
    seen.clear()
    tasks.upgrade.body(None, env="dev", yes=True)
    seen["confirm_run"]()  # --yes on dev: confirmed
