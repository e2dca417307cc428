"""The kustomize edge: `kustomize build` of a rendered build/ENV/manifests directory.

A pinned kustomize (scripts/deps.d/30-kustomize.sh, $MK8S_CACHE/bin/kustomize) keeps the output
identical on every machine; kubectl's embedded kustomize varies with the kubectl version, so it
is only a fallback for operators and never used by the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mk8s.errors import OperationFailedError, UserError

PINNED_VERSION = "v5.5.0"


def cache_dir() -> Path:
    return Path(os.environ.get("MK8S_CACHE") or Path.home() / ".cache" / "mk8s")


def pinned_kustomize() -> Path | None:
    """$MK8S_KUSTOMIZE, else the deps step's binary in $MK8S_CACHE/bin, else None."""
    explicit = os.environ.get("MK8S_KUSTOMIZE")
    if explicit:
        return Path(explicit)
    path = cache_dir() / "bin" / f"kustomize-{PINNED_VERSION}"
    return path if path.is_file() else None


def command(allow_kubectl: bool = True) -> list[str]:
    pinned = pinned_kustomize()
    if pinned is not None:
        return [str(pinned), "build"]
    if allow_kubectl and shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise UserError(
        f"kustomize {PINNED_VERSION} not found: run scripts/deps.d/30-kustomize.sh "
        "(or set MK8S_KUSTOMIZE to a kustomize binary)"
    )


def build_text(directory: Path, allow_kubectl: bool = True) -> str:
    if not (directory / "kustomization.yaml").is_file():
        raise UserError(f"{directory}/kustomization.yaml is missing: run `invoke plan` first")
    result = subprocess.run(
        [*command(allow_kubectl), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise OperationFailedError(f"kustomize build {directory} failed: {first}")
    return result.stdout


def build(directory: Path, allow_kubectl: bool = True) -> list[dict[str, Any]]:
    """The objects of the overlay, in kustomize's output order."""
    return [d for d in yaml.safe_load_all(build_text(directory, allow_kubectl)) if d]
