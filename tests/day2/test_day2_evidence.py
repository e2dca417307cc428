"""day2.json: written beside conformance evidence, signed with the same real SSH keys, and read
back only when it is whole, signed by an allowed signer and at the channel asked for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mk8s.day2 import evidence as day2
from mk8s.day2.journal import DONE, Journal, run_file
from mk8s.day2.plan import Kind, StepSpec, make_plan
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.promotion import signing
from mk8s.promotion.evidence import latest_run
from tests.promotion.factory import Keys, conformance_run, make_keys, make_repo

START = datetime(2026, 11, 2, 20, 0, tzinfo=UTC)
END = START + timedelta(minutes=50)
NODES = ("stage-k8s-1", "stage-k8s-2", "stage-k8s-3")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def repo(tmp_path: Path, keys: Keys) -> Path:
    return make_repo(tmp_path / "repo", keys)


def stage(repo: Path) -> Environment:
    return load_environment("stage", repo)


def journal(repo: Path, *, started: datetime = START, task: str = "upgrade") -> Path:
    """A RUN.json as the runner leaves it: every step done, 5 minutes each, in order."""
    specs = [StepSpec("preflight", Kind.CHECK, "preflight")]
    for n in NODES:
        specs += [StepSpec(f"{n}:refresh", Kind.COMMAND, "refresh", node=n, expected_s=300)]
    specs.append(StepSpec("finish", Kind.CHECK, "record evidence"))
    plan = make_plan(task, "stage", specs)
    path = run_file(repo / "build" / "stage")
    j = Journal.new(path, plan, started.timestamp())
    for i, _ in enumerate(plan.steps, start=1):
        j.mark(i, "started", (started + timedelta(minutes=5 * (i - 1))).timestamp())
        j.mark(i, DONE, (started + timedelta(minutes=5 * i)).timestamp())
    return path


def versions(before: str, after: str) -> list[day2.NodeVersions]:
    return [
        day2.NodeVersions(
            node=n,
            before=day2.Version(channel=before, revision="8148", version="v1.33.5"),
            after=day2.Version(channel=after, revision="8300", version="v1.34.1"),
        )
        for n in NODES
    ]


def set_channel(repo: Path, channel: str) -> None:
    path = repo / "inventory" / "stage.yaml"
    text = path.read_text()
    assert "channel: 1.33/stable" in text
    path.write_text(text.replace("channel: 1.33/stable", f"channel: {channel}", 1))


def record(repo: Path, key: Path | None, outcome: day2.Outcome = "green", **kw: object) -> Path:
    path, _ = day2.record_day2(
        stage(repo),
        kw.pop("journal", None) or journal(repo),  # type: ignore[arg-type]
        outcome=outcome,
        nodes=versions("1.33/stable", "1.34/stable"),
        snapshots=[f"mk8s-upgrade-{n}" for n in NODES],
        gates=[day2.GateResult(step=f"{n}:gate", name="ready", passed=True, node=n) for n in NODES],
        root=repo,
        now=END,
        key=key,
        **kw,  # type: ignore[arg-type]
    )
    return path


def test_a_green_upgrade_is_written_signed_and_read_back(repo: Path, keys: Keys) -> None:
    set_channel(repo, "1.34/stable")
    path = record(repo, keys.alice)
    assert path == repo / "reports" / "stage" / "20261102T200000Z" / "day2.json"
    assert signing.signature_path(path).is_file()
    body = json.loads(path.read_text())
    assert body["schema"] == day2.SCHEMA and body["task"] == "upgrade"
    assert body["channel"] == "1.34/stable" and body["outcome"] == "green"
    assert body["nodes"][0]["before"]["channel"] == "1.33/stable"
    assert body["snapshots"] == [f"mk8s-upgrade-{n}" for n in NODES]
    assert {"inventory", "mk8s", "plan"} <= body["inputs"].keys()
    refresh = [s for s in body["steps"] if s["key"].endswith(":refresh")]
    assert [s["node"] for s in refresh] == list(NODES)
    latest = day2.last_upgrade(stage(repo), "1.34/stable", repo)
    assert latest.problem is None and latest.signer == "alice@example.com"
    assert latest.record is not None and latest.record.steps[1].seconds == 300
    assert day2.green_since(latest) == END
    assert day2.why_not_green(latest, "stage", "upgrade", "1.34/stable") is None
    assert day2.soaked_at(latest, 14) == END + timedelta(days=14)


def test_the_channel_is_hashed_in(repo: Path, keys: Keys) -> None:
    before = day2.record_day2(stage(repo), journal(repo), outcome="green", root=repo, key=None)[1]
    set_channel(repo, "1.34/stable")
    after = day2.record_day2(stage(repo), journal(repo), outcome="green", root=repo, key=None)[1]
    assert before.inputs["inventory"] != after.inputs["inventory"]
    assert before.inputs["mk8s"] == after.inputs["mk8s"]
    assert (before.channel, after.channel) == ("1.33/stable", "1.34/stable")


def test_a_failed_upgrade_is_not_green_and_says_where(repo: Path, keys: Keys) -> None:
    set_channel(repo, "1.34/stable")
    record(repo, keys.alice, "failed", failed_step="stage-k8s-2:gate", message="not Ready")
    latest = day2.last_upgrade(stage(repo), "1.34/stable", repo)
    assert day2.green_since(latest) is None
    assert day2.why_not_green(latest, "stage", "upgrade", "1.34/stable") == (
        "stage's last upgrade to 1.34/stable (run 20261102T200000Z) failed at step "
        "stage-k8s-2:gate: not Ready"
    )


def test_a_later_failed_run_hides_an_earlier_green_one(repo: Path, keys: Keys) -> None:
    set_channel(repo, "1.34/stable")
    record(repo, keys.alice)
    later = journal(repo, started=START + timedelta(days=3))
    record(repo, keys.alice, "failed", journal=later, failed_step="preflight")
    latest = day2.last_upgrade(stage(repo), "1.34/stable", repo)
    assert latest.run_id == "20261105T200000Z" and day2.green_since(latest) is None


def test_unsigned_tampered_and_foreign_records_are_refused(repo: Path, keys: Keys) -> None:
    set_channel(repo, "1.34/stable")
    env = stage(repo)
    record(repo, None)
    unsigned = day2.last_upgrade(env, "1.34/stable", repo)
    assert unsigned.problem is not None and unsigned.problem.startswith("is unsigned")
    assert day2.green_since(unsigned) is None
    path = record(repo, keys.mallory)
    assert "not among stage's promotion.signers" in str(day2.last_upgrade(env, "1.34/stable", repo))
    path = record(repo, keys.alice)
    path.write_text(path.read_text().replace('"failed_step": null', '"failed_step": null '))
    tampered = day2.last_upgrade(env, "1.34/stable", repo)
    assert tampered.problem is not None and "does not match its content" in tampered.problem
    assert day2.why_not_green(tampered, "stage", "upgrade", "1.34/stable") is not None


def test_a_newer_unreadable_record_is_never_skipped(repo: Path, keys: Keys) -> None:
    set_channel(repo, "1.34/stable")
    record(repo, keys.alice)
    broken = repo / "reports" / "stage" / "20261110T000000Z"
    broken.mkdir()
    (broken / "day2.json").write_text('{"schema": "mk8s.day2.evidence/v1", "env": "stage"}')
    latest = day2.last_upgrade(stage(repo), "1.34/stable", repo)
    assert latest.run_id == "20261110T000000Z"
    assert latest.problem is not None and latest.problem.startswith("is unreadable (day2.json: ")
    assert day2.green_since(latest) is None


def test_other_channels_and_tasks_do_not_count(repo: Path, keys: Keys) -> None:
    record(repo, keys.alice)  # at 1.33/stable
    record(repo, keys.alice, journal=journal(repo, started=START + timedelta(days=1), task="x"))
    env = stage(repo)
    assert day2.last_upgrade(env, "1.34/stable", repo) == day2.Day2Latest()
    assert day2.why_not_green(day2.Day2Latest(), "stage", "upgrade", "1.34/stable") == (
        "stage has no upgrade evidence at 1.34/stable (run: invoke upgrade --env stage)"
    )
    assert day2.last_upgrade(env, "1.33/stable", repo).run_id == "20261102T200000Z"
    base = repo / "reports" / "stage"
    assert day2.any_run(base, task="upgrade") and not day2.any_run(base, task="certs-refresh")


def test_a_resumed_finish_rewrites_the_same_run(repo: Path, keys: Keys) -> None:
    j = journal(repo)
    first = record(repo, keys.alice, "failed", journal=j)
    second = record(repo, keys.alice, journal=j)
    assert first == second and len(list(first.parent.parent.iterdir())) == 1
    assert day2.green_since(day2.last_upgrade(stage(repo), "1.33/stable", repo)) == END


def test_day2_runs_do_not_hide_the_latest_conformance_run(repo: Path, keys: Keys) -> None:
    summary = conformance_run(repo, "stage", keys.alice)
    record(repo, keys.alice, journal=journal(repo, started=datetime.now(UTC) + timedelta(days=1)))
    base = repo / "reports" / "stage"
    stage_env = stage(repo)
    latest = latest_run("stage", "conformance", base, stage_env.promotion.signers, "signers")
    assert latest.run_id == summary.run_id and latest.problem is None
