"""Journal: build/ENV/day2/RUN.json records each step before and after it runs.

Every write is atomic (a temporary file in the same directory, fsync, rename, fsync of the
directory), so a run killed at any instant leaves either the previous journal or the new one,
never half of one. The journal keeps the plan it ran, so a re-run can say exactly what changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mk8s.day2.plan import Plan
from mk8s.day2.wait import stamp
from mk8s.errors import UserError

SCHEMA = "mk8s.day2.run/v1"
RUN_JSON = Path("day2") / "RUN.json"
PENDING, STARTED, DONE = "pending", "started", "done"


def run_file(build: Path) -> Path:
    return build / RUN_JSON


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class Journal:
    path: Path
    task: str
    env: str
    fingerprint: str
    plan: dict[str, Any]
    started: float
    steps: list[dict[str, Any]]
    finished: float | None = None
    resumed: list[float] = field(default_factory=list)

    @classmethod
    def new(cls, path: Path, plan: Plan, now: float) -> Journal:
        steps = [
            {"number": s.number, "key": s.key, "title": s.title, "state": PENDING}
            for s in plan.steps
        ]
        return cls(path, plan.task, plan.env, plan.fingerprint(), plan.to_dict(), now, steps)

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise UserError(f"{path}: not a day-2 journal ({exc}); move it aside") from None
        if data.get("schema") != SCHEMA:
            raise UserError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA}")
        return cls(
            path,
            data["task"],
            data["env"],
            data["fingerprint"],
            data["plan"],
            data["started"],
            data["steps"],
            data.get("finished"),
            data.get("resumed", []),
        )

    def save(self) -> None:
        body = {
            "schema": SCHEMA,
            "task": self.task,
            "env": self.env,
            "fingerprint": self.fingerprint,
            "started": self.started,
            "finished": self.finished,
            "resumed": self.resumed,
            "steps": self.steps,
            "plan": self.plan,
        }
        atomic_write(self.path, json.dumps(body, indent=2) + "\n")

    def mark(self, number: int, state: str, now: float) -> None:
        entry = self.steps[number - 1]
        entry["state"] = state
        entry["started_at" if state == STARTED else "finished_at"] = now
        self.save()

    def first_unfinished(self) -> int | None:
        return next((s["number"] for s in self.steps if s["state"] != DONE), None)

    def last_done(self) -> int | None:
        done = [s["number"] for s in self.steps if s["state"] == DONE]
        return done[-1] if done else None

    def describe_start(self) -> str:
        return f"{self.task} started {stamp(self.started)}"


def plan_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two plan dicts (Plan.to_dict), one line per difference."""
    lines = []
    for what in ("task", "env"):
        if old.get(what) != new.get(what):
            lines.append(f"{what}: {old.get(what)} -> {new.get(what)}")
    old_c = {(c["name"], c["node"]): c for c in old.get("components", [])}
    new_c = {(c["name"], c["node"]): c for c in new.get("components", [])}
    for k in sorted(old_c.keys() | new_c.keys(), key=str):
        a, b = old_c.get(k), new_c.get(k)
        label = f"{k[0]} on {k[1]}" if k[1] else k[0]
        if a is None:
            lines.append(f"component {label}: added (target {b and b['target']})")
        elif b is None:
            lines.append(f"component {label}: removed")
        elif a != b:
            lines.append(
                f"component {label}: {a['current']} -> {a['target']} is now "
                f"{b['current']} -> {b['target']}"
            )
    old_s = {s["key"]: s for s in old.get("steps", [])}
    new_s = {s["key"]: s for s in new.get("steps", [])}
    for key in old_s.keys() - new_s.keys():
        lines.append(f"step {old_s[key]['number']} {key}: removed ({old_s[key]['title']})")
    for key in new_s.keys() - old_s.keys():
        lines.append(f"step {new_s[key]['number']} {key}: added ({new_s[key]['title']})")
    for key in old_s.keys() & new_s.keys():
        a, b = old_s[key], new_s[key]
        for fld in sorted(a.keys() | b.keys()):
            if a.get(fld) != b.get(fld):
                lines.append(f"step {key}: {fld} {a.get(fld)!r} -> {b.get(fld)!r}")
    return sorted(lines)
