"""Reading an inventory file: the only I/O on the way from YAML to a validated Environment.

`parse_inventory` is pure (text in, Environment or InventoryError out) so that tests and the
hypothesis suite exercise exactly what `invoke check` runs.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mk8s.errors import InventoryError
from mk8s.inventory.bounded_yaml import MAX_BYTES, YamlLimitError, load_bounded
from mk8s.inventory.model import Environment
from mk8s.inventory.rules import problems

INVENTORY_DIR = Path("inventory")

# A PVE API token secret is a UUID; a token id with its secret looks like user@realm!id=uuid.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_LONG_OPAQUE = re.compile(r"^[A-Za-z0-9_\-+/=]{32,}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
# Fields that legitimately hold long opaque text.
_NOT_SECRETS = ("ssh.authorized_keys",)


def resolve_env_path(env: str, root: Path = Path()) -> Path:
    """`--env` is a name (inventory/NAME.yaml) or a path to a YAML file."""
    if env.endswith((".yaml", ".yml")) or "/" in env:
        return Path(env)
    return root / INVENTORY_DIR / f"{env}.yaml"


def load_environment(env: str, root: Path = Path()) -> Environment:
    path = resolve_env_path(env, root)
    try:
        with path.open("rb") as f:  # a 40 MB file is refused without reading it all
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise InventoryError(f"{path}: larger than the {MAX_BYTES} bytes an inventory may have")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InventoryError(f"{path}: no such inventory file") from None
    except IsADirectoryError:
        raise InventoryError(f"{path}: is a directory, not an inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    return parse_inventory(text, source=str(path))


def parse_inventory(text: str, source: str = "<inventory>") -> Environment:
    data = _parse_yaml(text, source)
    lines = literal_secrets(data)
    try:
        env = Environment.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(*(lines + _format_errors(exc, data))) from None
    lines += problems(env)
    if lines:
        raise InventoryError(*lines)
    return env


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = load_bounded(text)
    except YamlLimitError as exc:
        raise InventoryError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise InventoryError(f"{source}: YAML syntax error at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{source}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise InventoryError(f"{source}: must be a YAML mapping (name:, proxmox:, network:, ...)")
    return data


def literal_secrets(data: Any, path: str = "") -> list[str]:
    """Lines for values that look like secrets: only references belong in an inventory."""
    if isinstance(data, dict):
        return [line for k, v in data.items() for line in literal_secrets(v, _join(path, str(k)))]
    if isinstance(data, list):
        if path in _NOT_SECRETS:
            return []
        return [line for i, v in enumerate(data) for line in literal_secrets(v, f"{path}[{i}]")]
    if isinstance(data, str) and (_UUID.search(data) or _opaque_token(data)):
        return [
            f"{path}: looks like a literal secret; name an environment variable (*_env) instead"
        ]
    return []


def _opaque_token(value: str) -> bool:
    """Long, unbroken, mixed letters and digits: an API token, not a path or a name."""
    if value.startswith(("/", "~", "./", "../")) or not _LONG_OPAQUE.match(value):
        return False
    return any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _format_errors(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = _loc(err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown field{_did_you_mean(err['loc'], data)}")
        elif err["type"] == "missing":
            lines.append(f"{loc}: required field is missing")
        elif err["type"] == "value_error":
            # mk8s' own validators name the offending value in their message.
            lines.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{loc}: {err['msg']} (got {_show(err.get('input'))})")
    return lines


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        # pydantic adds the tag of a union member or a function-validator name: not a field.
        if isinstance(part, str) and (part.startswith("function-") or "[" in part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _PLAIN_KEY.match(part) else repr(part)
            out += f".{name}" if out else name
    return out or "(top level)"


def _did_you_mean(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """Suggest the nearest field name of the model the unknown key sits in."""
    model: type[BaseModel] | None = Environment
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _model_of(field.annotation) if field else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
