"""Benchmark: Locust's achievable request rate against wrk's, on the same real nginx.

    /work/venv/bin/python -m tests.loadtests.benchmark [--seconds 10] [--connections 32]

Not a test (numbers depend on the machine). Two targets on one nginx on 127.0.0.2:
`/static` is answered by nginx itself (measures the load generators), `/` is proxied to the tiny
Python backend (measures what a test run here can offer through the stand-in ingress).
Locust runs headless, unpaced (`--target-rps 0`), with as many users as wrk has connections.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from mk8s.checks.loadtest import LOCUSTFILE, parse_stats
from tests.loadtests.stack import backend, nginx


def wrk(url: str, seconds: int, connections: int, threads: int) -> float:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def locust(host: str, path: str, seconds: int, users: int, workdir: Path, processes: int) -> float:
    prefix = workdir / f"bench{processes}{path.strip('/') or 'root'}"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--host",
        host,
        "--target-rps",
        "0",
        "--app-path",
        path,
        "--csv",
        str(prefix),
        "--loglevel",
        "WARNING",
    ]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    subprocess.run(cmd, capture_output=True, check=False, timeout=seconds + 60)
    stats = parse_stats(Path(f"{prefix}_stats.csv").read_text())
    return stats.rps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, backend() as upstream:
        work = Path(tmp)
        with nginx(upstream, None, work / "nginx", static="/static") as n:
            print(f"nginx {n.url}; {args.seconds}s per run, {args.connections} connections/users")
            for path in ("/static", "/"):
                w1 = wrk(n.url + path, args.seconds, args.connections, 1)
                w2 = wrk(n.url + path, args.seconds, args.connections, 2)
                l1 = locust(n.url, path, args.seconds, args.connections, work, 1)
                l2 = locust(n.url, path, args.seconds, args.connections, work, 2)
                print(
                    f"{path:8} wrk -t1 {w1:8.0f} req/s | wrk -t2 {w2:8.0f} req/s | "
                    f"locust 1 proc {l1:7.0f} req/s ({l1 / w2:.2f} of wrk -t2) | "
                    f"locust 2 procs {l2:7.0f} req/s ({l2 / w2:.2f} of wrk -t2)"
                )


if __name__ == "__main__":
    main()
