"""Edge: read cluster facts through the Kubernetes API, and run the probes that need objects.

Everything here talks to an API server through a `kubernetes.client.ApiClient` and returns the
plain facts of `mk8s.checks.cluster`; the verdicts are computed there. Probes (a LoadBalancer
Service, probe pods, a PVC) are created in a namespace of their own or labelled
`app.kubernetes.io/managed-by=mk8s-conformance` and removed afterwards.

Probe pods report what they saw through their termination message (kubelet copies
`/dev/termination-log` into the container status), so every result is read from the API: no
exec, no logs, and the flow is testable against a bare kube-apiserver where the test plays
the kubelet.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import dns.exception
import dns.resolver
import requests
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mk8s.checks.cluster import (
    AccessExpectation,
    CertificateFact,
    HttpProbe,
    IngressFact,
    NodeFact,
    PolicyFact,
    PvcFact,
    PvcRoundTrip,
    WorkloadFact,
)

MANAGED_BY = {"app.kubernetes.io/managed-by": "mk8s-conformance"}
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PROBE_IMAGE = "busybox:1.36"
CERT_GROUP, CERT_VERSION = "cert-manager.io", "v1"

Clock = Callable[[], float]


def _items(result: Any) -> list[Any]:
    """`.items` of a list call, untyped: the client's optional-everywhere models would need
    a None check on every field that the API server always sets."""
    return list(result.items or [])


def _condition(conditions: Sequence[Any] | None, kind: str) -> Any | None:
    return next((c for c in conditions or () if c.type == kind), None)


def read_nodes(api: client.ApiClient) -> list[NodeFact]:
    facts = []
    for node in _items(client.CoreV1Api(api).list_node()):
        ready = _condition(node.status.conditions if node.status else None, "Ready")
        facts.append(
            NodeFact(
                name=node.metadata.name,
                ready=bool(ready and ready.status == "True"),
                reason=f"{ready.reason}: {ready.message}"
                if ready and ready.status != "True"
                else "",
            )
        )
    return facts


def read_workloads(api: client.ApiClient, namespaces: Sequence[str]) -> list[WorkloadFact]:
    apps = client.AppsV1Api(api)
    facts = []
    for ns in namespaces:
        # Deployments and StatefulSets report readiness the same way (replicas, readyReplicas).
        for kind, listing in (
            ("Deployment", apps.list_namespaced_deployment),
            ("StatefulSet", apps.list_namespaced_stateful_set),
        ):
            for w in _items(listing(ns)):
                facts.append(
                    WorkloadFact(
                        ns, kind, w.metadata.name,
                        w.spec.replicas if w.spec.replicas is not None else 1,
                        (w.status.ready_replicas or 0) if w.status else 0,
                    )
                )  # fmt: skip
        for ds in _items(apps.list_namespaced_daemon_set(ns)):
            status = ds.status
            facts.append(
                WorkloadFact(
                    ns, "DaemonSet", ds.metadata.name,
                    status.desired_number_scheduled if status else 0,
                    status.number_ready if status else 0,
                )
            )  # fmt: skip
    return facts


def read_storage_classes(api: client.ApiClient) -> list[tuple[str, bool]]:
    return [
        (
            str(sc.metadata.name),
            (sc.metadata.annotations or {}).get(DEFAULT_CLASS_ANNOTATION) == "true",
        )
        for sc in _items(client.StorageV1Api(api).list_storage_class())
    ]


def read_ingresses(api: client.ApiClient) -> list[IngressFact]:
    facts = []
    for ing in _items(client.NetworkingV1Api(api).list_ingress_for_all_namespaces()):
        routes = []
        for rule in ing.spec.rules or ():
            for path in rule.http.paths if rule.http else ():
                service = path.backend.service
                if service is not None:
                    routes.append((rule.host or "*", service.name))
        tls_hosts = tuple(h for t in ing.spec.tls or () for h in t.hosts or ())
        facts.append(
            IngressFact(
                ing.metadata.namespace,
                ing.metadata.name,
                ing.spec.ingress_class_name,
                tuple(routes),
                tls_hosts,
            )
        )
    return facts


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def read_certificates(api: client.ApiClient) -> list[CertificateFact]:
    """cert-manager Certificates in every namespace (none when the CRD is missing)."""
    try:
        found: Any = client.CustomObjectsApi(api).list_cluster_custom_object(
            CERT_GROUP, CERT_VERSION, "certificates"
        )
        items: list[dict[str, Any]] = found["items"]
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    facts = []
    for item in items:
        spec, status = item.get("spec", {}), item.get("status", {}) or {}
        ready = next(
            (c for c in status.get("conditions", []) or [] if c.get("type") == "Ready"), None
        )
        issuer = spec.get("issuerRef", {}) or {}
        facts.append(
            CertificateFact(
                namespace=item["metadata"]["namespace"],
                name=item["metadata"]["name"],
                dns_names=tuple(spec.get("dnsNames", []) or []),
                issuer_kind=issuer.get("kind", "Issuer"),
                issuer_name=issuer.get("name", ""),
                ready=bool(ready and ready.get("status") == "True"),
                ready_message=f"{ready.get('reason', '')}: {ready.get('message', '')}"
                if ready
                else "",
                not_after=_parse_time(status.get("notAfter")),
                secret_name=str(spec.get("secretName", "")),
            )
        )
    return facts


def certificate_for(certs: Sequence[CertificateFact], host: str) -> CertificateFact | None:
    """The Certificate whose dnsNames cover `host` (exactly or by a one-label wildcard)."""
    parent = host.split(".", 1)[-1]
    for cert in certs:
        if host in cert.dns_names or f"*.{parent}" in cert.dns_names:
            return cert
    return None


def read_policies(api: client.ApiClient, namespace: str) -> list[PolicyFact]:
    facts = []
    for pol in _items(client.NetworkingV1Api(api).list_namespaced_network_policy(namespace)):
        spec = pol.spec
        selector = spec.pod_selector
        selects_all = selector is None or not (selector.match_labels or selector.match_expressions)
        facts.append(
            PolicyFact(
                namespace=namespace,
                name=pol.metadata.name,
                selects_all=selects_all,
                policy_types=tuple(spec.policy_types or ("Ingress",)),
                has_ingress_rules=bool(spec.ingress),
                has_egress_rules=bool(spec.egress),
            )
        )
    return facts


def review_access(api: client.ApiClient, cell: AccessExpectation) -> bool:
    """Ask the API server's authorizer (SubjectAccessReview) about one RBAC matrix cell."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"mk8s-probe:{cell.role}",
            groups=[cell.group, "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                verb=cell.verb,
                resource=cell.resource,
                group=cell.api_group,
                namespace=cell.namespace,
            ),
        )
    )
    answer: Any = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(answer.status.allowed)


