"""Load tests against real nginx configured from the environment's rendered rate limit.

nginx (Debian) listens on 127.0.0.2 and proxies to a tiny local backend; Locust runs headless
exactly as `invoke loadtest` runs it, only for seconds instead of minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import trustme

from mk8s.checks.loadtest import (
    LoadProfile,
    LocustStats,
    ProbeResult,
    parse_final_stats,
    probe,
    rate_limit_criteria,
    slo_criteria,
)
from mk8s.checks.loadtest import run as run_loadtest
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import RateLimit, Slo
from mk8s.promotion.evidence import SUMMARY, read_summary
from mk8s.render.ratelimit import nginx_conf
from tests.loadtests.stack import backend, nginx, nginx_binary
from tests.promotion.factory import REPO, SLOW_MS, TEST_P95_MS, make_keys, make_repo

SHORT = LoadProfile(users=5, spawn_rate=5, duration_s=3, target_rps=25)

pytestmark = pytest.mark.slow  # real nginx / Locust / Chromium processes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", make_keys(tmp_path / "keys"))


def statuses(summary_criteria: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {c.id: c.status for c in summary_criteria}


def test_a_healthy_app_behind_the_stage_limit_passes_the_slo_and_the_rate_limit_check(
    root: Path, tmp_path: Path
) -> None:
    stage = load_environment("stage", root)
    assert stage.ingress.rate_limit == RateLimit(rps=50, burst=100, status_code=429)
    with backend() as upstream, nginx(upstream, stage.ingress.rate_limit, tmp_path / "ngx") as n:
        run_dir, summary = run_loadtest("stage", host=n.url, root=root, profile=SHORT)

    assert summary.kind == "loadtest" and summary.passed, summary.criteria
    assert summary.target_url == n.url
    assert statuses(summary.criteria) == {
        "loadtest.p95": "passed",
        "loadtest.error_rate": "passed",
        "loadtest.throughput": "passed",
        "loadtest.rate_limit_below": "passed",
        "loadtest.rate_limit_above": "passed",
    }
    p95 = summary.criterion("loadtest.p95")
    assert p95 is not None and p95.target == str(TEST_P95_MS)
    assert float(p95.measured or "inf") <= TEST_P95_MS
    assert summary.timings["loadtest.p95"].unit == "ms"
    # Locust's own artifacts are kept with the summary.
    for name in ("locust.html", "locust_stats.csv", "locust_failures.csv", "locust_final.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / SUMMARY).is_file()
    # The final JSON, not the timer-written CSV, which lags on a short run (issue 12).
    stats = parse_final_stats((run_dir / "locust_final.json").read_text())
    assert stats.requests >= 40 and stats.failures == 0
    assert read_summary(run_dir / SUMMARY) == summary


def test_https_like_the_real_ingress_is_loaded_without_judging_the_certificate(
    root: Path, tmp_path: Path
) -> None:
    """The default host is https://app.<domain> with a staging certificate no store trusts:
    Locust and the probes load it anyway (the TLS check judges certificates, not the load test)."""
    leaf = trustme.CA().issue_cert("app.stage.example.com")
    tls = (b"".join(b.bytes() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes())
    stage = load_environment("stage", root)
    with (
        backend() as upstream,
        nginx(upstream, stage.ingress.rate_limit, tmp_path / "ngx", tls=tls) as n,
    ):
        assert n.url.startswith("https://")
        _, summary = run_loadtest("stage", host=n.url, root=root, profile=SHORT)
    assert summary.passed, summary.criteria
    assert statuses(summary.criteria)["loadtest.rate_limit_above"] == "passed"


def test_injected_latency_fails_the_slo_gate(root: Path, tmp_path: Path) -> None:
    with backend(latency_ms=SLOW_MS) as upstream, nginx(upstream, None, tmp_path / "ngx") as n:
        _, summary = run_loadtest("dev", host=n.url, root=root, profile=SHORT)

    assert not summary.passed
    p95 = summary.criterion("loadtest.p95")
    assert p95 is not None and p95.status == "failed"
    assert float(p95.measured or 0) >= SLOW_MS
    assert p95.message.endswith(f"exceeds {TEST_P95_MS} ms")
    # dev sets no rate limit: the check is recorded as not applicable, not as passed.
    assert statuses(summary.criteria)["loadtest.rate_limit_above"] == "skipped"


def test_the_limit_is_per_client_ip(tmp_path: Path) -> None:
    """A client hammering from one address gets 429s while another, below the limit, does not."""
    limit = RateLimit(rps=50, burst=100)
    results: dict[str, ProbeResult] = {}
    with backend() as upstream, nginx(upstream, limit, tmp_path / "ngx") as n:

        def above() -> None:
            results["above"] = probe(
                n.url + "/", rate=None, duration_s=3, concurrency=16, source_ip="127.0.0.4"
            )

        hammer = threading.Thread(target=above)
        hammer.start()
        results["below"] = probe(n.url + "/", rate=25, duration_s=3, source_ip="127.0.0.5")
        hammer.join()

    above_r, below_r = results["above"], results["below"]
    assert above_r.statuses[429] > 0 and above_r.statuses[200] <= 100 + 50 * 4
    assert below_r.statuses == Counter({200: below_r.sent}) and below_r.sent >= 50
    verdict = rate_limit_criteria(limit, below_r, above_r)
    assert [c.status for c in verdict] == ["passed", "passed"]


def test_a_missing_limit_is_caught_by_the_rate_limit_check(tmp_path: Path) -> None:
    """nginx without limit_req: the 'above' client sees no 429 and the check fails."""
    limit = RateLimit(rps=50, burst=100)
    with backend() as upstream, nginx(upstream, None, tmp_path / "ngx") as n:
        below = probe(n.url + "/", rate=25, duration_s=2)
        above = probe(n.url + "/", rate=None, duration_s=2, concurrency=16)
    below_c, above_c = rate_limit_criteria(limit, below, above)
    assert below_c.status == "passed"
    assert above_c.status == "failed"
    assert "no 429: no limit" in above_c.message


@pytest.mark.parametrize("env", ["dev", "stage", "prod"])
def test_the_rendered_config_of_each_environment_is_valid_nginx(env: str, tmp_path: Path) -> None:
    limit = load_environment(env, REPO).ingress.rate_limit
    conf = nginx_conf(limit, listen="127.0.0.2:8080", upstream="127.0.0.1:9", prefix=tmp_path)
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.run(
        [
            nginx_binary(),
            "-t",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if limit is None:
        assert "limit_req" not in conf
    else:
        assert f"rate={limit.rps}r/s" in conf and f"burst={limit.burst} nodelay" in conf
        assert f"limit_req_status {limit.status_code};" in conf


SLO = Slo(p95_ms=200, error_rate=0.001, pod_start_s=20)


@pytest.mark.parametrize(
    ("stats", "failed"),
    [
        (LocustStats(requests=1000, failures=1, p95_ms=200, rps=50), []),
        (LocustStats(requests=1000, failures=2, p95_ms=200, rps=50), ["loadtest.error_rate"]),
        (LocustStats(requests=1000, failures=0, p95_ms=210, rps=50), ["loadtest.p95"]),
        (
            LocustStats(requests=0, failures=0, p95_ms=None, rps=0),
            ["loadtest.p95", "loadtest.error_rate", "loadtest.throughput"],
        ),
        (LocustStats(requests=1000, failures=0, p95_ms=20, rps=30), ["loadtest.throughput"]),
    ],
)
def test_slo_gate_boundaries(stats: LocustStats, failed: list[str]) -> None:
    profile = LoadProfile(users=10, spawn_rate=10, duration_s=20, target_rps=50)
    verdict = slo_criteria(stats, SLO, profile)
    assert [c.id for c in verdict if c.status == "failed"] == failed


def test_an_underpowered_probe_is_inconclusive_not_a_pass() -> None:
    limit = RateLimit(rps=200, burst=400)
    below = ProbeResult(sent=200, elapsed_s=2, statuses=Counter({200: 200}))
    above = ProbeResult(sent=300, elapsed_s=2, statuses=Counter({200: 300}))
    _, above_c = rate_limit_criteria(limit, below, above)
    assert above_c.status == "failed"
    assert above_c.message.startswith("inconclusive: the probe reached only 150 req/s")


def invoke_loadtest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`invoke loadtest --env dev ARGS` as an operator runs it, from the repo `root`."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "loadtest", "--env", "dev", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_cli_runs_locust_and_reports_each_criterion(root: Path, tmp_path: Path) -> None:
    with backend() as upstream, nginx(upstream, None, tmp_path / "ngx") as n:
        proc = invoke_loadtest(root, "--host", n.url, "--duration", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED  loadtest.p95 (measured" in proc.stdout
    assert "SKIPPED loadtest.rate_limit_above" in proc.stdout
    assert (root / "reports" / "dev").is_dir()


def test_a_bad_host_is_a_user_error(root: Path) -> None:
    proc = invoke_loadtest(root, "--host", "app.dev.example.com")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --host 'app.dev.example.com': must be an http:// or https:// URL with a host"
    )


def test_wrk_is_installed_for_the_benchmark() -> None:
    assert shutil.which("wrk"), "scripts/deps.d/evidence.apt installs wrk"


def test_the_cli_connects_to_the_ingress_address_with_the_app_host_and_marks_smoke_runs(
    root: Path, tmp_path: Path
) -> None:
    with backend() as upstream, nginx(upstream, None, tmp_path / "ngx") as n:
        proc = invoke_loadtest(root, "--connect", n.url, "--duration", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke run (--duration): recorded, but never counts for promotion" in proc.stdout
    assert "UNSIGNED" in proc.stdout
    (summary_path,) = (root / "reports" / "dev").glob(f"*/{SUMMARY}")
    summary = read_summary(summary_path)
    assert summary is not None and summary.load is not None
    assert (summary.load.url, summary.load.host) == (n.url, "app.dev.example.com")
    assert summary.load.address == "127.0.0.2" and summary.load.smoke


def test_traffic_sent_to_an_address_carries_the_app_host_header(root: Path) -> None:
    """Locust and both rate-limit probes name the app in Host while connecting to the address."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hosts: Counter[str] = Counter()

    class App(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts[self.headers.get("Host", "")] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.7", 0), App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.7:{server.server_address[1]}"
        _, summary = run_loadtest("stage", connect=url, root=root, profile=SHORT)
    finally:
        server.shutdown()
        thread.join(5)
    assert summary.load is not None and summary.load.address == "127.0.0.7"
    assert set(hosts) == {"app.stage.example.com"}, hosts
    assert sum(hosts.values()) > 40  # Locust's requests and the stage rate-limit probes
