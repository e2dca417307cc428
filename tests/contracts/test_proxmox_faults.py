"""The Proxmox edge under faults: bounded, refused/401 at once, a dropped POST looked up and
never re-sent (issue 12).

`Api` stands in for proxmoxer's client: `api(path).get(**params)` / `.post(**data)`, raising
what proxmoxer raises (requests' ConnectionError/Timeout for transport failures,
ResourceException for HTTP errors; proxmoxer 2.3.0 core.py). `tasks` answers
`GET nodes/N/tasks` as PVE lists tasks (`upid`, `type`, `starttime`; qemu-server's task list).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from proxmoxer import ResourceException

from mk8s.edges import proxmox
from mk8s.edges.proxmox import CALL_BUDGET_S, OperationFailedError, Pve, VmFacts

VM = VmFacts(vmid=6101, name="lab-k8s-1", node="pve1", status="running", template=False, tags=())
ENDPOINT = "https://127.0.0.1:8006"


class Api:
    def __init__(self, answers: dict[tuple[str, str], list[Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []

    def __call__(self, path: str) -> Any:
        api = self

        class Resource:
            def __getattr__(self, method: str) -> Callable[..., Any]:
                def call(**_: Any) -> Any:
                    api.calls.append((method, path))
                    queue = api.answers[(method, path)]
                    answer = queue.pop(0) if len(queue) > 1 else queue[0]
                    if isinstance(answer, BaseException):
                        raise answer
                    return answer

                return call

        return Resource()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


DROPPED = requests.ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))")
REFUSED = requests.ConnectionError(
    "HTTPSConnectionPool(host='127.0.0.1', port=8006): Max retries exceeded "
    "(Caused by NewConnectionError('[Errno 111] Connection refused'))"
)
STOP = "nodes/pve1/qemu/6101/status/stop"
UPID = "UPID:pve1:0000A1B2:00C0FFEE:6745A1B2:qmstop:6101:root@pam!mk8s:"


def pve(api: Api, clock: Clock | None = None) -> Pve:
    clock = clock or Clock()
    return Pve(api, ENDPOINT, "PVE_TOKEN_ID", sleep=clock.sleep, clock=clock)


def test_dropped_post_whose_task_runs_is_waited_for_not_resent() -> None:
    api = Api(
        {
            ("post", STOP): [DROPPED],
            ("get", "nodes/pve1/tasks"): [
                [{"upid": UPID, "type": "qmstop", "starttime": time.time()}]
            ],
            ("get", f"nodes/pve1/tasks/{UPID}/status"): [{"status": "stopped", "exitstatus": "OK"}],
        }
    )
    proxmox.power(pve(api), VM, "stop")
    assert api.calls.count(("post", STOP)) == 1
    assert ("get", f"nodes/pve1/tasks/{UPID}/status") in api.calls


def test_dropped_post_already_in_effect_is_not_resent() -> None:
    old = [{"upid": UPID, "type": "qmstop", "starttime": time.time() - 3600}]
    api = Api(
        {
            ("post", STOP): [DROPPED],
            ("get", "nodes/pve1/tasks"): [old],  # an hour-old stop is not this one
            ("get", "nodes/pve1/qemu/6101/status/current"): [{"status": "stopped"}],
        }
    )
    proxmox.power(pve(api), VM, "stop")
    assert api.calls.count(("post", STOP)) == 1


def test_dropped_post_with_no_trace_says_so_and_does_not_resend() -> None:
    api = Api(
        {
            ("post", STOP): [DROPPED],
            ("get", "nodes/pve1/tasks"): [[]],
            ("get", "nodes/pve1/qemu/6101/status/current"): [{"status": "running"}],
        }
    )
    with pytest.raises(OperationFailedError) as caught:
        proxmox.power(pve(api), VM, "stop")
    assert api.calls.count(("post", STOP)) == 1
    (line,) = caught.value.lines
    assert ENDPOINT in line and "not re-sent" in line and "re-run" in line


def test_dropped_snapshot_post_found_by_its_snapshot() -> None:
    path = "nodes/pve1/qemu/6101/snapshot"
    api = Api(
        {
            ("post", path): [DROPPED],
            ("get", "nodes/pve1/tasks"): [[]],
            ("get", path): [[{"name": "s1"}, {"name": "current"}]],
        }
    )
    proxmox.snapshot(pve(api), VM, "s1")
    assert api.calls.count(("post", path)) == 1


def test_dropped_get_is_retried() -> None:
    api = Api({("get", "version"): [DROPPED, {"version": "8.2"}]})
    assert pve(api).get("version") == {"version": "8.2"}
    assert api.calls.count(("get", "version")) == 2


def test_refused_is_said_at_once() -> None:
    api = Api({("get", "version"): [REFUSED]})
    with pytest.raises(OperationFailedError) as caught:
        pve(api).get("version")
    assert api.calls == [("get", "version")]
    assert caught.value.lines == (
        f"Proxmox API at {ENDPOINT}: connection refused (is pveproxy running?)",
    )


def test_a_server_that_never_answers_is_bounded() -> None:
    clock = Clock()

    class Slow(Api):
        def __call__(self, path: str) -> Any:
            clock.now += proxmox.REQUEST_TIMEOUT_S  # each attempt waits out its timeout
            return super().__call__(path)

    api = Slow({("get", "version"): [requests.ReadTimeout("read timed out")]})
    with pytest.raises(OperationFailedError, match="no answer"):
        pve(api, clock).get("version")
    assert clock.now <= CALL_BUDGET_S


def test_persistent_503_names_endpoint_and_status_within_the_budget() -> None:
    clock = Clock()
    error = ResourceException(503, "Service Unavailable", "proxy loop detected")
    api = Api({("get", "version"): [error]})
    with pytest.raises(OperationFailedError) as caught:
        pve(api, clock).get("version")
    assert clock.now <= CALL_BUDGET_S
    assert ENDPOINT in caught.value.lines[0] and "503" in caught.value.lines[0]
