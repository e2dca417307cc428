"""Day-2 evidence: what one day-2 run did, as `EVIDENCE_DIR/ENV/RUN_ID/day2.json`.

The same place and the same signature as conformance evidence (mk8s.promotion.evidence):
EVIDENCE_DIR is the environment's `promotion.evidence_dir`, RUN_ID is the journal's start
(`%Y%m%dT%H%M%SZ`, so a resumed run writes the same directory again), and `day2.json.sig` is the
operator's `ssh-keygen -Y sign` signature (namespace mk8s-evidence) by the key in
$MK8S_EVIDENCE_KEY; without a key the record is written unsigned and never counts for a gate.

A record holds the task, the inventory's `microk8s.channel` (for `upgrade`, the target: the
inventory change is what triggered it), the input hashes of mk8s.promotion.inputs (the
inventory file among them, so the channel is hashed in) and the code revision, versions per
node before and after, the snapshots taken, every step's timing from the journal, the gate
results and the outcome (`green` or `failed`, with the failed step).

Writer: `record_day2(...)`, called by a day-2 flow when it finishes (outcome green) and when it
stops on a failure (outcome failed). Reader: `last_run(...)` finds ENV's newest record of a task
at a channel, signature checked; `green_since(...)` is the pure "green? since when?".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mk8s.inventory.model import Environment, Signer
from mk8s.promotion import signing
from mk8s.promotion.evidence import DAY2_RECORD, env_reports, parse_run_id, run_id, signing_key
from mk8s.promotion.inputs import combine, current_inputs, git_revision

SCHEMA = "mk8s.day2.evidence/v1"
Outcome = Literal["green", "failed"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Version(_Record):
    """`snap list microk8s` on one node: what it tracked and ran."""

    channel: str
    revision: str | None = None
    version: str | None = None  # the kubelet version, e.g. v1.33.5


class NodeVersions(_Record):
    node: str
    before: Version | None = None  # None: not read (unreachable)
    after: Version | None = None  # None: not touched yet, or not read


class GateResult(_Record):
    """One gate as it was judged: `step` is the plan key it ran under (e.g. `n1:gate`)."""

    step: str
    name: str
    passed: bool
    node: str | None = None
    detail: str = ""


class StepTiming(_Record):
    key: str
    node: str | None
    state: str  # the journal's: pending, started, done
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Day2Record(_Record):
    """The body of day2.json."""

    schema_: str = SCHEMA
    env: str
    run_id: str
    task: str
    channel: str  # the inventory's microk8s.channel during the run (upgrade: the target)
    outcome: Outcome
    failed_step: str | None = None
    message: str = ""
    started_at: datetime
    finished_at: datetime  # when the record was written
    plan_fingerprint: str
    inputs_hash: str
    inputs: dict[str, str]
    git_revision: str
    dirty: bool
    nodes: list[NodeVersions] = []
    snapshots: list[str] = []
    steps: list[StepTiming] = []
    gates: list[GateResult] = []

    @property
    def green(self) -> bool:
        return self.outcome == "green"

    def to_json(self) -> str:
        body = self.model_dump(mode="json")
        body["schema"] = body.pop("schema_")
        return json.dumps(body, indent=2) + "\n"


def parse_record(data: bytes) -> Day2Record | str:
    """The record, or why these bytes are not one (one line)."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict):
            return "not a JSON object"
        if body.get("schema") != SCHEMA:
            return f"schema {body.get('schema')!r}, expected {SCHEMA}"
        body["schema_"] = body.pop("schema")
        return Day2Record.model_validate(body)
    except ValueError as exc:  # JSON and pydantic's ValidationError
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        return f"not JSON ({exc})"


# --- writer -----------------------------------------------------------------------------------


def timings(journal: dict[str, Any]) -> list[StepTiming]:
    """Per-step timings from a RUN.json body; the node of each step comes from its plan."""
    node_of = {s["key"]: s.get("node") for s in journal.get("plan", {}).get("steps", [])}
    return [
        StepTiming(
            key=s["key"],
            node=node_of.get(s["key"]),
            state=s["state"],
            started_at=_when(s.get("started_at")),
            finished_at=_when(s.get("finished_at")),
        )
        for s in journal.get("steps", [])
    ]


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def record_day2(
    env: Environment,
    journal: Path,
    *,
    outcome: Outcome,
    inventory: str | None = None,
    nodes: Sequence[NodeVersions] = (),
    snapshots: Sequence[str] = (),
    gates: Sequence[GateResult] = (),
    failed_step: str | None = None,
    message: str = "",
    root: Path = Path(),
    now: datetime | None = None,
    key: Path | None = None,
) -> tuple[Path, Day2Record]:
    """Write (and, with a key, sign) day2.json for the run journalled in `journal` (RUN.json).

    `inventory` is the `--env` argument the task got (a name or a YAML path; default the
    environment's name), hashed as the promotion inputs are. `key` defaults to
    $MK8S_EVIDENCE_KEY. Calling it again for the same run (a resumed `finish`) rewrites the
    same directory: the record converges on the last outcome.
    """
    body = json.loads(journal.read_text())
    started = datetime.fromtimestamp(body["started"], UTC)
    inputs = current_inputs(inventory or env.name, root)
    revision = git_revision(root)
    record = Day2Record(
        env=env.name,
        run_id=run_id(started),
        task=body["task"],
        channel=env.microk8s.channel,
        outcome=outcome,
        failed_step=failed_step,
        message=message,
        started_at=started,
        finished_at=(now or datetime.now(UTC)).astimezone(UTC),
        plan_fingerprint=body["fingerprint"],
        inputs_hash=combine(inputs),
        inputs=inputs,
        git_revision=revision,
        dirty=revision.endswith("+dirty"),
        nodes=list(nodes),
        snapshots=list(snapshots),
        steps=timings(body),
        gates=list(gates),
    )
    run_dir = env_reports(env.name, root, env.promotion.evidence_dir) / record.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / DAY2_RECORD
    tmp = path.with_name(DAY2_RECORD + ".tmp")
    tmp.write_text(record.to_json())
    tmp.replace(path)
    signing.signature_path(path).unlink(missing_ok=True)  # an old signature never lingers
    key = key if key is not None else signing_key()
    if key is not None:
        signing.sign(path, key)
    return path, record


