"""The longest gap between two runs of a 5-field cron schedule, to hold backups to the RPO. Pure."""

from __future__ import annotations

import itertools

DAY = 24 * 60
WEEK = 7 * DAY
MONTH = 31 * DAY  # the worst case for a day-of-month schedule


def expand(field: str, low: int, high: int) -> list[int] | None:
    """Values a cron field selects (`*`, `*/N`, `A`, `A-B`, `A-B/N`, lists); None if not understood."""
    values: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit():
            return None
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            if not (a.isdigit() and b.isdigit()):
                return None
            start, end = int(a), int(b)
        elif base.isdigit():
            start = int(base)
            end = high if step_text else start
        else:
            return None
        if step < 1 or start < low or end > high or start > end:
            return None
        values.update(range(start, end + 1, step))
    return sorted(values)


def _max_cyclic_gap(points: list[int], period: int) -> int:
    gaps = [b - a for a, b in itertools.pairwise(points)]
    gaps.append(period - points[-1] + points[0])
    return max(gaps)


def longest_gap_minutes(cron: str) -> int | None:
    """Worst-case minutes between consecutive runs; None when the expression is not understood."""
    fields = cron.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    minutes, hours = expand(minute, 0, 59), expand(hour, 0, 23)
    if minutes is None or hours is None or expand(month, 1, 12) is None:
        return None
    in_day = sorted(h * 60 + m for h in hours for m in minutes)
    if dom != "*" or month != "*":
        return MONTH if expand(dom, 1, 31) is not None else None
    if dow == "*":
        return _max_cyclic_gap(in_day, DAY)
    days = expand(dow.replace("7", "0"), 0, 6)
    if days is None:
        return None
    return _max_cyclic_gap(sorted(d * DAY + t for d in days for t in in_day), WEEK)
