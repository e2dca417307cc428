"""phase1.loadbalancer, phase1.ingress and phase1.tls on the rig: a real kube-apiserver holds
the objects, a real nginx plays the ingress controller on loopback addresses standing in for
the nodes and the MetalLB IP, trustme plays Let's Encrypt staging. Each broken state fails
with a message naming what is wrong, beside the healthy state that passes."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from kubernetes import client

from mk8s.checks import kube_facts as kf
from mk8s.checks import serving, tls_served
from mk8s.checks import serving_facts as sf
from mk8s.inventory.model import Environment
from mk8s.render.manifests import ACME
from tests.conformance.rig import (
    APP_SELECTOR,
    app_ingress,
    assign_lb_ip,
    install_crds,
    loopback_env,
    ready_pod,
)
from tests.support.ingress_rig import IngressRig, ingress_rig

pytestmark = pytest.mark.slow

STAGING = "letsencrypt-staging"


@dataclass
class Pki:
    staging: trustme.CA  # stands in for Let's Encrypt staging
    stranger: trustme.CA  # any other CA (the controller's fake certificate, a selfSigned issuer)
    ca_file: Path

    def leaf(self, ca: trustme.CA, host: str, days: float = 89) -> tuple[bytes, bytes]:
        now = datetime.now(UTC)
        cert = ca.issue_cert(host, not_before=now - timedelta(hours=1),
                             not_after=now + timedelta(days=days))  # fmt: skip
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return chain, cert.private_key_pem.bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    staging = trustme.CA(organization_name="(STAGING) Let's Encrypt stand-in")
    ca_file = tmp_path_factory.mktemp("pki") / "staging-ca.pem"
    staging.cert_pem.write_to_path(str(ca_file))
    return Pki(staging, trustme.CA(organization_name="Kubernetes Ingress Controller"), ca_file)


@pytest.fixture
def env(dev_env: Environment) -> Environment:
    """dev on loopback, with a domain of its own: Ingresses of earlier tests stay in the
    shared API server (no namespace controller), and would rightly count as stale."""
    data = loopback_env(dev_env, 90 + secrets.randbelow(60)).model_dump(mode="json")
    data["ingress"]["domain"] = f"t{secrets.token_hex(3)}.dev.example.com"
    return Environment.model_validate(data)


@dataclass
class App:
    api: Any
    namespace: str
    env: Environment
    host: str
    rig: IngressRig
    pods: list[str]
    lb_ip: str

    def answers(self) -> list[serving.Answer]:
        return sf.through_nodes(self.env.nodes, self.host, https_port=self.rig.https_port)

    def ingress_verdict(self) -> Any:
        live = sf.ready_pod_names(self.api, self.namespace, APP_SELECTOR)
        answers = [*self.answers(), self.lb_answer()]
        return serving.ingress(kf.read_ingresses(self.api), self.namespace, self.host,
                               "sample-app", answers, live)  # fmt: skip

    def lb_answer(self) -> serving.Answer:
        return sf.through_lb(self.lb_ip, self.host, https_port=self.rig.https_port)

    def lb_verdict(self, ips: list[str] | None = None) -> Any:
        kf.create_lb_service(self.api, self.namespace, "lb-probe", {"app": "ingress"}, 80)
        for ip in ips if ips is not None else [self.lb_ip]:
            assign_lb_ip(self.api, self.namespace, "lb-probe", ip)
        got = kf.wait_lb_ips(self.api, self.namespace, "lb-probe", timeout_s=1.0, poll_s=0.1)
        answer = sf.through_lb(got[0], self.host, https_port=self.rig.https_port) if got else None
        live = sf.ready_pod_names(self.api, self.namespace, APP_SELECTOR)
        return serving.loadbalancer(f"Service {self.namespace}/lb-probe", got,
                                    self.env.network.metallb_range, answer, live)  # fmt: skip


@pytest.fixture
def app(api: Any, namespace: str, env: Environment, pki: Pki, tmp_path: Path) -> Iterator[App]:
    host = f"app.{env.ingress.domain}"
    pods = [ready_pod(api, namespace, n.name) for n in env.nodes[:2]]
    client.NetworkingV1Api(api).create_namespaced_ingress(namespace, app_ingress(host))
    lb_ip = str(env.network.metallb_range.start)
    ips = [lb_ip, *(str(n.ip) for n in env.nodes)]
    with ingress_rig(tmp_path / "nginx", host, ips, pods[0], pki.leaf(pki.staging, host),
                     pki.leaf(pki.stranger, "ingress.local")) as rig:  # fmt: skip
        yield App(api, namespace, env, host, rig, pods, lb_ip)


# --- LoadBalancer ------------------------------------------------------------------------------


def test_loadbalancer_passes_when_a_current_pod_answers_through_the_pool_ip(app: App) -> None:
    verdict = app.lb_verdict()
    assert verdict.passed, verdict
    assert app.pods[0] in verdict.message


def test_loadbalancer_fails_when_the_lb_ip_answers_502(app: App) -> None:
    app.rig.restart(mode="down")
    verdict = app.lb_verdict()
    assert not verdict.passed
    assert f"LB {app.lb_ip}: HTTP 502" in verdict.message


def test_loadbalancer_fails_on_a_maintenance_page(app: App) -> None:
    app.rig.restart(mode="maintenance")
    verdict = app.lb_verdict()
    assert not verdict.passed
    assert (
        "HTTP 200 but '<h1>Down for maintenance</h1>' is not a current app pod" in verdict.message
    )


def test_loadbalancer_fails_when_the_answer_is_an_old_pod(app: App) -> None:
    """A backend that is a pod of the previous ReplicaSet: an answer, but not the app now."""
    app.rig.backend.name = "sample-app-5d8f6b7c9-old00"
    verdict = app.lb_verdict()
    assert not verdict.passed
    assert "'sample-app-5d8f6b7c9-old00' is not a current app pod" in verdict.message


def test_loadbalancer_fails_with_an_ip_outside_the_pool(app: App) -> None:
    verdict = app.lb_verdict(ips=[str(app.env.nodes[0].ip)])
    assert not verdict.passed
    assert "outside the MetalLB range" in verdict.message


def test_loadbalancer_fails_when_metallb_assigned_nothing(app: App) -> None:
    verdict = app.lb_verdict(ips=[])
    assert not verdict.passed
    assert "MetalLB assigned no IP" in verdict.message


# --- ingress -----------------------------------------------------------------------------------


def test_ingress_passes_through_every_node_and_the_lb(app: App) -> None:
    verdict = app.ingress_verdict()
    assert verdict.passed, verdict
    assert verdict.measured == "4/4 ways in reached the app"


def test_ingress_fails_naming_the_node_whose_controller_is_down(app: App) -> None:
    down = app.env.nodes[2]
    app.rig.restart(listening=[ip for ip in app.rig.ips if ip != str(down.ip)])
    verdict = app.ingress_verdict()
    assert not verdict.passed
    assert f"node {down.name} ({down.ip}): no answer" in verdict.message
    assert "3/4 ways in" in verdict.measured


def test_ingress_fails_on_5xx(app: App) -> None:
    app.rig.restart(mode="down")
    verdict = app.ingress_verdict()
    assert not verdict.passed
    assert f"node {app.env.nodes[0].name} ({app.env.nodes[0].ip}): HTTP 502" in verdict.message


def test_ingress_fails_on_a_maintenance_page(app: App) -> None:
    app.rig.restart(mode="maintenance")
    verdict = app.ingress_verdict()
    assert not verdict.passed
    assert "'<h1>Down for maintenance</h1>' is not a current app pod" in verdict.message


def test_ingress_fails_when_the_answering_pod_is_no_longer_ready(app: App) -> None:
    client.CoreV1Api(app.api).patch_namespaced_pod_status(
        app.pods[0], app.namespace,
        {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
    )  # fmt: skip
    verdict = app.ingress_verdict()
    assert not verdict.passed
    assert (
        f"'{app.pods[0]}' is not a current app pod (Ready pods: {app.pods[1]})" in verdict.message
    )


def test_ingress_fails_on_a_stale_ingress_in_another_namespace(
    app: App, kube_apiserver: Any
) -> None:
    old = kube_apiserver.create_namespace(f"old-sample-{secrets.token_hex(3)}")
    client.NetworkingV1Api(app.api).create_namespaced_ingress(old, app_ingress(app.host))
    verdict = app.ingress_verdict()
    assert not verdict.passed
    assert (
        f"Ingress {old}/sample-app outside {app.namespace} also claims {app.host}"
        in verdict.message
    )


def test_ingress_fails_when_only_another_namespace_routes_the_host(
    app: App, kube_apiserver: Any
) -> None:
    client.NetworkingV1Api(app.api).delete_namespaced_ingress("sample-app", app.namespace)
    old = kube_apiserver.create_namespace(f"old-sample-{secrets.token_hex(3)}")
    client.NetworkingV1Api(app.api).create_namespaced_ingress(old, app_ingress(app.host))
    verdict = app.ingress_verdict()
    assert not verdict.passed
    assert (
        f"no Ingress in {app.namespace} routes {app.host} to service sample-app" in verdict.message
    )


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def cert_manager(api: Any, crds: list[str]) -> Any:
    install_crds(api, "cert-manager-v1.17.1-clusterissuers.yaml")
    return api


def make_cluster_issuer(api: Any, name: str, spec: dict[str, Any], ready: bool = True) -> None:
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip
    try:
        custom.delete_cluster_custom_object("cert-manager.io", "v1", "clusterissuers", name)
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
    custom.create_cluster_custom_object("cert-manager.io", "v1", "clusterissuers", body)
    custom.patch_cluster_custom_object_status(
        "cert-manager.io", "v1", "clusterissuers", name,
        {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "reason": "ACMEAccountRegistered" if ready else "ErrRegisterACMEAccount",
                                    "message": "registered" if ready else "connection refused"}]}},
    )  # fmt: skip


def acme_spec(server: str) -> dict[str, Any]:
    """What mk8s renders (mk8s.render.manifests: acme server, email, key secret, solver)."""
    return {"acme": {"server": server, "email": "ops@example.com",
                     "privateKeySecretRef": {"name": "letsencrypt-staging-account"},
                     "solvers": [{"http01": {"ingress": {"ingressClassName": "public"}}}]}}  # fmt: skip


def make_certificate(
    api: Any, namespace: str, host: str, leaf: tuple[bytes, bytes], days: float
) -> None:
    """The Certificate and its Secret, as cert-manager leaves them after issuance."""
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="sample-app-tls"), type="kubernetes.io/tls",
            data={"tls.crt": base64.b64encode(leaf[0]).decode(),
                  "tls.key": base64.b64encode(leaf[1]).decode()},
        ),
    )  # fmt: skip
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates",
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
         "metadata": {"name": "sample-app-tls"},
         "spec": {"secretName": "sample-app-tls", "dnsNames": [host],
                  "issuerRef": {"name": STAGING, "kind": "ClusterIssuer", "group": "cert-manager.io"}}},
    )  # fmt: skip
    now = datetime.now(UTC)
    custom.patch_namespaced_custom_object_status(
        "cert-manager.io", "v1", namespace, "certificates", "sample-app-tls",
        {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                    "message": "Certificate is up to date and has not expired"}],
                    "notAfter": (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )  # fmt: skip


@dataclass
class Tls:
    app: App
    pki: Pki

    def verdict(self) -> Any:
        api, host = self.app.api, self.app.host
        certs = [c for c in kf.read_certificates(api) if c.namespace == self.app.namespace]
        cert = kf.certificate_for(certs, host)
        secret = (
            tls_served.read_secret_leaf(api, self.app.namespace, cert.secret_name) if cert else None
        )
        served = tls_served.fetch_served(
            self.app.lb_ip, self.app.rig.https_port, host, self.pki.ca_file
        )
        return tls_served.served_tls(
            cert, tls_served.read_cluster_issuer(api, STAGING), served, secret,
            host=host, issuer_name=STAGING, acme_server=ACME[STAGING], now=datetime.now(UTC),
        )  # fmt: skip


@pytest.fixture
def tls_app(app: App, pki: Pki, cert_manager: Any) -> Tls:
    make_cluster_issuer(app.api, STAGING, acme_spec(ACME[STAGING]))
    leaf = pki.leaf(pki.staging, app.host)
    make_certificate(app.api, app.namespace, app.host, leaf, days=89)
    app.rig.restart(app_cert=leaf)
    return Tls(app, pki)


def test_tls_passes_when_the_served_certificate_is_the_issued_one(tls_app: Tls) -> None:
    verdict = tls_app.verdict()
    assert verdict.passed, verdict
    assert float(verdict.measured) > 88


def test_tls_fails_when_the_issuer_is_self_signed(tls_app: Tls) -> None:
    make_cluster_issuer(tls_app.app.api, STAGING, {"selfSigned": {}})
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert f"ClusterIssuer {STAGING} is a selfSigned issuer, not ACME" in verdict.message


def test_tls_fails_when_the_issuer_talks_to_another_acme_server(tls_app: Tls) -> None:
    make_cluster_issuer(tls_app.app.api, STAGING, acme_spec(ACME["letsencrypt-prod"]))
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert f"uses ACME server {ACME['letsencrypt-prod']}, not {ACME[STAGING]}" in verdict.message


def test_tls_fails_when_the_controller_serves_its_fake_certificate(tls_app: Tls) -> None:
    """The Secret is fine but the controller never loaded it: browsers see the default cert."""
    tls_app.app.rig.restart(app_cert=tls_app.app.rig.default_cert)
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert "chain does not verify" in verdict.message
    assert "is not the certificate in Secret" in verdict.message
    assert f"does not cover {tls_app.app.host}" in verdict.message


def test_tls_fails_when_a_stale_certificate_is_served(tls_app: Tls) -> None:
    """Renewed into the Secret, but the old (still valid, same CA) one is still served."""
    tls_app.app.rig.restart(app_cert=tls_app.pki.leaf(tls_app.pki.staging, tls_app.app.host))
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert "is not the certificate in Secret" in verdict.message
    assert "chain does not verify" not in verdict.message


def test_tls_fails_when_the_served_certificate_is_from_another_ca(tls_app: Tls) -> None:
    leaf = tls_app.pki.leaf(tls_app.pki.stranger, tls_app.app.host)
    tls_app.app.rig.restart(app_cert=leaf)
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert "chain does not verify against the trust store" in verdict.message


def test_tls_fails_when_the_served_certificate_expires_soon(tls_app: Tls) -> None:
    leaf = tls_app.pki.leaf(tls_app.pki.staging, tls_app.app.host, days=10)
    client.CoreV1Api(tls_app.app.api).patch_namespaced_secret(
        "sample-app-tls", tls_app.app.namespace,
        {"data": {"tls.crt": base64.b64encode(leaf[0]).decode()}},
    )  # fmt: skip
    tls_app.app.rig.restart(app_cert=leaf)
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert "days left, at least 30 required" in verdict.message


def test_tls_fails_when_the_issuer_is_missing(tls_app: Tls) -> None:
    client.CustomObjectsApi(tls_app.app.api).delete_cluster_custom_object(
        "cert-manager.io", "v1", "clusterissuers", STAGING
    )
    verdict = tls_app.verdict()
    assert not verdict.passed
    assert f"ClusterIssuer {STAGING} does not exist" in verdict.message
