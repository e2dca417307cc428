"""Bad arguments are refused before anything is sent: exit 2, one line naming the option, and the
Proxmox endpoint (a recording listener on loopback) sees no connection (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contracts.support import Listener, inventory, run_task, write_inventory

# (task and arguments after --env lab, words the error line names)
BAD: list[tuple[list[str], tuple[str, ...]]] = [
    (["deploy", "--timeout", "abc"], ("--timeout", "'abc'")),
    (["deploy", "--timeout", "-5"], ("--timeout", "-5")),
    (["deploy", "--timeout", "0"], ("--timeout", "0")),
    (["deploy", "--kubeconfig", "/nonexistent/kubeconfig"], ("--kubeconfig", "/nonexistent")),
    (["loadtest", "--duration", "ten"], ("--duration", "'ten'")),
    (["loadtest", "--duration", "-1"], ("--duration", "-1")),
    (["loadtest", "--host", "http://[::1"], ("--host", "http://[::1")),
    (["loadtest", "--host", "ftp://127.0.0.1/"], ("--host", "ftp://")),
    (["snapshot", "--name", "bad name!"], ("--name", "'bad name!'")),
    (["snapshot", "--name", ""], ("--name",)),
    (["snapshot", "--name", "x" * 41], ("--name",)),
    (["snapshot", "--name", "current"], ("--name", "current")),
    (["snapshot", "--name", "s1", "--node", "nosuch"], ("--node", "nosuch")),
    (["rollback", "--name", "bad name!", "--yes"], ("--name",)),
    (["rollback", "--name", "", "--yes"], ("--name",)),
    (["power", "--action", "explode"], ("--action", "'explode'")),
    (["power", "--action", "start", "--node", "lab-k8s-1,nosuch"], ("--node", "nosuch")),
    (["provision", "--module", "/nonexistent"], ("--module", "/nonexistent")),
    (["bootstrap", "--node", "nosuch"], ("--node", "nosuch")),
]


@pytest.fixture
def lab_root(tmp_path: Path) -> Iterator[tuple[Path, Listener]]:
    listener = Listener()
    write_inventory(
        tmp_path, inventory("lab", proxmox_endpoint=f"https://127.0.0.1:{listener.port}")
    )
    yield tmp_path, listener
    listener.close()


@pytest.mark.slow
@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_refused_before_any_remote_call(
    args: list[str], words: tuple[str, ...], lab_root: tuple[Path, Listener]
) -> None:
    root, listener = lab_root
    task, *rest = args
    outcome = run_task(task, "--env", "lab", *rest, cwd=root)
    outcome.assert_one_line(2, *words, within_s=6)
    assert listener.connections == 0, "the bad argument reached Proxmox"
