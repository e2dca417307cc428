"""The MicroK8s verbs' parsers read real outputs (shared/reference/microk8s-outputs.md) and the
shapes the sources print (stopped, worker, traceback, failed dqlite query)."""

from __future__ import annotations

import pytest

from mk8s.edges import microk8s as mk
from mk8s.edges.microk8s import JoinResult
from tests.microk8s_model.test_microk8s_outputs import reference_blocks, reference_quotes, title


def test_real_status_yaml_reads_every_role() -> None:
    running, stopped = reference_blocks()[title("status --format yaml")]
    status = mk.parse_status(running)
    assert status.running and status.ha_enabled
    assert [m.role for m in status.members] == ["voter"] * 3 + ["standby", "spare"]
    assert status.enabled_addons == {"dns"}
    down = mk.parse_status(stopped)
    assert down.state == "not-running" and "not running" in down.detail
    assert [m.host for m in down.members] == ["10.0.0.1"]


def test_stopped_worker_traceback_and_empty_are_told_apart() -> None:
    assert mk.parse_status("microk8s is not running, try microk8s start\n").state == "stopped"
    worker = (
        "This MicroK8s deployment is acting as a node in a cluster.\nPlease use the master node.\n"
    )
    assert mk.parse_status(worker).state == "worker"
    crash = mk.parse_status("", "Traceback (most recent call last):\n  File x\nKeyError: 'a'\n")
    assert (crash.state, crash.detail) == ("unreadable", "KeyError: 'a'")
    assert mk.parse_status("   \n").state == "unreadable"


def test_failed_dqlite_query_is_unknown_members_not_zero_voters() -> None:
    text = "microk8s:\n  running: True\nhigh-availability:\n  enabled: True\n  nodes:\naddons:\n"
    status = mk.parse_status(text)
    assert status.running and not status.members_known


def test_hostname_and_loopback_members() -> None:
    text = (
        "microk8s:\n  running: True\nhigh-availability:\n  enabled: True\n  nodes:\n"
        "    - address: node02:19001\n      role: voter\n"
        "    - address: 127.0.0.1:19001\n      role: spare\n"
    )
    members = mk.parse_status(text).members
    assert [(m.host, m.loopback) for m in members] == [("node02", False), ("127.0.0.1", True)]


EXPECTED = {
    "Invalid token": JoinResult.TOKEN_INVALID,
    "does not resolve": JoinResult.HOSTNAME_UNRESOLVED,
    "already known": JoinResult.ALREADY_KNOWN,
    "bind address": JoinResult.BIND_ADDRESS,
    "Connection failed. (500).": JoinResult.REFUSED,
    "not an HA": JoinResult.REFUSED,
    "same IP": JoinResult.REFUSED,
    "Could not verify": JoinResult.FINGERPRINT_CHANGED,
    "Invalid connection": JoinResult.BAD_CONNECTION,
}


def test_every_real_join_failure_is_classified() -> None:
    quotes = [q for q in reference_quotes("join — failures") if q[:1].isupper() and len(q) > 20]
    for quote in quotes:
        want = next(r for k, r in EXPECTED.items() if k in quote)
        got = mk.classify_join(6, f"Contacting cluster at 10.0.0.1\n{quote}\n")
        assert got.result is want, quote
        assert got.reason == quote


def test_join_success_and_agent_refused() -> None:
    modern, legacy = reference_blocks()[title("join — success")]
    assert mk.classify_join(0, modern).result is JoinResult.JOINED
    assert mk.classify_join(0, legacy).result is JoinResult.JOINED
    refused = mk.classify_join(1, "Contacting cluster at 10.0.0.1\n", "Traceback ...\n"
                               "ConnectionRefusedError: [Errno 111] Connection refused\n")  # fmt: skip
    assert refused.result is JoinResult.AGENT_UNREACHABLE


@pytest.mark.parametrize("fmt", ["add-node --format json"])
def test_add_node_json(fmt: str) -> None:
    token = mk.parse_add_node_json(reference_blocks()[title(fmt)][0])
    assert token.token_check == "0123456789abcdef0123456789abcdef/abcdef123456"
    assert len(token.urls) == 2
    assert token.url("10.0.0.1") == token.urls[0]
