"""Glue for tasks.py: user errors become one line each and exit code 2, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from mk8s.console import err_console
from mk8s.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            for line in exc.lines:
                err_console.print(f"[red]error:[/red] {line}", soft_wrap=True)
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; re-run the same command to resume")
            raise Exit(code=130) from None

    return wrapper
