"""The upgrade killed at every step boundary and run again ends where an uninterrupted run
ends; two runs at once: one refuses, one waits. Runs are forked children (a kill is
`os._exit(137)` at the runner's `boundary`, no clean-up, like SIGKILL); the world's fakepve
keeps serving in this process, its state survives the child as a real Proxmox would."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mk8s.day2.journal import Journal, run_file
from mk8s.day2.wait import FakeClock
from mk8s.errors import OperationFailedError, UserError
from tests.day2.upgrade_world import Run, World, connect, initial, locked, seed_pve
from tests.support.fakepve import LabPve, serve_lab

pytestmark = pytest.mark.slow
VMIDS = (1101, 1102, 1103)


@dataclass
class Lab:
    pve: LabPve
    url: str
    cafile: str
    root: Path

    def world(self, name: str) -> tuple[World, Path]:
        state = self.root / f"{name}.json"
        if not state.exists():
            state.write_text(json.dumps(initial()))
        build = self.root / name
        build.mkdir(exist_ok=True)
        return World(state, connect(self.url, self.cafile)), build


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    host = f"127.0.0.{secrets.randbelow(100) + 20}"
    with serve_lab(host, 0, tmp_path / "pve") as served:
        seed_pve(served.pve)
        yield Lab(served.pve, served.pve.url, served.cafile, tmp_path)  # type: ignore[attr-defined]


def forked(run: Callable[[], Any]) -> int:
    """Run `run` in a forked child; its exit code (137 when killed at a boundary)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            run()
        except UserError as exc:
            code = exc.exit_code
        except BaseException:
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def end_state(lab: Lab, world: World) -> dict[str, Any]:
    state = json.loads(world.path.read_text())
    nodes = {
        n: {k: v for k, v in node.items() if k != "pods"} for n, node in state["nodes"].items()
    }
    snaps = {vmid: sorted(lab.pve.vm(vmid).snapshots) for vmid in VMIDS}
    commands = [c for _, c in state["log"]]
    return {"nodes": nodes, "snapshots": snaps, "refreshes": commands.count(
        "snap refresh microk8s --channel=1.33/stable")}  # fmt: skip


STEPS = 3 + 8 * 3 + 1  # preflight, snapshot-set, verify; 8 per node; finish
# The distinct states a kill can leave: a step journalled as started before its effect, and
# after its effect but before the journal says done (":before" of a step is ":done" of the one
# before it: nothing happens between them but the lock's renewal), and the very end.
ALL_KILLS = [f"{i}:{when}" for i in range(1, STEPS + 1) for when in ("started", "ran")] + [
    f"{STEPS}:done"
]
# Nodes 2 and 3 run the same eight actions as node 1 (steps 4-11), so by default the suite kills
# at the cluster-wide steps and at every boundary of the first node; MK8S_EXHAUSTIVE=1 kills at
# all 57 (about 3 s each: the whole set doubled this file's time in CI).
FIRST_NODE = range(1, 12)
KILLS = (
    ALL_KILLS
    if os.environ.get("MK8S_EXHAUSTIVE") == "1"
    else [k for k in ALL_KILLS if int(k.split(":")[0]) in FIRST_NODE or k.startswith(f"{STEPS}:")]
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("uninterrupted")
    with serve_lab(f"127.0.0.{secrets.randbelow(100) + 20}", 0, root / "pve") as served:
        seed_pve(served.pve)
        lab = Lab(served.pve, served.pve.url, served.cafile, root)  # type: ignore[attr-defined]
        world, build = lab.world("clean")
        seen: list[str] = []
        Run(world, build, clock=FakeClock(1e9), boundary=seen.append)()
        assert len(seen) == 4 * STEPS and set(ALL_KILLS) <= set(seen)
        return end_state(lab, world)


@pytest.mark.parametrize("label", KILLS)
def test_killed_at_a_boundary_then_rerun_gives_the_same_end_state(
    lab: Lab, uninterrupted: dict[str, Any], label: str
) -> None:
    assert uninterrupted["refreshes"] == 3
    world, build = lab.world("killed")

    def boundary(now: str) -> None:
        if now == label:
            os._exit(137)

    assert forked(Run(world, build, clock=FakeClock(1e9), boundary=boundary)) == 137
    # the killed run left its lock: a plain re-run refuses it as stale; --break-lock resumes
    assert forked(Run(world, build, clock=FakeClock(1e9))) == 2
    assert forked(Run(world, build, clock=FakeClock(1e9), break_lock=True)) == 0
    assert end_state(lab, world) == uninterrupted  # nothing twice, nothing missing
    journal = Journal.load(run_file(build))
    assert journal is not None and journal.finished is not None
    assert [s["state"] for s in journal.steps] == ["done"] * STEPS
    assert not (build / "day2.lock").exists()


def test_two_concurrent_runs_one_refuses_and_one_waits(lab: Lab) -> None:
    world, build = lab.world("both")
    paused, go = build / "paused", build / "continue"

    def pause(label: str) -> None:
        if label == "5:started":  # inside the first node's cordon
            paused.touch()
            while not go.exists():
                time.sleep(0.05)

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            Run(world, build, boundary=pause)()
            code = 0
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 60
        while not paused.exists():
            assert time.monotonic() < deadline, "the first run never reached its pause"
            time.sleep(0.05)
        with pytest.raises(OperationFailedError, match="another day-2 operation holds") as held:
            Run(world, build)()
        assert f"(pid {pid}), task 'upgrade'" in " ".join(held.value.lines)
        with locked(world.path) as s:
            log_then = list(s["log"])
        waiter = os.fork()
        if waiter == 0:
            code = 0
            try:
                Run(world, build, wait_lock_s=120)()
            except UserError as exc:
                code = exc.exit_code
                (build / "waiter.txt").write_text("\n".join(exc.lines))
            os._exit(code)
        time.sleep(1.5)
        assert os.waitpid(waiter, os.WNOHANG) == (0, 0)  # still waiting
        with locked(world.path) as s:
            assert s["log"] == log_then  # and it ran nothing meanwhile
        go.touch()
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        # the waiter got the lock after the first finished: its plan is stale, it stops
        assert os.waitstatus_to_exitcode(os.waitpid(waiter, 0)[1]) == 1
    finally:
        go.touch()
    state = json.loads(world.path.read_text())
    assert {n["channel"] for n in state["nodes"].values()} == {"1.33/stable"}
    refreshes = [c for _, c in state["log"] if c.startswith("snap refresh microk8s")]
    assert len(refreshes) == 3  # each node once: the waiter changed nothing
    assert "the cluster changed since this plan was made" in (build / "waiter.txt").read_text()
