"""`invoke promote ENV`: check the gate on the previous environment's evidence, then build ENV.

The decision is `mk8s.promotion.gate.decide` (pure); this module gathers its facts (the latest
runs of the previous environment with their signatures checked against its
`promotion.signers`, inputs and code hashed now), runs the build steps through an injectable
runner, and records the outcome in ENV's evidence dir as RUN_ID/promotion.json. The
conformance step records ENV's own evidence.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mk8s.day2.evidence import any_run, last_upgrade
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import PROMOTION_RECORD, Latest, env_reports, latest_run, new_run_dir
from mk8s.promotion.gate import Decision, Upgrades, decide
from mk8s.promotion.inputs import current_inputs

PROMOTION = PROMOTION_RECORD

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
    try:
        return subprocess.run(list(cmd), check=False).returncode
    except FileNotFoundError:
        return 127  # the shell's "command not found"


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    ran: tuple[str, ...]
    record: Path


@dataclass(frozen=True)
class Evidence:
    """The previous environment's latest runs, as the gate judged them."""

    conformance: Latest
    loadtest: Latest


def evidence_of(prev: Environment, root: Path) -> Evidence:
    base = env_reports(prev.name, root, prev.promotion.evidence_dir)
    field = f"{prev.name}'s promotion.signers"
    signers = prev.promotion.signers
    return Evidence(
        latest_run(prev.name, "conformance", base, signers, field),
        latest_run(prev.name, "loadtest", base, signers, field),
    )


def judge(env: str, root: Path = Path(), now: datetime | None = None) -> tuple[Decision, Evidence]:
    """Facts about the previous environment, then the pure decision."""
    target = load_environment(env, root)
    prev_name = target.promotion.after
    if prev_name is None:
        none = Evidence(Latest(), Latest())
        return decide(target, None, conformance=none.conformance, loadtest=none.loadtest,
                      inputs_now=None, now=_now(now)), none  # fmt: skip
    try:
        prev = load_environment(prev_name, root)
        inputs_now: dict[str, str] | None = current_inputs(prev_name, root)
    except UserError as exc:
        raise UserError(
            f"{env}: promotion.after names {prev_name!r}, but: {exc.lines[0]}"
        ) from None
    found = evidence_of(prev, root)
    upgrades = upgrades_of(prev, target.microk8s.channel, root)
    decision = decide(
        target,
        prev,
        conformance=found.conformance,
        loadtest=found.loadtest,
        inputs_now=inputs_now,
        now=_now(now),
        evidence_dir=prev.promotion.evidence_dir,
        upgrades=upgrades,
    )
    return decision, found


def upgrades_of(prev: Environment, channel: str, root: Path) -> Upgrades | None:
    """PREV's last upgrade to `channel`; None when PREV has no upgrade evidence at all."""
    if not any_run(env_reports(prev.name, root, prev.promotion.evidence_dir), task="upgrade"):
        return None
    return Upgrades(channel, last_upgrade(prev, channel, root))


def gate(env: str, root: Path = Path(), now: datetime | None = None) -> Decision:
    return judge(env, root, now)[0]


def promote(
    env: str,
    root: Path = Path(),
    runner: Runner = subprocess_runner,
    now: datetime | None = None,
    echo: Callable[[str], None] = print,
) -> Outcome:
    """Refuse (UserError naming each reason) or run every step; stop at the first failure."""
    decision, found = judge(env, root, now)
    if not decision.allowed:
        raise UserError(*(f"refusing to promote {env}: {r}" for r in decision.reasons))
    signers = sorted({s for s in (found.conformance.signer, found.loadtest.signer) if s})
    echo(
        f"{env}: evidence of {decision.previous} is complete, signed ({', '.join(signers)}) "
        "and current; promoting"
    )
    ran: list[str] = []
    for number, cmd in enumerate(steps(env), start=1):
        line = shlex.join(cmd)
        echo(f"[{number}/4] {line}")
        code = runner(cmd)
        ran.append(line)
        if code != 0:
            record = _record(env, root, decision, found, ran, failed=line, code=code, now=now)
            raise OperationFailedError(
                f"promote {env}: step {number}/4 `{line}` failed (exit {code}); "
                f"fix it and re-run `invoke promote {env}` (record: {record})"
            )
    record = _record(env, root, decision, found, ran, failed=None, code=0, now=now)
    echo(f"{env}: promoted from {decision.previous}; record in {record}")
    return Outcome(decision, tuple(ran), record)


def _record(
    env: str,
    root: Path,
    decision: Decision,
    found: Evidence,
    ran: list[str],
    *,
    failed: str | None,
    code: int,
    now: datetime | None,
) -> Path:
    target = load_environment(env, root)
    conf, load = found.conformance, found.loadtest
    run_dir = new_run_dir(env, _now(now), env_reports(env, root, target.promotion.evidence_dir))
    body = {
        "env": env,
        "from": decision.previous,
        "result": "failed" if failed else "promoted",
        "failed_step": failed,
        "exit_code": code,
        "steps": ran,
        "evidence": {
            "conformance": conf.run_id,
            "loadtest": load.run_id,
            "signed_by": {"conformance": conf.signer, "loadtest": load.signer},
            "inputs_hash": conf.summary.inputs_hash if conf.summary else None,
        },
        "created_at": _now(now).isoformat(),
    }
    path = run_dir / PROMOTION
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)
