"""Fixtures: every shipped inventory (plus variants) rendered by the plan and built by the
pinned kustomize, exactly as `invoke plan` + `invoke deploy` do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mk8s.edges import kustomize
from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.render.build import build_dir, write_plan
from mk8s.render.manifests import DIR
from mk8s.render.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("dev", "stage", "prod")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    env: Environment
    directory: Path  # build/ENV/ in a scratch tree
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        for o in self.objects:
            meta = o["metadata"]
            if o["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
                return o
        raise KeyError(f"{kind} {namespace}/{name}")


def pinned_kustomize_or_fail() -> None:
    if kustomize.pinned_kustomize() is None:
        pytest.fail("pinned kustomize missing: run scripts/deps.d/30-kustomize.sh (CI installs it)")


def render(env: Environment, scratch: Path) -> Rendered:
    """Write the plan into scratch/build/ENV with the repo's manifests/ beside it."""
    pinned_kustomize_or_fail()
    scratch.mkdir(parents=True, exist_ok=True)
    link = scratch / "manifests"
    if not link.exists():
        link.symlink_to(ROOT / "manifests")
    out = build_dir(env.name, scratch)
    write_plan(build_plan(env), out)
    return Rendered(env, out, kustomize.build(out / DIR, allow_kubectl=False))


def variant(inventory: str, /, **changes: Any) -> Environment:
    """A shipped inventory with some top-level sections changed (model_copy keeps validation
    honest by re-validating through the model)."""
    base = load_environment(str(ROOT / "inventory" / f"{inventory}.yaml"))
    data = base.model_dump(mode="json")
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {**(data[section] or {}), field: value}
        else:
            data[section] = value
    return Environment.model_validate(data)


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repo")


@pytest.fixture(scope="session")
def rendered(scratch: Path) -> dict[str, Rendered]:
    return {
        name: render(load_environment(str(ROOT / "inventory" / f"{name}.yaml")), scratch)
        for name in ENVS
    }


@pytest.fixture(scope="session")
def render_variant(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Environment], Rendered]:
    def _render(env: Environment) -> Rendered:
        return render(env, tmp_path_factory.mktemp("variant"))

    return _render


@pytest.fixture(params=ENVS)
def each_env(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Iterator[Rendered]:
    yield rendered[request.param]
