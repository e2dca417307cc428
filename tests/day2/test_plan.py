"""Plan first: numbered, typed, rendered as tables (kubeadm `upgrade plan` style) and JSON."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from mk8s.day2.plan import Component, Kind, StepSpec, duration, make_plan, plan_tables


def sample():  # type: ignore[no-untyped-def]
    return make_plan(
        "upgrade",
        "stage",
        [
            StepSpec(
                "snapshot-set",
                Kind.SNAPSHOT,
                "disk-only snapshot of every VM",
                snapshots=("stage-k8s-1@pre-1.34", "stage-k8s-2@pre-1.34"),
                expected_s=120,
            ),
            StepSpec("cordon-2", Kind.API, "cordon", node="stage-k8s-2", expected_s=2),
            StepSpec(
                "refresh-2",
                Kind.COMMAND,
                "refresh",
                node="stage-k8s-2",
                command="snap refresh microk8s --channel=1.34/stable",
                expected_s=300,
            ),
            StepSpec(
                "ready-2",
                Kind.WAIT,
                "gate",
                node="stage-k8s-2",
                waits_for="Node stage-k8s-2 Ready with kubelet v1.34",
                expected_s=180,
            ),
        ],
        [
            Component("microk8s", "stage-k8s-1", "1.33/stable rev 8148", "1.34/stable"),
            Component("microk8s", "stage-k8s-2", "1.34/stable", "1.34/stable"),
        ],
    )


def test_steps_are_numbered_in_order_and_timed() -> None:
    plan = sample()
    assert [s.number for s in plan.steps] == [1, 2, 3, 4]
    assert plan.expected_s == 602
    assert duration(602) == "10m02s" and duration(7260) == "2h01m" and duration(9) == "9s"


def test_json_is_the_machine_readable_plan() -> None:
    data = json.loads(sample().to_json())
    assert data["schema"] == "mk8s.day2.plan/v1"
    assert data["steps"][0] == {
        "number": 1,
        "key": "snapshot-set",
        "kind": "snapshot",
        "title": "disk-only snapshot of every VM",
        "node": None,
        "command": None,
        "waits_for": None,
        "snapshots": ["stage-k8s-1@pre-1.34", "stage-k8s-2@pre-1.34"],
        "expected_s": 120,
    }
    assert data["components"][0]["current"] == "1.33/stable rev 8148"
    assert data["fingerprint"].startswith("sha256:")


def test_tables_show_current_and_target_and_every_step() -> None:
    console = Console(width=200, record=True)
    for table in plan_tables(sample()):
        console.print(table)
    text = console.export_text()
    assert "stage: upgrade: current and target" in text
    assert "1.33/stable rev 8148" in text and "1.34/stable *" in text  # * marks a change
    assert "stage: upgrade: 4 steps, expected 10m02s" in text
    assert "snap refresh microk8s --channel=1.34/stable" in text
    assert "Node stage-k8s-2 Ready with kubelet v1.34" in text


def test_the_fingerprint_changes_with_any_step_or_target() -> None:
    base = sample()
    retargeted = make_plan(
        "upgrade",
        "stage",
        [StepSpec(**_spec(s)) for s in base.steps],
        [Component("microk8s", "stage-k8s-1", "1.33/stable rev 8148", "1.35/stable")],
    )
    assert base.fingerprint() == sample().fingerprint()
    assert retargeted.fingerprint() != base.fingerprint()


def _spec(step):  # type: ignore[no-untyped-def]
    d = dict(step.__dict__)
    d.pop("number")
    return d


def test_duplicate_keys_are_a_planning_bug() -> None:
    with pytest.raises(ValueError, match="duplicate step keys a"):
        make_plan("x", "dev", [StepSpec("a", Kind.CHECK, "1"), StepSpec("a", Kind.CHECK, "2")])


def test_dry_run_shows_the_plan_and_touches_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mk8s.day2.operation import Options, operate

    console = Console(width=200, record=True)
    ran: list[str] = []

    class Never:
        def run(self) -> None:
            ran.append("ran")

        def done(self) -> bool:
            return False

    plan = sample()
    actions = {s.key: Never() for s in plan.steps}
    assert operate(plan, actions, tmp_path, Options(dry_run=True), out=console) is None
    assert "stage: upgrade: 4 steps" in console.export_text()
    assert ran == [] and list(tmp_path.iterdir()) == []  # no lock, no journal


def test_json_dry_run_prints_only_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from mk8s.day2.operation import Options, operate

    buffer = io.StringIO()
    plan = sample()
    operate(plan, {}, tmp_path, Options(dry_run=True, json=True), out=Console(file=buffer))
    assert json.loads(buffer.getvalue()) == plan.to_dict()
