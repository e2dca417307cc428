"""Benchmark: do the node-local bootstrap steps really run in parallel?

Starts real sshd's with the MicroK8s model (as the tests do), makes the node step that waits
take a fixed time (`cloud-init status --wait` sleeps DELAY seconds in the model) and measures
wall time for 1 node and for 3 nodes:

- parallel steps (host-key pinning, SSH connect, cloud-init wait, snap facts, machine-id, every
  node's own `microk8s status`): target ratio 3 nodes / 1 node <= 1.3;
- the whole bootstrap, for information: joins are sequential by design (one node at a time,
  each waiting for the role dqlite gives it: canonical/microk8s#4696).

Run from the repository root (root needed for sshd):  /work/venv/bin/python benchmarks/bootstrap_bench.py
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mk8s.bootstrap import flow as bootstrap_flow
from mk8s.edges import ssh
from tests.bootstrap.conftest import FixtureHostKeys, Lab, lab_environment
from tests.support.microk8s.rig import BIN, Rig
from tests.support.sshd import SshdFactory

NAMES = ("bench-k8s-1", "bench-k8s-2", "bench-k8s-3")


def measure(count: int, delay: float, root: Path) -> tuple[float, float]:
    """(parallel steps, whole bootstrap) wall seconds for `count` nodes."""
    from mk8s.render import launchconfig

    names = NAMES[:count]
    factory = SshdFactory(root)
    rig = Rig(root / "model")
    try:
        cluster = factory(names, path_dirs=[BIN], env=rig.session_env())
        env = lab_environment(cluster, names, ha=count >= 3)
        rig.seed(
            {n.name: str(n.ip) for n in env.nodes},
            {n.name: launchconfig.text(env, n) for n in env.nodes},
        )
        rig.configure(delay_s=delay)
        lab = Lab(cluster, env, rig, root / "build", FixtureHostKeys(cluster))
        run = bootstrap_flow.Bootstrap(
            env=env,
            targets=ssh.targets_for(env),
            settings=lab.settings(),
            host_keys=lab.host_keys,
            out_dir=lab.out,
            console=Console(file=io.StringIO()),
        )
        start = time.perf_counter()
        ssh.pin_host_keys(run.known_hosts, list(run.targets.values()), run.host_keys, dry_run=False)
        run.parallel(list(run.targets), run.prepare_node)
        run.parallel(list(run.targets), run.machine_id)
        run.observe()  # every node's own status, read at once before formation decides
        parallel = time.perf_counter() - start
        for s in run.sessions.values():
            s.close()
        (lab.out / "known_hosts").unlink()
        start = time.perf_counter()
        lab.bootstrap()
        whole = time.perf_counter() - start
        return parallel, whole
    finally:
        factory.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per node step")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[tuple[float, float]]] = {1: [], 3: []}
    with tempfile.TemporaryDirectory(prefix="mk8s-bench-") as tmp:
        for i in range(args.repeat):
            for count in (1, 3):
                results[count].append(measure(count, args.delay, Path(tmp) / f"{count}-{i}"))
    best = {c: (min(p for p, _ in r), min(w for _, w in r)) for c, r in results.items()}
    ratio = best[3][0] / best[1][0]
    print(f"node step delay {args.delay:.1f}s, best of {args.repeat}")
    print(f"parallel steps: 1 node {best[1][0]:.2f}s, 3 nodes {best[3][0]:.2f}s, ratio {ratio:.2f}")
    print(
        f"whole bootstrap: 1 node {best[1][1]:.2f}s, 3 nodes {best[3][1]:.2f}s (joins sequential)"
    )
    print("target ratio <= 1.30:", "met" if ratio <= 1.3 else "NOT met")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
