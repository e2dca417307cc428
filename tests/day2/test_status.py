"""`status` verdicts on recorded clusters: each realistic broken one is degraded with the line
that names what is wrong, next to the healthy one; no node answering is `unreachable`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from rich.console import Console

from mk8s.day2 import status
from mk8s.day2.facts import ClusterFacts
from mk8s.day2.preflight import Policy
from mk8s.day2.status import Health
from tests.day2 import recorded_cluster as rc

POLICY = Policy(rpo_minutes=rc.RPO_MINUTES)


def judged(facts: ClusterFacts) -> status.Report:
    return status.judge_status(facts, POLICY)


def test_healthy_cluster_is_healthy_and_every_node_safe() -> None:
    report = judged(rc.healthy())
    assert report.health is Health.HEALTHY, report.problems
    assert report.problems == ()
    assert all(v.safe for v in report.drain)
    assert status.outcome(report) is None


BROKEN: list[tuple[Callable[[], ClusterFacts], list[str]]] = [
    (
        rc.voter_down_listed,
        [
            "voter down: stage-k8s-3 (10.20.0.13) is listed but SSH connection refused, "
            "API not answering",
            "stage-k8s-1: not safe to drain: it is one of 2 reachable voters",
        ],
    ),
    (
        rc.voter_down,
        ["stage-k8s-3: VM is stopped on pve3", "stage-k8s-3: not Ready", "voter down: stage-k8s-3"],
    ),
    (rc.members_disagree, ["nodes disagree on the voters: stage-k8s-1 sees 10.20.0.11"]),
    (
        rc.pdb_allows_0,
        ["stage-k8s-2: not safe to drain: PDB sample-app blocks sample/web-2"],
    ),
    (
        rc.cert_expired,
        ["stage-k8s-1: server.crt (/var/snap/microk8s/current/certs/server.crt): EXPIRED"],
    ),
    (rc.vm_locked, ["stage-k8s-2: VM locked (backup)"]),
    (rc.stale_backup, ["newest backup 420 min old (RPO 15 min)"]),
    (rc.foreign_cordon, ["stage-k8s-2: cordoned by someone else"]),
]


@pytest.mark.parametrize(("broken", "says"), BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_cluster_is_degraded_naming_the_problem(
    broken: Callable[[], ClusterFacts], says: list[str]
) -> None:
    report = judged(broken())
    assert report.health is Health.DEGRADED
    for line in says:
        assert any(p.startswith(line) for p in report.problems), (line, report.problems)
    failure = status.outcome(report)
    assert failure is not None and failure.exit_code == 1
    assert failure.lines[:-1] == report.problems  # one line per problem, then the summary


def test_a_certificate_under_60_days_is_a_note_not_a_problem() -> None:
    report = judged(rc.cert_soon())  # 20 days: < 60 warns, >= 15 does not fail
    assert report.health is Health.HEALTHY
    assert any("front-proxy-client.crt" in n and "20 days left" in n for n in report.notes)


def test_an_unread_fact_degrades() -> None:
    f = dataclasses.replace(rc.healthy(), problems=("Proxmox: cannot reach https://pve:8006",))
    f = rc.with_all(f, vm=None)
    report = judged(f)
    assert report.health is Health.DEGRADED
    assert "Proxmox: cannot reach https://pve:8006" in report.problems
    assert "stage-k8s-1: VM state not read from Proxmox" in report.problems


def test_no_node_answering_is_unreachable_exit_3() -> None:
    f = rc.with_all(rc.healthy(), ssh=False, api=False, ssh_error="timed out")
    report = judged(f)
    assert report.health is Health.UNREACHABLE
    assert report.problems[0].startswith("no node answers, neither over SSH nor with its API")
    failure = status.outcome(report)
    assert failure is not None and failure.exit_code == 3


def test_one_node_answering_is_degraded_not_unreachable() -> None:
    f = rc.with_all(rc.healthy(), ssh=False, api=False, ssh_error="timed out")
    f = rc.with_node(f, rc.NAMES[0], api=True)
    assert judged(f).health is Health.DEGRADED


def test_table_and_json_show_what_was_read() -> None:
    report = judged(rc.pdb_allows_0())
    console = Console(width=300, record=True)
    console.print(status.table(report))
    text = console.export_text()
    assert "running@pve1" in text and "1.33/stable r8148 held" in text
    assert "3 voters/3 (agrees)" in text and "300 d" in text and "pre-upgrade-1-32" in text
    assert "NO: PDB sample-app blocks sample/web-2" in text
    data = json.loads(status.to_json(report))
    assert data["health"] == "degraded" and data["exit_code"] == 1
    assert data["facts"]["nodes"][1]["snap"]["revision"] == "8148"
    assert data["drain"][1] == {
        "node": "stage-k8s-2",
        "safe": False,
        "reason": data["drain"][1]["reason"],
    }
    assert "sample-app" in data["drain"][1]["reason"]


def test_zfs_snapshot_older_than_the_newest_is_shown_without_rollback() -> None:
    f = rc.healthy()
    snaps = f.node(rc.NAMES[0]).snapshots
    assert snaps is not None
    f = rc.with_node(f, rc.NAMES[0], snapshots=dataclasses.replace(snaps, snapshots=("a", "b")))
    console = Console(width=300, record=True)
    console.print(status.table(judged(f)))
    assert "a (no rollback), b" in console.export_text()
