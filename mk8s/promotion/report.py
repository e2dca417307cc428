"""`invoke report`: one static HTML page of every environment's evidence and gate state.

`collect` (edge) reads inventories and reports/; `build_model` and `render` are pure. The page
has no scripts and loads nothing: styles and the p95 latency chart (inline SVG) are in the file,
so it can be archived or attached to a change request as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from jinja2 import Environment as Jinja
from jinja2 import FileSystemLoader, select_autoescape
from markupsafe import Markup

from mk8s.checks import criteria
from mk8s.errors import UserError
from mk8s.inventory.load import INVENTORY_DIR, load_environment, resolve_env_path
from mk8s.inventory.model import Environment
from mk8s.promotion.evidence import DEFAULT_EVIDENCE_DIR, Summary, env_reports, summaries
from mk8s.promotion.promote import PROMOTION, gate

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_HTML = "index.html"
CHART_W, CHART_H, PAD = 640, 240, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


@dataclass(frozen=True)
class EnvFacts:
    """What the edge read for one environment."""

    name: str
    env: Environment | None
    error: str | None
    runs: tuple[Summary, ...]
    gate_reasons: tuple[str, ...] | None  # None: first environment, nothing to gate
    last_promotion: Mapping[str, Any] | None = None  # body of the newest promotion.json


@dataclass(frozen=True)
class EnvView:
    name: str
    after: str | None
    error: str | None
    gate: str  # "open" | "closed" | "first" | "error" (the inventory does not load)
    gate_reasons: tuple[str, ...]
    conformance: Summary | None
    loadtest: Summary | None
    failed: tuple[str, ...]
    p95_target: int | None
    last_promotion: Mapping[str, Any] | None


@dataclass(frozen=True)
class CriterionCell:
    env: str
    state: str  # passed | failed | n/a | missing (its run lacks it) | no run
    required: bool  # the env's tier must prove it before the next env is built


@dataclass(frozen=True)
class CriterionRow:
    """One criterion of the registry across the environments' latest runs."""

    criterion: criteria.Criterion
    cells: tuple[CriterionCell, ...]


@dataclass(frozen=True)
class ReportModel:
    generated_at: datetime
    envs: tuple[EnvView, ...]
    chart: Markup
    criteria: tuple[CriterionRow, ...] = ()


# --- pure -------------------------------------------------------------------------------------


def promotion_order(facts: list[EnvFacts]) -> list[EnvFacts]:
    """dev before stage before prod: follow promotion.after, then names for the rest."""

    def depth(f: EnvFacts, seen: frozenset[str] = frozenset()) -> int:
        after = f.env.promotion.after if f.env else None
        parent = next((p for p in facts if p.name == after), None)
        if parent is None or f.name in seen:
            return 0
        return 1 + depth(parent, seen | {f.name})

    return sorted(facts, key=lambda f: (depth(f), f.name))


def build_model(facts: list[EnvFacts], now: datetime) -> ReportModel:
    views = []
    for f in promotion_order(facts):
        conf = _latest(f.runs, "conformance")
        load = _latest(f.runs, "loadtest")
        failed = tuple(
            c.id for run in (conf, load) if run for c in run.criteria if c.status == "failed"
        )
        if f.error:
            gate = "error"
        elif f.gate_reasons is None:
            gate = "first"
        else:
            gate = "closed" if f.gate_reasons else "open"
        views.append(
            EnvView(
                name=f.name,
                after=f.env.promotion.after if f.env else None,
                error=f.error,
                gate=gate,
                gate_reasons=f.gate_reasons or (),
                conformance=conf,
                loadtest=load,
                failed=failed,
                p95_target=f.env.slo.p95_ms if f.env else None,
                last_promotion=f.last_promotion,
            )
        )
    return ReportModel(now, tuple(views), latency_chart(facts), criteria_rows(views, facts))


_STATE = {"passed": "passed", "failed": "failed", "skipped": "n/a"}


def criteria_rows(views: list[EnvView], facts: list[EnvFacts]) -> tuple[CriterionRow, ...]:
    """The registry as the report lists it: each criterion's state in every environment."""
    envs = {f.name: f.env for f in facts}
    rows = []
    for c in criteria.CRITERIA:
        cells = []
        for view in views:
            run = view.conformance if c.run == "conformance" else view.loadtest
            env = envs.get(view.name)
            found = run.criterion(c.id) if run else None
            state = "no run" if run is None else _STATE[found.status] if found else "missing"
            cells.append(CriterionCell(view.name, state, env is not None and c.required_in(env)))
        rows.append(CriterionRow(c, tuple(cells)))
    return tuple(rows)


def _latest(runs: tuple[Summary, ...], kind: str) -> Summary | None:
    of_kind = [r for r in runs if r.kind == kind]
    return of_kind[-1] if of_kind else None


