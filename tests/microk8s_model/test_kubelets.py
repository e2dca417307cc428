"""The kubelet bridge: the model's nodes as Nodes of a real kube-apiserver, healthy and broken."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.envtest import KubeApiServer, kube_apiserver
from tests.support.microk8s.kubelets import Kubelets
from tests.support.microk8s.rig import Rig

__all__ = ["kube_apiserver"]

pytestmark = pytest.mark.slow

IPS = {"k1": "10.8.0.11", "k2": "10.8.0.12", "k3": "10.8.0.13"}


@pytest.fixture
def lab(tmp_path: Path, kube_apiserver: KubeApiServer) -> Iterator[tuple[Rig, Kubelets, Any]]:
    rig = Rig(tmp_path / "model")
    rig.seed(IPS)
    rig.form(list(IPS))
    rig.set_store({"1.34/stable": ("8450", "v1.34.1")})
    api = kube_apiserver.api_client()
    kubelets = Kubelets(rig, api, prefix=f"t{uuid.uuid4().hex[:6]}-")
    yield rig, kubelets, client.CoreV1Api(api)
    kubelets.cleanup()


def ready(core: Any, kubelets: Kubelets, name: str) -> tuple[str, str]:
    node = core.read_node(kubelets.node_name(name))
    cond = next(c for c in node.status.conditions if c.type == "Ready")
    return cond.status, node.status.node_info.kubelet_version


def cni_ready(core: Any, kubelets: Kubelets, name: str) -> bool:
    pod = core.read_namespaced_pod(f"calico-node-{kubelets.node_name(name)}", "kube-system")
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def test_nodes_follow_the_model(lab: tuple[Rig, Kubelets, Any]) -> None:
    rig, kubelets, core = lab
    kubelets.sync()
    assert ready(core, kubelets, "k1") == ("True", "v1.33.5")
    assert cni_ready(core, kubelets, "k1")
    pod = core.read_namespaced_pod(f"calico-node-{kubelets.node_name('k1')}", "kube-system")
    assert pod.spec.node_name == kubelets.node_name("k1")
    assert pod.metadata.owner_references[0].kind == "DaemonSet"

    rig.power_off("k2")
    rig.fault("k3", kubelet_not_ready=True)
    kubelets.sync()
    assert ready(core, kubelets, "k2")[0] == "Unknown"
    assert not cni_ready(core, kubelets, "k2")
    assert ready(core, kubelets, "k3")[0] == "False"
    assert ready(core, kubelets, "k1")[0] == "True"


def test_a_refresh_shows_as_not_ready_then_the_new_kubelet_version(
    lab: tuple[Rig, Kubelets, Any],
) -> None:
    rig, kubelets, core = lab
    rig.configure(restart_s=3)
    with kubelets.running(0.1):
        assert rig.run("k1", "snap", "refresh", "microk8s", "--channel=1.34/stable")[0] == 0
        kubelets.sync()
        assert ready(core, kubelets, "k1") == ("Unknown", "v1.33.5")  # last version posted
        deadline = time.time() + 20
        while ready(core, kubelets, "k1")[0] != "True" and time.time() < deadline:
            time.sleep(0.1)
        assert ready(core, kubelets, "k1") == ("True", "v1.34.1")


def test_unhealthy_after_refresh_stays_down_and_cordons_are_left_alone(
    lab: tuple[Rig, Kubelets, Any],
) -> None:
    rig, kubelets, core = lab
    kubelets.sync()
    core.patch_node(kubelets.node_name("k2"), {"spec": {"unschedulable": True}})
    rig.fault("k2", unhealthy_after_refresh=True)
    rig.run("k2", "snap", "refresh", "microk8s", "--channel=1.34/stable")
    kubelets.sync()
    assert ready(core, kubelets, "k2")[0] == "Unknown"
    assert not cni_ready(core, kubelets, "k2")
    assert core.read_node(kubelets.node_name("k2")).spec.unschedulable is True


def test_a_removed_node_is_deleted(lab: tuple[Rig, Kubelets, Any]) -> None:
    rig, kubelets, core = lab
    kubelets.sync()
    rig.forget_k8s_node("k3")
    kubelets.sync()
    names = {n.metadata.name for n in core.list_node().items}
    assert kubelets.node_name("k3") not in names and kubelets.node_name("k1") in names
