"""Exit criteria: verdicts (pure functions from observed facts to a `Verdict`) and their fact
readers.

The verdict modules (cluster, node, rbac, serving, netpol, resilience, verdict; the pure halves
of tls, tls_served and observability) do no I/O, so every verdict is proven in tests on facts a
real component produced (kube-apiserver, sshd, fakepve, nginx, Prometheus); the fact readers
(kube_facts, node_facts, serving_facts, velero_facts, drills, and the edge halves of tls_served
and observability) read those facts through the edges, and loadtest runs Locust.
The conformance suite stays a thin layer: read facts, call a check, record the verdict.
"""

from __future__ import annotations

from mk8s.checks.verdict import Verdict, all_of

__all__ = ["Verdict", "all_of"]
