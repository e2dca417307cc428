"""`invoke deploy`: apply the built overlay server-side, prune, wait.

Three moves: read facts (`read_facts`: live objects, server-side dry-run answers, mk8s-labelled
objects), decide (`mk8s.deploy.decide.plan_changes`, pure), then act (server-side apply with
field manager `mk8s`, delete what left the overlay, wait for rollouts) or print for --dry-run.
Secrets are built here from `secrets.json` references and the process environment: they are
sent to the API server and nowhere else (never printed, never written to build/).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mk8s.deploy import prerequisites
from mk8s.deploy.decide import (
    ENV_LABEL,
    MANAGED_BY,
    PRUNABLE,
    ROLLOUT_KINDS,
    DeployPlan,
    plan_changes,
    rollout_status,
)
from mk8s.edges.kube import Api, ApplyError, Obj, Ref
from mk8s.errors import OperationFailedError, UserError
from mk8s.render.manifests import SecretRef

# --- pure: secrets from references -----------------------------------------------------


def load_secret_refs(path: Path) -> list[SecretRef]:
    """The references `invoke plan` rendered (build/ENV/manifests/secrets.json)."""
    if not path.is_file():
        return []
    return [
        SecretRef(r["namespace"], r["name"], dict(r["data"])) for r in json.loads(path.read_text())
    ]


def env_vars_named(specs: Iterable[SecretRef]) -> list[str]:
    names: set[str] = set()
    for spec in specs:
        for template in spec.data.values():
            for match in Template.pattern.finditer(template):
                name = match.group("braced") or match.group("named")
                if name:
                    names.add(name)
    return sorted(names)


def build_secrets(specs: Sequence[SecretRef], environ: Mapping[str, str], env: str) -> list[Obj]:
    """Secret objects from references; every missing variable is reported at once."""
    missing = [n for n in env_vars_named(specs) if not environ.get(n)]
    if missing:
        raise UserError(
            *(
                f"environment variable {n} is not set (a secret deploy needs; see docs/deploy.md)"
                for n in missing
            )
        )
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": s.name,
                "namespace": s.namespace,
                "labels": {MANAGED_BY: "mk8s", ENV_LABEL: env},
            },
            "type": "Opaque",
            "stringData": {k: Template(v).substitute(environ) for k, v in s.data.items()},
        }
        for s in specs
    ]


NAMESPACE_MISSING = re.compile(r'namespaces? "([^"]+)" not found')


@dataclass(frozen=True)
class Facts:
    live: dict[Ref, Obj | None]
    predicted: dict[Ref, Obj]
    labelled: list[Obj]


def missing_prerequisites(api: Api, desired: Sequence[Obj], env: str) -> list[str]:
    """Every kind the server does not serve and every piece MicroK8s does not ship (CSI
    drivers, the Ceph connection), each with the command that installs it."""
    needs = prerequisites.needs(desired)
    served = {k: api.served(*k) for k in needs.kinds}
    present = {ref: api.get(ref) for ref in needs.objects}
    native = sorted({(o["apiVersion"], o["kind"]) for o in desired} - set(needs.kinds))
    lines = [
        f"the cluster does not serve {a} {k}: a built-in kind of another Kubernetes minor"
        for a, k in native
        if not api.served(a, k)
    ]
    return lines + prerequisites.missing(needs, served, present, env)


def read_facts(api: Api, desired: Sequence[Obj], env: str) -> Facts:
    """Live state, the server's dry-run answers and mk8s-labelled objects. Reports every
    kind the server does not serve and every object it would reject, all at once."""
    kinds = sorted({(o["apiVersion"], o["kind"]) for o in desired})
    absent = missing_prerequisites(api, desired, env)
    if absent:
        raise UserError(*absent)
    live = {Ref.of(o): api.get(Ref.of(o)) for o in desired}
    new_namespaces = {
        r.name for r, current in live.items() if r.kind == "Namespace" and current is None
    }
    predicted: dict[Ref, Obj] = {}
    rejected: list[str] = []
    for obj in desired:
        ref = Ref.of(obj)
        try:
            predicted[ref] = api.apply(obj, dry_run=True)
        except ApplyError as exc:
            missing = NAMESPACE_MISSING.search(exc.message)
            if exc.status == 404 and missing and missing.group(1) in new_namespaces:
                continue  # its namespace is created by this deploy: it will be a create
            rejected.append(f"{ref}: {exc.message}")
    if rejected:
        raise OperationFailedError("the API server rejected the dry run:", *rejected)
    selector = f"{MANAGED_BY}=mk8s,{ENV_LABEL}={env}"
    labelled = [
        item
        for api_version, kind in sorted(set(PRUNABLE) | set(kinds))
        if api.served(api_version, kind)
        for item in api.list_labelled(api_version, kind, selector)
    ]
    return Facts(live, predicted, labelled)


Progress = Callable[[str], None]


def execute(api: Api, plan: DeployPlan, desired: Sequence[Obj], progress: Progress) -> None:
    by_ref = {Ref.of(o): o for o in desired}
    for change in plan.changes:
        if change.action in ("create", "update"):
            progress(f"apply {change.ref}")
            try:
                api.apply(by_ref[change.ref], dry_run=False)
            except ApplyError as exc:
                raise OperationFailedError(f"apply failed: {exc}") from None
        elif change.action == "prune":
            progress(f"delete {change.ref}")
            api.delete(change.ref)


def wait_for_rollouts(
    api: Api,
    desired: Sequence[Obj],
    timeout_s: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    pending = [Ref.of(o) for o in desired if o["kind"] in ROLLOUT_KINDS]
    deadline = clock() + timeout_s
    while pending:
        still: list[Ref] = []
        for ref in pending:
            obj = api.get(ref)
            done, message = (False, "not found yet") if obj is None else rollout_status(obj)
            progress(f"{ref}: {message}")
            if not done:
                still.append(ref)
        pending = still
        if not pending:
            return
        if clock() >= deadline:
            raise OperationFailedError(
                *(f"{r}: rollout not finished after {timeout_s:.0f}s" for r in pending)
            )
        sleep(2.0)


def describe(plan: DeployPlan) -> list[str]:
    """What changed, one line per object (never a value: Secrets show only key paths)."""
    marks = {"create": "+", "update": "~", "prune": "-"}
    lines = []
    for c in plan.changes:
        if c.action == "unchanged":
            continue
        if c.action == "keep":
            lines.append(f"  ! {c.ref} left the overlay; kept (delete it by hand if intended)")
            continue
        detail = (
            f" ({', '.join(c.paths[:6])}{', ...' if len(c.paths) > 6 else ''})" if c.paths else ""
        )
        lines.append(f"  {marks[c.action]} {c.ref}{detail}")
    counts = {a: len(plan.by_action(a)) for a in ("create", "update", "prune", "unchanged")}
    lines.append(
        f"{counts['create']} created, {counts['update']} updated, {counts['prune']} pruned, "
        f"{counts['unchanged']} unchanged"
    )
    return lines


def deploy(
    api: Api,
    objects: Sequence[Obj],
    secrets: Sequence[Obj],
    env: str,
    dry_run: bool,
    timeout_s: float,
    progress: Progress,
) -> DeployPlan:
    """Dry-run everything server-side, then (unless dry_run) apply, prune and wait."""
    desired = [*objects, *secrets]
    progress("server-side dry run")
    facts = read_facts(api, desired, env)
    plan = plan_changes(desired, facts.live, facts.predicted, facts.labelled, env)
    if dry_run or plan.empty:
        return plan
    execute(api, plan, desired, progress)
    wait_for_rollouts(api, objects, timeout_s, progress)
    return plan
