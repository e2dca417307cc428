"""kubeconform (scripts/deps.d/32-kubeconform.sh) over built overlays, offline.

Native kinds: the Kubernetes 1.33 strict JSON schemas the pinned PyPI package
kubernetes-validate ships (`kubernetes_validate/kubernetes-json-schema/v1.33.0-local-strict`,
generated from Kubernetes' OpenAPI). They point at one shared `/api/_definitions.json`, which
kubeconform cannot resolve from disk, so each kind is written as a standalone file with the
definitions it reaches. Custom kinds: the upstream CRDs (tests/support/upstream.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.support import upstream

VERSION = "v0.8.0"
KUBERNETES = "1.33.0"
DEPS_HINT = "run scripts/deps.d/32-kubeconform.sh (CI installs it)"
# Inside _definitions.json the references are local (#/$defs/...), in each kind file absolute.
REF = re.compile(r"(?:/api/_definitions\.json)?#/\$defs/([^\"]+)")
Obj = dict[str, Any]


def binary() -> Path | None:
    cache = Path(os.environ.get("MK8S_CACHE") or Path.home() / ".cache" / "mk8s")
    path = cache / "bin" / f"kubeconform-{VERSION}"
    return path if os.access(path, os.X_OK) else None


def native_source(version: str = KUBERNETES) -> Path:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return root / f"v{version}-local-strict"


def _standalone(text: str, definitions: dict[str, Any]) -> str:
    """One kind's schema with `$defs` holding every definition it reaches."""
    wanted: dict[str, Any] = {}
    todo = REF.findall(text)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted[name] = definitions[name]
        todo.extend(REF.findall(json.dumps(definitions[name])))
    schema = json.loads(REF.sub(r"#/$defs/\1", text))
    schema["$defs"] = json.loads(REF.sub(r"#/$defs/\1", json.dumps(wanted)))
    # Its $id (https://kubernetes.io/api/...) would make kubeconform resolve refs off disk.
    schema.pop("$id", None)
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    return json.dumps(schema)


def native_file_name(obj: Obj) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    suffix = f"-{group.split('.')[0]}" if group else ""
    return f"{obj['kind'].lower()}{suffix}-{version}.json"


def write_schemas(objects: list[Obj], target: Path) -> Path:
    """Schemas for the native kinds in `objects` and every upstream CRD, under `target`."""
    source = native_source()
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    native = target / "native"
    native.mkdir(parents=True, exist_ok=True)
    for name in sorted({native_file_name(o) for o in objects if not upstream.is_custom(o)}):
        path = source / name
        if path.is_file():  # a missing one is kubeconform's to report
            (native / name).write_text(_standalone(path.read_text(), definitions))
    list(upstream.kubeconform_schemas(target / "custom"))
    return target


def run(objects: list[Obj], workdir: Path) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict over `objects`; a binary that is missing fails with the install hint."""
    exe = binary()
    if exe is None:
        raise FileNotFoundError(f"kubeconform {VERSION} not found; {DEPS_HINT}")
    schemas = write_schemas(objects, workdir / "schemas")
    manifest = workdir / "overlay.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return subprocess.run(
        [
            str(exe),
            "-strict",
            "-summary",
            "-kubernetes-version",
            KUBERNETES,
            "-schema-location",
            f"{schemas}/native/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            "-schema-location",
            f"{schemas}/custom/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
