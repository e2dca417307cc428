"""checkov over every environment's built manifests: zero failed checks, and every skip is an
annotation on the object itself that names the check and says why."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mk8s.edges import kustomize
from mk8s.inventory.model import Environment
from tests.manifests.conftest import Rendered, variant

SKIP = "checkov.io/skip"


def checkov() -> Path:
    path = kustomize.cache_dir() / "bin" / "checkov"
    if not path.exists():
        pytest.fail("checkov missing: run scripts/deps.d/31-checkov.sh (CI installs it)")
    return path


def test_checkov_finds_no_failed_check(
    rendered: dict[str, Rendered],
    render_variant: Callable[[Environment], Rendered],
    tmp_path: Path,
) -> None:
    builds = dict(rendered)
    builds["prod-traefik"] = render_variant(
        variant("prod", ingress__controller="traefik", microk8s__channel="1.35/stable")
    )
    for name, r in builds.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(r.objects, sort_keys=False))
    # --skip-download: no calls to Prisma Cloud; the scan runs from checkov's bundled checks.
    result = subprocess.run(
        [
            str(checkov()),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        timeout=300,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for rep in reports
        for c in rep["results"]["failed_checks"]
    ]
    assert failed == []
    summary = reports[0]["summary"]
    assert summary["passed"] > 500


def test_every_checkov_skip_is_justified_next_to_the_object(each_env: Rendered) -> None:
    skips = [
        (o["kind"], o["metadata"]["name"], value)
        for o in each_env.objects
        for key, value in o["metadata"].get("annotations", {}).items()
        if key.startswith(SKIP)
    ]
    assert skips, "the Velero/ExternalDNS/sample-app skips are expected"
    for kind, name, value in skips:
        check, _, reason = value.partition("=")
        assert check.startswith("CKV_K8S_"), (kind, name, value)
        assert len(reason.split()) >= 4, f"{kind}/{name}: skip {check} needs a reason"
