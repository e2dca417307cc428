"""The evidence contract between the conformance suite and `mk8s.promotion.evidence`.

Every exit-criterion test records, with pytest's `record_property` (so they land in the JUnit
XML as <property> elements of its testcase): `criterion` (stable id `phaseN.name`), `phase`
(`phase1`..`phase4`), `measured`, `target` and, when there is one, `unit`. This module builds
those properties; `conformance/conftest.py` records them when the test ends, whatever happened,
so a test that errors still names its criterion (measured `not measured`). Ids come from the
registry (mk8s.checks.criteria): an id it does not have is refused when the test starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mk8s.checks import criteria
from mk8s.checks.verdict import Verdict

CRITERION_ID = re.compile(r"^(?P<phase>phase[1-4])\.[a-z0-9_]+$")
NOT_MEASURED = "not measured"
NOT_APPLICABLE = "not applicable"


def phase_of(criterion: str) -> str:
    match = CRITERION_ID.match(criterion)
    if not match:
        raise ValueError(f"criterion id {criterion!r} must look like phase1.loadbalancer")
    return match["phase"]


@dataclass
class CriterionRecord:
    """What one exit-criterion test will record; filled in by `judge`."""

    criterion: str
    target: str | None = None
    unit: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)

    # The registry's reason when the criterion does not apply to the environment.
    not_applicable: str | None = None

    def __post_init__(self) -> None:
        phase_of(self.criterion)  # fail fast on a malformed id
        try:
            criteria.by_id(self.criterion)
        except criteria.UnknownCriterionError as exc:
            raise ValueError(str(exc.args[0])) from None

    def judge(self, verdict: Verdict) -> Verdict:
        self.verdicts.append(verdict)
        return verdict

    def properties(self) -> list[tuple[str, str]]:
        last = self.verdicts[-1] if self.verdicts else None
        props = [
            ("criterion", self.criterion),
            ("phase", phase_of(self.criterion)),
            ("measured", last.measured if last else self._unmeasured()),
            ("target", self.target or (last.expected if last else "")),
        ]
        unit = self.unit or (last.unit if last else None)
        if unit:
            props.append(("unit", unit))
        return props

    def _unmeasured(self) -> str:
        return NOT_APPLICABLE if self.not_applicable else NOT_MEASURED
