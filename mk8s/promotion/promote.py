"""`invoke promote ENV`: check the gate on the previous environment's evidence, then build ENV.

The decision is `mk8s.promotion.gate.decide` (pure); this module gathers its facts (latest summaries,
inputs recomputed now), runs the build steps through an injectable runner, and records the
outcome in reports/ENV/RUN_ID/promotion.json. The conformance step records its own evidence.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.load import load_environment
from mk8s.promotion.evidence import current_inputs, latest, new_run_dir
from mk8s.promotion.gate import Decision, decide

PROMOTION = "promotion.json"

# A runner takes one command line and returns its exit code.
Runner = Callable[[Sequence[str]], int]


def steps(env: str) -> list[list[str]]:
    """What a promotion runs, in order: the same commands an operator would type."""
    return [
        ["invoke", "provision", "--env", env],
        ["invoke", "bootstrap", "--env", env],
        ["invoke", "deploy", "--env", env],
        ["nox", "-s", "conformance", "--", "--env", env],
    ]


def subprocess_runner(cmd: Sequence[str]) -> int:
    return subprocess.run(list(cmd), check=False).returncode


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    ran: tuple[str, ...]
    record: Path


def gate(env: str, root: Path = Path(), now: datetime | None = None) -> Decision:
    """Facts about the previous environment, then the pure decision."""
    target = load_environment(env, root)
    prev = target.promotion.after
    if prev is None:
        return decide(target, conformance=None, loadtest=None, inputs_now=None, now=_now(now))
    try:
        inputs_now: dict[str, str] | None = current_inputs(prev, root)
    except UserError as exc:
        raise UserError(f"{env}: promotion.after names {prev!r}, but: {exc.lines[0]}") from None
    return decide(
        target,
        conformance=latest(prev, "conformance", root),
        loadtest=latest(prev, "loadtest", root),
        inputs_now=inputs_now,
        now=_now(now),
    )


def promote(
    env: str,
    root: Path = Path(),
    runner: Runner = subprocess_runner,
    now: datetime | None = None,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Refuse (UserError naming each reason) or run every step; stop at the first failure."""
    decision = gate(env, root, now)
    if not decision.allowed:
        raise UserError(*(f"refusing to promote {env}: {r}" for r in decision.reasons))
    echo(f"{env}: evidence of {decision.previous} is green and fresh; promoting")
    ran: list[str] = []
    for number, cmd in enumerate(steps(env), start=1):
        line = shlex.join(cmd)
        echo(f"[{number}/4] {line}")
        code = runner(cmd)
        ran.append(line)
        if code != 0:
            record = _record(env, root, decision, ran, failed=line, code=code, now=now)
            raise OperationFailedError(
                f"promote {env}: step {number}/4 `{line}` failed (exit {code}); "
                f"fix it and re-run `invoke promote {env}` (record: {record})"
            )
    record = _record(env, root, decision, ran, failed=None, code=0, now=now)
    echo(f"{env}: promoted from {decision.previous}; record in {record}")
    return Outcome(decision, tuple(ran), record)


def _record(
    env: str,
    root: Path,
    decision: Decision,
    ran: list[str],
    *,
    failed: str | None,
    code: int,
    now: datetime | None,
) -> Path:
    prev = decision.previous
    assert prev is not None  # only allowed decisions get here
    conf, load = latest(prev, "conformance", root), latest(prev, "loadtest", root)
    run_dir = new_run_dir(env, _now(now), root)
    body = {
        "env": env,
        "from": prev,
        "result": "failed" if failed else "promoted",
        "failed_step": failed,
        "exit_code": code,
        "steps": ran,
        "evidence": {
            "conformance": conf.run_id if conf else None,
            "loadtest": load.run_id if load else None,
            "inputs_hash": conf.inputs_hash if conf else None,
        },
        "created_at": _now(now).isoformat(),
    }
    path = run_dir / PROMOTION
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)
