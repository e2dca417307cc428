"""A toy day-2 plan whose steps record into a file, run as its own process so that tests can
kill it (os._exit, no clean-up, like SIGKILL) at any step boundary and run it again.

    python -m tests.day2.toyplan WORKDIR [--kill-at LABEL] [--break-lock] [--steps a,b,c]

Each step appends its key to WORKDIR/effects.txt; its `done()` reads that file (the "real
state"), never the journal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from mk8s.day2.operation import Options, operate
from mk8s.day2.plan import Kind, StepSpec, make_plan
from mk8s.errors import UserError

STEPS = ("snapshot", "cordon-n1", "refresh-n1", "wait-n1", "uncordon-n1")


class Record:
    def __init__(self, effects: Path, key: str) -> None:
        self.effects, self.key = effects, key

    def lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def run(self) -> None:
        with self.effects.open("a") as f:
            f.write(self.key + "\n")
            f.flush()
            os.fsync(f.fileno())

    def done(self) -> bool:
        return self.key in self.lines()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--kill-at", default="")
    parser.add_argument("--break-lock", action="store_true")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--pause-at", default="", help="wait there until WORKDIR/continue exists")
    parser.add_argument("--wait-lock", type=float, default=0)
    args = parser.parse_args(argv)
    keys = args.steps.split(",")
    plan = make_plan(
        "toy",
        "lab",
        [StepSpec(k, Kind.COMMAND, f"record {k}", node="n1", expected_s=5) for k in keys],
    )
    effects = args.workdir / "effects.txt"
    seen: list[str] = []

    def boundary(label: str) -> None:
        seen.append(label)
        if label == args.kill_at:
            os._exit(137)
        if label == args.pause_at:
            (args.workdir / "paused").touch()
            while not (args.workdir / "continue").exists():
                time.sleep(0.05)

    try:
        outcome = operate(
            plan,
            {k: Record(effects, k) for k in keys},
            args.workdir,
            Options(break_lock=args.break_lock, wait_lock_s=args.wait_lock),
            out=Console(file=sys.stderr),
            boundary=boundary,
        )
    except UserError as exc:  # what tasks.py's user_errors does
        print("\n".join(exc.lines), file=sys.stderr)
        return exc.exit_code
    assert outcome is not None
    print(json.dumps({"boundaries": seen, "ran": outcome.ran, "adopted": outcome.adopted}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
