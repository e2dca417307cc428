"""One way to wait: every wait names what it waits for, its deadline and the last value seen.

The clock is injectable, so tests run a wait of hours in microseconds and assert its message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from mk8s.errors import OperationFailedError

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock: deadlines are printed as times of day)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock that moves only when slept on (tests)."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class WaitTimeoutError(OperationFailedError):
    def __init__(self, what: str, deadline: float, timeout_s: float, last: str) -> None:
        super().__init__(
            f"timed out waiting for {what}: deadline {stamp(deadline)} ({timeout_s:g}s) passed; "
            f"last seen: {last}"
        )
        self.what, self.deadline, self.last = what, deadline, last


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(
    what: str,
    probe: Callable[[], T],
    ok: Callable[[T], bool],
    *,
    timeout_s: float,
    interval_s: float = 2.0,
    clock: Clock | None = None,
    retry_on: tuple[type[Exception], ...] = (),
    describe: Callable[[T], str] = repr,
    on_poll: Callable[[str], None] | None = None,
) -> T:
    """Probe until `ok(value)` or the deadline; returns the value that satisfied `ok`.

    An exception in `retry_on` counts as a value that is not ok (its text is the last value
    seen): a node that drops SSH during a reboot is what we wait through, not a failure.
    """
    clock = clock or SystemClock()
    deadline = clock.now() + timeout_s
    last = "nothing yet (not probed)"
    while True:
        try:
            value = probe()
        except retry_on as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if ok(value):
                return value
            last = describe(value)
        if on_poll is not None:
            on_poll(f"waiting for {what} until {stamp(deadline)}; last seen: {last}")
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise WaitTimeoutError(what, deadline, timeout_s, last)
        clock.sleep(min(interval_s, remaining))
