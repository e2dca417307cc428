"""`invoke drain`/`maintenance` confirm after the plan is printed, before the lock; with
`--json` stdout holds the plan's JSON only and the prompt goes to stderr."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mk8s.cli import confirm as confirm_mod
from mk8s.day2.operation import Options, operate
from mk8s.day2.plan import Kind, StepSpec, make_plan
from mk8s.errors import UserError


class Step:
    def __init__(self, ran: list[str], key: str) -> None:
        self.ran, self.key = ran, key

    def run(self) -> None:
        self.ran.append(self.key)

    def done(self) -> bool:
        return self.key in self.ran


def _plan() -> Any:
    return make_plan("drain", "lab", [StepSpec("n1:cordon", Kind.API, "cordon n1", node="n1")])


def test_confirm_comes_after_the_plan_and_a_refusal_leaves_nothing(tmp_path: Path) -> None:
    buffer = io.StringIO()
    ran: list[str] = []
    order: list[str] = []
    plan = _plan()

    def refuse() -> None:
        order.append(f"asked after {len(buffer.getvalue())} chars of plan")
        raise UserError("confirmation did not match; nothing done")

    with pytest.raises(UserError):
        operate(plan, {"n1:cordon": Step(ran, "n1:cordon")}, tmp_path,
                Options(json=True), out=Console(file=buffer), confirm=refuse)  # fmt: skip
    assert json.loads(buffer.getvalue()) == plan.to_dict()  # the whole plan, first
    assert order and order[0] != "asked after 0 chars of plan"
    assert ran == [] and list(tmp_path.iterdir()) == []  # no lock, no journal, no step


def test_confirmed_runs_and_dry_run_never_asks(tmp_path: Path) -> None:
    ran: list[str] = []
    asked: list[str] = []
    acts = {"n1:cordon": Step(ran, "n1:cordon")}
    out = Console(file=io.StringIO())
    operate(_plan(), acts, tmp_path / "dry", Options(dry_run=True), out=out,
            confirm=lambda: asked.append("dry"))  # fmt: skip
    assert asked == [] and ran == []
    operate(_plan(), acts, tmp_path / "run", Options(), out=out,
            confirm=lambda: asked.append("yes"))  # fmt: skip
    assert asked == ["yes"] and ran == ["n1:cordon"]


def test_the_prompt_goes_to_stderr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("lab\n"))
    confirm_mod.confirm("lab", "dev", "drain n1", ask=confirm_mod.ask_on_stderr,
                        terminal=lambda: True)  # fmt: skip
    got = capsys.readouterr()
    assert got.out == ""
    assert "Type the environment name (lab) to drain n1" in got.err


def test_the_tasks_ask_through_operate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """tasks.drain no longer confirms before the plan: it hands `confirm` to run_drain."""
    import tasks
    from mk8s.day2 import maintenance

    seen: dict[str, Any] = {}

    def fake_run_drain(*args: Any, **kw: Any) -> None:
        seen.update(kw)

    monkeypatch.setattr(maintenance, "real_rig", lambda env, build: None)
    monkeypatch.setattr(maintenance, "run_drain", fake_run_drain)
    monkeypatch.setattr("mk8s.render.build.build_dir", lambda name: tmp_path)
    monkeypatch.setattr(confirm_mod, "_stdin_is_terminal", lambda: False)
    node = tasks_env_node()
    tasks.drain.body(None, env="dev", node=node)  # no --yes, no terminal: not refused yet
    assert callable(seen["confirm"])
    with pytest.raises(UserError, match="needs confirmation"):
        seen["confirm"]()


def tasks_env_node() -> str:
    from mk8s.inventory.load import load_environment

    return load_environment("dev").nodes[0].name
