"""Recorded API-server answers for the deploy edge, until the real kube-apiserver harness
(tests/support/envtest.py, conformance branch) lands: each test states what the server said
(live objects, dry-run answers, errors) and checks what deploy decided and did."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mk8s.edges.kube import ApplyError, Ref

ANSWERS = Path(__file__).parent / "answers"
Obj = dict[str, Any]


def answer(name: str) -> Obj:
    data: Obj = json.loads((ANSWERS / f"{name}.json").read_text())
    return data


def server_view(obj: Obj, resource_version: str = "1") -> Obj:
    """An object as the API server returns it after an apply: bookkeeping added."""
    out = copy.deepcopy(obj)
    out["metadata"] = {
        **out["metadata"],
        "uid": f"uid-{out['metadata']['name']}",
        "resourceVersion": resource_version,
        "creationTimestamp": "2026-11-25T20:00:00Z",
        "managedFields": [{"manager": "mk8s", "operation": "Apply"}],
    }
    if out["kind"] == "Deployment":
        # As recorded once the controller finished: every replica updated and available.
        n = out.get("spec", {}).get("replicas", 1)
        out["metadata"]["generation"] = 1
        out["status"] = {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
    return out


@dataclass
class RecordedApi:
    live: dict[Ref, Obj] = field(default_factory=dict)
    dry_run_answers: dict[Ref, Obj | ApplyError] = field(default_factory=dict)
    unserved: set[tuple[str, str]] = field(default_factory=set)
    rollouts: dict[Ref, list[Obj]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    applied: set[Ref] = field(default_factory=set)

    def served(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) not in self.unserved

    def get(self, ref: Ref) -> Obj | None:
        # Rollout states are what the controller reports after an apply (or when a test
        # watches a rollout directly); before that the live object is the answer.
        if self.rollouts.get(ref) and (ref in self.applied or ref not in self.live):
            states = self.rollouts[ref]
            return states.pop(0) if len(states) > 1 else states[0]
        return copy.deepcopy(self.live.get(ref))

    def apply(self, obj: Obj, dry_run: bool) -> Obj:
        ref = Ref.of(obj)
        if dry_run:
            self.calls.append(f"dry-run {ref}")
            recorded = self.dry_run_answers.get(ref)
            if isinstance(recorded, ApplyError):
                raise recorded
            return copy.deepcopy(recorded) if recorded is not None else server_view(obj)
        self.calls.append(f"apply {ref}")
        self.applied.add(ref)
        self.live[ref] = server_view(obj, "2")
        return self.live[ref]

    def list_labelled(self, api_version: str, kind: str, selector: str) -> list[Obj]:
        wanted = dict(part.split("=") for part in selector.split(","))
        return [
            copy.deepcopy(o)
            for r, o in self.live.items()
            if (r.api_version, r.kind) == (api_version, kind)
            and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    def delete(self, ref: Ref) -> None:
        self.calls.append(f"delete {ref}")
        self.live.pop(ref, None)
