"""Replaying recorded Proxmox API answers (tests/provision/data/lab-cluster-api.json, recorded
from fakepve after a lab provision) through mk8s.edges.proxmox's own readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mk8s.edges.proxmox import ClusterFacts, Pve, VmFacts, read_cluster_facts, read_vm_facts
from mk8s.inventory.model import Environment

DATA = Path(__file__).parent / "data"


class Replay:
    """Answers GETs from the recording; anything else is a test error."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def __call__(self, path: str) -> Any:
        answers = self.answers

        class Resource:
            def get(self, **params: Any) -> Any:
                query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
                return answers[f"{path}?{query}" if query else path]

        return Resource()


def recorded_answers() -> dict[str, Any]:
    answers: dict[str, Any] = json.loads((DATA / "lab-cluster-api.json").read_text())["answers"]
    return answers


def recorded_pve(answers: dict[str, Any] | None = None) -> Pve:
    return Pve(Replay(answers or recorded_answers()), "https://127.0.0.61:8006", "PVE_TOKEN_ID")


def cluster_facts(env: Environment, answers: dict[str, Any] | None = None) -> ClusterFacts:
    return read_cluster_facts(recorded_pve(answers), env)


def vm_facts(env: Environment, answers: dict[str, Any] | None = None) -> dict[str, VmFacts | None]:
    return read_vm_facts(recorded_pve(answers), env)


def recorded_plan(name: str) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads((DATA / f"plan-{name}.json").read_text())
    return plan
