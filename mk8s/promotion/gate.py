"""The promotion gate: may ENV be built from what its previous environment proved? Pure.

Promoting ENV (say stage) is allowed only on the evidence of PREV, the environment ENV's
`promotion.after` names (dev): PREV's latest conformance run and latest load-test run, each

- readable and signed by one of PREV's `promotion.signers` (an unreadable latest run refuses;
  it is never skipped for an older one);
- complete: it holds every criterion the registry (mk8s.checks.criteria) requires for PREV's
  tier, each passed, or skipped with the registry's not-applicable reason for PREV's inventory;
  a run limited with `-k`/`-m` is partial and never counts;
- produced from the inputs and the code that exist now (inventory, manifests, bootstrap,
  terraform, the rendered plan, and mk8s/, conformance/, loadtests/, tasks.py, noxfile.py,
  pyproject.toml), from a clean tree when ENV is a prod tier;
- younger than ENV's `promotion.max_age_hours`;
- for the load test: aimed at PREV's app host through PREV's ingress addresses, at PREV's
  `loadtest` duration and rate, and no smoke run.

And when PREV has day-2 upgrade evidence at all (mk8s.day2.evidence: it was upgraded rather
than only built), PREV's last upgrade to ENV's `microk8s.channel` must be readable, signed by
one of PREV's signers, green, and finished at least ENV's `promotion.soak_days` ago (the PRD
checklist: stage first, prod two weeks later). A refusal names the date it becomes allowed.

Anything else refuses with one line per reason. There is no override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address

from mk8s.checks import criteria as registry
from mk8s.day2.evidence import Day2Latest, soaked_at, why_not_green
from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import CriterionResult, Latest, LoadRecord, Summary

# Where each input part lives, for refusal lines an operator can act on.
_PART_NAMES = {
    "inventory": "inventory/{env}.yaml",
    "manifests": "manifests/",
    "bootstrap": "bootstrap/",
    "terraform": "terraform/",
    "plan": "rendered plan (build/{env}/)",
    "mk8s": "mk8s/",
    "conformance": "conformance/",
    "loadtests": "loadtests/",
}


@dataclass(frozen=True)
class Upgrades:
    """PREV's upgrade evidence as the soak rule reads it (None in `decide`: PREV has none)."""

    channel: str  # the target's microk8s.channel
    latest: Day2Latest  # PREV's last upgrade to `channel`


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
    previous: Environment | None,
    *,
    conformance: Latest,
    loadtest: Latest,
    inputs_now: Mapping[str, str] | None,
    now: datetime,
    evidence_dir: str = "reports",
    upgrades: Upgrades | None = None,
) -> Decision:
    """Every reason the promotion into `target` must be refused; none means go."""
    if target.promotion.after is None or previous is None:
        return Decision(
            target.name,
            None,
            (
                f"{target.name} has no promotion.after: it is the first environment and is "
                f"built directly (invoke provision/bootstrap/deploy --env {target.name})",
            ),
        )
    check = _Check(target, previous, now, inputs_now, f"{evidence_dir}/{previous.name}/")
    reasons = check.run("conformance", conformance) + check.run("loadtest", loadtest)
    if upgrades is not None:
        reasons += soak(target, previous, upgrades, now)
    return Decision(target.name, previous.name, tuple(reasons))


def soak(target: Environment, prev: Environment, upgrades: Upgrades, now: datetime) -> list[str]:
    """The soak rule: PREV ran ENV's channel, upgraded green, for `soak_days` before ENV moves."""
    days, channel = target.promotion.soak_days, upgrades.channel
    rule = (
        f"{target.name} is promoted to {channel} (its microk8s.channel) only after {prev.name} "
        f"upgraded to it green and ran it {days} days ({target.name}'s promotion.soak_days)"
    )
    problem = why_not_green(upgrades.latest, prev.name, "upgrade", channel)
    if problem is not None:
        return [f"{problem}; {rule}"]
    allowed_at = soaked_at(upgrades.latest, days)
    if allowed_at is None or now >= allowed_at:
        return []
    finished = allowed_at - timedelta(days=days)
    age = (now - finished).total_seconds() / 86400
    return [
        f"{prev.name}'s upgrade to {channel} (run {upgrades.latest.run_id}) finished green "
        f"{finished:%Y-%m-%d %H:%M} UTC, {age:.1f} days ago, under {target.name}'s "
        f"promotion.soak_days {days}; promotion is allowed from {allowed_at:%Y-%m-%d %H:%M} UTC"
    ]


_HOW = {
    "conformance": "nox -s conformance -- --env {env}",
    "loadtest": "invoke loadtest --env {env}",
}
_LABEL = {"conformance": "conformance", "loadtest": "load-test"}


