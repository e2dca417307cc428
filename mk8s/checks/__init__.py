"""Exit-criterion verdicts: pure functions from observed facts to a `Verdict`.

Each check module turns facts that an edge has read (from the Kubernetes API, a node over SSH,
the Proxmox API, a stopwatch) into a Verdict. No I/O happens here, so every verdict is proven
in tests on facts a real component produced (kube-apiserver, sshd, fakepve), and the conformance
suite stays a thin layer: read facts, call a check, record the verdict.
"""

from __future__ import annotations

from mk8s.checks.verdict import Verdict, all_of

__all__ = ["Verdict", "all_of"]
