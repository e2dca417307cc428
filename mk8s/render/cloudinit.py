"""Per-node cloud-init user-data (a `#cloud-config`, uploaded by Terraform as a snippet).

Built from bootstrap/cloud-init/base.yaml and the node scripts in bootstrap/scripts/, plus the
per-node parts: hostname, admin user (keys only), every node in /etc/hosts (joins fail when
hostnames do not resolve: canonical/microk8s#3152, #3225), the firewall for the environment
subnet, the MicroK8s launch configuration and the MicroK8s install on the inventory channel.

No secret is rendered: no host private key, no join token. The SSH host key is generated on
the VM at first boot and read back out of band through the Proxmox guest agent (mk8s.bootstrap.flow).
Pure apart from reading the templates shipped in bootstrap/.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from mk8s.inventory.model import Environment, NodeSpec
from mk8s.render import launchconfig
from mk8s.render.artifact import Artifact

BOOTSTRAP_DIR = Path(__file__).resolve().parents[2] / "bootstrap"
SCRIPTS_ON_NODE = "/usr/local/sbin"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


@cache
def _template(rel: str) -> str:
    return (BOOTSTRAP_DIR / rel).read_text()


def fill(template: str, values: dict[str, str]) -> str:
    """Replace `${NAME}` placeholders; every placeholder must have a value (no silent blanks)."""
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in values})
    if missing:
        raise KeyError(f"template placeholders without a value: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def script_values(env: Environment) -> dict[str, str]:
    net = env.network
    return {
        "SUBNET": str(net.subnet),
        "POD_CIDR": str(net.pod_cidr),
        "SERVICE_CIDR": str(net.service_cidr),
        "CHANNEL": env.microk8s.channel,
        "ADMIN_USER": env.ssh.user,
        "MONITORING_PORTS": " ".join(map(str, monitoring_ports(env))),
    }


def monitoring_ports(env: Environment) -> tuple[int, ...]:
    """Node ports Prometheus scrapes from other nodes: node-exporter and kube-proxy metrics.

    The observability add-on binds kube-proxy's metrics to 0.0.0.0:10249
    (canonical/microk8s-core-addons@1.33:addons/observability/enable); the scrape comes from
    the other node's IP (shared/reference/microk8s-behaviour.md, node firewall).
    """
    return (9100, 10249) if env.monitoring.enabled else ()


def etc_hosts(env: Environment) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{n.ip} {n.name}.{env.ingress.domain} {n.name}" for n in env.nodes]
    return "# Managed by mk8s (cloud-init): every node of the cluster.\n" + "\n".join(lines) + "\n"


SCRIPTS = ("mk8s-node-prep.sh", "mk8s-firewall.sh", "mk8s-install-microk8s.sh")


def runcmd() -> list[str | list[str]]:
    """The boot scripts, stopping at the first that fails so that `cloud-init status` says error.

    cloud-init writes runcmd as one `#!/bin/sh` script, one line per entry and no `set -e`, and
    fails the boot only when that script exits non-zero (Debian's cloud-init 22.4,
    /usr/lib/python3/dist-packages/cloudinit/: util.py `shellify`, config/cc_runcmd.py,
    config/cc_scripts_user.py via subp.py `runparts`). Without the leading `set -e` only the
    last script's exit status counts; tests/bootstrap/test_cloud_init_boot.py boots the
    rendered user-data through the real cloud-init both ways.
    """
    return ["set -e", *([f"{SCRIPTS_ON_NODE}/{s}"] for s in SCRIPTS)]


def user_data_doc(env: Environment, node: NodeSpec) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_template("cloud-init/base.yaml"))
    values = script_values(env)
    files: list[dict[str, Any]] = list(doc.get("write_files", []))
    files.append({"path": "/etc/hosts", "permissions": "0644", "content": etc_hosts(env)})
    files.append(
        {
            "path": launchconfig.PATH_ON_NODE,
            "permissions": "0600",
            "content": launchconfig.text(env, node),
        }
    )
    for script in SCRIPTS:
        files.append(
            {
                "path": f"{SCRIPTS_ON_NODE}/{script}",
                "permissions": "0755",
                "content": fill(_template(f"scripts/{script}"), values),
            }
        )
    doc["write_files"] = files
    doc |= {
        "hostname": node.name,
        "fqdn": f"{node.name}.{env.ingress.domain}",
        "prefer_fqdn_over_hostname": False,
        # We own /etc/hosts (above): cloud-init must not rewrite it on every boot.
        "manage_etc_hosts": False,
        "users": [
            {
                "name": env.ssh.user,
                "groups": ["sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": list(env.ssh.authorized_keys),
            }
        ],
        "runcmd": runcmd(),
    }
    return doc


# libyaml's emitter when PyYAML has it: the pure-Python one made a 100-node plan take seconds.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """Multi-line strings (files, scripts) as literal blocks, so the snippet stays reviewable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def user_data(env: Environment, node: NodeSpec) -> str:
    """The user-data text for one node (also embedded in terraform.tfvars.json)."""
    doc = user_data_doc(env, node)
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def render(env: Environment) -> list[Artifact]:
    return [Artifact(f"cloud-init/{n.name}.yaml", user_data(env, n)) for n in env.nodes]
