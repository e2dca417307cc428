"""nox sessions: `lint` (ruff + mypy --strict), `tests` (the toolkit's own tests).

Later capabilities add their sessions here (e.g. `conformance` against a live environment).
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict over the library, tasks and tests."""
    session.install("-e", ".[lint,test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The toolkit's own tests: unit, contract, integration against real components."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)
