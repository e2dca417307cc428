"""How long a backup schedule can leave between two runs: what the RPO rule relies on."""

from __future__ import annotations

import pytest

from mk8s.inventory.cron import longest_gap_minutes


@pytest.mark.parametrize(
    ("cron", "minutes"),
    [
        ("*/15 * * * *", 15),
        ("0,30 * * * *", 30),
        ("0 2 * * *", 24 * 60),
        ("5 */6 * * *", 6 * 60),
        ("0 3 * * 0", 7 * 24 * 60),
        ("0 3 * * 7", 7 * 24 * 60),
        ("0 9-17 * * 1-5", 64 * 60),  # Friday 17:00 to Monday 09:00
        ("0 4 1 * *", 31 * 24 * 60),
    ],
)
def test_longest_gap(cron: str, minutes: int) -> None:
    assert longest_gap_minutes(cron) == minutes


@pytest.mark.parametrize(
    "cron", ["@hourly", "x * * * *", "*/0 * * * *", "61 * * * *", "0 5-2 * * *"]
)
def test_expressions_it_cannot_judge_are_none(cron: str) -> None:
    assert longest_gap_minutes(cron) is None
