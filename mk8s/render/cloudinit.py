"""Per-node cloud-init user-data (consumed by the Terraform module as a snippet).

Minimal until the bootstrap renderer replaces it: user, keys, hostname, guest agent.
"""

from __future__ import annotations

import yaml

from mk8s.inventory import Environment, NodeSpec
from mk8s.plan_types import Artifact


def user_data(env: Environment, node: NodeSpec) -> str:
    doc = {
        "hostname": node.name,
        "fqdn": f"{node.name}.{env.ingress.domain}",
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
        "ssh_pwauth": False,
        "disable_root": True,
        "package_update": True,
        "packages": ["qemu-guest-agent"],
        "runcmd": [["systemctl", "enable", "--now", "qemu-guest-agent"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True, width=1000)


def render(env: Environment) -> list[Artifact]:
    return [Artifact(f"cloud-init/{n.name}.yaml", user_data(env, n)) for n in env.nodes]
