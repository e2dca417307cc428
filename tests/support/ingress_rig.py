"""A real nginx playing the cluster's ingress path, on loopback addresses standing in for the
nodes' hostPorts and the MetalLB IP, in front of an agnhost-netexec stand-in.

What it models (and why): the MicroK8s ingress add-on runs ingress-nginx as a DaemonSet with
hostPorts 80/443 on every node; requests for the app host go to the sample app, anything else
to the controller's default server, which answers 404 and presents its own certificate
(ingress-nginx's "Kubernetes Ingress Controller Fake Certificate"). agnhost netexec answers
`/hostname` with the name of the pod that served the request.

Broken states a test can put it in: the app backend down (nginx answers 502), a maintenance
page (200 with other text), a backend that is an old pod (a name no longer Ready), one node's
controller not listening, and another certificate served for the host.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.loadtests.stack import free_port, nginx_binary, stop, wait_listening


class AppBackend:
    """agnhost netexec's `/hostname`: the serving pod's name (`name`, changeable live)."""

    def __init__(self, name: str, ip: str = "127.0.0.1") -> None:
        self.name = name
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (backend.name if self.path == "/hostname" else "NOW: ok").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((ip, 0), Handler)
        self.address = f"{ip}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class IngressRig:
    """nginx listening on every address in `ips` at `http_port` and `https_port`."""

    workdir: Path
    host: str
    ips: Sequence[str]
    backend: AppBackend
    app_cert: tuple[bytes, bytes]  # (chain PEM, key PEM) served for `host`
    default_cert: tuple[bytes, bytes]  # the controller's own certificate
    http_port: int = 0
    https_port: int = 0
    mode: str = "app"  # app | down | maintenance
    listening: Sequence[str] = ()
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if not self.http_port:
            self.http_port = _common_free_port(self.ips)
            self.https_port = _common_free_port(self.ips, avoid=self.http_port)
        self.listening = self.listening or tuple(self.ips)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, (chain, key) in (("app", self.app_cert), ("default", self.default_cert)):
            (self.workdir / f"{name}.crt").write_bytes(chain)
            (self.workdir / f"{name}.key").write_bytes(key)
        (self.workdir / "nginx.conf").write_text(self._conf())
        self._proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.workdir), "-e", str(self.workdir / "error.log"),
             "-c", str(self.workdir / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        for ip in self.listening:
            wait_listening(ip, self.http_port, self._proc, "nginx")

    def restart(self, **changes: object) -> None:
        """Stop, change (mode, listening, app_cert...), start again: the next state."""
        self.stop()
        for key, value in changes.items():
            setattr(self, key, value)
        self.start()

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)
            self._proc = None

    def _conf(self) -> str:
        d = self.workdir
        listen = "".join(
            f"        listen {ip}:{self.http_port}{{ds}};\n"
            f"        listen {ip}:{self.https_port} ssl{{ds}};\n"
            for ip in self.listening
        )
        if self.mode == "app":
            app = f"proxy_pass http://{self.backend.address}; proxy_set_header Host $host;"
        elif self.mode == "down":
            # the controller's upstream is gone (no Ready endpoints, pods crashing): 502
            app = f"proxy_pass http://127.0.0.1:{free_port('127.0.0.1')};"
        else:
            app = 'default_type text/html; return 200 "<h1>Down for maintenance</h1>";'
        return f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
{listen.format(ds=" default_server")}        ssl_certificate {d}/default.crt;
        ssl_certificate_key {d}/default.key;
        location / {{ return 404 "default backend - 404"; }}
    }}
    server {{
{listen.format(ds="")}        server_name {self.host};
        ssl_certificate {d}/app.crt;
        ssl_certificate_key {d}/app.key;
        # ingress-nginx's ssl-redirect (default true for hosts with TLS): 308 to HTTPS.
        if ($scheme = http) {{ return 308 https://$host$request_uri; }}
        location / {{ {app} }}
    }}
}}
"""


def _common_free_port(ips: Sequence[str], avoid: int = 0) -> int:
    """A port free on every address (hostPorts: the same port on every node)."""
    import socket

    for _ in range(50):
        port = free_port(ips[0])
        if port == avoid:
            continue
        try:
            socks = []
            for ip in ips:
                s = socket.socket()
                socks.append(s)
                s.bind((ip, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no port free on all of {', '.join(ips)}")


@contextmanager
def ingress_rig(
    workdir: Path,
    host: str,
    ips: Sequence[str],
    pod_name: str,
    app_cert: tuple[bytes, bytes],
    default_cert: tuple[bytes, bytes],
    ports: tuple[int, int] = (0, 0),
) -> Iterator[IngressRig]:
    """`ports`: (http, https); (0, 0) picks free ones (the suite's own test uses 80/443)."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").is_file():
        raise RuntimeError("nginx is not installed: scripts/deps.d/evidence.apt lists it")
    backend = AppBackend(pod_name)
    rig = IngressRig(workdir, host, ips, backend, app_cert, default_cert, *ports)
    try:
        rig.start()
        yield rig
    finally:
        rig.stop()
        backend.close()
