"""Run one invoke task with a pause planted at a named point, for the SIGINT tests.

    python -m tests.contracts.interrupt_harness SPEC.json -- TASK ARGS...

SPEC: {"pause": "module:attr[.method]", "stubs": {"module:attr": value}, "fake_terraform": bool}.
The paused function prints PAUSED so the test sends SIGINT exactly there; stubs replace
functions that would need a real Proxmox to get that far. With "fake_terraform", provision's
Terraform runs a shell script as its binary, through the real `mk8s.edges.terraform.Terraform`:
the script records its pid in $MK8S_CHILD_PID and, on SIGINT, takes a second to "save its
state" and writes $MK8S_CHILD_PID.saved, as terraform stops gracefully. Everything else is the
real tasks.py run by invoke's real Program.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _target(spec: str) -> tuple[Any, str]:
    module, _, attr = spec.partition(":")
    owner: Any = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _pause(*args: Any, **kwargs: Any) -> Any:
    print("PAUSED", file=sys.stderr, flush=True)
    # Short sleeps, not one long one: a SIGINT that lands between the print and the sleep
    # syscall is only acted on at the next bytecode check, which one time.sleep(60) would delay
    # by a minute (seen once under load); a loop checks again every 0.1 s.
    for _ in range(600):
        time.sleep(0.1)
    raise AssertionError("the SIGINT never came")


FAKE_TERRAFORM = """#!/bin/sh
trap 'echo "Interrupt received."; sleep 1; echo saved > "$MK8S_CHILD_PID.saved"; exit 1' INT
echo $$ > "$MK8S_CHILD_PID.tmp" && mv "$MK8S_CHILD_PID.tmp" "$MK8S_CHILD_PID"
while :; do sleep 0.1; done
"""


def _fake_terraform_for(env: Any, root: Path, pve_env: Any, say: Any, module: Any = None) -> Any:
    from mk8s.edges.terraform import Terraform
    from mk8s.edges.tools import Tools

    binary = Path.cwd() / "fake-terraform"
    binary.write_text(FAKE_TERRAFORM)
    binary.chmod(0o755)
    tools = Tools(binary=binary, cli_config=Path.cwd() / "cli.tfrc", mirror=Path.cwd())
    return Terraform(tools=tools, workdir=Path.cwd() / "tf", provider_env={}, on_line=say)


class _Stub:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.value


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    argv = sys.argv[sys.argv.index("--") + 1 :]
    for where, value in spec.get("stubs", {}).items():
        owner, name = _target(where)
        setattr(owner, name, _Stub(value))
    if spec.get("fake_terraform"):
        import mk8s.provision.flow

        mk8s.provision.flow.terraform_for = _fake_terraform_for  # type: ignore[assignment]
    if spec.get("pause"):
        owner, name = _target(spec["pause"])
        setattr(owner, name, _pause)
    from invoke.main import program

    program.run(["invoke", "--search-root", str(ROOT), *argv])


if __name__ == "__main__":
    main()
