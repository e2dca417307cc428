"""Evidence: what a conformance or load-test run proved, stored as `EVIDENCE_DIR/ENV/RUN_ID/`.

EVIDENCE_DIR is the environment's `promotion.evidence_dir` (default `reports`, relative to the
checkout; an absolute path for a shared place). A run directory holds the raw artifacts (JUnit
XML, Locust CSV/HTML), `summary.json` - the one file the promotion gate and the report read - and
`summary.json.sig`, the operator's SSH signature over it (mk8s.promotion.signing).

The inputs hash says *what* was tested and *what measured it*. It is a sha256 over:

1. `inventory/ENV.yaml` (the environment's own inventory, bytes as on disk),
2. every file under `manifests/`, `bootstrap/` and `terraform/` (repository-relative path and
   content; caches such as `.terraform/`, `__pycache__/`, `*.tfstate*` are skipped),
3. every artifact of the environment's plan as rendered now from that inventory by
   `build_plan` - the files `build/ENV/plan.json` lists, recomputed in memory so the hash never
   depends on whether `invoke plan` was run on this machine,
4. the code that measures and decides: every file under `mk8s/`, `conformance/`, `loadtests/`,
   and `tasks.py`, `noxfile.py`, `pyproject.toml`; so evidence recorded before a verdict was
   weakened, or at a revision with other code, no longer matches.

Each part is also hashed alone (`inputs.inventory`, `inputs.mk8s`, ...) so that a refusal can
name what changed. A run also records whether the tree was dirty, whether it holds every
criterion of the registry (`complete`, `missing`), and for a load test its target and profile.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mk8s.checks import criteria as registry
from mk8s.errors import UserError
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Signer
from mk8s.promotion import signing
from mk8s.promotion.inputs import combine, current_inputs, git_revision

DEFAULT_EVIDENCE_DIR = "reports"
SUMMARY = "summary.json"
JUNIT = "junit.xml"
PROMOTION_RECORD = "promotion.json"  # written by `invoke promote` into the target's runs
DAY2_RECORD = "day2.json"  # written by day-2 tasks (mk8s.day2.evidence), signed the same way
RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
# Criteria whose measurement is a duration become `timings` (RTO, pod start, p95 ...).
_TIME_UNITS = frozenset({"ms", "s", "min", "minutes", "seconds"})

Kind = Literal["conformance", "loadtest"]
Status = Literal["passed", "failed", "skipped"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CriterionResult(Record):
    """One exit criterion as a run measured it."""

    id: str
    phase: str
    status: Status
    measured: str | None = None
    target: str | None = None
    unit: str | None = None
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Timing(Record):
    value: float
    unit: str


class LoadRecord(Record):
    """Where a load test sent its traffic and at what profile, for the gate to compare."""

    url: str  # what the clients connected to
    host: str  # the Host header (and TLS name) they sent
    address: str | None  # the IP they connected to; None when it was not known
    users: int
    spawn_rate: int
    duration_s: float
    target_rps: float
    smoke: bool  # --duration overrode the inventory: a smoke run, never evidence


class Summary(Record):
    """The body of summary.json."""

    env: str
    run_id: str
    kind: Kind
    created_at: datetime
    passed: bool
    criteria: list[CriterionResult]
    timings: dict[str, Timing] = {}
    inputs_hash: str
    inputs: dict[str, str] = {}
    git_revision: str
    dirty: bool = False
    # Every criterion of the registry for this kind of run was recorded (passed, failed or
    # skipped); a `-k`/`-m` selection is not, and never counts.
    complete: bool = False
    missing: list[str] = []
    # Test cases without a `criterion` property that failed: the run is not green either.
    other_failures: list[str] = []
    # What was exercised, when it is a URL (the load test's host); None for conformance runs.
    target_url: str | None = None
    load: LoadRecord | None = None
    # sha256 of each artifact beside summary.json, so the signature covers them too.
    artifacts: dict[str, str] = {}

    def criterion(self, criterion_id: str) -> CriterionResult | None:
        return next((c for c in self.criteria if c.id == criterion_id), None)


@dataclass(frozen=True)
class Latest:
    """An environment's latest run of one kind, as the evidence directory holds it.

    No `run_id`: there is no run at all. `problem` says why the latest run cannot be trusted
    (unreadable, unsigned, tampered, wrong signer); `signer` who signed it when it can.
    """

    run_id: str | None = None
    summary: Summary | None = None
    signer: str | None = None
    problem: str | None = None


# --- pure -------------------------------------------------------------------------------------


def run_id(now: datetime) -> str:
    return now.astimezone(UTC).strftime(RUN_ID_FORMAT)


def parse_run_id(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, RUN_ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_junit(xml_text: str) -> tuple[list[CriterionResult], list[str]]:
    """Exit criteria (testcases with a `criterion` property) and other failed testcases."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise UserError(f"JUnit XML is not well-formed: {exc}") from None
    criteria: list[CriterionResult] = []
    others: list[str] = []
    for case in root.iter("testcase"):
        props = {
            p.get("name", ""): p.get("value", "") for p in case.iter("property") if p.get("name")
        }
        status, message = _outcome(case)
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        if "criterion" not in props:
            if status == "failed":
                others.append(f"{name}: {message}" if message else name)
            continue
        criteria.append(
            CriterionResult(
                id=props["criterion"],
                phase=props.get("phase", "unknown"),
                status=status,
                measured=props.get("measured"),
                target=props.get("target"),
                unit=props.get("unit") or None,
                message=message,
            )
        )
    return criteria, others


