"""Real nginx, configured from an environment's rendered rate limit, in front of a tiny backend.

Used by the load-test tests and by the Locust-vs-wrk benchmark. Everything listens on
127.0.0.x only; processes are started here and stopped by their own handles.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mk8s.inventory.model import RateLimit
from mk8s.render.ratelimit import nginx_conf

ROOT = Path(__file__).resolve().parents[2]


def nginx_binary() -> str:
    found = os.environ.get("MK8S_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).is_file():
        raise RuntimeError(
            "nginx is not installed: scripts/deps.d/evidence.apt lists it (apt-get install nginx)"
        )
    return found


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def wait_listening(ip: str, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {ip}:{port} after 10 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def backend(ip: str = "127.0.0.1", latency_ms: float = 0.0) -> Iterator[str]:
    """A sample-app stand-in; yields its host:port."""
    port = free_port(ip)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.loadtests.backend",
            "--listen",
            f"{ip}:{port}",
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_listening(ip, port, proc, "backend")
        yield f"{ip}:{port}"
    finally:
        stop(proc)


@dataclass(frozen=True)
class Nginx:
    url: str
    conf: str


@contextmanager
def nginx(
    upstream: str,
    limit: RateLimit | None,
    workdir: Path,
    ip: str = "127.0.0.2",
    static: str | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> Iterator[Nginx]:
    """Real nginx on `ip` proxying to `upstream` with the rendered per-IP limit.

    `static`: a path nginx answers itself (benchmarks measure the load generator there).
    `tls`: (certificate chain PEM, key PEM) to serve HTTPS, as the cluster's ingress does.
    """
    port = free_port(ip)
    workdir.mkdir(parents=True, exist_ok=True)
    conf = nginx_conf(limit, listen=f"{ip}:{port}", upstream=upstream, prefix=workdir)
    scheme = "http"
    if tls:
        scheme = "https"
        (workdir / "tls.crt").write_bytes(tls[0])
        (workdir / "tls.key").write_bytes(tls[1])
        conf = conf.replace(
            f"        listen {ip}:{port};\n",
            f"        listen {ip}:{port} ssl;\n"
            f"        ssl_certificate {workdir / 'tls.crt'};\n"
            f"        ssl_certificate_key {workdir / 'tls.key'};\n",
        )
        assert " ssl;" in conf
    if static:
        marker = "        location / {"
        conf = conf.replace(marker, f'        location = {static} {{ return 200 "ok"; }}\n{marker}')
    (workdir / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        [
            nginx_binary(),
            "-p",
            str(workdir),
            "-e",
            str(workdir / "error.log"),
            "-c",
            str(workdir / "nginx.conf"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(ip, port, proc, "nginx")
        yield Nginx(f"{scheme}://{ip}:{port}", conf)
    finally:
        stop(proc)
