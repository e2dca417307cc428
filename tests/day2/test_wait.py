"""wait_for: names what it waits for, its deadline and the last value seen."""

from __future__ import annotations

import pytest

from mk8s.day2.wait import FakeClock, WaitTimeoutError, wait_for
from mk8s.edges.ssh import NodeUnreachableError


def test_returns_the_value_that_satisfied_the_condition() -> None:
    clock = FakeClock(1_000_000.0)
    values = iter(["NotReady", "NotReady", "Ready"])
    got = wait_for(
        "n1 Ready", lambda: next(values), lambda v: v == "Ready", timeout_s=60, clock=clock
    )
    assert got == "Ready"
    assert clock.t == 1_000_004.0  # two sleeps of the 2 s interval


def test_timeout_names_the_wait_the_deadline_and_the_last_value() -> None:
    clock = FakeClock(1_764_633_600.0)  # 2025-12-02T00:00:00Z
    with pytest.raises(WaitTimeoutError) as caught:
        wait_for(
            "three voters agreed by every node",
            lambda: ["n1", "n2"],
            lambda v: len(v) == 3,
            timeout_s=300,
            interval_s=7,
            clock=clock,
        )
    message = str(caught.value)
    assert message == (
        "timed out waiting for three voters agreed by every node: deadline "
        "2025-12-02T00:05:00Z (300s) passed; last seen: ['n1', 'n2']"
    )
    assert clock.t == 1_764_633_600.0 + 300  # the last sleep is cut to the deadline
    assert caught.value.exit_code == 1


def test_retryable_errors_become_the_last_value_seen() -> None:
    clock = FakeClock()

    def probe() -> str:
        raise NodeUnreachableError("n2: SSH to 10.0.0.2 failed: connection refused")

    with pytest.raises(WaitTimeoutError, match="last seen: NodeUnreachableError: n2: SSH"):
        wait_for(
            "n2 back after reboot",
            probe,
            lambda v: True,
            timeout_s=10,
            clock=clock,
            retry_on=(NodeUnreachableError,),
        )


def test_other_errors_are_not_swallowed() -> None:
    def probe() -> str:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_for("x", probe, lambda v: True, timeout_s=10, clock=FakeClock())


def test_progress_lines_name_the_wait() -> None:
    lines: list[str] = []
    wait_for(
        "pdb",
        iter([0, 1]).__next__,
        lambda v: v == 1,
        timeout_s=10,
        clock=FakeClock(),
        on_poll=lines.append,
    )
    assert lines == ["waiting for pdb until 1970-01-01T00:00:10Z; last seen: 0"]
