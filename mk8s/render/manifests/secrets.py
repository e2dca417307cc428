"""Secrets by reference only: `secrets.json` names which Secret `invoke deploy` builds from
which environment variables; no value is ever rendered."""

from __future__ import annotations

from dataclasses import dataclass, field

from mk8s.inventory.model import Environment
from mk8s.render.manifests.common import Obj


@dataclass(frozen=True)
class SecretRef:
    """A Secret `invoke deploy` creates: each key is a template over environment variables."""

    namespace: str
    name: str
    data: dict[str, str] = field(default_factory=dict)  # key -> "${ENV_VAR}" template

    def as_json(self) -> Obj:
        return {"namespace": self.namespace, "name": self.name, "data": dict(self.data)}


def secret_refs(env: Environment) -> list[SecretRef]:
    out: list[SecretRef] = []
    if env.tls.challenge == "dns-01" and env.tls.dns01_token_env:
        out.append(
            SecretRef(
                "cert-manager",
                "cloudflare-api-token",
                {"api-token": f"${{{env.tls.dns01_token_env}}}"},
            )
        )
    if env.dns.external_dns and env.dns.api_token_env:
        out.append(
            SecretRef(
                "external-dns",
                "cloudflare-api-token",
                {"api-token": f"${{{env.dns.api_token_env}}}"},
            )
        )
    if env.backup is not None:
        t = env.backup.target
        cloud = (
            "[default]\n"
            f"aws_access_key_id=${{{t.access_key_env}}}\n"
            f"aws_secret_access_key=${{{t.secret_key_env}}}\n"
        )
        out.append(SecretRef("velero", "velero-s3-credentials", {"cloud": cloud}))
    return out
