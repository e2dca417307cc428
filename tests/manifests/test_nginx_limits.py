"""The rendered NGINX ingress settings, run by a real nginx: the env-wide per-IP limit and the
429 status come out of the ConfigMap exactly as ingress-nginx places them (limit-req-status-code
at http level, http-snippet, location-snippet)."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.manifests.conftest import Rendered


def free_port() -> int:
    """A free port whose successor is free too (the upstream listens there)."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no pair of free ports on 127.0.0.1")


def nginx_conf(data: dict[str, str], port: int, prefix: Path) -> str:
    temp = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
daemon off;
events {{}}
http {{
  access_log off;
{temp}
  limit_req_status {data["limit-req-status-code"]};
  limit_conn_status {data["limit-conn-status-code"]};
  {data.get("http-snippet", "")}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      {data.get("location-snippet", "")}
      # Proxied, as the ingress does (a bare `return` would answer before limit_req runs).
      proxy_pass http://127.0.0.1:{port + 1};
    }}
  }}
  server {{
    listen 127.0.0.1:{port + 1};
    location / {{ return 200 "ok"; }}
  }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx missing: scripts/deps.d/00-apt.sh installs it (manifests.apt)")
    yield Path(binary), free_port()


def hammer(port: int, count: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(count):
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        statuses[response.status] += 1
    conn.close()
    return statuses


def run_nginx(binary: Path, conf_text: str, prefix: Path, port: int) -> subprocess.Popen[bytes]:
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    check = subprocess.run(
        [str(binary), "-t", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([str(binary), "-c", str(conf), "-p", str(prefix)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.terminate()
    raise AssertionError((prefix / "error.log").read_text())


@pytest.mark.parametrize("name", ["stage", "prod"])
def test_requests_over_the_per_ip_burst_get_429(
    rendered: dict[str, Rendered], nginx: tuple[Path, int], tmp_path: Path, name: str
) -> None:
    binary, port = nginx
    r = rendered[name]
    limit = r.env.ingress.rate_limit
    assert limit is not None
    data = r.get("ConfigMap", "nginx-load-balancer-microk8s-conf", "ingress")["data"]
    proc = run_nginx(binary, nginx_conf(data, port, tmp_path), tmp_path, port)
    try:
        start = time.monotonic()
        statuses = hammer(port, limit.burst * 3)
        elapsed = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert set(statuses) == {200, 429}, statuses
    # The burst passes at once; beyond it only the refill rate does, the rest is 429.
    assert statuses[200] >= limit.burst
    assert statuses[200] <= limit.burst + 1 + limit.rps * elapsed + 1


def test_dev_has_no_limit(
    rendered: dict[str, Rendered], nginx: tuple[Path, int], tmp_path: Path
) -> None:
    binary, port = nginx
    data = rendered["dev"].get("ConfigMap", "nginx-load-balancer-microk8s-conf", "ingress")["data"]
    proc = run_nginx(binary, nginx_conf(data, port, tmp_path), tmp_path, port)
    try:
        statuses = hammer(port, 300)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert statuses == Counter({200: 300})
