"""Terraform tooling: which binary to run, where the offline provider mirror lives, and the
environment a terraform subprocess gets.

The Terraform registry is unreachable on air-gapped sites (and here): scripts/deps.d/20-terraform.sh
builds the pinned bpg/proxmox provider with Go into a filesystem mirror under the cache, and
writes a CLI config pointing at it. `ensure_tools` runs that script when something is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mk8s.errors import OperationFailedError

# Keep in sync with terraform/versions.tf and scripts/deps.d/20-terraform.sh.
PROVIDER_VERSION = "0.80.0"
OPENTOFU_VERSION = "1.10.7"
PLATFORM = "linux_amd64"
DEPS_SCRIPT = Path("scripts/deps.d/20-terraform.sh")
REGISTRIES = ("registry.terraform.io", "registry.opentofu.org")


def cache_dir() -> Path:
    return Path(os.environ.get("MK8S_CACHE") or Path.home() / ".cache" / "mk8s")


def mirror_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "terraform" / "mirror"


def cli_config_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "terraform" / "cli.tfrc"


def provider_path(cache: Path | None = None, registry: str = REGISTRIES[0]) -> Path:
    return (
        mirror_dir(cache)
        / registry
        / "bpg"
        / "proxmox"
        / PROVIDER_VERSION
        / PLATFORM
        / f"terraform-provider-proxmox_v{PROVIDER_VERSION}"
    )


def cli_config(mirror: Path) -> str:
    """Providers from the mirror only: nothing reaches for a registry."""
    includes = ", ".join(f'"{r}/bpg/proxmox"' for r in REGISTRIES)
    return (
        "# Written by mk8s: providers come from the local mirror only.\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        f"    include = [{includes}]\n"
        "  }\n"
        "}\n"
    )


def find_binary(cache: Path | None = None) -> Path | None:
    """`MK8S_TERRAFORM`, else terraform or tofu on PATH, else the OpenTofu the deps step built."""
    explicit = os.environ.get("MK8S_TERRAFORM")
    if explicit:
        return Path(explicit)
    for name in ("terraform", "tofu"):
        found = shutil.which(name)
        if found:
            return Path(found)
    built = (cache or cache_dir()) / "bin" / "tofu"
    return built if built.exists() else None


@dataclass(frozen=True)
class Tools:
    binary: Path
    cli_config: Path
    mirror: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a terraform subprocess: our CLI config, never the caller's
        (this machine exports TF_CLI_CONFIG_FILE=/root/.terraformrc, which does not exist),
        no shared plugin cache, no prompts, no colour codes in captured output."""
        env = dict(os.environ if base is None else base)
        for key in ("TF_PLUGIN_CACHE_DIR", "TF_CLI_ARGS", "TF_LOG", "TF_DATA_DIR"):
            env.pop(key, None)
        env["TF_CLI_CONFIG_FILE"] = str(self.cli_config)
        env["TF_IN_AUTOMATION"] = "1"
        env["TF_INPUT"] = "0"
        env["CHECKPOINT_DISABLE"] = "1"
        return env


def missing(cache: Path | None = None) -> list[str]:
    """What is not in place yet, one line each (empty: ready)."""
    out = []
    if find_binary(cache) is None:
        out.append("no terraform or tofu binary")
    for registry in REGISTRIES:
        if not provider_path(cache, registry).exists():
            out.append(f"bpg/proxmox {PROVIDER_VERSION} is not in the mirror for {registry}")
    return out


def ensure_tools(root: Path = Path(), build: bool = True) -> Tools:
    """The tools, building what is missing with the deps script (idempotent, cached)."""
    cache = cache_dir()
    if missing(cache) and build:
        script = root / DEPS_SCRIPT
        result = subprocess.run(
            ["bash", str(script)], env={**os.environ, "MK8S_CACHE": str(cache)}, check=False
        )
        if result.returncode != 0:
            raise OperationFailedError(
                f"{script} failed (exit {result.returncode}); it needs Go and the Go module proxy "
                "to build the provider, see docs/provision.md#offline-tools"
            )
    problems = missing(cache)
    if problems:
        raise OperationFailedError(
            *(f"terraform tooling: {p}; run `invoke tools`" for p in problems)
        )
    binary = find_binary(cache)
    assert binary is not None  # checked by missing()
    mirror = mirror_dir(cache)
    config = cli_config_path(cache)
    wanted = cli_config(mirror)
    if not config.exists() or config.read_text() != wanted:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(wanted)
    return Tools(binary=binary, cli_config=config, mirror=mirror)
