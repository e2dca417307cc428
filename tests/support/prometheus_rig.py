"""Real Prometheus, Alertmanager and node-exporter (Debian packages, scripts/deps.d/
monitoring.apt) on loopback, wired as kube-prometheus-stack wires them in the cluster.

One node-exporter per "node" address (127.X.0.11-13:9100-ish), a kubelet stand-in per node
(an HTTP server serving a Prometheus exposition; the real kubelet serves HTTPS on 10250,
which changes nothing the verdict reads), Prometheus scraping them under the chart's job
names, evaluating a `Watchdog` rule (`vector(1)`, as the chart's general rules) and sending to
Alertmanager. Every process is started here, listens on 127.0.0.0/8 only (Alertmanager's
gossip listener is switched off: it would bind 0.0.0.0:9094) and is stopped by its handle.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from tests.loadtests.stack import free_port, stop, wait_listening

BINARIES = {
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "node_exporter": "prometheus-node-exporter",
}


def binary(what: str) -> str:
    found = shutil.which(BINARIES[what])
    if not found:
        raise RuntimeError(
            f"{BINARIES[what]} is not installed: scripts/deps.d/monitoring.apt lists it"
        )
    return found


class KubeletStandIn:
    """Answers /metrics with a tiny valid exposition, as the kubelet's metrics endpoint."""

    def __init__(self, ip: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"# TYPE kubelet_running_pods gauge\nkubelet_running_pods 3\n"
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((ip, 0), Handler)
        self.address = f"{ip}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MonitoringRig:
    workdir: Path
    node_ips: Sequence[str]
    prometheus_url: str = ""
    alertmanager_url: str = ""
    exporters: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exporter_addresses: dict[str, str] = field(default_factory=dict)
    kubelets: dict[str, KubeletStandIn] = field(default_factory=dict)
    _prometheus: subprocess.Popen[bytes] | None = None
    _alertmanager: subprocess.Popen[bytes] | None = None

    # --- processes ---------------------------------------------------------------------------

    def start_exporter(self, ip: str) -> None:
        port = free_port(ip)
        proc = subprocess.Popen(
            [binary("node_exporter"), f"--web.listen-address={ip}:{port}",
             "--collector.disable-defaults", "--collector.time", "--collector.loadavg"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(ip, port, proc, "node-exporter")
        self.exporters[ip] = proc
        self.exporter_addresses[ip] = f"{ip}:{port}"

    def stop_exporter(self, ip: str) -> None:
        """The node's exporter pod is gone: the target stays configured and goes down."""
        stop(self.exporters.pop(ip))

    def start_alertmanager(self) -> None:
        port = free_port("127.0.0.1")
        conf = self.workdir / "alertmanager.yml"
        conf.write_text(
            yaml.safe_dump({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]})
        )
        self._alertmanager = subprocess.Popen(
            [binary("alertmanager"), f"--config.file={conf}",
             f"--storage.path={self.workdir / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=(self.workdir / "alertmanager.log").open("wb"),
        )  # fmt: skip
        wait_listening("127.0.0.1", port, self._alertmanager, "alertmanager")
        self.alertmanager_url = f"http://127.0.0.1:{port}"
        self._wait_ready(self.alertmanager_url)

    def stop_alertmanager(self) -> None:
        if self._alertmanager is not None:
            stop(self._alertmanager)
            self._alertmanager = None

    def start_prometheus(
        self,
        scrape: Sequence[str] | None = None,
        send_to_alertmanager: bool = True,
        watchdog: bool = True,
    ) -> None:
        """(Re)start Prometheus scraping the given node IPs (default all) under both jobs."""
        self.stop_prometheus()
        ips = list(self.node_ips if scrape is None else scrape)
        rules = self.workdir / "rules.yml"
        rules.write_text(yaml.safe_dump({"groups": [{"name": "general.rules", "rules": [
            {"alert": "Watchdog", "expr": "vector(1)", "labels": {"severity": "none"}}
        ] if watchdog else []}]}))  # fmt: skip
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "node-exporter",
                 "static_configs": [{"targets": [self.exporter_addresses[ip] for ip in ips]}]},
                {"job_name": "kubelet",
                 "static_configs": [{"targets": [self.kubelets[ip].address for ip in ips]}]},
            ],
        }  # fmt: skip
        if send_to_alertmanager and self.alertmanager_url:
            target = self.alertmanager_url.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        conf = self.workdir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(config))
        port = free_port("127.0.0.1")
        self._prometheus = subprocess.Popen(
            [binary("prometheus"), f"--config.file={conf}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}",
             # Alertmanagers are discovered ~5 s after start, after the first send of a new
             # alert; re-sending every second (default 1 min) lets the test see delivery soon.
             "--rules.alert.resend-delay=1s"],
            stdout=subprocess.DEVNULL, stderr=(self.workdir / "prometheus.log").open("wb"),
        )  # fmt: skip
        wait_listening("127.0.0.1", port, self._prometheus, "prometheus")
        self.prometheus_url = f"http://127.0.0.1:{port}"
        self._wait_ready(self.prometheus_url)

    @staticmethod
    def _wait_ready(url: str, timeout_s: float = 20.0) -> None:
        """Until `/-/ready` answers 200 (503 while the TSDB is still opening)."""
        deadline = time.monotonic() + timeout_s
        while requests.get(url + "/-/ready", timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not ready after {timeout_s}s")
            time.sleep(0.1)

    def stop_prometheus(self) -> None:
        if self._prometheus is not None:
            stop(self._prometheus)
            self._prometheus = None

    # --- waiting for the real thing ----------------------------------------------------------

    def wait_scraped(self, timeout_s: float = 20.0) -> None:
        """Until every configured target has been scraped once (health no longer unknown)."""
        self._wait(lambda d: all(t["health"] != "unknown" for t in d["data"]["activeTargets"])
                   and bool(d["data"]["activeTargets"]), "/api/v1/targets", timeout_s)  # fmt: skip

    def wait_rules_evaluated(self, timeout_s: float = 20.0) -> None:
        self._wait(lambda d: all(g["lastEvaluation"][:4] != "0001" for g in d["data"]["groups"]),
                   "/api/v1/rules", timeout_s)  # fmt: skip

    def _wait(self, done: object, path: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                data = requests.get(self.prometheus_url + path, timeout=2).json()
                if done(data):  # type: ignore[operator]
                    return
            except (requests.RequestException, KeyError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus {path} not settled after {timeout_s}s")
            time.sleep(0.2)

    def close(self) -> None:
        self.stop_prometheus()
        self.stop_alertmanager()
        for ip in list(self.exporters):
            self.stop_exporter(ip)
        for k in self.kubelets.values():
            k.close()


@contextmanager
def monitoring_rig(workdir: Path, node_ips: Sequence[str]) -> Iterator[MonitoringRig]:
    workdir.mkdir(parents=True, exist_ok=True)
    rig = MonitoringRig(workdir, node_ips)
    try:
        for ip in node_ips:
            rig.start_exporter(ip)
            rig.kubelets[ip] = KubeletStandIn(ip)
        rig.start_alertmanager()
        rig.start_prometheus()
        yield rig
    finally:
        rig.close()