@dataclass(frozen=True)
class _Check:
    target: Environment
    prev: Environment
    now: datetime
    inputs_now: Mapping[str, str] | None
    where_dir: str

    def run(self, kind: registry.Run, latest: Latest) -> list[str]:
        name, label = self.prev.name, _LABEL[kind]
        how = _HOW[kind].format(env=name)
        if latest.run_id is None:
            return [f"{name} has no {label} run in {self.where_dir} (run: {how})"]
        where = f"{name}'s latest {label} run {latest.run_id}"
        if latest.problem is not None or latest.summary is None:
            why = latest.problem or "is unreadable"
            return [
                f"{where} {why}; an older run never stands in for the latest "
                f"(remove {self.where_dir}{latest.run_id}/ or run again: {how})"
            ]
        run = latest.summary
        out = self._identity(where, kind, run)
        out += self._criteria(where, kind, run)
        out += self._freshness(where, run)
        out += self._inputs(where, run)
        if kind == "loadtest":
            out += self._load(where, run.load)
        return out

    def _identity(self, where: str, kind: str, run: Summary) -> list[str]:
        if run.env != self.prev.name or run.kind != kind:
            return [f"{where} is {run.env}'s {run.kind} run, not {self.prev.name}'s {kind} run"]
        return []

    def _criteria(self, where: str, kind: registry.Run, run: Summary) -> list[str]:
        out: list[str] = []
        required = registry.required(self.prev, kind)
        recorded = {c.id: c for c in run.criteria}
        unknown = sorted(set(recorded) - {c.id for c in registry.of_run(kind)})
        if unknown:
            out.append(f"{where} records criteria the registry does not have: {', '.join(unknown)}")
        # A run recorded as partial never counts, even when what it lacks is not required here.
        lacking = {c.id for c in required if c.id not in recorded} | set(run.missing)
        if not run.complete:
            lacking |= {c.id for c in registry.of_run(kind) if c.id not in recorded}
        missing = [c.id for c in registry.of_run(kind) if c.id in lacking]
        if missing:
            out.append(
                f"{where} is partial: it lacks {', '.join(missing)}; a -k/-m selection never "
                f"counts, run the whole {'suite' if kind == 'conformance' else 'load test'}"
            )
        failed = [recorded[c.id] for c in required if c.id in recorded and _failed(recorded[c.id])]
        if failed:
            out.append(f"{where} failed: " + "; ".join(_describe(c) for c in failed))
        for c in required:
            got = recorded.get(c.id)
            if got is None or got.status != "skipped":
                continue
            na = c.na_reason(self.prev)
            if na is None:
                why = f" ({got.message})" if got.message else ""
                out.append(f"{where} skipped {c.id}{why}, which applies to {self.prev.name}")
            elif not got.message:
                out.append(f"{where} skipped {c.id} without recording why ({na})")
        if run.other_failures:
            out.append(f"{where} did not pass: " + "; ".join(run.other_failures))
        return out

    def _freshness(self, where: str, run: Summary) -> list[str]:
        max_age = timedelta(hours=self.target.promotion.max_age_hours)
        age = self.now - run.created_at
        if age > max_age:
            return [
                f"{where} is stale: {_hours(age)} old, promotion accepts evidence younger "
                f"than {_hours(max_age)}"
            ]
        if age < -timedelta(minutes=5):
            return [f"{where} is dated in the future ({run.created_at.isoformat()}); check clocks"]
        return []

    def _inputs(self, where: str, run: Summary) -> list[str]:
        out: list[str] = []
        if self.inputs_now is not None:
            changed = changed_parts(run, self.inputs_now)
            if changed:
                names = ", ".join(_PART_NAMES.get(p, p).format(env=self.prev.name) for p in changed)
                out.append(
                    f"{where} was produced from other inputs or code (revision "
                    f"{run.git_revision}); changed since: {names}"
                )
        if self.target.effective_tier != "prod":
            return out
        if run.dirty:
            out.append(
                f"{where} was recorded from a dirty tree ({run.git_revision}); prod accepts "
                "evidence from committed code only"
            )
        elif run.git_revision == "unknown":
            out.append(
                f"{where} was recorded outside a git checkout (revision unknown); prod accepts "
                "evidence from committed code only"
            )
        return out

    def _load(self, where: str, load: LoadRecord | None) -> list[str]:
        if load is None:
            return [f"{where} records no load profile or target; it cannot count"]
        out: list[str] = []
        want = self.prev.loadtest
        if load.smoke:
            out.append(f"{where} is a smoke run (--duration {load.duration_s:g}); it never counts")
        elif load.duration_s < want.duration_s:
            out.append(
                f"{where} ran {load.duration_s:g} s, under {self.prev.name}'s "
                f"loadtest.duration_s {want.duration_s}"
            )
        if load.target_rps < want.target_rps or load.users < want.users:
            out.append(
                f"{where} offered {load.target_rps:g} req/s from {load.users} users, under "
                f"{self.prev.name}'s loadtest (target_rps {want.target_rps}, users {want.users})"
            )
        host = app_host(self.prev)
        if load.host != host:
            out.append(f"{where} targeted host {load.host}, not {self.prev.name}'s app {host}")
        if not through_ingress(self.prev, load.address):
            out.append(
                f"{where} connected to {load.address or 'an unrecorded address'}, not "
                f"{self.prev.name}'s ingress (network.metallb_range or a node IP)"
            )
        return out


def app_host(env: Environment) -> str:
    return f"app.{env.ingress.domain}"


def through_ingress(env: Environment, address: str | None) -> bool:
    """The ingress answers on MetalLB's range (its LoadBalancer IP) and on every node (hostPorts)."""
    if address is None:
        return False
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return ip in env.network.metallb_range or any(ip == n.ip for n in env.nodes)


def _failed(c: CriterionResult) -> bool:
    return c.status == "failed"


def changed_parts(run: Summary, inputs_now: Mapping[str, str]) -> list[str]:
    """Input parts whose hash differs from the run's (a part the run lacks counts as changed)."""
    parts = sorted(set(run.inputs) | set(inputs_now))
    return [p for p in parts if run.inputs.get(p) != inputs_now.get(p)]


def _describe(c: CriterionResult) -> str:
    unit = f" {c.unit}" if c.unit else ""
    measured = f"measured {c.measured}{unit}" if c.measured is not None else "not measured"
    target = f", target {c.target}{unit}" if c.target is not None else ""
    return f"{c.id} ({measured}{target})"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.0f} h"
