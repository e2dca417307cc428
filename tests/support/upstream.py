"""The real CustomResourceDefinitions of the add-on versions mk8s deploys onto, read from
`<repo root>/../shared/upstream/crds/` (or `$MK8S_SHARED/upstream/crds/`): cert-manager 1.17.1,
MetalLB 0.14.9, Velero 1.16.1, Traefik 3.6.2, Argo CD 2.7.2 (see that directory's README.md).
They are data published by each project, never copied into this repository.

Two uses: JSON Schema validation of rendered custom resources (`errors`), strict like
`kubectl apply --validate=strict` (a field the schema does not name is an error, as the API
server's strict field validation reports it), and loading into the test kube-apiserver
(`crd_documents`) so deploy tests apply to a server that enforces the same schemas.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]


class UpstreamMissingError(RuntimeError):
    """shared/upstream/crds is not where the tests look for it."""


def shared_dir() -> Path:
    return Path(os.environ.get("MK8S_SHARED") or ROOT.parent / "shared")


def crd_dir() -> Path:
    path = shared_dir() / "upstream" / "crds"
    if not path.is_dir() or not any(path.glob("*.yaml")):
        raise UpstreamMissingError(
            f"upstream CRDs not found at {path}: put shared/ beside the clone or set MK8S_SHARED"
        )
    return path


@cache
def crd_documents() -> tuple[Obj, ...]:
    """Every CRD in the shared directory, as published (sorted by file name). Missing shared/
    fails the test with where it looked (never a skip)."""
    import pytest

    try:
        directory = crd_dir()
    except UpstreamMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    docs: list[Obj] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return tuple(docs)


@dataclass(frozen=True)
class Version:
    group: str
    kind: str
    version: str
    namespaced: bool
    schema: Obj  # openAPIV3Schema, as published

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@cache
def served_versions() -> dict[tuple[str, str], Version]:
    """(apiVersion, kind) -> the CRD version that serves it."""
    out: dict[tuple[str, str], Version] = {}
    for crd in crd_documents():
        spec = crd["spec"]
        for v in spec["versions"]:
            if not v.get("served", False):
                continue
            version = Version(
                spec["group"],
                spec["names"]["kind"],
                v["name"],
                spec["scope"] == "Namespaced",
                v["schema"]["openAPIV3Schema"],
            )
            out[(version.api_version, version.kind)] = version
    return out


def is_custom(obj: Obj) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith("k8s.io")


def strict(schema: Obj) -> Obj:
    """The OpenAPI v3 schema as JSON Schema that rejects unknown fields: every object that lists
    its properties is closed unless it preserves unknown fields (what the API server's strict
    field validation does), and `nullable` becomes a null type."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            walk(value)

    walk(out)
    return out


def schema_for(obj: Obj) -> Obj | None:
    found = served_versions().get((obj["apiVersion"], obj["kind"]))
    return None if found is None else strict(found.schema)


def errors(obj: Obj) -> list[str]:
    """Why the CRD of `obj`'s kind would reject it ([] when it validates)."""
    schema = schema_for(obj)
    if schema is None:
        return [f"no upstream CRD serves {obj['apiVersion']} {obj['kind']} (shared/upstream/crds)"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def kubeconform_schemas(target: Path) -> Iterator[Path]:
    """Write the strict schema of every served CRD version where kubeconform's
    `{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json` location finds it."""
    for version in served_versions().values():
        path = target / version.group / f"{version.kind.lower()}_{version.version}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(strict(version.schema)))
        yield path


def install(api_client: Any, timeout_s: float = 60.0) -> list[str]:
    """Create every upstream CRD on a test kube-apiserver (tests/support/envtest.py) and wait
    until each is Established, so the server enforces the real schemas. Returns their names."""
    return create_crds(api_client, crd_documents(), timeout_s)


def create_crds(api_client: Any, docs: Iterable[Any], timeout_s: float = 60.0) -> list[str]:
    """Create CRDs on a test kube-apiserver and wait until each is Established.

    Only the name of the metadata is kept: chart-shipped CRDs carry Helm template labels and
    published annotations, and the schema is what matters here. A CRD already there (409: another
    test module of the session installed it, with the same content) counts as created."""
    import time

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api_client)
    names = []
    for doc in docs:
        if not doc:
            continue
        body = copy.deepcopy(doc)
        body["metadata"] = {"name": doc["metadata"]["name"]}
        body.pop("status", None)
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        names.append(body["metadata"]["name"])
    deadline = time.monotonic() + timeout_s
    for name in names:
        while True:
            crd: Any = ext.read_custom_resource_definition(name)
            conditions = (crd.status.conditions or []) if crd.status else []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout_s:.0f}s")
            time.sleep(0.1)
    return names
