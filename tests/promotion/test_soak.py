"""The soak rule: prod follows stage's upgrade to its channel only when that upgrade was green and
is `promotion.soak_days` old (PRD checklist: stage first, prod two weeks later).

Pure cases on frozen clocks beside the file-based path (real signed day2.json in the evidence
directory, read by `invoke promote`'s fact gathering)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mk8s.day2 import evidence as day2
from mk8s.day2.evidence import Day2Latest, Day2Record
from mk8s.inventory.load import load_environment
from mk8s.promotion import promote
from mk8s.promotion.gate import Upgrades, decide
from tests.day2.test_day2_evidence import journal, set_channel
from tests.promotion.factory import Keys, conformance_run, make_keys, make_repo
from tests.promotion.test_gate_rules import INPUTS, NOW, env, load_of, results, run

STAGE = env("stage")
PROD = env("prod")
CHANNEL = PROD.microk8s.channel
CONF = run(STAGE, "conformance", results(STAGE, "conformance"))
LOAD = run(STAGE, "loadtest", results(STAGE, "loadtest"), load=load_of(STAGE))


def upgrade(finished: datetime, outcome: day2.Outcome = "green", **kw: str) -> Day2Latest:
    record = Day2Record(
        env="stage", run_id="20261101T200000Z", task="upgrade", channel=CHANNEL,
        outcome=outcome, started_at=finished - timedelta(hours=1), finished_at=finished,
        plan_fingerprint="sha256:x", inputs_hash="h", inputs={}, git_revision="abc",
        dirty=False, **kw,
    )  # fmt: skip
    return Day2Latest(record.run_id, record, "alice@example.com", None)


def prod(upgrades: Upgrades | None, now: datetime = NOW) -> tuple[str, ...]:
    return decide(PROD, STAGE, conformance=CONF, loadtest=LOAD, inputs_now=INPUTS, now=now,
                  upgrades=upgrades).reasons  # fmt: skip


def test_the_checklist_is_the_default_and_stage_waits_for_nobody() -> None:
    assert PROD.promotion.soak_days == 14 and STAGE.promotion.soak_days == 0


def test_a_stage_that_was_never_upgraded_is_not_soaked() -> None:
    assert prod(None) == ()


def test_13_days_after_a_green_stage_upgrade_prod_is_refused_until_day_14() -> None:
    finished = NOW - timedelta(days=13)
    (line,) = prod(Upgrades(CHANNEL, upgrade(finished)))
    allowed = finished + timedelta(days=14)
    assert line == (
        f"stage's upgrade to {CHANNEL} (run 20261101T200000Z) finished green "
        f"{finished:%Y-%m-%d %H:%M} UTC, 13.0 days ago, under prod's promotion.soak_days 14; "
        f"promotion is allowed from {allowed:%Y-%m-%d %H:%M} UTC"
    )
    assert prod(Upgrades(CHANNEL, upgrade(finished)), now=allowed - timedelta(seconds=1))
    assert prod(Upgrades(CHANNEL, upgrade(finished)), now=allowed) == ()


def test_14_days_after_a_green_stage_upgrade_prod_is_allowed() -> None:
    assert prod(Upgrades(CHANNEL, upgrade(NOW - timedelta(days=14)))) == ()


def test_a_failed_stage_upgrade_refuses_however_old() -> None:
    failed = upgrade(NOW - timedelta(days=40), "failed", failed_step="stage-k8s-2:gate")
    (line,) = prod(Upgrades(CHANNEL, failed))
    assert line.startswith(
        f"stage's last upgrade to {CHANNEL} (run 20261101T200000Z) failed at step stage-k8s-2:gate;"
    )
    assert "only after stage upgraded to it green and ran it 14 days" in line


def test_no_stage_upgrade_at_the_target_channel_refuses() -> None:
    (line,) = prod(Upgrades(CHANNEL, Day2Latest()))
    assert line.startswith(f"stage has no upgrade evidence at {CHANNEL} (run: invoke upgrade")
    assert "prod's promotion.soak_days" in line


def test_an_unsigned_stage_upgrade_refuses() -> None:
    green = upgrade(NOW - timedelta(days=30))
    unsigned = Day2Latest(green.run_id, green.record, None, "is unsigned (no day2.json.sig)")
    (line,) = prod(Upgrades(CHANNEL, unsigned))
    assert "(run 20261101T200000Z) is unsigned" in line


def test_stage_with_soak_days_0_needs_only_a_green_dev_upgrade() -> None:
    dev = env("dev")
    conf = run(dev, "conformance", results(dev, "conformance"))
    load = run(dev, "loadtest", results(dev, "loadtest"), load=load_of(dev))
    green = Upgrades(CHANNEL, upgrade(NOW))
    failed = Upgrades(CHANNEL, upgrade(NOW, "failed"))
    assert decide(STAGE, dev, conformance=conf, loadtest=load, inputs_now=INPUTS, now=NOW,
                  upgrades=green).reasons == ()  # fmt: skip
    assert decide(STAGE, dev, conformance=conf, loadtest=load, inputs_now=INPUTS, now=NOW,
                  upgrades=failed).reasons  # fmt: skip


# --- from the evidence directory ------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


def soak_lines(repo: Path, now: datetime) -> list[str]:
    decision, _ = promote.judge("prod", repo, now)
    return [r for r in decision.reasons if "soak_days" in r]


def test_promote_reads_stage_upgrades_from_signed_day2_records(tmp_path: Path, keys: Keys) -> None:
    repo = make_repo(tmp_path / "repo", keys)
    conformance_run(repo, "stage", keys.alice)
    assert (
        promote.upgrades_of(load_environment("stage", repo), CHANNEL, repo) is None
    )  # never upgraded: no soak
    set_channel(repo, CHANNEL.replace("1.33", "1.34"))  # stage moves on, prod stays
    start = datetime.fromisoformat("2026-11-02T20:00:00+00:00")
    finished = start + timedelta(hours=1)
    j = journal(repo, started=start)
    day2.record_day2(load_environment("stage", repo), j, outcome="green", root=repo,
                     now=finished, key=keys.alice)  # fmt: skip
    # prod is still at 1.33: stage's upgrade went to 1.34, none to prod's channel
    (line,) = soak_lines(repo, finished + timedelta(days=20))
    assert line.startswith(f"stage has no upgrade evidence at {CHANNEL}")
    prod_inv = repo / "inventory" / "prod.yaml"
    prod_inv.write_text(
        prod_inv.read_text().replace("channel: 1.33/stable", "channel: 1.34/stable")
    )
    (line,) = soak_lines(repo, finished + timedelta(days=13))
    assert "promotion is allowed from 2026-11-16 21:00 UTC" in line
    assert soak_lines(repo, finished + timedelta(days=14)) == []


def test_a_soaked_upgrade_does_not_refresh_expired_conformance_evidence() -> None:
    """Soaked for 20 days, but the conformance and load runs from the upgrade day are past
    prod's max_age_hours (336): both rules hold, so stage must be measured again."""
    then = NOW - timedelta(days=20)
    conf = run(STAGE, "conformance", results(STAGE, "conformance"), at=then)
    load = run(STAGE, "loadtest", results(STAGE, "loadtest"), at=then, load=load_of(STAGE))
    reasons = decide(PROD, STAGE, conformance=conf, loadtest=load, inputs_now=INPUTS, now=NOW,
                     upgrades=Upgrades(CHANNEL, upgrade(then))).reasons  # fmt: skip
    assert [r.split(" is stale: ")[0] for r in reasons] == [
        "stage's latest conformance run 20261125T110000Z",
        "stage's latest load-test run 20261125T110000Z",
    ]
    fresh = decide(PROD, STAGE, conformance=CONF, loadtest=LOAD, inputs_now=INPUTS, now=NOW,
                   upgrades=Upgrades(CHANNEL, upgrade(then))).reasons  # fmt: skip
    assert fresh == ()
