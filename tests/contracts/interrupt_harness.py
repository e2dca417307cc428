"""Run one invoke task with a pause planted at a named point, for the SIGINT tests.

    python -m tests.contracts.interrupt_harness SPEC.json -- TASK ARGS...

SPEC: {"pause": "module:attr[.method]", "child": bool, "stubs": {"module:attr": "value"}}.
The paused function prints PAUSED (and, with "child", runs a real child process that records
its pid in $MK8S_CHILD_PID and waits) so the test sends SIGINT exactly there; stubs replace
functions that would need a real Proxmox to get that far. Everything else is the real tasks.py
run by invoke's real Program.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
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


def _pause(child: bool) -> Any:
    def paused(*args: Any, **kwargs: Any) -> Any:
        print("PAUSED", file=sys.stderr, flush=True)
        if child:
            proc = subprocess.Popen(["sleep", "60"])
            Path(os.environ["MK8S_CHILD_PID"]).write_text(str(proc.pid))
            print("CHILD", file=sys.stderr, flush=True)
            proc.wait()
        time.sleep(60)
        raise AssertionError("the SIGINT never came")

    return paused


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
    owner, name = _target(spec["pause"])
    setattr(owner, name, _pause(bool(spec.get("child"))))
    from invoke.main import program

    program.run(["invoke", "--search-root", str(ROOT), *argv])


if __name__ == "__main__":
    main()
