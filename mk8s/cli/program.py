"""invoke's own usage errors and Ctrl-C, held to the README's contract (issue 12).

invoke 2.2.1 (`invoke/program.py`, `Program.run`) prints a ParseError and exits 1, exits 1
silently on KeyboardInterrupt, lets a value it cannot cast (`--timeout abc`) escape as a
ValueError traceback, takes an unknown `--flag` as the value of a missing positional, and lets a
flag given twice overwrite the first. tasks.py is loaded by that same `Program.run`, before it
parses the task arguments, so importing this module (tasks.py's first import) is early enough to
wrap the parsing and execution steps: every usage error becomes one `error:` line and exit 2,
every interrupt exit 130 with one line.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from invoke.exceptions import Exit, ParseError
from invoke.program import Program

USAGE_EXIT = 2
INTERRUPT_EXIT = 130
INTERRUPTED = "interrupted; re-run to resume"


class _Interrupts:
    in_task = False  # inside a task, a KeyboardInterrupt unwinds the task's own cleanups
    seen = False  # a SIGINT arrived: a child that died of it is an interrupt, not a failure


def interrupted() -> bool:
    return _Interrupts.seen


def say_interrupted() -> None:
    print(INTERRUPTED, file=sys.stderr, flush=True)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _Interrupts.seen = True
    if _Interrupts.in_task:
        raise KeyboardInterrupt
    # Outside a task (loading tasks.py, parsing) invoke would turn KeyboardInterrupt into exit 1.
    say_interrupted()
    raise SystemExit(INTERRUPT_EXIT)


@contextmanager
def task_running() -> Iterator[None]:
    _Interrupts.in_task = True
    try:
        yield
    finally:
        _Interrupts.in_task = False


def usage_error(message: str) -> Exit:
    return Exit(f"error: {message}", code=USAGE_EXIT)


def _plain(exc: ParseError) -> str:
    """invoke's parser messages, said the way the rest of mk8s says them."""
    text = str(exc).strip()
    if "did not receive required positional arguments" in text:
        quoted, _, missing = text.partition(" did not receive required positional arguments: ")
        task = quoted.strip("'")
        flags = ", ".join("--" + m.strip(" '").replace("_", "-") for m in missing.split(","))
        return f"{task}: {flags} is required (see `invoke --help {task}`)"
    needed = re.match(r"Flag <Argument: (\w+)[^>]*> needed value", text)
    if needed:
        return f"--{needed.group(1).replace('_', '-')} needs a value"
    if text.startswith("No idea what "):
        what = text.removeprefix("No idea what ").removesuffix(" is!")
        return f"unknown task or argument {what} (see `invoke --list`)"
    return text.splitlines()[0] if text else "invalid command line"


def check_flags(program: Any) -> None:
    """Refuse a flag given twice and an unknown `--flag` before invoke reads either."""
    contexts = {}
    for ctx in program.collection.to_contexts():
        contexts[ctx.name] = ctx
        contexts.update(dict.fromkeys(ctx.aliases, ctx))
    core = program.initial_context
    current, seen = None, set[str]()
    tokens = list(program.core.unparsed)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if current is None or (token in contexts and not token.startswith("-")):
            current, seen = contexts.get(token), set()
            continue
        if not token.startswith("-") or token == "-":
            continue
        flag = token.partition("=")[0]
        arg = _argument(current, flag) or _argument(core, flag)
        if arg is None:
            raise usage_error(
                f"{current.name}: unknown option {flag} (see `invoke --help {current.name}`)"
            )
        if arg.name in seen:
            raise usage_error(f"{current.name}: {flag} given twice; give it once")
        seen.add(arg.name)
        if arg.takes_value and "=" not in token:
            i += 1  # its value, whatever it looks like (`--duration -5` is judged later)


def _argument(ctx: Any, flag: str) -> Any:
    if flag in ctx.flags:
        return ctx.flags[flag]
    if flag in ctx.inverse_flags:
        return ctx.flags[ctx.inverse_flags[flag]]
    return None


def _wrap_parse(step: Callable[[Any], None]) -> Callable[[Any], None]:
    def parse(self: Any) -> None:
        try:
            if step is _ORIGINAL["parse_tasks"]:
                check_flags(self)
            step(self)
        except ParseError as exc:
            raise usage_error(_plain(exc)) from None
        except ValueError as exc:  # an int/bool flag given a value invoke cannot cast
            raise usage_error(f"invalid option value: {exc}") from None

    return parse


def _execute(self: Any) -> None:
    try:
        with task_running():
            _ORIGINAL["execute"](self)
    except KeyboardInterrupt:
        say_interrupted()
        raise Exit(code=INTERRUPT_EXIT) from None


_ORIGINAL: dict[str, Callable[[Any], None]] = {}


def install() -> None:
    """Idempotent: wraps invoke's Program once and takes over SIGINT in the main thread."""
    if not _ORIGINAL:
        for name in ("parse_tasks", "parse_cleanup", "execute"):
            _ORIGINAL[name] = getattr(Program, name)
        Program.parse_tasks = _wrap_parse(_ORIGINAL["parse_tasks"])  # type: ignore[method-assign,assignment]
        Program.parse_cleanup = _wrap_parse(_ORIGINAL["parse_cleanup"])  # type: ignore[method-assign,assignment]
        Program.execute = _execute  # type: ignore[method-assign]
    signal.signal(signal.SIGINT, _on_sigint)


install()
