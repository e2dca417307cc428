"""Evidence: what a conformance or load-test run proved, stored as `reports/ENV/RUN_ID/`.

A run directory holds the raw artifacts (JUnit XML, Locust CSV/HTML) and `summary.json`, the one
file the promotion gate and the report read. The parsing and summarising here is pure; the edge
functions at the bottom read/write files and ask git for the revision.

The inputs hash says *what* was tested. It is a sha256 over, in this order:

1. `inventory/ENV.yaml` (the environment's own inventory, bytes as on disk),
2. every file under `manifests/`, `bootstrap/` and `terraform/` (repository-relative path and
   content; caches such as `.terraform/`, `__pycache__/`, `*.tfstate*` are skipped),
3. every artifact of the environment's plan as rendered now from that inventory by
   `mk8s.render.plan.build_plan` - i.e. the files `build/ENV/plan.json` lists, recomputed in memory so the
   hash never depends on whether `invoke plan` was run on this machine.

Each part is also hashed alone (`inputs.inventory`, `inputs.manifests`, ...) so that a refusal can
name what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mk8s.errors import UserError
from mk8s.inventory.load import load_environment, resolve_env_path
from mk8s.render.plan import build_plan

REPORTS_DIR = Path("reports")
SUMMARY = "summary.json"
JUNIT = "junit.xml"
RUN_ID_FORMAT = "%Y%m%dT%H%M%SZ"
# Shared inputs: the same for every environment, so evidence from dev speaks for stage only
# when these are byte-identical to what dev was tested with.
SHARED_INPUT_DIRS = ("manifests", "bootstrap", "terraform")
_SKIP_PARTS = frozenset({".terraform", "__pycache__", ".pytest_cache", ".mypy_cache"})
_SKIP_SUFFIXES = (".pyc", ".tfstate", ".tfstate.backup", ".terraform.lock.hcl")
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
    # Test cases without a `criterion` property that failed: the run is not green either.
    other_failures: list[str] = []
    # What was exercised, when it is a URL (the load test's host); None for conformance runs.
    target_url: str | None = None

    def criterion(self, criterion_id: str) -> CriterionResult | None:
        return next((c for c in self.criteria if c.id == criterion_id), None)

    @property
    def proven_phases(self) -> set[str]:
        """Phases with at least one passed criterion."""
        return {c.phase for c in self.criteria if c.passed}


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
) -> Summary:
    """A run passes when it measured something, nothing failed, and nothing else broke."""
    passed = (
        bool(criteria)
        and not any(c.status == "failed" for c in criteria)
        and any(c.passed for c in criteria)
        and not other_failures
    )
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
        other_failures=list(other_failures),
        target_url=target_url,
    )


def hash_files(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (path, content) pairs in path order; an empty set has a defined hash."""
    digest = hashlib.sha256()
    for path, content in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(content).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def combine(parts: dict[str, str]) -> str:
    return hash_files((name, value.encode()) for name, value in parts.items())


# --- edge: files and git ----------------------------------------------------------------------


def _tree(root: Path, top: str) -> Iterator[tuple[str, bytes]]:
    base = root / top
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or _SKIP_PARTS.intersection(rel.parts):
            continue
        if path.name.endswith(_SKIP_SUFFIXES):
            continue
        yield rel.as_posix(), path.read_bytes()


def current_inputs(env: str, root: Path = Path()) -> dict[str, str]:
    """Per-part hashes of what an environment would be built from, as of now."""
    inventory = resolve_env_path(env, root)
    try:
        inventory_bytes = inventory.read_bytes()
    except OSError:
        raise UserError(f"{inventory}: no such inventory file") from None
    parts = {"inventory": hash_files([(inventory.name, inventory_bytes)])}
    for rel in SHARED_INPUT_DIRS:
        parts[rel] = hash_files(_tree(root, rel))
    plan = build_plan(load_environment(env, root))
    parts["plan"] = hash_files((a.path, a.content.encode()) for a in plan.artifacts)
    return parts


def git_revision(root: Path = Path()) -> str:
    """HEAD's commit, with `+dirty` when tracked files differ from it; `unknown` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def env_reports(env: str, root: Path = Path()) -> Path:
    return root / REPORTS_DIR / env


def new_run_dir(env: str, now: datetime, root: Path = Path()) -> Path:
    """A fresh reports/ENV/RUN_ID/; a second run in the same second waits for the next id."""
    for bump in range(60):
        path = env_reports(env, root) / run_id(now + timedelta(seconds=bump))
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        return path
    raise UserError(f"{env_reports(env, root)}: cannot allocate a run directory")


def write_summary(run_dir: Path, summary: Summary) -> Path:
    path = run_dir / SUMMARY
    tmp = path.with_name(SUMMARY + ".tmp")
    tmp.write_text(summary.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_summary(path: Path) -> Summary | None:
    try:
        return Summary.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def summaries(env: str, root: Path = Path()) -> list[Summary]:
    """Every readable summary of an environment, oldest first."""
    base = env_reports(env, root)
    if not base.is_dir():
        return []
    found = [read_summary(p / SUMMARY) for p in sorted(base.iterdir()) if p.is_dir()]
    return sorted((s for s in found if s is not None), key=lambda s: (s.created_at, s.run_id))


def latest(env: str, kind: Kind, root: Path = Path()) -> Summary | None:
    runs = [s for s in summaries(env, root) if s.kind == kind]
    return runs[-1] if runs else None


def record_conformance(
    env: str, junit: Path, root: Path = Path(), now: datetime | None = None
) -> tuple[Path, Summary]:
    """Turn a pytest --junitxml file into summary.json in its run directory.

    When the XML already sits in reports/ENV/RUN_ID/ (how `nox -s conformance` writes it) that
    directory is the run; otherwise a new run directory is made and the XML copied into it.
    """
    try:
        xml_text = junit.read_text()
    except OSError:
        raise UserError(f"{junit}: cannot read JUnit XML") from None
    criteria, others = parse_junit(xml_text)
    if not criteria and not others:
        raise UserError(f"{junit}: no testcase carries a `criterion` property; nothing to record")
    now = now or datetime.now(UTC)
    parent = junit.resolve().parent
    if parent.parent == env_reports(env, root).resolve() and parse_run_id(parent.name):
        run_dir = parent
    else:
        run_dir = new_run_dir(env, now, root)
        (run_dir / JUNIT).write_text(xml_text)
    summary = summarise(
        env=env,
        run=run_dir.name,
        kind="conformance",
        created_at=now,
        criteria=criteria,
        inputs=current_inputs(env, root),
        git_revision=git_revision(root),
        other_failures=others,
    )
    write_summary(run_dir, summary)
    return run_dir, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mk8s.promotion.evidence")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record-conformance", help="JUnit XML -> reports/ENV/RUN_ID/summary.json")
    rec.add_argument("--env", required=True)
    rec.add_argument("--junit", required=True, type=Path)
    rec.add_argument("--root", type=Path, default=Path())
    args = parser.parse_args(argv)
    try:
        run_dir, summary = record_conformance(args.env, args.junit, args.root)
    except UserError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    failed = [c.id for c in summary.criteria if c.status == "failed"]
    state = "passed" if summary.passed else f"FAILED ({', '.join(failed) or 'other tests'})"
    print(f"{args.env}: conformance {state}; evidence in {run_dir / SUMMARY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
