"""The promotion gate: may ENV be built from what its previous environment proved? Pure.

Promoting ENV (say stage) is allowed only on fresh green evidence of the environment named by
`promotion.after` (dev): its latest conformance run passed every criterion of the required
phases and proved each of them (a phase4 criterion such as the production certificate cannot
pass before prod and does not count), its latest load-test run passed, both are younger than
ENV's `promotion.max_age_hours`, and both were produced from the inputs that exist now (same
shared manifests, bootstrap, terraform and rendered plan, same inventory of the previous
environment). Anything else refuses with one line per reason. There is no override: evidence
is the only way through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import CriterionResult, Summary, combine

# Phases an environment must have proven before the next one is built from the same inputs.
# phase4 (production certificates, DNS, alerting) can only be proven in production itself.
REQUIRED_PHASES: tuple[str, ...] = ("phase1", "phase2", "phase3")

# Where each input part lives, for refusal lines an operator can act on.
_PART_NAMES = {
    "inventory": "inventory/{env}.yaml",
    "manifests": "manifests/",
    "bootstrap": "bootstrap/",
    "terraform": "terraform/",
    "plan": "rendered plan (build/{env}/)",
}


@dataclass(frozen=True)
class Decision:
    target: str
    previous: str | None
    reasons: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.reasons


def decide(
    target: Environment,
    *,
    conformance: Summary | None,
    loadtest: Summary | None,
    inputs_now: Mapping[str, str] | None,
    now: datetime,
    required_phases: tuple[str, ...] = REQUIRED_PHASES,
) -> Decision:
    """Every reason the promotion into `target` must be refused; none means go."""
    prev = target.promotion.after
    if prev is None:
        return Decision(
            target.name,
            None,
            (
                f"{target.name} has no promotion.after: it is the first environment and is "
                f"built directly (invoke provision/bootstrap/deploy --env {target.name})",
            ),
        )
    max_age = timedelta(hours=target.promotion.max_age_hours)
    reasons: list[str] = []
    if conformance is None:
        reasons.append(
            f"{prev} has no conformance run in reports/{prev}/ "
            f"(run: nox -s conformance -- --env {prev})"
        )
    else:
        reasons += _run_problems(
            prev, "conformance", conformance, now, max_age, inputs_now, required_phases
        )
        missing = [p for p in required_phases if p not in conformance.proven_phases]
        if missing:
            reasons.append(
                f"{prev}'s latest conformance run {conformance.run_id} proved nothing for "
                f"{', '.join(missing)} (required: {', '.join(required_phases)})"
            )
    if loadtest is None:
        reasons.append(
            f"{prev} has no load-test run in reports/{prev}/ (run: invoke loadtest --env {prev})"
        )
    else:
        reasons += _run_problems(prev, "load-test", loadtest, now, max_age, inputs_now, None)
    return Decision(target.name, prev, tuple(reasons))


def _run_problems(
    prev: str,
    label: str,
    run: Summary,
    now: datetime,
    max_age: timedelta,
    inputs_now: Mapping[str, str] | None,
    required_phases: tuple[str, ...] | None,
) -> list[str]:
    """Problems of one run; only criteria of `required_phases` count (None: all of them)."""
    where = f"{prev}'s latest {label} run {run.run_id}"
    out: list[str] = []
    required = [c for c in run.criteria if required_phases is None or c.phase in required_phases]
    failed = [c for c in required if c.status == "failed"]
    if failed:
        out.append(f"{where} failed: " + "; ".join(_describe(c) for c in failed))
    elif run.other_failures:
        out.append(f"{where} did not pass: " + "; ".join(run.other_failures))
    elif not any(c.passed for c in required):
        out.append(f"{where} did not pass: no criterion passed")
    age = now - run.created_at
    if age > max_age:
        out.append(
            f"{where} is stale: {_hours(age)} old, promotion accepts evidence younger "
            f"than {_hours(max_age)}"
        )
    elif age < -timedelta(minutes=5):
        out.append(f"{where} is dated in the future ({run.created_at.isoformat()}); check clocks")
    if inputs_now is not None:
        changed = changed_parts(run, inputs_now)
        if changed:
            names = ", ".join(_PART_NAMES.get(p, p).format(env=prev) for p in changed)
            out.append(f"{where} was produced from other inputs; changed since: {names}")
    return out


def changed_parts(run: Summary, inputs_now: Mapping[str, str]) -> list[str]:
    """Input parts whose hash differs from the run's; all of them when the run lacks detail."""
    if run.inputs:
        parts = sorted(set(run.inputs) | set(inputs_now))
        return [p for p in parts if run.inputs.get(p) != inputs_now.get(p)]
    # A summary without per-part hashes: the combined hash is all there is to compare.
    return [] if combine(dict(inputs_now)) == run.inputs_hash else ["inputs"]


def _describe(c: CriterionResult) -> str:
    unit = f" {c.unit}" if c.unit else ""
    measured = f"measured {c.measured}{unit}" if c.measured is not None else "not measured"
    target = f", target {c.target}{unit}" if c.target is not None else ""
    return f"{c.id} ({measured}{target})"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.0f} h"
