"""`invoke report` rendered from real evidence, opened in headless Chromium (Debian `chromium`).

Assertions read the DOM Chromium built (`--dump-dom`), not the HTML file; a screenshot is kept in
test-artifacts/report.png for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mk8s.promotion.evidence import Summary
from mk8s.promotion.promote import promote
from tests.promotion.factory import (
    REPO,
    SLOW_MS,
    TEST_P95_MS,
    conformance_run,
    loadtest_run,
    make_keys,
    make_repo,
)

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow  # real nginx / Locust / Chromium processes


def chromium() -> str:
    found = os.environ.get("MK8S_CHROMIUM") or shutil.which("chromium")
    assert found, "chromium is not installed: scripts/deps.d/evidence.apt lists it"
    return found


def browse(page: Path, profile: Path, *extra: str) -> str:
    proc = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Rows(HTMLParser):
    """Per environment row: its data attributes, each cell's attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, object]] = {}
        self.row: str | None = None
        self.current: dict[str, str] | None = None
        self.svg_series: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-env" in a:
            self.row = a["data-env"]
            self.rows[self.row] = {"gate": a["data-gate"], "cells": []}
        elif tag == "td" and self.row:
            self.current = a | {"text": ""}
            self.rows[self.row]["cells"].append(self.current)  # type: ignore[union-attr]
        elif tag == "polyline" and "data-env" in a:
            self.svg_series.append(a["data-env"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self.row = None
        elif tag == "td":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            self.current["text"] += data

    def cell(self, env: str, cls: str) -> dict[str, str]:
        return next(c for c in self.rows[env]["cells"] if c.get("class") == cls)  # type: ignore[union-attr]

    def run_cell(self, env: str, kind: str) -> dict[str, str]:
        return next(c for c in self.rows[env]["cells"] if c.get("data-kind") == kind)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Summary]]:
    """dev: green conformance, a slow then a healthy load test; stage: a failed conformance run."""
    keys = make_keys(tmp_path_factory.mktemp("keys"))
    root = make_repo(tmp_path_factory.mktemp("report") / "repo", keys)
    runs = {
        "dev-conformance": conformance_run(root, "dev", keys.alice),
        "dev-slow": loadtest_run(root, "dev", keys.alice, latency_ms=SLOW_MS),
        "dev-loadtest": loadtest_run(root, "dev", keys.alice),
    }
    promote("stage", root, runner=lambda cmd: 0, echo=lambda _: None)
    runs["stage-conformance"] = conformance_run(root, "stage", keys.alice, {"phase1.tls": "fail"})
    return root, runs


@pytest.fixture(scope="module")
def page(
    evidence: tuple[Path, dict[str, Summary]], tmp_path_factory: pytest.TempPathFactory
) -> Rows:
    root, _ = evidence
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "report"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    html = root / "reports" / "index.html"
    assert html.is_file()
    profiles = tmp_path_factory.mktemp("chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    browse(html, profiles / "shot", f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.is_file() and shot.stat().st_size > 10_000, "screenshot missing or blank"
    rows = Rows()
    rows.feed(browse(html, profiles / "dom", "--dump-dom"))
    return rows


def test_every_environment_is_shown_in_promotion_order(page: Rows) -> None:
    assert list(page.rows) == ["dev", "stage", "prod"]


def test_dev_shows_its_latest_runs_and_that_it_is_built_directly(
    page: Rows, evidence: tuple[Path, dict[str, Summary]]
) -> None:
    _, runs = evidence
    assert page.rows["dev"]["gate"] == "first"
    conformance = page.run_cell("dev", "conformance")
    assert conformance["data-run"] == runs["dev-conformance"].run_id
    assert f"{runs['dev-conformance'].run_id} passed" in " ".join(conformance["text"].split())
    loadtest = page.run_cell("dev", "loadtest")
    assert loadtest["data-run"] == runs["dev-loadtest"].run_id  # the newer of the two
    assert "passed" in loadtest["text"] and f"target {TEST_P95_MS} ms" in loadtest["text"]


def test_stage_gate_is_open_on_dev_evidence_and_its_own_failure_is_listed(
    page: Rows, evidence: tuple[Path, dict[str, Summary]]
) -> None:
    _, runs = evidence
    assert page.rows["stage"]["gate"] == "open"
    conformance = page.run_cell("stage", "conformance")
    assert conformance["data-run"] == runs["stage-conformance"].run_id
    assert "failed" in conformance["text"]
    assert "no run" in page.run_cell("stage", "loadtest")["text"]
    assert "phase1.tls" in page.cell("stage", "failed-criteria")["text"]


def test_prod_gate_is_closed_naming_why(
    page: Rows, evidence: tuple[Path, dict[str, Summary]]
) -> None:
    _, runs = evidence
    assert page.rows["prod"]["gate"] == "closed"
    gate = " ".join(page.cell("prod", "gate")["text"].split())
    assert (
        f"stage's latest conformance run {runs['stage-conformance'].run_id} failed: phase1.tls"
        in gate
    )
    assert "stage has no load-test run" in gate
    assert "no run" in page.run_cell("prod", "conformance")["text"]


def test_the_latency_chart_plots_the_environments_with_load_tests(page: Rows) -> None:
    assert page.svg_series == ["dev"]


def test_the_last_promotion_is_shown(page: Rows) -> None:
    promoted = " ".join(page.cell("stage", "promotion")["text"].split())
    assert promoted.startswith("promoted from dev")
    assert page.cell("stage", "promotion")["data-run"] in promoted
    assert "never" in page.cell("prod", "promotion")["text"]
