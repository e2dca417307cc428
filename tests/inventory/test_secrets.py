"""Secret references resolve from the environment, then the secrets file; values never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from mk8s.errors import UserError
from mk8s.inventory.secrets import load_secrets_file, parse_dotenv, resolve


def test_environment_wins_over_the_secrets_file() -> None:
    secret = resolve(
        "PVE_TOKEN_SECRET", {"PVE_TOKEN_SECRET": "from-env"}, {"PVE_TOKEN_SECRET": "from-file"}
    )
    assert secret.reveal() == "from-env"


def test_secrets_file_fills_what_the_environment_lacks(tmp_path: Path) -> None:
    f = tmp_path / "secrets.env"
    f.write_text("# ops secrets\nexport CLOUDFLARE_API_TOKEN='abc'\nEMPTY=\n")
    f.chmod(0o600)  # a secrets file others can read is refused
    assert resolve("CLOUDFLARE_API_TOKEN", {}, load_secrets_file(str(f))).reveal() == "abc"


def test_a_secret_never_shows_its_value() -> None:
    secret = resolve("X", {"X": "hunter2"}, {})
    assert "hunter2" not in f"{secret} {secret!r}"


def test_unset_secret_is_one_clear_line() -> None:
    with pytest.raises(UserError) as err:
        resolve("VELERO_S3_SECRET_KEY", {}, parse_dotenv("EMPTY=\n"))
    assert err.value.lines == (
        "VELERO_S3_SECRET_KEY: secret not set; export it or add it to the inventory's secrets_file",
    )


def test_unreadable_secrets_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_secrets_file(str(tmp_path / "missing.env"))
    assert "secrets_file: cannot read" in err.value.lines[0]
