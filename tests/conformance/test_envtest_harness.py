"""The envtest harness is a real Kubernetes 1.33 API server with the RBAC authorizer on."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.support.envtest import KubeApiServer

pytestmark = pytest.mark.slow


def test_serves_kubernetes_1_33_like_microk8s_1_33(kube_apiserver: KubeApiServer) -> None:
    assert kube_apiserver.version.startswith("v1.33."), kube_apiserver.version


def test_kubeconfig_works_for_the_python_client(kube_apiserver: KubeApiServer) -> None:
    loaded = client.Configuration()
    config.load_kube_config(str(kube_apiserver.kubeconfig), client_configuration=loaded)
    with client.ApiClient(loaded) as api:
        names = [ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items]
    assert {"default", "kube-system"} <= set(names)


def test_rbac_authorizer_denies_an_unbound_user(kube_apiserver: KubeApiServer, api: Any) -> None:
    stranger = kube_apiserver.api_client(impersonate="nobody", group="no-such-group")
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(stranger).list_namespaced_pod("default")
    assert denied.value.status == 403
    stranger.close()
