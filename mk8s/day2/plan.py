"""Plan first: a typed, ordered, numbered plan printed before anything changes.

Modelled on `kubeadm upgrade plan`, which shows current and target per component before it
does anything: a `Plan` holds that table (`components`) and the numbered steps, each saying
which node it touches, what it runs, what it waits for, which snapshots it takes and how long it
is expected to take. The same plan renders as tables (rich) and as JSON (`--json`); its
fingerprint (a hash of the steps and components, not of the numbers' presentation) is what the
journal compares to refuse resuming a run whose plan changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rich.table import Table

SCHEMA = "mk8s.day2.plan/v1"


class Kind(StrEnum):
    COMMAND = "command"  # a command on a node over SSH
    API = "api"  # a Kubernetes or Proxmox API call
    WAIT = "wait"  # a gate: wait until a condition holds
    SNAPSHOT = "snapshot"  # a Proxmox snapshot (set)
    CHECK = "check"  # a read-only preflight check


@dataclass(frozen=True)
class Step:
    """One step. `key` is stable across runs of the same plan (the journal matches on it)."""

    number: int
    key: str
    kind: Kind
    title: str
    node: str | None = None
    command: str | None = None
    waits_for: str | None = None
    snapshots: tuple[str, ...] = ()
    expected_s: int = 0


@dataclass(frozen=True)
class StepSpec:
    """A step before numbering (what planners produce)."""

    key: str
    kind: Kind
    title: str
    node: str | None = None
    command: str | None = None
    waits_for: str | None = None
    snapshots: tuple[str, ...] = ()
    expected_s: int = 0


@dataclass(frozen=True)
class Component:
    """kubeadm-style `COMPONENT  NODE  CURRENT  TARGET`."""

    name: str
    node: str | None
    current: str
    target: str


@dataclass(frozen=True)
class Plan:
    task: str
    env: str
    steps: tuple[Step, ...]
    components: tuple[Component, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def expected_s(self) -> int:
        return sum(s.expected_s for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "task": self.task,
            "env": self.env,
            "fingerprint": self.fingerprint(),
            "expected_s": self.expected_s,
            "components": [asdict(c) for c in self.components],
            "steps": [_step_dict(s) for s in self.steps],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def fingerprint(self) -> str:
        body = {
            "task": self.task,
            "env": self.env,
            "components": [asdict(c) for c in self.components],
            "steps": [_step_dict(s) for s in self.steps],
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _step_dict(step: Step) -> dict[str, Any]:
    out = asdict(step)
    out["kind"] = str(step.kind)
    out["snapshots"] = list(step.snapshots)
    return out


def make_plan(
    task: str,
    env: str,
    specs: Sequence[StepSpec],
    components: Sequence[Component] = (),
    notes: Sequence[str] = (),
) -> Plan:
    keys = [s.key for s in specs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"plan {task}: duplicate step keys {', '.join(duplicates)}")
    steps = tuple(Step(i, **asdict(s)) for i, s in enumerate(specs, start=1))
    return Plan(task, env, steps, tuple(components), tuple(notes))


def duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def plan_tables(plan: Plan) -> list[Table]:
    """The component table (when there is one) and the numbered step table."""
    tables = []
    if plan.components:
        versions = Table(title=f"{plan.env}: {plan.task}: current and target")
        for column in ("component", "node", "current", "target"):
            versions.add_column(column)
        for c in plan.components:
            mark = "" if c.current == c.target else " *"
            versions.add_row(c.name, c.node or "(cluster)", c.current, c.target + mark)
        tables.append(versions)
    steps = Table(
        title=f"{plan.env}: {plan.task}: {len(plan.steps)} steps, "
        f"expected {duration(plan.expected_s)}"
    )
    for column in ("#", "kind", "node", "step", "waits for / snapshots", "expected"):
        steps.add_column(column, overflow="fold")
    for s in plan.steps:
        extra = s.waits_for or ", ".join(s.snapshots) or ""
        what = s.title if not s.command else f"{s.title}: {s.command}"
        steps.add_row(
            str(s.number), str(s.kind), s.node or "-", what, extra, duration(s.expected_s)
        )
    tables.append(steps)
    return tables
