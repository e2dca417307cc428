"""Wall time of `check` (parse + rules) and `plan` (render) in-process.

    python benchmarks/plan_bench.py

Targets (issue 2): plan(prod) < 0.5 s, a 100-node inventory < 2 s. Prints the best of N runs.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mk8s.inventory.load import parse_inventory
from mk8s.render.plan import build_plan

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5


def big_inventory(nodes: int) -> str:
    data: dict[str, Any] = yaml.safe_load((ROOT / "inventory" / "prod.yaml").read_text())
    data = copy.deepcopy(data)
    data["network"]["subnet"] = "10.30.0.0/16"
    data["network"]["gateway"] = "10.30.0.1"
    data["network"]["dns_servers"] = ["10.30.0.1"]
    data["network"]["pod_cidr"] = "10.1.0.0/16"
    data["network"]["metallb_range"] = "10.30.200.1-10.30.200.40"
    data["storage"]["nfs"]["server"] = "10.30.0.10"
    data["nodes"] = [
        {
            "name": f"prod-k8s-{i}",
            "vmid": 5000 + i,
            "ip": f"10.30.{i // 250}.{i % 250 + 2}",
            "pve_node": f"pve{i}",
        }
        for i in range(1, nodes + 1)
    ]
    return yaml.safe_dump(data)


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    cases = {
        "prod (3 nodes)": (ROOT / "inventory" / "prod.yaml").read_text(),
        "generated (100 nodes)": big_inventory(100),
    }
    print(f"{'inventory':24} {'check':>10} {'check+plan':>12}   (best of {RUNS})")
    for label, text in cases.items():
        check = best(lambda t=text: parse_inventory(t))  # type: ignore[misc]
        plan = best(lambda t=text: build_plan(parse_inventory(t)))  # type: ignore[misc]
        print(f"{label:24} {check * 1000:8.1f}ms {plan * 1000:10.1f}ms")


if __name__ == "__main__":
    main()
