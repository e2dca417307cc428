"""The Terraform edge: init/plan/apply/output/destroy in a per-environment working directory.

Layout: the module (terraform/, read-only input, or a module of the user's own taking the same
variables) is staged into build/ENV/terraform/ next to the rendered terraform.tfvars.json; the
lock file, .terraform/ and the local state (terraform.tfstate) live there too, one per env.

Plans are read as JSON (`terraform show -json`): `summarize` and `refusals` are pure and decide
what is printed and whether a plan that replaces or deletes a VM may run.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mk8s.edges.tools import Tools
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.secrets import redact

VM_TYPE = "proxmox_virtual_environment_vm"
PLAN_FILE = "mk8s.tfplan"
MODULE_MANIFEST = ".mk8s-module-files"
# Parallel clones on one PVE host: "can't lock file '/var/lock/qemu-server/lock-N.conf' - got
# timeout" (bpg#995, #1521). Re-planning and applying again converges once the lock is free.
LOCK_ERROR = re.compile(r"can't lock file|got timeout|VM is locked|is locked \(", re.I)
LOCK_RETRIES = 3
LOCK_BACKOFF_S = 5.0


# ------------------------------------------------------------------ pure: plan reading


@dataclass(frozen=True)
class Change:
    address: str
    type: str
    key: str  # for_each key: the node name
    action: str  # create | update | replace | delete | no-op | read
    replace_paths: tuple[str, ...] = ()
    reason: str = ""  # Terraform's action_reason, e.g. replace_because_tainted
    vmid: int | None = None  # a VM's vm_id before the change (None: not a VM, or new)


def _action(actions: Sequence[str]) -> str:
    acts = list(actions)
    if acts in (["delete", "create"], ["create", "delete"]):
        return "replace"
    return acts[0] if len(acts) == 1 else "+".join(acts)


def changes(plan: Mapping[str, Any]) -> list[Change]:
    out = []
    for rc in plan.get("resource_changes", []):
        if rc.get("mode") == "data":
            continue
        paths = tuple(
            ".".join(str(p) for p in path) for path in rc.get("change", {}).get("replace_paths", [])
        )
        before = rc.get("change", {}).get("before") or {}
        vmid = before.get("vm_id") if rc["type"] == VM_TYPE else None
        out.append(
            Change(
                address=str(rc["address"]),
                type=str(rc["type"]),
                key=str(rc.get("index", rc.get("name", ""))),
                action=_action(rc["change"]["actions"]),
                replace_paths=paths,
                reason=str(rc.get("action_reason", "")),
                vmid=int(vmid) if vmid is not None else None,
            )
        )
    return out


def tainted_to_keep(chs: Iterable[Change], ours: set[int]) -> list[Change]:
    """VMs Terraform would replace only because an interrupted apply tainted them, while the VM
    exists on Proxmox tagged for this environment: keep them (untaint) and converge in place
    instead of wiping a node that merely failed to finish its first start or resize."""
    return [
        c
        for c in chs
        if c.type == VM_TYPE
        and c.action == "replace"
        and c.reason == "replace_because_tainted"
        and c.vmid in ours
    ]


def pending(chs: Iterable[Change]) -> list[Change]:
    return [c for c in chs if c.action not in ("no-op", "read")]


def summarize(chs: Iterable[Change]) -> dict[str, dict[str, str]]:
    """Node name -> {"vm": action, "user-data": action}: what the plan does to each node."""
    out: dict[str, dict[str, str]] = {}
    for c in chs:
        part = "vm" if c.type == VM_TYPE else "user-data"
        out.setdefault(c.key, {})[part] = c.action
    return out


def refusals(chs: Iterable[Change], allow_replace: bool = False) -> list[str]:
    """Lines for every existing VM the plan would replace or delete (empty: safe to apply)."""
    if allow_replace:
        return []
    out = []
    for c in chs:
        if c.type != VM_TYPE or c.action not in ("replace", "delete"):
            continue
        why = f" (because of {', '.join(c.replace_paths)})" if c.replace_paths else ""
        out.append(
            f"refusing: the plan would {c.action} VM {c.key}{why}; this destroys the node's "
            "disk. Re-run with --allow-replace if that is intended."
        )
    return out


# ------------------------------------------------------------------ edge: the CLI


Output = Callable[[str], None]


@dataclass
class Terraform:
    tools: Tools
    workdir: Path
    provider_env: dict[str, str]
    parallelism: int = 2
    on_line: Output | None = None
    sleep: Callable[[float], None] = time.sleep

    @property
    def _secrets(self) -> list[str]:
        token = self.provider_env.get("PROXMOX_VE_API_TOKEN", "")
        return [token, token.partition("=")[2]]

    def _env(self) -> dict[str, str]:
        return {**self.tools.env(), **self.provider_env}

    def run(self, *args: str, stream: bool = False, check: bool = True) -> tuple[int, str]:
        """Run terraform in the workdir; output is redacted, streamed line by line if asked."""
        cmd = [str(self.tools.binary), f"-chdir={self.workdir}", *args]
        # Its own process group: a Ctrl-C at the terminal reaches only mk8s, which passes
        # terraform exactly one interrupt (a second one makes terraform quit without saving
        # its state) and waits for it to stop cleanly (issue 12).
        proc = subprocess.Popen(
            cmd,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        lines = []
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = redact(raw.rstrip("\n"), self._secrets)
                lines.append(line)
                if stream and self.on_line is not None and line.strip():
                    self.on_line(line)
            code = proc.wait()
        except KeyboardInterrupt:
            _stop(proc)
            raise
        text = "\n".join(lines)
        if check and code != 0:
            raise OperationFailedError(
                f"terraform {args[0]} failed (exit {code}):", *_error_lines(text)
            )
        return code, text

    # -- steps

    def stage(self, module: Path) -> None:
        """Copy the module's *.tf into the workdir (removing files a previous module had)."""
        if not module.is_dir() or not list(module.glob("*.tf")):
            raise UserError(f"{module}: not a Terraform module (no *.tf files)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        manifest = self.workdir / MODULE_MANIFEST
        old = set(manifest.read_text().split()) if manifest.exists() else set()
        new = sorted(p.name for p in module.glob("*.tf"))
        for name in old - set(new):
            (self.workdir / name).unlink(missing_ok=True)
        for name in new:
            src, dst = module / name, self.workdir / name
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                shutil.copyfile(src, dst)
        manifest.write_text("\n".join(new) + "\n")

    def init(self) -> None:
        code, text = self.run("init", "-input=false", "-no-color", check=False)
        if code != 0 and "checksum" in text and "lock file" in text:
            # The provider in the mirror was rebuilt (other Go version): its hash changed.
            (self.workdir / ".terraform.lock.hcl").unlink(missing_ok=True)
            code, text = self.run("init", "-input=false", "-no-color", check=False)
        if code != 0:
            raise OperationFailedError("terraform init failed:", *_error_lines(text))

    def plan(
        self, variables: Mapping[str, object], destroy: bool = False, replace: Sequence[str] = ()
    ) -> dict[str, Any]:
        args = ["plan", "-input=false", "-no-color", f"-out={PLAN_FILE}", *_var_args(variables)]
        args += [f"-parallelism={self.parallelism}"]
        args += [f"-replace={a}" for a in replace]
        if destroy:
            args.append("-destroy")
        self.run(*args)
        _, text = self.run("show", "-json", "-no-color", PLAN_FILE)
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def apply_plan(self) -> None:
        self.run(
            "apply",
            "-input=false",
            "-no-color",
            f"-parallelism={self.parallelism}",
            PLAN_FILE,
            stream=True,
        )

    def apply(
        self,
        variables: Mapping[str, object],
        check_plan: Callable[[dict[str, Any]], None],
        replace: Sequence[str] = (),
    ) -> int:
        """Apply the saved plan; on a Proxmox lock timeout re-plan (re-checked) and try again.
        Returns the number of lock retries it took."""
        for attempt in range(LOCK_RETRIES + 1):
            try:
                self.apply_plan()
                return attempt
            except OperationFailedError as exc:
                if attempt == LOCK_RETRIES or not LOCK_ERROR.search("\n".join(exc.lines)):
                    raise
                if self.on_line is not None:
                    self.on_line(f"Proxmox lock timeout; retrying ({attempt + 1}/{LOCK_RETRIES})")
                self.sleep(LOCK_BACKOFF_S * (attempt + 1))
                check_plan(self.plan(variables, replace=replace))
        raise AssertionError("unreachable")

    def untaint(self, address: str) -> None:
        self.run("untaint", "-no-color", address)

    def output(self) -> dict[str, Any]:
        _, text = self.run("output", "-json", "-no-color")
        data = json.loads(text or "{}")
        return {k: v.get("value") for k, v in data.items()}

    def state_resources(self) -> list[dict[str, Any]]:
        """Resources in the state, as `terraform show -json` lists them (empty: no state)."""
        if not (self.workdir / "terraform.tfstate").exists():
            return []
        _, text = self.run("show", "-json", "-no-color")
        data = json.loads(text or "{}")
        root = (data.get("values") or {}).get("root_module") or {}
        resources: list[dict[str, Any]] = root.get("resources", [])
        return resources


def _var_args(variables: Mapping[str, object]) -> list[str]:
    out = []
    for key, value in sorted(variables.items()):
        if value is None:
            continue  # leave the module's default
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(f"-var={key}={text}")
    return out


def _error_lines(text: str, limit: int = 12) -> list[str]:
    """The `Error:` blocks of terraform output, compacted to a few lines."""
    lines = [ln.strip(" │╷╵") for ln in text.splitlines()]
    out = []
    for i, line in enumerate(lines):
        if line.startswith("Error:"):
            detail = next(
                (ln for ln in lines[i + 1 : i + 4] if ln and not ln.startswith("with ")), ""
            )
            out.append(f"  {line}{' ' + detail if detail and detail not in line else ''}")
    if not out:
        out = [f"  {ln}" for ln in lines if ln][-5:]
    return out[:limit]


TERRAFORM_GRACE_S = 120.0


def _stop(proc: subprocess.Popen[str]) -> None:
    """Interrupt terraform once and give it time to release its lock and write its state;
    kill it only if it does not stop or the operator presses Ctrl-C again."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=TERRAFORM_GRACE_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()
