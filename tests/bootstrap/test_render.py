"""Rendered node inputs: cloud-init user-data and the MicroK8s launch configuration."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml

from mk8s.inventory.load import load_environment
from mk8s.inventory.model import Environment
from mk8s.render import cloudinit, launchconfig
from mk8s.render.plan import build_plan

ENVS = ("dev", "stage", "prod")


def _env(name: str) -> Environment:
    return load_environment(name, root=Path(__file__).resolve().parents[2])


def _schema(path: Path) -> subprocess.CompletedProcess[str]:
    cloud_init = shutil.which("cloud-init")
    assert cloud_init, "Debian's cloud-init is missing (scripts/deps.d/bootstrap.apt installs it)"
    return subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("name", ENVS)
def test_every_nodes_user_data_passes_cloud_init_schema(name: str, tmp_path: Path) -> None:
    env = _env(name)
    for node in env.nodes:
        path = tmp_path / f"{node.name}.yaml"
        path.write_text(cloudinit.user_data(env, node))
        result = _schema(path)
        assert result.returncode == 0, f"{node.name}: {result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout


def test_the_schema_check_rejects_a_broken_user_data(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nruncmd: 5\nusers: nope\n")
    assert _schema(path).returncode != 0


def test_user_data_holds_node_identity_keys_only_and_every_node_in_hosts() -> None:
    env = _env("dev")
    node = env.nodes[1]
    doc = yaml.safe_load(cloudinit.user_data(env, node))
    assert doc["hostname"] == node.name
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    (user,) = doc["users"]
    assert user["lock_passwd"] is True and "passwd" not in user
    assert user["ssh_authorized_keys"] == list(env.ssh.authorized_keys)
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    for n in env.nodes:
        assert f"{n.ip} {n.name}.{env.ingress.domain} {n.name}" in files["/etc/hosts"]
    assert "PermitRootLogin no" in files["/etc/ssh/sshd_config.d/50-mk8s.conf"]
    assert "qemu-guest-agent" in doc["packages"] and "unattended-upgrades" in doc["packages"]
    assert "br_netfilter" in files["/etc/modules-load.d/mk8s.conf"]
    assert "net.ipv4.ip_forward = 1" in files["/etc/sysctl.d/90-mk8s.conf"]
    assert "swapoff -a" in files["/usr/local/sbin/mk8s-node-prep.sh"]
    install = files["/usr/local/sbin/mk8s-install-microk8s.sh"]
    assert f"snap install microk8s --classic --channel={env.microk8s.channel}" in install
    assert install.index("snap install") < install.index("snap refresh --hold microk8s")
    assert yaml.safe_load(files["/etc/microk8s.yaml"]) == launchconfig.launch_config(env, node)
    # The launch configuration is on disk before runcmd installs the snap that reads it.
    assert doc["runcmd"][-1] == ["/usr/local/sbin/mk8s-install-microk8s.sh"]


@pytest.mark.parametrize("name", ENVS)
def test_no_secret_is_rendered(name: str) -> None:
    plan = build_plan(_env(name))
    for artifact in plan.artifacts:
        assert "PRIVATE KEY" not in artifact.content, artifact.path
        assert "persistentClusterToken" not in artifact.content, artifact.path
        assert "ssh_keys" not in artifact.content, artifact.path  # cloud-init host-key seeding


@pytest.mark.parametrize("monitoring", [True, False])
def test_firewall_is_rendered_for_the_subnet_and_the_monitoring_setting(monitoring: bool) -> None:
    """What the firewall does is measured on a real kernel (test_firewall_netns.py); here: the
    rendering fills every placeholder and lists the scrape ports only with monitoring on."""
    env = _env("stage")
    env = env.model_copy(
        update={"monitoring": env.monitoring.model_copy(update={"enabled": monitoring})}
    )
    files = {
        f["path"]: f["content"] for f in cloudinit.user_data_doc(env, env.nodes[0])["write_files"]
    }
    script = files["/usr/local/sbin/mk8s-firewall.sh"]
    assert "${" not in script
    assert f"-s {env.network.subnet} -j RETURN" in script
    ports = "16443 80 443 10250 25000 19001 10257 10259 7946 7472"
    scrape = " 9100 10249" if monitoring else " "
    assert f"for port in {ports}{scrape}; do" in script
    assert str(env.network.service_cidr) not in script


def test_runcmd_stops_at_the_first_failing_script() -> None:
    runcmd = cloudinit.user_data_doc(_env("stage"), _env("stage").nodes[0])["runcmd"]
    assert runcmd[0] == "set -e"
    assert runcmd[1:] == [[f"{cloudinit.SCRIPTS_ON_NODE}/{s}"] for s in cloudinit.SCRIPTS]


def test_template_placeholders_must_all_have_values() -> None:
    with pytest.raises(KeyError, match="CHANNEL"):
        cloudinit.fill("snap install --channel=${CHANNEL}", {})


@pytest.mark.parametrize("name", ENVS)
def test_launch_config_uses_only_documented_keys(name: str) -> None:
    env = _env(name)
    for node in env.nodes:
        doc = launchconfig.launch_config(env, node)
        assert launchconfig.undocumented_keys(doc) == []
        assert doc["version"] == "0.2.0"  # extraCNIEnv needs 0.2.0
        assert "join" not in doc  # formation is done over SSH, tokens never rendered


def test_undocumented_keys_are_caught_at_every_level() -> None:
    doc = {
        "version": "0.2.0",
        "extraKubeletServerArgs": {},  # the wrong name from a MicroK8s doc comment
        "addons": [{"name": "dns", "argz": []}],
        "extraCNIEnv": {"IPV4_SUPPORT": True},
        "join": {"url": "x", "wroker": True},
    }
    assert sorted(launchconfig.undocumented_keys(doc)) == [
        "addons[0].argz",
        "extraCNIEnv.IPV4_SUPPORT",
        "extraKubeletServerArgs",
        "join.wroker",
    ]


def test_only_the_first_node_lists_add_ons_and_dns_is_explicit() -> None:
    env = _env("dev")
    first, *others = (launchconfig.launch_config(env, n) for n in env.nodes)
    assert [a["name"] for a in first["addons"]] == ["dns"]
    assert first["addons"][0]["args"] == ["192.168.10.1", "10.152.183.10"]
    assert all(o["addons"] == [] for o in others)


def test_sans_cover_every_node_the_vip_and_the_in_cluster_address() -> None:
    env = _env("dev")
    env = env.model_copy(
        update={"network": env.network.model_copy(update={"api_vip": IPv4Address("192.168.10.5")})}
    )
    doc = launchconfig.launch_config(env, env.nodes[2])
    assert doc["extraSANs"] == [
        "192.168.10.11",
        "192.168.10.12",
        "192.168.10.13",
        "192.168.10.5",
        "10.152.183.1",
    ]
    assert doc["extraCNIEnv"]["IPv4_CLUSTER_CIDR"] == "10.1.0.0/16"
    assert doc["extraCNIEnv"]["IPv4_SERVICE_CIDR"] == "10.152.183.0/24"


def test_plan_renders_user_data_and_launch_config_per_node() -> None:
    env = _env("prod")
    paths = {a.path for a in build_plan(env).artifacts}
    for n in env.nodes:
        assert f"cloud-init/{n.name}.yaml" in paths
        assert f"launch-config/{n.name}.yaml" in paths