def _outcome(case: ET.Element) -> tuple[Status, str]:
    for tag in ("failure", "error"):
        node = case.find(tag)
        if node is not None:
            return "failed", _first_line(node.get("message") or node.text or tag)
    node = case.find("skipped")
    if node is not None:
        return "skipped", _first_line(node.get("message") or node.text or "skipped")
    return "passed", ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def criterion_line(c: CriterionResult) -> str:
    """One line per criterion for terminals and logs."""
    unit = f" {c.unit}" if c.unit else ""
    measured = f"measured {c.measured}{unit}" if c.measured is not None else "not measured"
    target = f", target {c.target}{unit}" if c.target is not None else ""
    tail = f": {c.message}" if c.message else ""
    return f"{c.status.upper():7} {c.id} ({measured}{target}){tail}"


def timings_of(criteria: Iterable[CriterionResult]) -> dict[str, Timing]:
    out: dict[str, Timing] = {}
    for c in criteria:
        if c.unit in _TIME_UNITS and c.measured is not None:
            try:
                out[c.id] = Timing(value=float(c.measured), unit=c.unit)
            except ValueError:
                continue  # a measurement like "n/a" is not a timing
    return out


def missing_criteria(kind: Kind, criteria: Iterable[CriterionResult]) -> list[str]:
    """Registry criteria of this kind of run that the run did not record at all."""
    seen = {c.id for c in criteria}
    return [c.id for c in registry.of_run(kind) if c.id not in seen]


def summarise(
    *,
    env: str,
    run: str,
    kind: Kind,
    created_at: datetime,
    criteria: list[CriterionResult],
    inputs: dict[str, str],
    git_revision: str,
    other_failures: Sequence[str] = (),
    target_url: str | None = None,
    load: LoadRecord | None = None,
    artifacts: dict[str, str] | None = None,
) -> Summary:
    """A run passes when it is complete, nothing failed, and nothing else broke."""
    missing = missing_criteria(kind, criteria)
    passed = not missing and not any(c.status == "failed" for c in criteria) and not other_failures
    return Summary(
        env=env,
        run_id=run,
        kind=kind,
        created_at=created_at,
        passed=passed,
        criteria=criteria,
        timings=timings_of(criteria),
        inputs_hash=combine(inputs),
        inputs=inputs,
        git_revision=git_revision,
        dirty=git_revision.endswith("+dirty"),
        complete=not missing,
        missing=missing,
        other_failures=list(other_failures),
        target_url=target_url,
        load=load,
        artifacts=artifacts or {},
    )


# --- edge: files ------------------------------------------------------------------------------


def env_reports(env: str, root: Path = Path(), evidence_dir: str = DEFAULT_EVIDENCE_DIR) -> Path:
    """Where ENV's runs live: `promotion.evidence_dir`/ENV (absolute, or under the checkout)."""
    return root / evidence_dir / env


