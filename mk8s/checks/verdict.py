"""`Verdict`: what one exit-criterion check found, in the words the evidence records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """passed; what was measured and what was expected (strings, as evidence records them)."""

    passed: bool
    measured: str
    expected: str
    message: str
    unit: str | None = None

    def __str__(self) -> str:
        state = "PASS" if self.passed else "FAIL"
        unit = f" {self.unit}" if self.unit else ""
        return f"{state}: {self.message} (measured {self.measured}{unit}; expected {self.expected})"


def passed(measured: str, expected: str, message: str, unit: str | None = None) -> Verdict:
    return Verdict(True, measured, expected, message, unit)


def failed(measured: str, expected: str, message: str, unit: str | None = None) -> Verdict:
    return Verdict(False, measured, expected, message, unit)


def all_of(verdicts: Iterable[Verdict], expected: str, unit: str | None = None) -> Verdict:
    """One verdict for several (per node, per object): passes only if every part passes.

    The message names every failing part, or summarises the passing ones.
    """
    parts = list(verdicts)
    if not parts:
        return failed("nothing observed", expected, "no facts to judge", unit)
    bad = [v for v in parts if not v.passed]
    measured = "; ".join(v.measured for v in parts)
    if bad:
        return failed(measured, expected, "; ".join(v.message for v in bad), unit)
    return passed(measured, expected, "; ".join(v.message for v in parts), unit)
