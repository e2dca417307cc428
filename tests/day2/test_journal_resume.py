"""Journal and resume, proven by killing a toy plan at every step boundary."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mk8s.day2.journal import Journal, atomic_write, plan_difference, run_file
from mk8s.day2.plan import Kind, StepSpec, make_plan
from mk8s.day2.runner import execute
from mk8s.day2.wait import FakeClock
from mk8s.errors import OperationFailedError, UserError
from tests.day2.toyplan import STEPS

ROOT = Path(__file__).resolve().parents[2]


def toy(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.day2.toyplan", str(workdir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def effects(workdir: Path) -> list[str]:
    return (workdir / "effects.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    done = toy(workdir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["boundaries"], effects(workdir)


def test_an_uninterrupted_run_passes_four_boundaries_per_step(
    uninterrupted: tuple[list[str], list[str]],
) -> None:
    boundaries, end_state = uninterrupted
    assert end_state == list(STEPS)
    assert len(boundaries) == 4 * len(STEPS)
    assert boundaries[:4] == ["1:before", "1:started", "1:ran", "1:done"]


@pytest.mark.slow
def test_killed_at_every_boundary_then_rerun_gives_the_same_end_state(
    tmp_path: Path, uninterrupted: tuple[list[str], list[str]]
) -> None:
    boundaries, end_state = uninterrupted
    for label in boundaries:
        workdir = tmp_path / label.replace(":", "-")
        killed = toy(workdir, "--kill-at", label)
        assert killed.returncode == 137, (label, killed.stderr)
        # The killed run left its lock behind: a plain re-run refuses it as stale.
        refused = toy(workdir)
        assert refused.returncode == 2, (label, refused.stdout)
        assert "stale day-2 lock" in refused.stderr and "--break-lock" in refused.stderr
        resumed = toy(workdir, "--break-lock")
        assert resumed.returncode == 0, (label, resumed.stderr)
        assert effects(workdir) == end_state, label  # nothing twice, nothing missing
        journal = Journal.load(run_file(workdir))
        assert journal is not None and journal.finished is not None
        assert [s["state"] for s in journal.steps] == ["done"] * len(STEPS)
        assert not (workdir / "day2.lock").exists()
        out = json.loads(resumed.stdout)
        step = int(label.split(":")[0])
        if label.endswith(":ran"):  # effect happened, journal did not say done: adopted
            assert out["adopted"] == [step] and out["ran"][:1] != [step]
        elif label.endswith(":done"):
            assert out["ran"][:1] == ([step + 1] if step < len(STEPS) else [])
        else:
            assert out["ran"][:1] == [step]


def test_resume_rechecks_the_last_finished_step(tmp_path: Path) -> None:
    assert toy(tmp_path, "--kill-at", "3:before").returncode == 137
    # Someone undid step 2's effect since (e.g. uncordoned the node by hand).
    (tmp_path / "effects.txt").write_text("snapshot\n")
    again = toy(tmp_path, "--break-lock")
    assert again.returncode == 1
    assert "step 2 (record cordon-n1) was finished but no longer holds" in again.stderr


def test_a_changed_plan_is_refused_with_the_difference(tmp_path: Path) -> None:
    assert toy(tmp_path, "--kill-at", "2:done").returncode == 137
    changed = toy(tmp_path, "--break-lock", "--steps", "snapshot,cordon-n1,refresh-n2,wait-n1")
    assert changed.returncode == 2
    assert "had a different plan; refusing to resume it" in changed.stderr
    for line in (
        "step 3 refresh-n1: removed (record refresh-n1)",
        "step 3 refresh-n2: added (record refresh-n2)",
        "step 5 uncordon-n1: removed (record uncordon-n1)",
    ):
        assert line in changed.stderr
    differences = changed.stderr.split("Differences:", 1)[1]
    assert "wait-n1" not in differences  # unchanged steps are not listed
    assert effects(tmp_path) == ["snapshot", "cordon-n1"]  # nothing ran


class Step:
    def __init__(self, log: list[str], key: str) -> None:
        self.log, self.key = log, key

    def run(self) -> None:
        self.log.append(self.key)

    def done(self) -> bool:
        return self.key in self.log


def test_a_finished_journal_starts_a_new_run(tmp_path: Path) -> None:
    plan = make_plan("toy", "lab", [StepSpec("a", Kind.CHECK, "a")])
    log: list[str] = []
    first = execute(plan, {"a": Step(log, "a")}, run_file(tmp_path), clock=FakeClock(10))
    second = execute(plan, {"a": Step(log, "a")}, run_file(tmp_path), clock=FakeClock(20))
    assert first.ran == second.ran == (1,) and second.resumed_at is None
    journal = Journal.load(run_file(tmp_path))
    assert journal is not None and journal.started == 20


def test_every_step_needs_an_action(tmp_path: Path) -> None:
    plan = make_plan("toy", "lab", [StepSpec("a", Kind.CHECK, "a")])
    with pytest.raises(ValueError, match="no action for a"):
        execute(plan, {}, run_file(tmp_path))


def test_journal_files_are_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "day2" / "RUN.json"
    atomic_write(target, "one\n")
    atomic_write(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["RUN.json"]  # no temporary left


def test_a_corrupt_journal_is_one_line(tmp_path: Path) -> None:
    path = run_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a day-2 journal"):
        Journal.load(path)


def test_difference_names_component_changes() -> None:
    from mk8s.day2.plan import Component

    old = make_plan("upgrade", "stage", [], [Component("microk8s", "n1", "1.33", "1.34")])
    new = make_plan("upgrade", "stage", [], [Component("microk8s", "n1", "1.33", "1.35")])
    assert plan_difference(old.to_dict(), new.to_dict()) == [
        "component microk8s on n1: 1.33 -> 1.34 is now 1.33 -> 1.35"
    ]


def test_a_resumed_run_that_loses_its_recheck_is_an_operation_failure(tmp_path: Path) -> None:
    plan = make_plan("toy", "lab", [StepSpec("a", Kind.CHECK, "a"), StepSpec("b", Kind.CHECK, "b")])
    journal = Journal.new(run_file(tmp_path), plan, 1.0)
    journal.steps[0]["state"] = "done"
    journal.save()
    with pytest.raises(OperationFailedError, match="step 1 \\(a\\) was finished but no longer"):
        execute(plan, {"a": Step([], "a"), "b": Step([], "b")}, run_file(tmp_path))


@pytest.mark.slow
def test_two_concurrent_runs_one_refuses_and_one_waits(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tests.day2.toyplan", str(tmp_path)]
    first = subprocess.Popen(
        [*argv, "--pause-at", "2:started"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    waiter: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "paused").exists():
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        refused = toy(tmp_path)
        assert refused.returncode == 1
        assert f"(pid {first.pid}), task 'toy', started" in refused.stderr
        assert "another day-2 operation holds" in refused.stderr
        waiter = subprocess.Popen(
            [*argv, "--wait-lock", "60"],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)
        assert waiter.poll() is None  # still waiting for the lock
        assert effects(tmp_path) == ["snapshot"]  # and it ran nothing
        (tmp_path / "continue").touch()
        assert first.wait(30) == 0
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
    finally:
        for proc in (first, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    # The waiter started after the first finished: a new run of its own, not a resume.
    assert effects(tmp_path) == [*STEPS, *STEPS]
    assert json.loads(out)["ran"] == [1, 2, 3, 4, 5]
