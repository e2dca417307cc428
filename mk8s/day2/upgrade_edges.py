"""`RecoverEdges` (and so `UpgradeEdges`) over the real edges: facts through
mk8s.day2.cluster_facts, commands over SSH (mk8s.edges.ssh), cordon/evict through the kube
edge's drain primitives (mk8s.edges.kube, kube_drain), snapshots and power through Proxmox.

Checks of the short conformance subset, each named for what it really checks:
- DNS: the CoreDNS Deployment (kube-system/coredns, MicroK8s' dns add-on) has an available
  replica and the kube-dns Service has ready endpoints; a name lookup from a pod is what
  `invoke conformance` does, too slow for between nodes;
- ingress: an HTTP request to the ingress LoadBalancer IP gets any HTTP answer (a 404 from the
  default backend counts: the controller answered through the LB).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mk8s.day2 import cluster_facts
from mk8s.day2.certs_flow import KNOWN_HOSTS
from mk8s.day2.facts import CORDON_ANNOTATION, Blocker, ClusterFacts
from mk8s.day2.snapshot_facts import read_vm
from mk8s.day2.snapshots import VmSnapFacts
from mk8s.day2.upgrade_refusals import ApiUse
from mk8s.day2.wait import Clock, SystemClock, wait_for
from mk8s.edges import proxmox
from mk8s.edges.kube import KubeApi, Ref
from mk8s.edges.kube_drain import CordonState, PodRef, cordon_of, gone, select_pods
from mk8s.edges.ssh import Journal, Login, NodeSession, targets_for
from mk8s.errors import OperationFailedError
from mk8s.inventory.model import Environment

EVICT_TIMEOUT_S = 600
DEPRECATED_METRIC = "apiserver_requested_deprecated_apis"
LABEL = re.compile(r'(\w+)="([^"]*)"')
INGRESS_NAMESPACES = ("ingress", "traefik")  # MicroK8s' nginx and (1.35+) traefik add-ons


@dataclass
class LiveEdges:
    env: Environment
    build: Path
    pve: proxmox.Pve
    kube: KubeApi
    src: cluster_facts.Sources = field(default_factory=cluster_facts.Sources)
    clock: Clock = field(default_factory=SystemClock)

    # --- reading ---------------------------------------------------------------------------

    def facts(self) -> ClusterFacts:
        return cluster_facts.read(self.env, self.build, datetime.now(UTC), self.src)

    def api_use(self) -> tuple[ApiUse, ...] | None:
        """Deprecated API versions clients requested since the API server started, from its
        STABLE gauge `apiserver_requested_deprecated_apis` on /metrics (labels group, version,
        resource, removed_release: kubernetes/kubernetes test/instrumentation/testdata/
        documentation.md); None when /metrics cannot be read (the plan then refuses)."""
        try:
            text = self.kube.raw("/metrics")
        except Exception:  # refused, no RBAC for /metrics, unreachable: unknown, not "none"
            return None
        found = []
        for line in text.splitlines():
            if not line.startswith(DEPRECATED_METRIC + "{"):
                continue
            labels = dict(LABEL.findall(line.split("{", 1)[1].rsplit("}", 1)[0]))
            group, version = labels.get("group", ""), labels.get("version", "")
            removed = labels.get("removed_release") or "no release yet"
            found.append(ApiUse(f"{group}/{version}" if group else version,
                                labels.get("resource", ""), f"requested; removed in {removed}"))  # fmt: skip
        return tuple(found)

    def shell(self, node: str) -> NodeSession:
        target = (self.src.targets or targets_for(self.env))[node]
        login = Login(self.env.ssh.user, self.env.ssh.private_key_file)
        return NodeSession(target, login, self.build / KNOWN_HOSTS, Journal(None))

    # --- Proxmox ---------------------------------------------------------------------------

    def _vms(self) -> dict[str, proxmox.VmFacts]:
        out = {}
        for name, vm in proxmox.read_vm_facts(self.pve, self.env).items():
            if vm is None:
                raise OperationFailedError(f"{name}: its VM is not in Proxmox")
            out[name] = vm
        return out

    def vm_snapshots(self) -> dict[str, VmSnapFacts]:
        return {n: read_vm(self.pve, vm, n) for n, vm in self._vms().items()}

    def snapshot_descriptions(self, name: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for node, vm in self._vms().items():
            listed = self.pve.get(f"{proxmox.vm_path(vm)}/snapshot")
            found = next((s for s in listed if s.get("name") == name), None)
            out[node] = None if found is None else str(found.get("description") or "")
        return out

    def take_snapshot(self, node: str, name: str, description: str) -> None:
        proxmox.snapshot(self.pve, self._vms()[node], name, description=description)

    def stop_vm(self, node: str) -> None:
        proxmox.power(self.pve, self._vms()[node], "stop")

    def start_vm(self, node: str) -> None:
        proxmox.power(self.pve, self._vms()[node], "start")

    def rollback_vm(self, node: str, snapshot: str) -> None:
        proxmox.rollback(self.pve, self._vms()[node], snapshot, start=False)

    # --- Kubernetes ------------------------------------------------------------------------

    def cordon(self, node: str, owner: str) -> None:
        done = self.kube.cordon(node, CORDON_ANNOTATION, owner)
        if done.state is CordonState.FOREIGN or (
            done.state is CordonState.OURS and done.owner != owner
        ):
            raise OperationFailedError(done.describe())

    def uncordon(self, node: str, owner: str) -> bool:
        current = self.kube.node(node)
        if current is None or cordon_of(current, CORDON_ANNOTATION).owner != owner:
            return False  # not this run's cordon: never lifted
        self.kube.uncordon(node, CORDON_ANNOTATION)
        return True

    def _to_evict(self, node: str) -> tuple[PodRef, ...]:
        return select_pods(self.kube.node_pods(node)).evict

    def evictable(self, node: str) -> tuple[str, ...]:
        return tuple(f"{p.namespace}/{p.name}" for p in self._to_evict(node))

    def evict(self, node: str) -> tuple[Blocker, ...]:
        blockers, evicted = [], []
        for ref in self._to_evict(node):
            answer = self.kube.evict(ref, dry_run=False)
            if answer.refused:
                blockers.append(Blocker(ref.namespace, ref.name, answer.pdb, answer.message))
            else:
                evicted.append(ref)
        for ref in evicted:  # kubectl drain waits for each pod to be gone (waitForDelete)
            wait_for(
                f"pod {ref.namespace}/{ref.name} gone from {node}",
                lambda ref=ref: self.kube.pod(ref),  # type: ignore[misc]
                lambda now, ref=ref: gone(ref, now),  # type: ignore[misc]
                timeout_s=EVICT_TIMEOUT_S,
                clock=self.clock,
                describe=lambda now: "still there" if now else "gone",
            )
        return tuple(blockers)

    def dns(self) -> str | None:
        deploy = self.kube.get(Ref("apps/v1", "Deployment", "kube-system", "coredns"))
        available = int(((deploy or {}).get("status") or {}).get("availableReplicas") or 0)
        if not available:
            return "CoreDNS (kube-system/coredns) has no available replica"
        endpoints = self.kube.get(Ref("v1", "Endpoints", "kube-system", "kube-dns"))
        subsets = (endpoints or {}).get("subsets") or []
        if not any(s.get("addresses") for s in subsets):
            return "the kube-dns Service has no ready endpoint"
        return None

    def _ingress_ip(self) -> str | None:
        services = self.kube.list_labelled("v1", "Service", "")
        for ns in INGRESS_NAMESPACES:
            for svc in services:
                meta: dict[str, Any] = svc.get("metadata") or {}
                lb = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                ips = [str(i["ip"]) for i in lb if i.get("ip")]
                if meta.get("namespace") == ns and ips:
                    return ips[0]
        return None

    def ingress(self) -> str | None:
        ip = self._ingress_ip()
        if ip is None:
            return "no ingress Service with a LoadBalancer IP"
        try:
            urllib.request.urlopen(f"http://{ip}/", timeout=5)
        except urllib.error.HTTPError:
            return None  # an HTTP answer (404 from the default backend): it answers
        except OSError as exc:
            return f"ingress LB {ip}: {exc}"
        return None
