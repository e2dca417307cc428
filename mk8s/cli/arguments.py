"""Task arguments checked before anything leaves the machine: one line naming the option.

Each function takes the option's text as invoke gives it and returns the typed value or raises
UserError (exit 2). tasks.py calls them first thing, so `snapshot --name 'bad name!'` is refused
before a Proxmox request is made (issue 12).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mk8s.errors import UserError

MAX_SECONDS = 7 * 24 * 3600

# pve-common src/PVE/JSONSchema.pm: `pve-snapshot-name` is format `pve-configid`
# (/^[a-z][a-z0-9_-]+$/i) with maxLength 40; `current` names the running state in every
# snapshot listing (qemu-server `GET .../snapshot`), so it cannot be a snapshot's name.
_SNAPSHOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]+")
SNAPSHOT_NAME_MAX = 40

POWER_ACTIONS = ("start", "stop", "shutdown", "reboot", "reset")
# Actions that take running workloads down: they ask for confirmation (issue 12).
DESTRUCTIVE_POWER = ("stop", "shutdown", "reset")


def seconds(option: str, value: object, *, zero_means: str | None = None) -> int:
    """A whole number of seconds, 1..7 days; 0 only where it means something (`zero_means`)."""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise UserError(f"{option} {text!r}: must be a whole number of seconds") from None
    if number == 0 and zero_means is not None:
        return 0
    if not 0 < number <= MAX_SECONDS:
        raise UserError(f"{option} {number}: must be between 1 and {MAX_SECONDS} seconds")
    return number


def snapshot_name(value: str) -> str:
    if not value:
        raise UserError("--name: a snapshot name is required")
    if len(value) > SNAPSHOT_NAME_MAX or not _SNAPSHOT_NAME.fullmatch(value):
        raise UserError(
            f"--name {value!r}: a Proxmox snapshot name is a letter then letters, digits, "
            f"'_' or '-', 2-{SNAPSHOT_NAME_MAX} characters"
        )
    if value.lower() == "current":
        raise UserError("--name 'current': Proxmox reserves it for the running state")
    return value


def node_names(value: str, env_name: str, known: Sequence[str]) -> list[str]:
    """`--node a,b`: each name must be a node of the inventory (empty: all nodes)."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"--node {', '.join(unknown)}: not a node of {env_name} ({', '.join(known)})"
        )
    return names


def power_action(value: str) -> str:
    if value not in POWER_ACTIONS:
        raise UserError(f"--action {value!r}: use {', '.join(POWER_ACTIONS)}")
    return value


def base_url(option: str, value: str) -> str:
    """An http(s) URL with a host; what urllib cannot split is named, not a traceback."""
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as exc:
        raise UserError(f"{option} {value!r}: not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UserError(f"{option} {value!r}: must be an http:// or https:// URL with a host")
    del port
    return value


def module_dir(value: str) -> Path | None:
    """`provision --module DIR`: a directory holding Terraform files (empty: the default)."""
    if not value:
        return None
    path = Path(value)
    if not path.is_dir() or not any(path.glob("*.tf")):
        raise UserError(f"--module {value}: not a Terraform module directory (no *.tf files)")
    return path


def existing_file(option: str, value: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"{option} {value}: no such file")
    return path