# --- reader -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Day2Latest:
    """ENV's newest day-2 record of one task at one channel (no `run_id`: there is none).

    `problem` says why it cannot be trusted (unreadable, unsigned, tampered, wrong signer).
    """

    run_id: str | None = None
    record: Day2Record | None = None
    signer: str | None = None
    problem: str | None = None


def last_run(
    base: Path,
    signers: Sequence[Signer],
    field: str,
    *,
    task: str,
    channel: str,
) -> Day2Latest:
    """The newest `task` run at `channel` under `base` (EVIDENCE_DIR/ENV), verified.

    A newer day2.json that cannot be read is the answer (with its problem): what it recorded is
    unknown, so an older record never stands in for it.
    """
    if not base.is_dir():
        return Day2Latest()
    for run_dir in sorted((p for p in base.iterdir() if p.is_dir()), reverse=True):
        path = run_dir / DAY2_RECORD
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            return Day2Latest(run_dir.name, problem=f"is unreadable: {exc.strerror}")
        parsed = parse_record(data)
        if isinstance(parsed, str):
            return Day2Latest(run_dir.name, problem=f"is unreadable ({DAY2_RECORD}: {parsed})")
        if parsed.task != task or parsed.channel != channel:
            continue
        checked = signing.verify(path, data, signers, field)
        problem = checked.problem
        if problem is None and parsed.run_id != run_dir.name:
            problem = f"names run {parsed.run_id}, not its directory {run_dir.name}"
        return Day2Latest(run_dir.name, parsed, checked.signer, problem)
    return Day2Latest()


def any_run(base: Path, *, task: str) -> bool:
    """Whether ENV has any day-2 record of `task` at all (or one that cannot be read)."""
    if not base.is_dir():
        return False
    for path in base.glob(f"*/{DAY2_RECORD}"):
        if not parse_run_id(path.parent.name):
            continue
        try:
            parsed = parse_record(path.read_bytes())
        except OSError:
            return True
        if isinstance(parsed, str) or parsed.task == task:
            return True
    return False


def last_upgrade(env: Environment, channel: str, root: Path = Path()) -> Day2Latest:
    """ENV's last `upgrade` to `channel`, checked against ENV's `promotion.signers`."""
    base = env_reports(env.name, root, env.promotion.evidence_dir)
    field = f"{env.name}'s promotion.signers"
    return last_run(base, env.promotion.signers, field, task="upgrade", channel=channel)


# --- pure verdicts ----------------------------------------------------------------------------


def green_since(latest: Day2Latest) -> datetime | None:
    """When the run finished green, if the latest record is trustworthy and green; else None."""
    if latest.problem is not None or latest.record is None or not latest.record.green:
        return None
    return latest.record.finished_at


def why_not_green(latest: Day2Latest, env: str, task: str, channel: str) -> str | None:
    """One line saying why there is no trustworthy green `task` run at `channel`; None if there is.

    For refusals such as upgrade-plan's "the previous environment lacks green evidence at the
    target" and the promotion gate's soak rule.
    """
    what = f"{env}'s last {task} to {channel}"
    if latest.run_id is None:
        return f"{env} has no {task} evidence at {channel} (run: invoke {task} --env {env})"
    if latest.problem is not None or latest.record is None:
        return f"{what} (run {latest.run_id}) {latest.problem or 'is unreadable'}"
    rec = latest.record
    if not rec.green:
        step = f" at step {rec.failed_step}" if rec.failed_step else ""
        why = f": {rec.message}" if rec.message else ""
        return f"{what} (run {latest.run_id}) failed{step}{why}"
    return None


def soaked_at(latest: Day2Latest, soak_days: int) -> datetime | None:
    """When a green run has soaked `soak_days` (None when there is no green run)."""
    since = green_since(latest)
    return None if since is None else since + timedelta(days=soak_days)
