"""One operation per environment at a time: a lock file in build/ENV/ and a Lease in the cluster.

Two places because each covers what the other cannot: the file stops a second run from the same
checkout before anything is read (and works when the cluster is down, e.g. during a rollback);
the `coordination.k8s.io/v1` Lease stops a second operator working from another machine. Both
name the holder (user@host, pid), the task and its start, and carry a renewal time and a TTL;
the runner renews them at every step boundary.

A lock is *stale* when its TTL passed without renewal, or when its holder ran on this host and
that process is gone (killed, crashed). A stale lock is never taken over silently: the operator
re-runs with `--break-lock` after checking nobody is working (docs/day2.md). A lock that is held
and fresh makes a second run refuse, or wait up to `--wait-lock` seconds.

The Lease is written with the resourceVersion it was read at, so two runs breaking or taking the
same lock at once cannot both win (the server answers 409 to the second: `kube.ConflictError`).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

from mk8s.day2.wait import Clock, SystemClock, stamp, wait_for
from mk8s.edges.kube import ConflictError, Obj, Ref
from mk8s.errors import OperationFailedError, UserError

LOCK_FILE = "day2.lock"
LEASE_NAME = "mk8s-day2"
LEASE_NAMESPACE = "kube-system"
DEFAULT_TTL_S = 3600
ANNOTATION = "mk8s.io/day2-lock"


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, for which task, since when (epoch seconds)."""

    user: str
    host: str
    pid: int
    task: str
    started: float
    renewed: float
    ttl_s: int

    def describe(self) -> str:
        return (
            f"{self.user}@{self.host} (pid {self.pid}), task {self.task!r}, "
            f"started {stamp(self.started)}, renewed {stamp(self.renewed)}"
        )


class State(Enum):
    FREE = "free"
    OURS = "ours"
    HELD = "held"
    STALE = "stale"


def judge(
    existing: Holder | None, me: Holder, now: float, pid_alive: Callable[[int], bool]
) -> tuple[State, str]:
    """Pure: what the lock record `existing` means for `me` at `now`."""
    if existing is None:
        return State.FREE, "free"
    if existing.host == me.host and existing.pid == me.pid:
        return State.OURS, "held by this run"
    # A reused pid looks alive: such a lock stays held until its TTL runs out (safe side).
    if existing.host == me.host and not pid_alive(existing.pid):
        return State.STALE, f"its process {existing.pid} on {existing.host} is gone"
    if now > existing.renewed + existing.ttl_s:
        return State.STALE, f"not renewed for more than its TTL of {existing.ttl_s}s"
    return State.HELD, "held"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseApi(Protocol):
    """What the lock needs of the Kubernetes edge (`mk8s.edges.kube.KubeApi` has it)."""

    def get(self, ref: Ref) -> Obj | None: ...
    def create(self, obj: Obj) -> Obj: ...
    def replace(self, obj: Obj) -> Obj: ...
    def delete(self, ref: Ref) -> None: ...


class LostRaceError(Exception):
    """Another run wrote the record between our read and our write."""


class Store(Protocol):
    where: str

    def read(self) -> Holder | None: ...
    def take(self, me: Holder, over: Holder | None) -> None: ...
    def drop(self) -> None: ...


