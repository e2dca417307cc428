"""Locust load test for the sample app, run headless by `invoke loadtest --env ENV`.

Every simulated user paces itself so that all users together offer `--target-rps` requests per
second (the inventory's `loadtest.target_rps`); a response other than 200 is a failure, which
is what the SLO's error rate counts. 429s from the per-IP rate limit are failures too: the
inventory keeps `target_rps` below the limit, so a 429 here means the limit is mis-configured.
"""

from __future__ import annotations

from typing import Any

from locust import constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--target-rps",
        type=float,
        default=0.0,
        help="requests per second offered by all users together (0: as fast as possible)",
    )
    parser.add_argument("--app-path", default="/", help="path of the sample app to request")
    parser.add_argument(
        "--app-host",
        default="",
        help="Host header to send when --host is the ingress address rather than the app's name",
    )


class SampleAppUser(FastHttpUser):
    """One client of the sample app: GET the app page, expect 200."""

    # Certificates are the TLS check's job; LE staging certificates are not in any trust store.
    insecure = True

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        target = float(getattr(options, "target_rps", 0.0) or 0.0)
        users = max(1, int(getattr(options, "num_users", 1) or 1))
        if target <= 0:
            return 0.0
        pace: float = constant_throughput(target / users)(self)
        return pace

    @task
    def app_page(self) -> None:
        options = self.environment.parsed_options
        path = getattr(options, "app_path", "/") or "/"
        app_host = getattr(options, "app_host", "") or ""
        headers = {"Host": app_host} if app_host else None
        with self.client.get(path, name="app", headers=headers, catch_response=True) as response:
            if response.status_code == 0:  # FastHttpUser: no HTTP answer; the cause is in .error
                response.failure(f"no connection to {self.host}: {response.error!r}")
            elif response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
