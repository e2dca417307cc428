"""Locust's stats on a short run, as recorded from locust 2.47.0 (2 s, 5 users, 10 req/s target,
against a loopback http.server; the command of mk8s.checks.loadtest.locust_command): the final
JSON counts 20 requests, the *_stats.csv written by its 1 s timer only 10 (issue 12)."""

from __future__ import annotations

from pathlib import Path

from mk8s.checks.loadtest import parse_final_stats, parse_stats

DATA = Path(__file__).parent / "data"


def test_final_json_has_every_request_of_a_short_run() -> None:
    final = parse_final_stats((DATA / "locust_final_short_run.json").read_text())
    timer = parse_stats((DATA / "locust_short_run_stats.csv").read_text())
    assert final.requests == 20 and final.failures == 0
    assert timer.requests == 10  # what the old reader reported for the same run
    assert final.p95_ms is not None and final.p95_ms > 0
    assert 5 < final.rps < 40


def test_no_requests_is_not_a_p95() -> None:
    assert parse_final_stats("[]").p95_ms is None
