"""One operation per environment: the lock file and the Lease, on the real kube-apiserver."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mk8s.day2.lock import (
    EnvLock,
    Holder,
    LeaseStore,
    LockHeldError,
    LostRaceError,
    State,
    judge,
)
from mk8s.day2.wait import FakeClock, WaitTimeoutError
from mk8s.edges.kube import ConflictError, KubeApi, Ref
from mk8s.errors import OperationFailedError, UserError
from tests.support.envtest import KubeApiServer, kube_apiserver

__all__ = ["kube_apiserver"]

ALIVE = {"pid_alive": lambda pid: True}


def me(**over: object) -> Holder:
    base = {
        "user": "ops",
        "host": "laptop",
        "pid": 10,
        "task": "upgrade",
        "started": 0.0,
        "renewed": 0.0,
        "ttl_s": 600,
    }
    return Holder(**{**base, **over})  # type: ignore[arg-type]


def test_judge_rules() -> None:
    mine = me()
    assert judge(None, mine, 5, lambda p: True) == (State.FREE, "free")
    assert judge(me(), mine, 5, lambda p: False)[0] is State.OURS
    assert judge(me(pid=11), mine, 5, lambda p: True)[0] is State.HELD
    gone = judge(me(pid=11), mine, 5, lambda p: False)
    assert gone == (State.STALE, "its process 11 on laptop is gone")
    elsewhere = me(host="desk", pid=11, renewed=100.0)
    assert judge(elsewhere, mine, 700, lambda p: False)[0] is State.HELD  # not our host's pid
    assert judge(elsewhere, mine, 701, lambda p: True) == (
        State.STALE,
        "not renewed for more than its TTL of 600s",
    )


def test_a_second_run_refuses_naming_holder_task_and_start(tmp_path: Path) -> None:
    first = EnvLock("stage", tmp_path, "upgrade", pid=101, clock=FakeClock(1_764_633_600), **ALIVE)
    first.acquire()
    second = EnvLock("stage", tmp_path, "drain", pid=102, clock=FakeClock(1_764_633_660), **ALIVE)
    with pytest.raises(LockHeldError) as caught:
        second.acquire()
    [line] = caught.value.lines
    assert f"another day-2 operation holds {tmp_path / 'day2.lock'}" in line
    assert "(pid 101), task 'upgrade', started 2025-12-02T00:00:00Z" in line
    first.release()
    second.acquire()
    assert json.loads((tmp_path / "day2.lock").read_text())["task"] == "drain"


def test_a_second_run_can_wait_for_the_first(tmp_path: Path) -> None:
    first = EnvLock("stage", tmp_path, "upgrade", pid=101, **ALIVE)
    first.acquire()

    class FirstFinishes(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            first.release()

    second = EnvLock("stage", tmp_path, "drain", pid=102, clock=FirstFinishes(), **ALIVE)
    second.acquire(wait_s=30, poll_s=1)
    assert json.loads((tmp_path / "day2.lock").read_text())["pid"] == 102
    third = EnvLock("stage", tmp_path, "certs", pid=103, clock=FakeClock(), **ALIVE)
    with pytest.raises(WaitTimeoutError, match="the day-2 lock of stage: deadline"):
        third.acquire(wait_s=3, poll_s=1)


def test_concurrent_runs_never_both_win(tmp_path: Path) -> None:
    for attempt in range(20):
        build = tmp_path / str(attempt)
        winners: list[int] = []
        barrier = threading.Barrier(2)

        def run(
            pid: int,
            build: Path = build,
            winners: list[int] = winners,
            barrier: threading.Barrier = barrier,
        ) -> None:
            lock = EnvLock("stage", build, "upgrade", pid=pid, **ALIVE)
            barrier.wait()
            try:
                lock.acquire()
            except LockHeldError:
                return
            winners.append(pid)

        threads = [threading.Thread(target=run, args=(p,)) for p in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1, attempt


def test_a_lock_whose_process_died_needs_break_lock(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    EnvLock("stage", tmp_path, "upgrade", pid=int(dead.stdout)).acquire()
    again = EnvLock("stage", tmp_path, "upgrade")
    with pytest.raises(UserError) as caught:
        again.acquire()
    assert f"process {int(dead.stdout)}" in caught.value.lines[0]
    assert "--break-lock" in caught.value.lines[1]
    again.acquire(break_lock=True)
    assert json.loads((tmp_path / "day2.lock").read_text())["pid"] == again.me.pid


def test_two_runs_breaking_the_same_stale_lock_never_both_win(tmp_path: Path) -> None:
    dead = 999_999_999
    alive = {"pid_alive": lambda pid: pid != dead}
    for attempt in range(20):
        build = tmp_path / str(attempt)
        EnvLock("stage", build, "upgrade", pid=dead, **alive).acquire()
        winners: list[int] = []
        barrier = threading.Barrier(2)

        def run(
            pid: int,
            build: Path = build,
            winners: list[int] = winners,
            barrier: threading.Barrier = barrier,
        ) -> None:
            lock = EnvLock("stage", build, "upgrade", pid=pid, **alive)
            barrier.wait()
            try:
                lock.acquire(break_lock=True)
            except LockHeldError:
                return
            winners.append(pid)

        threads = [threading.Thread(target=run, args=(p,)) for p in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1, attempt
        assert json.loads((build / "day2.lock").read_text())["pid"] == winners[0]


def test_release_leaves_someone_elses_lock_alone(tmp_path: Path) -> None:
    first = EnvLock("stage", tmp_path, "upgrade", pid=101, **ALIVE)
    first.acquire()
    stranger = EnvLock("stage", tmp_path, "drain", pid=102, **ALIVE)
    with pytest.raises(LockHeldError), stranger.held():
        pass
    assert (tmp_path / "day2.lock").exists()


# --- the Lease, on the real API server ---


@pytest.fixture
def api(kube_apiserver: KubeApiServer, request: pytest.FixtureRequest) -> tuple[KubeApi, str]:
    name = "lock-" + request.node.name.replace("_", "-")[-40:].strip("-").lower()
    kube_apiserver.create_namespace(name)
    return KubeApi(kube_apiserver.kubeconfig), name


@pytest.mark.slow
def test_the_lease_names_holder_task_and_start(tmp_path: Path, api: tuple[KubeApi, str]) -> None:
    kube, ns = api
    lock = EnvLock(
        "stage",
        tmp_path,
        "upgrade",
        lease_api=kube,
        lease_namespace=ns,
        clock=FakeClock(1_764_633_600.5),
    )
    with lock.held():
        lease = kube.get(Ref("coordination.k8s.io/v1", "Lease", ns, "mk8s-day2"))
        assert lease is not None
        spec = lease["spec"]
        assert spec["holderIdentity"].endswith(f"pid {lock.me.pid} task upgrade")
        assert spec["acquireTime"] == "2025-12-02T00:00:00.500000Z"
        assert spec["leaseDurationSeconds"] == 3600
    assert kube.get(Ref("coordination.k8s.io/v1", "Lease", ns, "mk8s-day2")) is None


@pytest.mark.slow
def test_a_run_from_another_machine_is_refused_by_the_lease(
    tmp_path: Path, api: tuple[KubeApi, str]
) -> None:
    kube, ns = api
    first = EnvLock("stage", tmp_path / "a", "upgrade", lease_api=kube, lease_namespace=ns)
    first.acquire()
    # Another checkout (its own build/ dir, so its lock file is free) and another host.
    other = EnvLock("stage", tmp_path / "b", "drain", lease_api=kube, lease_namespace=ns)
    other.me = me(
        host="desk", pid=7, task="drain", started=other.me.started, renewed=other.me.renewed
    )
    with (
        pytest.raises(LockHeldError, match=f"holds Lease {ns}/mk8s-day2: .*task 'upgrade'"),
        other.held(),
    ):
        pass
    assert not (tmp_path / "b" / "day2.lock").exists()  # its file lock was given back
    first.release()


@pytest.mark.slow
def test_a_stale_lease_is_broken_only_on_request_and_the_old_holder_stops(
    tmp_path: Path, api: tuple[KubeApi, str]
) -> None:
    kube, ns = api
    old = EnvLock(
        "stage",
        tmp_path / "a",
        "upgrade",
        lease_api=kube,
        lease_namespace=ns,
        ttl_s=60,
        clock=FakeClock(1000),
    )
    old.acquire()
    later = FakeClock(1000 + 61)
    new = EnvLock(
        "stage", tmp_path / "b", "upgrade", lease_api=kube, lease_namespace=ns, clock=later
    )
    new.me = me(host="desk", pid=8, started=later.t, renewed=later.t)
    with pytest.raises(UserError, match=r"stale day-2 lock Lease .*not renewed for more than"):
        new.acquire()
    new.acquire(break_lock=True)
    with pytest.raises(OperationFailedError, match="lost the day-2 lock Lease"):
        old.renew()
    new.release()


@pytest.mark.slow
def test_two_writers_of_the_same_lease_version_cannot_both_win(api: tuple[KubeApi, str]) -> None:
    kube, ns = api
    LeaseStore(kube, ns).take(me(pid=1), None)
    one, two = LeaseStore(kube, ns), LeaseStore(kube, ns)
    seen = one.read()
    assert seen == two.read()
    one.take(me(pid=2), seen)
    with pytest.raises(LostRaceError):
        two.take(me(pid=3), seen)
    with pytest.raises(LostRaceError):  # create when it exists
        LeaseStore(kube, ns).take(me(pid=4), None)
    assert LeaseStore(kube, ns).read() == me(pid=2)


@pytest.mark.slow
def test_a_lease_not_written_by_mk8s_is_not_used(api: tuple[KubeApi, str]) -> None:
    kube, ns = api
    kube.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "mk8s-day2", "namespace": ns},
            "spec": {"holderIdentity": "someone"},
        }
    )
    with pytest.raises(UserError, match="was not written by mk8s"):
        LeaseStore(kube, ns).read()


@pytest.mark.slow
def test_the_edge_reports_conflicts(api: tuple[KubeApi, str]) -> None:
    kube, ns = api
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}}
    first = kube.create(body)
    with pytest.raises(ConflictError):
        kube.create(body)
    stale = {
        **body,
        "metadata": {**body["metadata"], "resourceVersion": first["metadata"]["resourceVersion"]},
        "data": {"a": "1"},
    }
    kube.replace(stale)
    with pytest.raises(ConflictError, match="the object has been modified"):
        kube.replace(stale)