# --- probes that create objects ----------------------------------------------------------------


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=MANAGED_BY))
        )
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def create_lb_service(
    api: client.ApiClient, namespace: str, name: str, selector: dict[str, str], port: int
) -> None:
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=MANAGED_BY),
        spec=client.V1ServiceSpec(
            type="LoadBalancer",
            selector=selector,
            ports=[client.V1ServicePort(name="http", port=80, target_port=port)],
        ),
    )
    try:
        client.CoreV1Api(api).create_namespaced_service(namespace, service)
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete_service(api: client.ApiClient, namespace: str, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespaced_service(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def wait_lb_ips(
    api: client.ApiClient,
    namespace: str,
    name: str,
    timeout_s: float,
    clock: Clock = time.monotonic,
    poll_s: float = 1.0,
) -> list[str]:
    """The Service's `status.loadBalancer.ingress` IPs once assigned ([] on timeout)."""
    core = client.CoreV1Api(api)
    deadline = clock() + timeout_s
    while True:
        svc: Any = core.read_namespaced_service(name, namespace)
        lb = svc.status.load_balancer if svc.status else None
        ips = [i.ip for i in (lb.ingress if lb and lb.ingress else ()) if i.ip]
        if ips or clock() >= deadline:
            return ips
        time.sleep(poll_s)


def probe_pod(
    name: str,
    script: str,
    env: dict[str, str] | None = None,
    pvc: str | None = None,
    image: str = PROBE_IMAGE,
    restricted: bool | None = None,
) -> client.V1Pod:
    """A run-once pod running `sh -c script`; it reports through /dev/termination-log.

    Probes meet the Pod Security "restricted" profile (the sample app's namespace enforces it),
    except by default those with a volume: a freshly provisioned volume (hostpath, NFS) may
    be writable by root only, and they run in the suite's own namespaces.
    """
    if restricted is None:
        restricted = pvc is None
    mounts, volumes = [], []
    if pvc:
        mounts = [client.V1VolumeMount(name="data", mount_path="/data")]
        volumes = [
            client.V1Volume(
                name="data",
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name=pvc),
            )
        ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={**MANAGED_BY, "mk8s-probe": name}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            containers=[
                client.V1Container(
                    name="probe",
                    image=image,
                    command=["sh", "-c", script],
                    env=[client.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()],
                    volume_mounts=mounts,
                    termination_message_policy="File",
                    security_context=client.V1SecurityContext(
                        allow_privilege_escalation=False,
                        capabilities=client.V1Capabilities(drop=["ALL"]),
                        read_only_root_filesystem=True,
                    )
                    if restricted
                    else None,
                )
            ],
            volumes=volumes,
            security_context=client.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=65534,
                run_as_group=65534,
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
            )
            if restricted
            else None,
        ),
    )


