"""An nginx config that enforces an environment's per-IP rate limit the way ingress-nginx does.

It stands in for the cluster's ingress in tests and benchmarks: `limit_req_zone` keyed by the
client address, `limit_req ... burst=B nodelay` and the inventory's status code, which is what
ingress-nginx renders from `limit-rps`/`limit-burst-multiplier` and `limit-req-status-code`
(shared/reference/microk8s.md). Pure: the caller writes the text and starts nginx.
"""

from __future__ import annotations

from pathlib import Path

from mk8s.inventory.model import RateLimit


def nginx_conf(
    limit: RateLimit | None,
    *,
    listen: str,
    upstream: str,
    prefix: Path,
    worker_processes: int = 1,
) -> str:
    """nginx.conf proxying `listen` (host:port) to `upstream` (host:port) under `prefix`."""
    zone = ""
    apply = ""
    if limit is not None:
        zone = (
            "    limit_req_zone $binary_remote_addr zone=perip:10m rate="
            f"{limit.rps}r/s;\n    limit_req_status {limit.status_code};\n"
        )
        apply = f"            limit_req zone=perip burst={limit.burst} nodelay;\n"
    return f"""# rendered by mk8s.render.ratelimit: {limit.rps if limit else "no"} r/s per client IP
worker_processes {worker_processes};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{zone}    upstream app {{
        server {upstream};
        keepalive 32;
    }}
    server {{
        listen {listen};
        location / {{
{apply}            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_pass http://app;
        }}
    }}
}}
"""
