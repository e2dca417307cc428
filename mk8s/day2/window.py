"""Maintenance windows (inventory `maintenance`): pure, tested with frozen clocks.

Rules (docs/day2.md, "Maintenance windows"):
- times are UTC: `window: "sun 22:00"` opens at 22:00 UTC; the inventory holds no time zone,
  so a window means the same instant on every operator's machine and in CI;
- `cadence: weekly` opens every week on that day; `cadence: monthly` opens on the *first* such
  weekday of each month (prod: the first Sunday, 22:00-24:00 UTC);
- `window: ad-hoc` (dev) is always open;
- a window is open from its start for `duration_minutes`, end excluded; a window may run past
  midnight (and a monthly one into the next month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mk8s.errors import UserError
from mk8s.inventory.model import Environment, Maintenance

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WindowState:
    inside: bool
    ad_hoc: bool
    current_end: datetime | None  # end of the open window, when inside one
    next_start: datetime | None  # start of the next window (None when ad hoc)

    def describe(self) -> str:
        if self.ad_hoc:
            return "ad hoc: no window"
        if self.inside and self.current_end is not None:
            return f"inside the window until {self.current_end:%a %Y-%m-%d %H:%M} UTC"
        assert self.next_start is not None
        return f"outside the window; the next one opens {self.next_start:%a %Y-%m-%d %H:%M} UTC"


def _starts_around(m: Maintenance, now: datetime) -> list[datetime]:
    """Window starts from before `now` to after it (enough to cover one window either side)."""
    day, hhmm = m.window.split()
    weekday = DAYS.index(day)
    hour, minute = (int(x) for x in hhmm.split(":"))
    if m.cadence == "weekly":
        monday = (now - timedelta(days=now.weekday())).replace(
            hour=hour, minute=minute, second=0, microsecond=0
        )
        this = monday + timedelta(days=weekday)
        return [this + timedelta(weeks=k) for k in (-1, 0, 1)]
    starts = []
    for shift in (-1, 0, 1):
        month_index = now.year * 12 + now.month - 1 + shift
        first = datetime(month_index // 12, month_index % 12 + 1, 1, hour, minute, tzinfo=UTC)
        starts.append(first + timedelta(days=(weekday - first.weekday()) % 7))
    return starts


def window_state(m: Maintenance, now: datetime) -> WindowState:
    if now.tzinfo is None:
        raise ValueError("window_state needs an aware datetime (UTC)")
    now = now.astimezone(UTC)
    if m.window == "ad-hoc":
        return WindowState(True, True, None, None)
    length = timedelta(minutes=m.duration_minutes)
    starts = _starts_around(m, now)
    for start in starts:
        if start <= now < start + length:
            later = [s for s in starts if s > start]
            return WindowState(True, False, start + length, later[0] if later else None)
    upcoming = [s for s in starts if s > now]
    return WindowState(False, False, None, upcoming[0])


def require_window(env: Environment, now: datetime, *, outside_window: bool) -> WindowState:
    """Refuse to start outside the window unless overridden; never overridable for prod."""
    state = window_state(env.maintenance, now)
    if outside_window and env.effective_tier == "prod":
        raise UserError(f"{env.name}: --outside-window is refused for prod; {state.describe()}")
    if not state.inside and not outside_window:
        raise UserError(
            f"{env.name}: {state.describe()} (maintenance.window {env.maintenance.window!r}, "
            f"{env.maintenance.cadence}, {env.maintenance.duration_minutes} min); "
            "re-run then, or pass --outside-window (not for prod)"
        )
    return state
