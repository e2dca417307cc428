"""Glue for tasks.py: user errors become one line each and exit code 2, never a traceback.

Importing this package installs `mk8s.cli.program` (invoke's usage errors and Ctrl-C under
the same contract); `arguments` checks task options, `confirm` asks before destructive actions.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from mk8s.cli import program
from mk8s.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")


def say_error(line: str) -> None:
    """Printed as given: no Rich markup, so `[a-z]` in a message stays `[a-z]` (issue 12)."""
    print(f"error: {line}", file=sys.stderr, flush=True)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with program.task_running():
                return fn(*args, **kwargs)
        except KeyboardInterrupt:
            program.say_interrupted()
            raise Exit(code=program.INTERRUPT_EXIT) from None
        except UserError as exc:
            if program.interrupted():
                # A child (terraform, locust) that died of the same Ctrl-C is not a failure.
                program.say_interrupted()
                raise Exit(code=program.INTERRUPT_EXIT) from None
            for line in exc.lines:
                say_error(line)
            raise Exit(code=exc.exit_code) from None

    return wrapper