class FileStore:
    """build/ENV/day2.lock. Reading, comparing and writing happen under an flock on a guard
    file beside it, so two runs breaking or taking the lock at once cannot both win; the kernel
    releases the flock when a run dies, so the guard itself never goes stale."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def read(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{self.path}: not a day-2 lock file ({exc}); remove it") from None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + ".guard").open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            yield

    def take(self, me: Holder, over: Holder | None) -> None:
        with self._guard():
            if self.read() != over:
                raise LostRaceError
            tmp = self.path.with_name(f".{self.path.name}.{me.pid}.tmp")
            tmp.write_text(json.dumps(asdict(me), indent=2) + "\n")
            tmp.replace(self.path)

    def drop(self) -> None:
        with self._guard():
            self.path.unlink(missing_ok=True)


def _micro(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseStore:
    """A coordination.k8s.io/v1 Lease; the Holder rides in an annotation, the standard fields
    (holderIdentity, acquireTime, renewTime, leaseDurationSeconds) say the same for kubectl."""

    def __init__(self, api: LeaseApi, namespace: str = LEASE_NAMESPACE, name: str = LEASE_NAME):
        self.api = api
        self.ref = Ref("coordination.k8s.io/v1", "Lease", namespace, name)
        self.where = f"Lease {namespace}/{name}"
        self._seen: Obj | None = None

    def read(self) -> Holder | None:
        self._seen = self.api.get(self.ref)
        if self._seen is None:
            return None
        raw = (self._seen.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
        if raw is None:
            raise UserError(f"{self.where} exists but was not written by mk8s; refusing to use it")
        return Holder(**json.loads(raw))

    def _body(self, me: Holder) -> Obj:
        return {
            "apiVersion": self.ref.api_version,
            "kind": "Lease",
            "metadata": {
                "name": self.ref.name,
                "namespace": self.ref.namespace,
                "annotations": {ANNOTATION: json.dumps(asdict(me), sort_keys=True)},
            },
            "spec": {
                "holderIdentity": f"{me.user}@{me.host} pid {me.pid} task {me.task}",
                "acquireTime": _micro(me.started),
                "renewTime": _micro(me.renewed),
                "leaseDurationSeconds": me.ttl_s,
            },
        }

    def take(self, me: Holder, over: Holder | None) -> None:
        body = self._body(me)
        try:
            if over is None:
                self.api.create(body)
            else:
                assert self._seen is not None
                body["metadata"]["resourceVersion"] = self._seen["metadata"]["resourceVersion"]
                self.api.replace(body)
        except ConflictError:
            raise LostRaceError from None

    def drop(self) -> None:
        self.api.delete(self.ref)


class LockHeldError(OperationFailedError):
    """Another run holds the lock."""


class EnvLock:
    """The day-2 lock of one environment: the file first, then (when a cluster is given) the
    Lease. `with EnvLock(...).held(): ...` takes both and releases both."""

    def __init__(
        self,
        env: str,
        build: Path,
        task: str,
        *,
        lease_api: LeaseApi | None = None,
        lease_namespace: str = LEASE_NAMESPACE,
        ttl_s: int = DEFAULT_TTL_S,
        clock: Clock | None = None,
        pid: int | None = None,
        pid_alive: Callable[[int], bool] = _pid_alive,
    ) -> None:
        self.env = env
        self.clock = clock or SystemClock()
        now = self.clock.now()
        self.me = Holder(
            getpass.getuser(), socket.gethostname(), pid or os.getpid(), task, now, now, ttl_s
        )
        self.stores: list[Store] = [FileStore(build / LOCK_FILE)]
        if lease_api is not None:
            self.stores.append(LeaseStore(lease_api, lease_namespace))
        self._pid_alive = pid_alive
        self._taken: list[Store] = []

    def acquire(self, *, break_lock: bool = False, wait_s: float = 0, poll_s: float = 5.0) -> None:
        if wait_s <= 0:
            if (blocked := self._attempt(break_lock)) is not None:
                raise LockHeldError(*blocked)
            return
        wait_for(
            f"the day-2 lock of {self.env}",
            lambda: self._attempt(break_lock),
            lambda blocked: blocked is None,
            timeout_s=wait_s,
            interval_s=poll_s,
            clock=self.clock,
            describe=lambda blocked: " ".join(blocked or ()),
        )

    def _attempt(self, break_lock: bool) -> tuple[str, ...] | None:
        """Take every store not taken yet; the lines saying why not, or None when all are ours."""
        for store in self.stores:
            if store in self._taken:
                continue
            existing = store.read()
            state, why = judge(existing, self.me, self.clock.now(), self._pid_alive)
            if state is State.HELD:
                assert existing is not None
                return (
                    f"{self.env}: another day-2 operation holds {store.where}: "
                    f"{existing.describe()}; wait for it (--wait-lock SECONDS) or re-run later",
                )
            if state is State.STALE and not break_lock:
                assert existing is not None
                raise UserError(
                    f"{self.env}: stale day-2 lock {store.where} ({why}): {existing.describe()}",
                    "check that nobody is working on this environment, then re-run with "
                    "--break-lock (the journal build/ENV/day2/RUN.json says how far it got)",
                )
            try:
                store.take(self.me, None if state is State.FREE else existing)
            except LostRaceError:
                return (f"{self.env}: another run took {store.where} at the same moment",)
            self._taken.append(store)
        return None

    def renew(self) -> None:
        """Push the renewal time forward on every store; losing the lock stops the run."""
        self.me = replace(self.me, renewed=self.clock.now())
        for store in self._taken:
            current = store.read()
            if current is None or (current.host, current.pid) != (self.me.host, self.me.pid):
                raise OperationFailedError(
                    f"{self.env}: lost the day-2 lock {store.where} "
                    f"({current.describe() if current else 'removed'}); stopping"
                )
            try:
                store.take(self.me, current)
            except LostRaceError:
                raise OperationFailedError(
                    f"{self.env}: lost the day-2 lock {store.where}; stopping"
                ) from None

    def release(self) -> None:
        for store in reversed(self._taken):
            current = store.read()
            if current is not None and (current.host, current.pid) == (self.me.host, self.me.pid):
                store.drop()
        self._taken.clear()

    @contextlib.contextmanager
    def held(self, *, break_lock: bool = False, wait_s: float = 0) -> Iterator[EnvLock]:
        try:
            self.acquire(break_lock=break_lock, wait_s=wait_s)
            yield self
        finally:
            self.release()
