"""`invoke certs`: read every node's certificates over SSH and judge them (read-only).

Reads files itself rather than trusting `microk8s refresh-certs --check`, which reports only
three of them (mk8s.day2.certs). The admin kubeconfig holds a private key too, so only its
`client-certificate-data` line is fetched (`grep`), never the whole file; nothing read is
written to a log.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from mk8s.day2.certs import (
    CERT_FILES,
    CertFacts,
    CertFile,
    CertVerdict,
    Level,
    facts_of,
    judge,
    san_problems,
)
from mk8s.edges.ssh import Journal, Login, NodeSession, NodeUnreachableError, Target, targets_for
from mk8s.errors import UserError
from mk8s.inventory.model import Environment
from mk8s.render.launchconfig import sans

KNOWN_HOSTS = "known_hosts"  # pinned by `invoke bootstrap` (mk8s.edges.ssh.pin_host_keys)


def _command(file: CertFile) -> str:
    path = shlex.quote(file.path)
    if file.embedded_in_kubeconfig:
        return f"grep -m1 -- client-certificate-data: {path}"
    return f"cat -- {path}"


def _parse(node: str, file: CertFile, text: str) -> CertFacts:
    try:
        if file.embedded_in_kubeconfig:
            data = text.split("client-certificate-data:", 1)[1].strip().strip("\"'")
            pem = base64.b64decode(data, validate=True)
        else:
            pem = text.encode()
        cert = x509.load_pem_x509_certificate(pem)
    except (IndexError, ValueError) as exc:
        what = "no client certificate in it" if file.embedded_in_kubeconfig else "not a PEM"
        return CertFacts(node, file.name, file.path, problem=f"{what} ({type(exc).__name__})")
    return facts_of(node, file, cert)


def read_node(session: NodeSession, files: Sequence[CertFile] = CERT_FILES) -> list[CertFacts]:
    out = []
    for file in files:
        result = session.run(_command(file), secret_output=True)
        if file.embedded_in_kubeconfig and result.code == 1 and not result.stderr.strip():
            # grep found the file but no such line: in token-auth mode MicroK8s writes the admin
            # token into client.config instead (microk8s@v1.33 utils.sh: client.config.template
            # with AUTHTYPE token; refresh_certs.py update_configs: is_token_auth_enabled).
            out.append(
                CertFacts(
                    session.name,
                    file.name,
                    file.path,
                    not_applicable="no client certificate: it authenticates by token",
                )
            )
            continue
        if not result.ok:
            reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            out.append(
                CertFacts(
                    session.name,
                    file.name,
                    file.path,
                    problem=f"cannot read it (exit {result.code}{': ' + reason if reason else ''})",
                )
            )
            continue
        out.append(_parse(session.name, file, result.stdout))
    return out


@dataclass(frozen=True)
class CertReport:
    verdicts: tuple[CertVerdict, ...]

    @property
    def level(self) -> Level:
        levels = {v.level for v in self.verdicts}
        return (
            Level.FAIL if Level.FAIL in levels else Level.WARN if Level.WARN in levels else Level.OK
        )


def check(
    env: Environment,
    build: Path,
    now: datetime,
    *,
    targets: dict[str, Target] | None = None,
    session: Callable[[Target, Login, Path, Journal], NodeSession] = NodeSession,
) -> CertReport:
    known_hosts = build / KNOWN_HOSTS
    if not known_hosts.is_file():
        raise UserError(
            f"{known_hosts}: no pinned host keys; run `invoke bootstrap --env {env.name}` first"
        )
    login = Login(env.ssh.user, env.ssh.private_key_file)
    journal = Journal(None)  # read-only: nothing to keep, and PEMs are noise in a log
    facts: list[CertFacts] = []
    unreachable: list[CertVerdict] = []
    for name, target in (targets or targets_for(env)).items():
        node = session(target, login, known_hosts, journal)
        try:
            facts.extend(read_node(node))
        except NodeUnreachableError as exc:
            unreachable.append(CertVerdict(name, "ssh", Level.FAIL, None, f"{exc}; not checked"))
        finally:
            node.close()
    verdicts = [*unreachable, *judge(facts, now), *san_problems(facts, sans(env))]
    return CertReport(tuple(verdicts))