def new_run_dir(env: str, now: datetime, base: Path) -> Path:
    """A fresh BASE/RUN_ID/; a second run in the same second waits for the next id."""
    for bump in range(60):
        path = base / run_id(now + timedelta(seconds=bump))
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        return path
    raise UserError(f"{base}: cannot allocate a run directory for {env}")


def artifact_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of a run except the summary and its signature."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.iterdir())
        if p.is_file() and not p.name.startswith(SUMMARY)
    }


def write_summary(run_dir: Path, summary: Summary) -> Path:
    path = run_dir / SUMMARY
    tmp = path.with_name(SUMMARY + ".tmp")
    tmp.write_text(summary.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def parse_summary(data: bytes) -> Summary | str:
    """The summary, or why these bytes are not one."""
    try:
        return Summary.model_validate_json(data)
    except ValueError as exc:
        first = str(exc).strip().splitlines()
        return first[1].strip() if len(first) > 1 else (first[0] if first else "not a summary")


def read_summary(path: Path) -> Summary | None:
    try:
        parsed = parse_summary(path.read_bytes())
    except OSError:
        return None
    return parsed if isinstance(parsed, Summary) else None


def summaries(
    env: str, root: Path = Path(), evidence_dir: str = DEFAULT_EVIDENCE_DIR
) -> list[Summary]:
    """Every readable summary of an environment, oldest first."""
    base = env_reports(env, root, evidence_dir)
    if not base.is_dir():
        return []
    found = [read_summary(p / SUMMARY) for p in sorted(base.iterdir()) if p.is_dir()]
    return sorted((s for s in found if s is not None), key=lambda s: (s.created_at, s.run_id))


def _kind_of(run_dir: Path) -> Kind | None:
    """A run's kind from its artifacts, for runs whose summary cannot be read."""
    if (run_dir / JUNIT).is_file():
        return "conformance"
    if any(run_dir.glob("locust*")):
        return "loadtest"
    return None


def latest_run(
    env: str,
    kind: Kind,
    base: Path,
    signers: Sequence[Signer],
    field: str,
) -> Latest:
    """ENV's newest run of `kind` in `base`, verified; an unreadable newer run is the latest.

    A run directory whose summary cannot be read and whose kind cannot be told from its
    artifacts is the latest run of either kind: it must be repaired or removed, never skipped.
    Directories that hold only a promotion record (`promotion.json`) or a day-2 record
    (`day2.json`, mk8s.day2.evidence) are not conformance or load-test runs.
    """
    if not base.is_dir():
        return Latest()
    for run_dir in sorted((p for p in base.iterdir() if p.is_dir()), reverse=True):
        path = run_dir / SUMMARY
        if not path.exists():
            if (run_dir / PROMOTION_RECORD).is_file() or (run_dir / DAY2_RECORD).is_file():
                continue
            if _kind_of(run_dir) in (kind, None):
                return Latest(run_dir.name, problem=f"is unreadable: it has no {SUMMARY}")
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            return Latest(run_dir.name, problem=f"is unreadable: {exc.strerror}")
        parsed = parse_summary(data)
        if isinstance(parsed, str):
            if _kind_of(run_dir) in (kind, None):
                return Latest(run_dir.name, problem=f"is unreadable ({SUMMARY}: {parsed})")
            continue
        if parsed.kind != kind:
            continue
        checked = signing.verify(path, data, signers, field)
        problem = checked.problem or _artifacts_changed(run_dir, parsed)
        return Latest(run_dir.name, parsed, checked.signer, problem)
    return Latest()


def _artifacts_changed(run_dir: Path, summary: Summary) -> str | None:
    """The signature covers the artifacts through their hashes in summary.json."""
    now = artifact_hashes(run_dir)
    changed = sorted(n for n, h in summary.artifacts.items() if now.get(n) != h)
    return f"has artifacts changed since it was signed: {', '.join(changed)}" if changed else None


def signing_key(explicit: Path | None = None) -> Path | None:
    """The operator's private key: `--key`, else $MK8S_EVIDENCE_KEY, else none (unsigned)."""
    if explicit is not None:
        return explicit
    value = os.environ.get(signing.KEY_ENV, "").strip()
    return Path(value).expanduser() if value else None


def seal(run_dir: Path, summary: Summary, key: Path | None) -> Path | None:
    """Write summary.json and, with a key, sign it; returns the signature file (or None)."""
    path = write_summary(run_dir, summary)
    signing.signature_path(path).unlink(missing_ok=True)  # an old signature never lingers
    return signing.sign(path, key) if key is not None else None


def record_conformance(
    env: str,
    junit: Path,
    root: Path = Path(),
    now: datetime | None = None,
    key: Path | None = None,
) -> tuple[Path, Summary]:
    """Turn a pytest --junitxml file into a signed summary.json in its run directory.

    When the XML already sits in EVIDENCE_DIR/ENV/RUN_ID/ (how `nox -s conformance` writes it
    with the default evidence dir) that directory is the run; otherwise a new run directory is
    made there and the XML copied into it.
    """
    try:
        xml_text = junit.read_text()
    except OSError:
        raise UserError(f"{junit}: cannot read JUnit XML") from None
    criteria, others = parse_junit(xml_text)
    if not criteria and not others:
        raise UserError(f"{junit}: no testcase carries a `criterion` property; nothing to record")
    unknown = sorted({c.id for c in criteria} - {c.id for c in registry.of_run("conformance")})
    if unknown:
        raise UserError(
            f"{junit}: criteria not in the registry (mk8s.checks.criteria): {', '.join(unknown)}"
        )
    environment = load_environment(env, root)
    base = env_reports(environment.name, root, environment.promotion.evidence_dir)
    now = now or datetime.now(UTC)
    parent = junit.resolve().parent
    if parent.parent == base.resolve() and parse_run_id(parent.name):
        run_dir = parent
    else:
        run_dir = new_run_dir(environment.name, now, base)
        (run_dir / JUNIT).write_text(xml_text)
    summary = summarise(
        env=environment.name,
        run=run_dir.name,
        kind="conformance",
        created_at=now,
        criteria=criteria,
        inputs=current_inputs(env, root),
        git_revision=git_revision(root),
        other_failures=others,
        artifacts=artifact_hashes(run_dir),
    )
    seal(run_dir, summary, key)
    return run_dir, summary


def _sign_run(env: str, run: str, root: Path, key: Path) -> Path:
    environment = load_environment(env, root)
    path = env_reports(environment.name, root, environment.promotion.evidence_dir) / run / SUMMARY
    if read_summary(path) is None:
        raise UserError(f"{path}: no readable summary to sign")
    return signing.sign(path, key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mk8s.promotion.evidence")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record-conformance", help="JUnit XML -> EVIDENCE_DIR/ENV/RUN_ID/")
    rec.add_argument("--env", required=True)
    rec.add_argument("--junit", required=True, type=Path)
    rec.add_argument("--root", type=Path, default=Path())
    rec.add_argument("--key", type=Path, help=f"private SSH key to sign with (${signing.KEY_ENV})")
    sig = sub.add_parser("sign", help="sign an existing run's summary.json")
    sig.add_argument("--env", required=True)
    sig.add_argument("--run", required=True, help="RUN_ID")
    sig.add_argument("--root", type=Path, default=Path())
    sig.add_argument("--key", type=Path)
    args = parser.parse_args(argv)
    try:
        key = signing_key(args.key)
        if args.command == "sign":
            if key is None:
                raise UserError(f"sign: give --key or set {signing.KEY_ENV}")
            print(f"signed: {_sign_run(args.env, args.run, args.root, key)}")
            return 0
        run_dir, summary = record_conformance(args.env, args.junit, args.root, key=key)
    except UserError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    print(f"{args.env}: conformance {_state(summary)}; {_signed(key)}; evidence in "
          f"{run_dir / SUMMARY}")  # fmt: skip
    return 0


def _state(summary: Summary) -> str:
    if summary.missing:
        return f"PARTIAL (lacks {len(summary.missing)} criteria; never counts for promotion)"
    failed = [c.id for c in summary.criteria if c.status == "failed"]
    return "passed" if summary.passed else f"FAILED ({', '.join(failed) or 'other tests'})"


def _signed(key: Path | None) -> str:
    return f"signed with {key}" if key else f"UNSIGNED (set {signing.KEY_ENV})"


if __name__ == "__main__":
    raise SystemExit(main())
