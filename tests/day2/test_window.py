"""Maintenance windows with frozen clocks: UTC, weekly, monthly = first weekday, ad hoc."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mk8s.day2.window import require_window, window_state
from mk8s.errors import UserError
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Maintenance

STAGE = Maintenance(window="tue 20:00", duration_minutes=60, cadence="weekly")
PROD = Maintenance(window="sun 22:00", duration_minutes=120, cadence="monthly")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        ("2026-12-01 19:59:59", False),  # Tue, a second early
        ("2026-12-01 20:00:00", True),
        ("2026-12-01 20:59:59", True),
        ("2026-12-01 21:00:00", False),  # end excluded
        ("2026-12-02 20:30:00", False),  # Wednesday
    ],
)
def test_stage_is_tuesdays_from_20_to_21_utc(now: str, inside: bool) -> None:
    assert window_state(STAGE, at(now)).inside is inside


def test_outside_the_stage_window_names_the_next_one() -> None:
    state = window_state(STAGE, at("2026-12-02 10:00:00"))
    assert state.next_start == at("2026-12-08 20:00:00")
    assert state.describe() == "outside the window; the next one opens Tue 2026-12-08 20:00 UTC"
    inside = window_state(STAGE, at("2026-12-01 20:10:00"))
    assert inside.current_end == at("2026-12-01 21:00:00")
    assert inside.next_start == at("2026-12-08 20:00:00")


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        ("2026-12-06 22:00:00", True),  # the first Sunday of December 2026
        ("2026-12-06 23:59:59", True),  # two hours, up to midnight
        ("2026-12-07 00:00:00", False),
        ("2026-12-13 22:30:00", False),  # second Sunday: not a window
        ("2026-11-01 22:30:00", True),  # the 1st is itself a Sunday
    ],
)
def test_prod_is_the_first_sunday_of_each_month(now: str, inside: bool) -> None:
    assert window_state(PROD, at(now)).inside is inside


def test_the_next_prod_window_is_in_the_next_month() -> None:
    assert window_state(PROD, at("2026-12-07 09:00:00")).next_start == at("2027-01-03 22:00:00")
    assert window_state(PROD, at("2026-11-20 09:00:00")).next_start == at("2026-12-06 22:00:00")


def test_a_window_that_crosses_midnight_and_a_month_end() -> None:
    late = Maintenance(window="sat 23:00", duration_minutes=120, cadence="monthly")
    # The first Saturday of January 2027 is the 2nd; 23:00 + 2 h runs into Sunday the 3rd.
    assert window_state(late, at("2027-01-03 00:30:00")).inside
    weekly = Maintenance(window="sun 23:30", duration_minutes=60, cadence="weekly")
    # Sunday 2026-12-06 23:30 + 1 h: Monday 00:15 is inside, in a new week.
    assert window_state(weekly, at("2026-12-07 00:15:00")).inside


def test_ad_hoc_is_always_open() -> None:
    state = window_state(Maintenance(window="ad-hoc"), at("2026-12-02 03:00:00"))
    assert state.inside and state.ad_hoc and state.next_start is None


def test_a_naive_clock_is_a_bug() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_state(STAGE, datetime(2026, 12, 1, 20, 0))


def test_shipped_inventories_carry_the_checklist_windows() -> None:
    assert load_environment("dev").maintenance == Maintenance(window="ad-hoc", cadence="ad-hoc")
    assert load_environment("stage").maintenance == STAGE
    assert load_environment("prod").maintenance == PROD


def test_starting_outside_the_window_is_refused_unless_overridden() -> None:
    stage = load_environment("stage")
    with pytest.raises(UserError) as caught:
        require_window(stage, at("2026-12-02 10:00:00"), outside_window=False)
    assert caught.value.lines == (
        "stage: outside the window; the next one opens Tue 2026-12-08 20:00 UTC "
        "(maintenance.window 'tue 20:00', weekly, 60 min); re-run then, or pass "
        "--outside-window (not for prod)",
    )
    assert not require_window(stage, at("2026-12-02 10:00:00"), outside_window=True).inside


def test_outside_window_is_never_accepted_for_prod() -> None:
    prod = load_environment("prod")
    with pytest.raises(UserError, match="--outside-window is refused for prod"):
        require_window(prod, at("2026-12-02 10:00:00"), outside_window=True)
    with pytest.raises(UserError, match="--outside-window is refused for prod"):
        require_window(prod, at("2026-12-06 22:30:00"), outside_window=True)  # even inside
    assert require_window(prod, at("2026-12-06 22:30:00"), outside_window=False).inside


def test_window_and_cadence_must_agree() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ad-hoc goes with ad-hoc"):
        Maintenance(window="tue 20:00", cadence="ad-hoc")
    with pytest.raises(ValidationError, match="ad-hoc goes with ad-hoc"):
        Maintenance(window="ad-hoc", cadence="weekly")
    with pytest.raises(ValidationError, match="at least 1 minute"):
        Maintenance(window="tue 20:00", cadence="weekly", duration_minutes=0)
    with pytest.raises(ValidationError):
        Maintenance(window="tue 25:00", cadence="weekly")


WINDOWS = st.builds(
    lambda day, h, m, dur, cadence: Maintenance(
        window=f"{day} {h:02d}:{m:02d}", duration_minutes=dur, cadence=cadence
    ),
    st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(1, 24 * 60),
    st.sampled_from(["weekly", "monthly"]),
)
NOWS = st.datetimes(datetime(2025, 1, 1), datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@given(WINDOWS, NOWS)
def test_next_start_is_a_real_window_start_and_nothing_opens_before_it(
    m: Maintenance, now: datetime
) -> None:
    state = window_state(m, now)
    start = state.next_start
    assert start is not None and start > now
    day, hhmm = m.window.split()
    assert start.strftime("%a").lower() == day and start.strftime("%H:%M") == hhmm
    if m.cadence == "monthly":
        assert start.day <= 7  # the first such weekday of its month
    if not state.inside:
        # Nothing between now and next_start is inside a window (probe every 6 hours).
        probe = now
        while probe < start:
            assert not window_state(m, probe).inside, probe
            probe += timedelta(hours=6)
    else:
        assert state.current_end is not None and now < state.current_end
        assert state.current_end - now <= timedelta(minutes=m.duration_minutes)
