"""Environment -> Plan: everything mk8s will build, as data. Pure; `mk8s.render.build` writes it.

Later capabilities add a renderer to RENDERERS; each returns artifacts under build/ENV/.
`plan.json` is the machine-readable summary of the whole plan, with a hash of every artifact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mk8s.inventory.model import Environment
from mk8s.render import cloudinit, launchconfig, manifests, terraform
from mk8s.render.artifact import Artifact

Renderer = Callable[[Environment], list[Artifact]]

RENDERERS: tuple[Renderer, ...] = (
    terraform.render,
    cloudinit.render,
    launchconfig.render,
    manifests.render,
)

PLAN_JSON = "plan.json"


@dataclass(frozen=True)
class Plan:
    env: Environment
    artifacts: tuple[Artifact, ...]

    def artifact(self, path: str) -> Artifact:
        for a in self.artifacts:
            if a.path == path:
                return a
        raise KeyError(path)

    @property
    def files(self) -> dict[str, str]:
        return {a.path: a.content for a in self.artifacts}


def summary(env: Environment) -> dict[str, Any]:
    """The facts an operator reviews before applying: also the body of plan.json."""
    limit = env.ingress.rate_limit
    return {
        "environment": env.name,
        "tier": env.effective_tier,
        "ha": env.ha,
        "nodes": [
            {
                "name": n.name,
                "vmid": n.vmid,
                "ip": str(n.ip),
                "pve_node": n.pve_node,
                "cores": env.size.cores,
                "memory_gib": env.size.memory_gib,
                "disk_gib": env.size.disk_gib,
            }
            for n in env.nodes
        ],
        "api_address": str(env.api_address),
        "microk8s": {"channel": env.microk8s.channel, "addons": list(env.microk8s.addons)},
        "metallb_range": str(env.network.metallb_range),
        "ingress": {
            "controller": env.ingress.controller,
            "domain": env.ingress.domain,
            "rate_limit": None if limit is None else limit.model_dump(),
        },
        "tls": {"issuer": env.tls.issuer, "challenge": env.tls.challenge},
        "storage": {"default_class": env.storage.default_class},
        "backup": None
        if env.backup is None
        else {
            "tool": env.backup.tool,
            "bucket": env.backup.target.bucket,
            "schedules": {s.name: s.ttl_days for s in env.backup.schedules},
        },
        "promotion_after": env.promotion.after,
    }


def build_plan(env: Environment) -> Plan:
    artifacts = sorted(a for render in RENDERERS for a in render(env))
    paths = [a.path for a in artifacts]
    dupes = {p for p in paths if paths.count(p) > 1}
    if dupes:
        raise ValueError(f"renderers disagree on {sorted(dupes)}")  # a programming error
    body = summary(env) | {"artifacts": {a.path: a.sha256 for a in artifacts}}
    plan_json = Artifact(PLAN_JSON, json.dumps(body, indent=2, sort_keys=True) + "\n")
    return Plan(env, (plan_json, *artifacts))


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def diff(previous: Mapping[str, str], plan: Plan) -> Changes:
    """What a render would change relative to the files already in build/ENV/."""
    new = plan.files
    return Changes(
        added=tuple(sorted(p for p in new if p not in previous)),
        changed=tuple(sorted(p for p in new if p in previous and previous[p] != new[p])),
        removed=tuple(sorted(p for p in previous if p not in new)),
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        return _flatten({v["name"]: v for v in value}, prefix)
    return {prefix: value}


def summary_changes(previous_plan_json: str, plan: Plan) -> list[str]:
    """Readable `key: old -> new` lines between the last rendered plan.json and this plan."""
    try:
        old = json.loads(previous_plan_json)
    except ValueError:
        return []
    new = json.loads(plan.artifact(PLAN_JSON).content)
    old.pop("artifacts", None)
    new.pop("artifacts", None)
    before, after = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            lines.append(f"{key}: {before[key]!r} removed")
        elif key not in before:
            lines.append(f"{key}: added {after[key]!r}")
        elif before[key] != after[key]:
            lines.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    return lines
