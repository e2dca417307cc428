"""Resolving secret references: the inventory names variables, never values.

A name resolves from the process environment first, then from the inventory's `secrets_file`
(dotenv lines `NAME=value`; the file should be mode 0600 and outside git). Values are wrapped
in `Secret` so an accidental print or log shows `***`.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mk8s.errors import UserError


@dataclass(frozen=True)
class Secret:
    name: str
    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"


def parse_dotenv(text: str) -> dict[str, str]:
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def require_private(path: Path, what: str) -> None:
    """Refuse a credential file that group or others may read (the docs promise 0600)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise UserError(f"{what}: cannot read {path} ({exc.strerror})") from None
    if mode & 0o077:
        raise UserError(
            f"{what} {path} is mode {mode:04o}, readable beyond its owner; run: chmod 600 {path}"
        )


def load_secrets_file(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    file = Path(path).expanduser()
    require_private(file, "secrets_file")
    try:
        return parse_dotenv(file.read_text())
    except OSError as exc:
        raise UserError(f"secrets_file: cannot read {file} ({exc.strerror})") from None


def resolve(name: str, environ: Mapping[str, str], secrets_file: Mapping[str, str]) -> Secret:
    """The value of secret `name`; a clear error naming the variable when it is unset."""
    value = environ.get(name) or secrets_file.get(name)
    if not value:
        raise UserError(
            f"{name}: secret not set; export it or add it to the inventory's secrets_file"
        )
    return Secret(name, value)


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every known secret value replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