def latency_chart(facts: list[EnvFacts]) -> Markup:
    """p95 of every load-test run over time, one line per environment, SLO targets dashed."""
    series: list[tuple[str, list[tuple[datetime, float]], int | None]] = []
    for f in promotion_order(facts):
        points = [
            (r.created_at, r.timings["loadtest.p95"].value)
            for r in f.runs
            if r.kind == "loadtest" and "loadtest.p95" in r.timings
        ]
        if points:
            series.append((f.name, points, f.env.slo.p95_ms if f.env else None))
    if not series:
        return Markup('<p class="muted" id="chart-empty">No load-test runs yet.</p>')
    times = [t.timestamp() for _, pts, _ in series for t, _ in pts]
    values = [v for _, pts, _ in series for _, v in pts] + [t or 0 for _, _, t in series]
    t0, t1 = min(times), max(times)
    vmax = max(values) * 1.15 or 1.0

    def x(t: datetime) -> float:
        span = t1 - t0
        return PAD + (CHART_W - 2 * PAD) * ((t.timestamp() - t0) / span if span else 0.5)

    def y(v: float) -> float:
        return CHART_H - PAD - (CHART_H - 2 * PAD) * v / vmax

    parts = [
        f'<svg id="latency-chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" '
        f'height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
        'aria-label="p95 latency of load-test runs">',
        f'<line x1="{PAD}" y1="{CHART_H - PAD}" x2="{CHART_W - PAD}" y2="{CHART_H - PAD}" '
        'stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{CHART_H - PAD}" stroke="#888"/>',
        f'<text x="4" y="{PAD - 8}" font-size="11">p95 ms</text>',
        f'<text x="4" y="{y(vmax / 1.15) + 4:.1f}" font-size="10">{vmax / 1.15:.0f}</text>',
        f'<text x="4" y="{y(0) + 4:.1f}" font-size="10">0</text>',
        f'<text x="{PAD}" y="{CHART_H - PAD + 16}" font-size="10">'
        f"{datetime.fromtimestamp(t0, UTC):%Y-%m-%d %H:%M}</text>",
        f'<text x="{CHART_W - PAD}" y="{CHART_H - PAD + 16}" font-size="10" text-anchor="end">'
        f"{datetime.fromtimestamp(t1, UTC):%Y-%m-%d %H:%M} UTC</text>",
    ]
    for i, (name, pts, target) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        parts.append(
            f'<polyline class="series" data-env="{escape(name)}" points="{coords}" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for t, v in pts:
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} {t:%Y-%m-%d %H:%M} p95 {v:g} ms</title></circle>"
            )
        if target:
            parts.append(
                f'<line x1="{PAD}" y1="{y(target):.1f}" x2="{CHART_W - PAD}" '
                f'y2="{y(target):.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
            )
        parts.append(
            f'<text x="{CHART_W - PAD + 4}" y="{PAD + 14 * i}" font-size="11" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def render(model: ReportModel) -> str:
    jinja = Jinja(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        keep_trailing_newline=True,
    )
    return jinja.get_template("report.html.j2").render(model=model)


# --- edge -------------------------------------------------------------------------------------


def environment_names(root: Path = Path()) -> list[str]:
    names = {p.stem for p in (root / INVENTORY_DIR).glob("*.yaml")}
    reports = root / DEFAULT_EVIDENCE_DIR
    if reports.is_dir():
        names |= {p.name for p in reports.iterdir() if p.is_dir()}
    return sorted(names)


def last_promotion(
    env: str, root: Path = Path(), evidence_dir: str = DEFAULT_EVIDENCE_DIR
) -> Mapping[str, Any] | None:
    """The newest readable promotion.json of ENV (run ids sort by time)."""
    for path in sorted(env_reports(env, root, evidence_dir).glob(f"*/{PROMOTION}"), reverse=True):
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(body, dict):
            return body | {"run_id": path.parent.name}
    return None


def collect(root: Path = Path(), now: datetime | None = None) -> list[EnvFacts]:
    now = now or datetime.now(UTC)
    facts: list[EnvFacts] = []
    for name in environment_names(root):
        try:
            env = load_environment(name, root)
        except UserError as exc:
            runs = tuple(summaries(name, root))
            error = f"{resolve_env_path(name, root).relative_to(root)}: {'; '.join(exc.lines)}"
            facts.append(EnvFacts(name, None, error, runs, None))
            continue
        evidence_dir = env.promotion.evidence_dir
        runs = tuple(summaries(name, root, evidence_dir))
        reasons: tuple[str, ...] | None = None
        if env.promotion.after is not None:
            # Exactly the decision `invoke promote NAME` would take now.
            try:
                reasons = gate(name, root, now).reasons
            except UserError as exc:
                reasons = exc.lines
        facts.append(
            EnvFacts(name, env, None, runs, reasons, last_promotion(name, root, evidence_dir))
        )
    return facts


def write_report(root: Path = Path(), out: Path | None = None, now: datetime | None = None) -> Path:
    now = now or datetime.now(UTC)
    html = render(build_model(collect(root, now), now))
    path = out or root / DEFAULT_EVIDENCE_DIR / REPORT_HTML
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return path
