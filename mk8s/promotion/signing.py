"""Signatures on evidence: `ssh-keygen -Y sign` / `-Y verify`, the SSH signatures git uses.

The operator who ran a conformance or load-test run signs its summary.json with their SSH key
(Ed25519 recommended); the signature is `summary.json.sig` beside it. The environment's
inventory names who may sign its evidence (`promotion.signers`: a name and a public key each,
the lines of an OpenSSH allowed_signers file). The namespace `mk8s-evidence` keeps a signature
made for something else (a git commit, a file) from passing as evidence.

Edge: runs OpenSSH's ssh-keygen (Debian openssh-client), nothing else.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mk8s.errors import UserError
from mk8s.inventory.model import Signer

NAMESPACE = "mk8s-evidence"
SIG_SUFFIX = ".sig"
KEY_ENV = "MK8S_EVIDENCE_KEY"  # path of the operator's private key, as for ssh -i
_FINGERPRINT = re.compile(r"\b(SHA256:[A-Za-z0-9+/=]+)")
_TIMEOUT_S = 30


@dataclass(frozen=True)
class Verification:
    """Who signed (when the signature holds) or why the evidence is refused."""

    signer: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def signature_path(path: Path) -> Path:
    return path.with_name(path.name + SIG_SUFFIX)


def _keygen(args: Sequence[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args],
            input=data,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise UserError("ssh-keygen not found: install openssh-client to sign evidence") from None


def _last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stderr or proc.stdout).decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit {proc.returncode}"


def sign(path: Path, key: Path) -> Path:
    """Sign `path` with the private key `key`; returns the signature file."""
    sig = signature_path(path)
    sig.unlink(missing_ok=True)  # ssh-keygen refuses to overwrite
    proc = _keygen(["-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(path)])
    if proc.returncode != 0 or not sig.is_file():
        raise UserError(f"{key}: cannot sign {path}: {_last_line(proc)}")
    return sig


def allowed_signers(signers: Sequence[Signer]) -> str:
    """An OpenSSH allowed_signers file restricted to the evidence namespace."""
    return "".join(f'{s.name} namespaces="{NAMESPACE}" {s.key}\n' for s in signers)


def verify(path: Path, data: bytes, signers: Sequence[Signer], field: str) -> Verification:
    """Whether `data` (the bytes read from `path`) carries a good signature by one of `signers`.

    `field` names the inventory field holding the signers, for the refusal line.
    """
    sig = signature_path(path)
    if not sig.is_file():
        return Verification(None, f"is unsigned (no {sig.name}; sign it: see {KEY_ENV})")
    # First: does the signature hold for these bytes at all, whoever made it?
    check = _keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], data)
    if check.returncode != 0:
        return Verification(
            None,
            f"has a signature that does not match its content (tampered?): {_last_line(check)}",
        )
    fingerprint = _fingerprint(check)
    if not signers:
        return Verification(None, f"is signed by {fingerprint}, but {field} names nobody")
    with tempfile.TemporaryDirectory(prefix="mk8s-signers-") as tmp:
        allowed = Path(tmp) / "allowed_signers"
        allowed.write_text(allowed_signers(signers))
        found = _keygen(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed)])
        names = found.stdout.decode().split() if found.returncode == 0 else []
        if not names:
            return Verification(
                None, f"is signed by {fingerprint}, a key that is not among {field}"
            )
        good = _keygen(
            ["-Y", "verify", "-f", str(allowed), "-I", names[0], "-n", NAMESPACE, "-s", str(sig)],
            data,
        )
    if good.returncode != 0:
        return Verification(None, f"signature by {names[0]} does not verify: {_last_line(good)}")
    return Verification(names[0], None)


def _fingerprint(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    match = _FINGERPRINT.search(text)
    return f"key {match[1]}" if match else "an unknown key"