def run_pod(
    api: client.ApiClient,
    namespace: str,
    pod: client.V1Pod,
    timeout_s: float,
    clock: Clock = time.monotonic,
    poll_s: float = 0.5,
) -> tuple[str, str]:
    """Create a run-once pod and wait for it to finish: (phase, termination message).

    Phase is `Succeeded`/`Failed`, or the phase it was stuck in at the timeout. The pod is
    deleted afterwards (a PVC stays bound to its data).
    """
    core = client.CoreV1Api(api)
    name = str(pod.metadata.name) if pod.metadata else ""
    core.create_namespaced_pod(namespace, pod)
    deadline = clock() + timeout_s
    phase, message = "Pending", ""
    try:
        while True:
            live: Any = core.read_namespaced_pod(name, namespace)
            phase = (live.status.phase if live.status else None) or "Pending"
            if phase in ("Succeeded", "Failed"):
                for cs in live.status.container_statuses or ():
                    if cs.state and cs.state.terminated:
                        message = (cs.state.terminated.message or "").strip()
                return phase, message
            if clock() >= deadline:
                return phase, message
            time.sleep(poll_s)
    finally:
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise


def pod_ready_seconds(pod: Any) -> float | None:
    """Creation to Ready, from the API's own timestamps (what the kubelet reported)."""
    ready = _condition(pod.status.conditions if pod.status else None, "Ready")
    if ready is None or ready.status != "True" or ready.last_transition_time is None:
        return None
    return float((ready.last_transition_time - pod.metadata.creation_timestamp).total_seconds())


def measure_pod_start(
    api: client.ApiClient,
    namespace: str,
    name: str,
    timeout_s: float,
    image: str = PROBE_IMAGE,
    clock: Clock = time.monotonic,
    poll_s: float = 0.5,
) -> tuple[float | None, str]:
    """Start a pod that sleeps and measure its cold start; (seconds or None, detail)."""
    core = client.CoreV1Api(api)
    pod = probe_pod(name, "sleep 3600", image=image)
    core.create_namespaced_pod(namespace, pod)
    deadline = clock() + timeout_s
    try:
        while True:
            live: Any = core.read_namespaced_pod(name, namespace)
            seconds = pod_ready_seconds(live)
            if seconds is not None:
                return seconds, f"image {image}"
            if clock() >= deadline:
                phase = live.status.phase if live.status else "unknown"
                return None, f"still {phase} after {timeout_s:g}s"
            time.sleep(poll_s)
    finally:
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise


def read_pvc(api: client.ApiClient, namespace: str, name: str) -> PvcFact:
    pvc: Any = client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, namespace)
    return PvcFact(name, (pvc.status.phase if pvc.status else None) or "Pending",
                   pvc.spec.storage_class_name)  # fmt: skip


def create_pvc(api: client.ApiClient, namespace: str, name: str, size: str = "64Mi") -> None:
    """A PVC with no class named: the default StorageClass must pick it up."""
    pvc = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name, labels=MANAGED_BY),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": size}),
        ),
    )
    client.CoreV1Api(api).create_namespaced_persistent_volume_claim(namespace, pvc)


WRITE_SCRIPT = 'printf %s "$DATA" > /data/probe && sync && sha256sum /data/probe | cut -d" " -f1 > /dev/termination-log'
READ_SCRIPT = 'sha256sum /data/probe | cut -d" " -f1 > /dev/termination-log'


