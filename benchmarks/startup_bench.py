"""Whole-process start-up of the tasks that only read the inventory, beside `invoke --version`.

    python benchmarks/startup_bench.py [--runs 7]

`invoke check --env dev` and `invoke plan --env prod` should load only the inventory and the
renderers, never paramiko, fabric or the kubernetes client (issue 9: check <= 0.6 s, plan prod
<= 0.8 s on an idle 2-core machine, where `invoke --version` takes about 0.2 s). Times swing with
the machine's load, so the verdict is the ratio to `invoke --version` measured in the same
interleaved runs; absolute medians are printed beside it. Also lists the heavy modules a task
imported (there should be none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).with_name("invoke"))
COMMANDS = {
    "version": [INVOKE, "--version"],
    "check dev": [INVOKE, "check", "--env", "dev"],
    "plan prod": [INVOKE, "plan", "--env", "prod"],
}
# ratio to `invoke --version` that the targets above mean on an idle machine (0.6/0.2, 0.8/0.2)
MAX_RATIO = {"check dev": 3.0, "plan prod": 4.0}
HEAVY = ("paramiko", "fabric", "kubernetes", "proxmoxer", "locust", "cryptography")


def once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports() -> list[str]:
    """Heavy packages loaded by tasks.py plus what check and plan import when they run."""
    code = (
        "import sys, tasks, mk8s.inventory.load, mk8s.render.plan, mk8s.render.build;"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):  # interleaved, so a load spike hits every command alike
        for name, argv in COMMANDS.items():
            times[name].append(once(argv))
    base = statistics.median(times["version"])
    print(f"invoke --version: median {base:.3f} s over {runs} runs")
    ok = True
    for name, limit in MAX_RATIO.items():
        median = statistics.median(times[name])
        ratio = median / base
        ok &= ratio <= limit
        print(f"invoke {name}: median {median:.3f} s, {ratio:.2f}x --version (limit {limit:.1f}x)")
    heavy = heavy_imports()
    print(f"heavy modules loaded by check/plan: {', '.join(heavy) or 'none'}")
    return 0 if ok and not heavy else 1


if __name__ == "__main__":
    raise SystemExit(main())
