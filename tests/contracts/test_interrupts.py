"""Ctrl-C at several points of `plan` and `provision`: exit 130, one line "interrupted; re-run
to resume", no traceback; an interrupted plan leaves the previous render whole and the re-run
reports the full change (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.contracts.support import ROOT, TOKEN_ENV, inventory, write_inventory

INTERRUPTED = "interrupted; re-run to resume"


def interrupt_at(
    root: Path, spec: dict[str, object], *args: str, child: bool = False
) -> tuple[int, str]:
    """Run the task under the harness, SIGINT it once it is paused (or its child runs)."""
    spec_file = root / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {
        **os.environ,
        **TOKEN_ENV,
        "MK8S_CHILD_PID": str(root / "child.pid"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.contracts.interrupt_harness", str(spec_file), "--", *args],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    if child:
        pid_file = root / "child.pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake terraform never started"
            time.sleep(0.1)
    else:
        for line in proc.stderr:
            seen.append(line)
            if line.strip() == "PAUSED":
                break
        else:
            proc.wait()
            raise AssertionError(f"never paused: exit {proc.returncode}\n{''.join(seen)}")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, "".join(seen) + err


def assert_interrupted(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code == 130, stderr
    lines = [
        line for line in stderr.splitlines() if line.strip() and line not in ("PAUSED", "CHILD")
    ]
    assert lines == [INTERRUPTED], stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _dev(root: Path, cores: int) -> None:
    write_inventory(
        root, inventory("dev", size={"cores": cores, "memory_gib": 16, "disk_gib": 100})
    )


def _plan(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "plan", "--env", "dev"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PLAN_POINTS = {
    "loading the inventory": "mk8s.inventory.load:parse_inventory",
    "rendering": "mk8s.render.plan:build_plan",
    "staging the files": "mk8s.render.staging:_write",
    "swapped in, not yet retired": "mk8s.render.staging:_retire",
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(PLAN_POINTS))
def test_interrupted_plan_keeps_the_previous_render(point: str, tmp_path: Path) -> None:
    _dev(tmp_path, 4)
    assert _plan(tmp_path).returncode == 0
    before = _tree(tmp_path / "build")
    _dev(tmp_path, 8)

    assert_interrupted(
        *interrupt_at(tmp_path, {"pause": PLAN_POINTS[point]}, "plan", "--env", "dev")
    )
    assert _tree(tmp_path / "build") == before, "the interrupted plan changed the previous render"

    # The re-run reports exactly what an uninterrupted plan from the same render reports.
    control = tmp_path / "control"
    control.mkdir()
    _dev(control, 4)
    assert _plan(control).returncode == 0
    _dev(control, 8)
    expected = _plan(control)
    rerun = _plan(tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "size.cores" in rerun.stdout or "cores" in rerun.stdout, rerun.stdout
    assert rerun.stdout.replace(str(tmp_path), "") == expected.stdout.replace(str(control), "")


PROVISION_POINTS: dict[str, dict[str, object]] = {
    "first Proxmox request": {"pause": "mk8s.edges.proxmox:Pve.get"},
    "terraform running": {
        "fake_terraform": True,
        "stubs": {
            "mk8s.provision.flow:run_preflight": [None, []],
            "mk8s.provision.flow:template_vars": {},
        },
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(PROVISION_POINTS))
def test_interrupted_provision(point: str, tmp_path: Path) -> None:
    write_inventory(tmp_path, inventory("lab", proxmox_endpoint="https://127.0.0.1:9"))
    spec = PROVISION_POINTS[point]
    child = bool(spec.get("fake_terraform"))
    code, stderr = interrupt_at(tmp_path, spec, "provision", "--env", "lab", child=child)
    assert_interrupted(code, stderr)
    if child:
        # terraform was given its interrupt and waited for, not orphaned or killed mid-write
        assert (tmp_path / "child.pid.saved").exists()
        pid = int((tmp_path / "child.pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_interrupt_while_a_destroy_prompt_waits(tmp_path: Path) -> None:
    """At the confirmation prompt (a terminal is faked by the stub) Ctrl-C is an interrupt."""
    write_inventory(tmp_path, inventory("lab", proxmox_endpoint="https://127.0.0.1:9"))
    spec = {
        "pause": "mk8s.cli.confirm:_ask",
        "stubs": {"mk8s.cli.confirm:_stdin_is_terminal": True},
    }
    assert_interrupted(*interrupt_at(tmp_path, spec, "destroy", "--env", "lab"))
