"""nox sessions: `lint` (ruff + mypy --strict), `tests` (the toolkit's own tests).

Later capabilities add their sessions here (e.g. `conformance` against a live environment).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

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
    """The toolkit's own tests: unit, contract, integration against real components.

    Without arguments: everything but the load tests in parallel workers (most tests wait on
    real processes: sshd, kube-apiserver, terraform, nginx), then the load tests alone, since
    they measure throughput and latency and must not share the machine. With arguments, pytest
    runs them as given (add `-n 4` to parallelise a selection).
    """
    session.install("-e", ".[test]")
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    # --durations: CI's log names the slowest tests, which is where the time budget goes
    session.run(
        "pytest", "-n", "4", "--dist", "loadfile", "--durations", "25",
        "--ignore", "tests/loadtests",
    )  # fmt: skip
    session.run("pytest", "tests/loadtests")


def _env_option(args: list[str]) -> str:
    """The value of `--env NAME` / `--env=NAME` among the session's arguments."""
    for i, arg in enumerate(args):
        if arg == "--env" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--env="):
            return arg.split("=", 1)[1]
    raise ValueError("missing --env: nox -s conformance -- --env dev [-m phase1]")


def _env_name(env: str) -> str:
    """`dev` or `inventory/dev.yaml` -> `dev` (the noxfile must not import mk8s: CI's nox has
    only nox installed)."""
    return re.sub(r"\.ya?ml$", "", Path(env).name)


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Exit-criteria suite against a live environment, with evidence.

    nox -s conformance -- --env dev [-m phase1] [any pytest option]
    Writes reports/ENV/RUN_ID/junit.xml (RUN_ID = UTC YYYYmmddTHHMMSSZ), then hands it to
    `mk8s.promotion.evidence record-conformance` (summary.json), also when criteria failed.
    """
    try:
        env = _env_name(_env_option(list(session.posargs)))
    except ValueError as exc:
        session.error(str(exc))
    if session.venv_backend != "none":  # `nox --no-venv` runs in an environment that has mk8s
        session.install("-e", ".[test]")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    junit = Path("reports") / env / run_id / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    failure: nox.command.CommandFailed | None = None
    try:
        session.run(
            "pytest", "conformance", "-p", "no:cacheprovider", "-rA",
            f"--junitxml={junit}", "-o", "junit_family=xunit2", *session.posargs,
        )  # fmt: skip
    except nox.command.CommandFailed as exc:
        failure = exc
    if Path("mk8s/promotion/evidence.py").is_file() and junit.is_file():
        session.run(
            "python", "-m", "mk8s.promotion.evidence", "record-conformance",
            "--env", env, "--junit", str(junit),
        )  # fmt: skip
    if failure is not None:
        session.error(f"conformance failed for {env}; JUnit in {junit}")