def pvc_round_trip(
    api: client.ApiClient,
    namespace: str,
    pvc: str,
    data: str,
    timeout_s: float,
    writer_node: str | None = None,
    reader_node: str | None = None,
) -> PvcRoundTrip:
    """Write `data` on the PVC from one pod, read it back from a second, each pinned to the
    node given (`spec.nodeName`; None: wherever the scheduler puts it).

    `written` is the sha256 the writer saw on disk; it must equal sha256(data) too, or the
    write itself went wrong.
    """
    expected = hashlib.sha256(data.encode()).hexdigest()
    writer = probe_pod(f"{pvc}-writer", WRITE_SCRIPT, {"DATA": data}, pvc)
    reader = probe_pod(f"{pvc}-reader", READ_SCRIPT, pvc=pvc)
    assert writer.spec is not None and reader.spec is not None
    writer.spec.node_name, reader.spec.node_name = writer_node, reader_node
    phase, written = run_pod(api, namespace, writer, timeout_s)
    if phase != "Succeeded" or written != expected:
        return PvcRoundTrip(None, None, writer_node, reader_node)
    phase, read_back = run_pod(api, namespace, reader, timeout_s)
    return PvcRoundTrip(
        written, read_back if phase == "Succeeded" else None, writer_node, reader_node
    )


def daemonset_selector(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    ds: Any = client.AppsV1Api(api).read_namespaced_daemon_set(name, namespace)
    return dict(ds.spec.selector.match_labels or {})


def http_get(
    url: str, host: str | None = None, timeout_s: float = 5.0, verify: bool = True
) -> HttpProbe:
    """One HTTP GET (optionally with a Host header, as a browser for `host` would send)."""
    headers = {"Host": host} if host else {}
    try:
        with warnings.catch_warnings():
            # verify=False only where the certificate is judged elsewhere (see ingress_probe).
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            resp = requests.get(
                url, headers=headers, timeout=timeout_s, allow_redirects=False, verify=verify
            )
    except requests.RequestException as exc:
        return HttpProbe(url, None, error=exc.__class__.__name__ + ": " + str(exc)[:200])
    return HttpProbe(
        url, resp.status_code, resp.text[:2000], location=resp.headers.get("Location", "")
    )


REDIRECTS = (301, 302, 307, 308)


def ingress_probe(address: str, host: str, path: str, https_port: int = 443) -> HttpProbe:
    """GET `path` for `host` over HTTPS through the ingress controller at `address`.

    It starts on https://, where the app is served with either controller: on Traefik the app's
    router is TLS-only on `websecure`, and plain HTTP only ever redirects (ingress-nginx
    ssl-redirect, mk8s' Traefik redirect router), so a start on http:// judged the redirect or
    a 404, not the route (issue 13). The certificate is not verified here: routing is what this
    probe shows; the certificate is judged from its Certificate object (phase1.tls).
    """
    return http_get(f"https://{address}:{https_port}{path}", host=host, verify=False)


def http_redirect_probe(address: str, host: str, path: str, http_port: int = 80) -> HttpProbe:
    """Plain HTTP for `host` at `address`, redirects not followed: a healthy ingress answers
    one of REDIRECTS with a Location on https:// (see `redirects_to_https`)."""
    return http_get(f"http://{address}:{http_port}{path}", host=host)


def redirects_to_https(probe: HttpProbe) -> bool:
    return probe.status in REDIRECTS and probe.location.startswith("https://")


def count_prometheus_rules(api: client.ApiClient) -> int:
    """PrometheusRule objects in every namespace (0 when the CRD is missing)."""
    try:
        found: Any = client.CustomObjectsApi(api).list_cluster_custom_object(
            "monitoring.coreos.com", "v1", "prometheusrules"
        )
    except ApiException as exc:
        if exc.status == 404:
            return 0
        raise
    return len(found["items"])


def resolve(
    host: str, nameservers: Sequence[str], port: int = 53, timeout_s: float = 5.0
) -> list[str]:
    """IPv4 addresses `host` has in DNS, asked of `nameservers` by IP ([] when it has none).

    The servers are the inventory's `network.dns_servers`, the ones the nodes and their clients
    use; the machine's own resolver (and whatever /etc/hosts says) is deliberately not asked.
    """
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = list(nameservers)
    resolver.port = port
    resolver.lifetime = timeout_s
    try:
        answer = resolver.resolve(host, "A", search=False)
    except dns.exception.DNSException:
        return []
    return sorted({r.to_text() for r in answer})


def count_dashboards(api: client.ApiClient, namespace: str) -> int:
    """Grafana dashboards provisioned by the sidecar: ConfigMaps labelled `grafana_dashboard`."""
    found: Any = client.CoreV1Api(api).list_namespaced_config_map(
        namespace, label_selector="grafana_dashboard"
    )
    return len(found.items or [])
