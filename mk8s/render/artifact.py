"""Value types of a Plan, kept apart so renderers can import them without import cycles."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Artifact:
    """One file of the rendered plan, relative to build/ENV/."""

    path: str
    content: str
    mode: int = 0o644

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()
