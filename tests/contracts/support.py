"""Running tasks as an operator does, against loopback only, and judging the contract.

`run_task` starts `python -m invoke` from the repository's tasks.py in a scratch directory,
stdin closed (no terminal), with dummy PVE token variables so that credential checks pass and
the contract under test is what answers. `Listener` is a TCP port on 127.0.0.1 that records
every connection: a bad-input test asserts it saw none (nothing was sent to Proxmox).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = {"PVE_TOKEN_ID": "root@pam!mk8s", "PVE_TOKEN_SECRET": "not-a-real-secret"}

# Every task that takes --env, with the other arguments it needs to get past invoke's parser.
ENV_TASKS: dict[str, list[str]] = {
    "check": [],
    "plan": [],
    "provision": [],
    "destroy": [],
    "snapshot": ["--name", "s1"],
    "rollback": ["--name", "s1"],
    "power": ["--action", "start"],
    "bootstrap": [],
    "deploy": [],
    "loadtest": [],
    "promote": [],
}
ALL_TASKS = [*ENV_TASKS, "tools", "report"]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def assert_one_line(self, code: int, *names: str, within_s: float = 10.0) -> str:
        """Exit `code`, exactly one stderr line naming every one of `names`, no traceback."""
        context = f"exit {self.code} after {self.seconds:.1f}s\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        assert "Traceback" not in self.stderr + self.stdout, context
        assert self.code == code, context
        assert len(self.error_lines) == 1, context
        line = self.error_lines[0]
        for name in names:
            assert name in line, f"{name!r} not named in: {line}"
        assert self.seconds < within_s, context
        return line


def run_task(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    stdin: Any = subprocess.DEVNULL,
) -> Outcome:
    environ = {**os.environ, **TOKEN_ENV, **(env or {})}
    environ.pop("KUBECONFIG", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        cwd=cwd,
        env=environ,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


class Listener:
    """127.0.0.1:PORT that accepts, records and drops every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inventory(source: str = "lab", **changes: Any) -> dict[str, Any]:
    """inventory/SOURCE.yaml as data, top-level keys replaced; `proxmox_endpoint=` sets the URL."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "inventory" / f"{source}.yaml").read_text())
    endpoint = changes.pop("proxmox_endpoint", None)
    if endpoint is not None:
        data["proxmox"] = {**data["proxmox"], "endpoint": endpoint, "ca_bundle": None}
    data.update(changes)
    return data


def write_inventory(root: Path, data: dict[str, Any]) -> Path:
    path = root / "inventory" / f"{data['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
