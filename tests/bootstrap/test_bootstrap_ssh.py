"""invoke bootstrap over real SSH: formation, idempotency, failures, trust and secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from mk8s.edges import microk8s as mk
from mk8s.edges import ssh
from mk8s.errors import OperationFailedError, UserError
from tests.bootstrap.conftest import Lab, mutations

pytestmark = pytest.mark.slow


def first_status(lab: Lab) -> mk.Status:
    members = tuple(mk.Member(a, r) for a, r in lab.rig.members(lab.env.nodes[0].name))
    addons = dict.fromkeys(lab.rig.addons(lab.env.nodes[0].name), "enabled")
    return mk.Status("running", members, addons, True)


def test_fresh_bootstrap_forms_a_3_node_ha_cluster_with_the_env_add_ons(lab: Lab) -> None:
    report = lab.bootstrap()
    status = first_status(lab)
    assert sorted(m.host for m in status.members) == sorted(str(n.ip) for n in lab.env.nodes)
    assert len(status.voters) == 3
    assert status.enabled_addons >= set(lab.env.microk8s.addons)
    commands = lab.commands_since(0)
    # One token per join, made with a TTL; joins by IP of the first node.
    add_nodes = [c for c in commands if c[:2] == ["microk8s", "add-node"]]
    assert len(add_nodes) == 2 and all("--token-ttl" in c for c in add_nodes)
    enables = [c[2] for c in commands if c[:2] == ["microk8s", "enable"]]
    assert enables[:1] == ["rbac"]  # dns came from the launch configuration at install
    assert f"metallb:{lab.env.network.metallb_range}" in enables
    assert "dns" not in [e.split(":")[0] for e in enables]
    # Monitoring through the observability add-on, last (it watches only the nodes present
    # when enabled), with the values rendered from the inventory (30 s scrape, retention).
    first = lab.env.nodes[0].name
    observability = [
        arg.replace("$SSHD_NODE", first)  # the test's per-node path, expanded by the node's shell
        for arg in next(c for c in commands if c[:3] == ["microk8s", "enable", "observability"])
    ]
    assert enables[-1] == "observability"
    values_dir = lab.state / first / "addon-values"
    kps = values_dir / "kube-prometheus-stack.values.yaml"
    assert f"--kube-prometheus-stack-values={kps}" in observability
    assert "scrapeInterval: 30s" in kps.read_text()
    assert f"--loki-stack-values={values_dir / 'loki-stack.values.yaml'}" in observability
    # Kubeconfig: 0600, server = first node (no VIP configured).
    kubeconfig = lab.out / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert f"server: https://{lab.env.nodes[0].ip}:16443" in kubeconfig.read_text()
    assert report.changed
    output = lab.outputs[-1]
    # Node 2 is done as a spare (one voter below three members), node 3 brings three voters.
    two, three = (n.name for n in lab.env.nodes[1:])
    assert f"{two} changed joined the cluster through lab-k8s-1 (spare)" in output
    assert f"{three} changed joined the cluster through lab-k8s-1 (voter)" in output


def test_rerun_changes_nothing(lab: Lab) -> None:
    lab.bootstrap()
    mark = lab.mark()
    report = lab.bootstrap()
    assert report.changes == []
    again = lab.commands_since(mark)
    assert again, "the re-run must still read facts"
    assert mutations(again) == []


def test_connection_dropped_mid_join_then_rerun_converges(lab: Lab) -> None:
    second = lab.env.nodes[1]
    lab.rig.fault(second.name, join_drop=True)
    with pytest.raises(
        OperationFailedError, match=f"{second.name}: SSH link to the joining node lost"
    ):
        lab.bootstrap(settings=lab.settings(join_attempts=1))
    assert "connection lost" in (lab.out / "bootstrap.log").read_text()
    lab.bootstrap()
    status = first_status(lab)
    assert len(status.voters) == 3 and len(status.members) == 3
    commands = lab.commands_since(0)
    # The half-joined node was removed from dqlite before it joined again (#3694).
    removes = [c for c in commands if c[:2] == ["microk8s", "remove-node"]]
    assert removes == [["microk8s", "remove-node", str(second.ip), "--force"]]
    joins = [e for e in lab.journal() if e["argv"][:2] == ["microk8s", "join"]]
    # dropped; the re-run sees the stale member, removes it first, then joins once
    assert [e["node"] for e in joins] == [second.name] * 2 + [lab.env.nodes[2].name]
    mark = lab.mark()
    assert lab.bootstrap().changes == []
    assert mutations(lab.commands_since(mark)) == []


def test_a_node_that_keeps_getting_invalid_tokens_fails_naming_it_and_microk8s_output(
    lab: Lab,
) -> None:
    third = lab.env.nodes[2].name
    lab.rig.fault(lab.env.nodes[0].name, expire_all_tokens=True)
    with pytest.raises(OperationFailedError) as exc:
        lab.bootstrap()
    message = str(exc.value)
    assert message.startswith(f"{lab.env.nodes[1].name}: invalid or expired token")
    assert "Connection failed. Invalid token (500)." in message
    assert exc.value.exit_code != 0
    joins = [c for c in lab.commands_since(0) if c[:2] == ["microk8s", "join"]]
    assert len(joins) == 3  # join_attempts, each with a new token
    assert third not in {e["node"] for e in lab.journal() if e["argv"][:2] == ["microk8s", "join"]}


def test_changed_host_key_is_refused(formed_lab: Lab) -> None:
    lab = formed_lab
    lab.bootstrap()
    second = lab.env.nodes[1].name
    lab.cluster.rotate_host_key(second)
    mark = lab.mark()
    with pytest.raises(UserError, match=f"{second}: host key of .* differs from the pinned one"):
        lab.bootstrap()
    assert not [e for e in lab.journal()[mark:] if e["node"] == second]


def test_nothing_is_trusted_on_first_use(formed_lab: Lab) -> None:
    lab = formed_lab
    lab.bootstrap(dry_run=True)
    assert lab.host_keys.asked == []  # a dry run pins nothing
    lab.bootstrap()
    assert sorted(lab.host_keys.asked) == sorted(n.name for n in lab.env.nodes)
    pinned = (lab.out / "known_hosts").read_text()
    for node in lab.env.nodes:
        assert lab.cluster.nodes[node.name].host_public_key in pinned


def test_join_token_never_appears_in_output_or_logs(lab: Lab) -> None:
    lab.bootstrap()
    joins = [c for c in lab.commands_since(0) if c[:2] == ["microk8s", "join"]]
    tokens = [c[2].split("/", 1)[1] for c in joins]  # IP:25000/TOKEN/CHECK, seen by the node
    assert len(tokens) == 2 and all(len(t.split("/")[0]) >= 32 for t in tokens)
    written = [p.read_text() for p in lab.out.rglob("*") if p.is_file()]
    sshd_logs = [n.log.read_text() for n in lab.cluster.nodes.values()]
    for token in tokens:
        secret = token.split("/")[0]
        for text in [*lab.outputs, *written, *sshd_logs]:
            assert secret not in text
    assert (lab.out / "bootstrap.log").read_text().count("microk8s join") == 2


def test_dry_run_prints_the_actions_and_changes_nothing(lab: Lab) -> None:
    (lab.out).mkdir(parents=True)
    (lab.out / "known_hosts").write_text(lab.cluster.known_hosts())  # pinned earlier
    lab.rig.set_node(lab.env.nodes[2].name, held=False)
    report = lab.bootstrap(dry_run=True)
    assert report.changes == []
    assert mutations(lab.commands_since(0)) == []
    planned = "\n".join(report.planned)
    assert f"{lab.env.nodes[2].name}: snap refresh --hold microk8s" in planned
    for node in lab.env.nodes[1:]:
        assert f"{node.name}: join the cluster through {lab.env.nodes[0].name}" in planned
    assert f"microk8s enable metallb:{lab.env.network.metallb_range}" in planned
    assert "kubeconfig" in planned
    assert "would join the cluster" in lab.outputs[-1]
    assert not (lab.out / "kubeconfig").exists()


def test_node_option_limits_node_local_steps(formed_lab: Lab) -> None:
    lab = formed_lab
    lab.bootstrap()
    mark = lab.mark()
    lab.bootstrap(only=lab.env.nodes[2].name)
    waited = {e["node"] for e in lab.journal()[mark:] if e["argv"][:2] == ["cloud-init", "status"]}
    assert waited == {lab.env.nodes[2].name}
    with pytest.raises(UserError, match="--node nope: not a node of lab"):
        lab.bootstrap(only="nope")


def test_an_unheld_snap_is_held_and_nothing_else_changes(formed_lab: Lab) -> None:
    lab = formed_lab
    lab.bootstrap()
    third = lab.env.nodes[2].name
    lab.rig.set_node(third, held=False)
    mark = lab.mark()
    report = lab.bootstrap()
    assert report.changes == [f"{third}: held MicroK8s refreshes"]
    assert mutations(lab.commands_since(mark)) == [["snap", "refresh", "--hold", "microk8s"]]


def test_cloud_init_failure_and_shared_machine_ids_name_the_nodes(formed_lab: Lab) -> None:
    lab = formed_lab
    one, two, three = (n.name for n in lab.env.nodes)
    lab.rig.fault(two, cloud_init="error")
    with pytest.raises(OperationFailedError, match=f"{two}: cloud-init did not finish cleanly"):
        lab.bootstrap()
    lab.rig.fault(two, cloud_init="done")
    (lab.state / three / "machine-id").write_text((lab.state / one / "machine-id").read_text())
    with pytest.raises(OperationFailedError, match=f"{one}, {three}: share machine-id"):
        lab.bootstrap()


def test_an_api_vip_missing_from_the_certificate_is_added_and_refreshed(formed_lab: Lab) -> None:
    lab = formed_lab
    prefix = str(lab.env.nodes[0].ip).rsplit(".", 1)[0]
    vip = f"{prefix}.5"
    # The nodes were installed from a launch configuration without the VIP in extraSANs.
    env = lab.env.model_copy(
        update={"network": lab.env.network.model_copy(update={"api_vip": vip})}
    )
    report = lab.bootstrap(env)
    for node in lab.env.nodes:
        assert f"{node.name}: API certificate now covers {vip}" in report.changes
        assert (
            f"IP.3 = {vip}" in (lab.state / node.name / "certs" / "csr.conf.template").read_text()
        )
    assert f"server: https://{vip}:16443" in (lab.out / "kubeconfig").read_text()
    mark = lab.mark()
    assert lab.bootstrap(env).changes == []
    assert mutations(lab.commands_since(mark)) == []


def test_a_node_where_cloud_init_never_installed_microk8s_is_installed_then_joined(
    lab: Lab,
) -> None:
    third = lab.env.nodes[2].name
    lab.rig.seed({third: str(lab.env.nodes[2].ip)}, installed=False)
    lab.bootstrap()
    channel = lab.env.microk8s.channel
    on_third = [e["argv"] for e in lab.journal() if e["node"] == third]
    install = ["snap", "install", "microk8s", "--classic", f"--channel={channel}"]
    assert install in on_third
    assert on_third.index(install) < on_third.index(["snap", "refresh", "--hold", "microk8s"])
    assert len(first_status(lab).voters) == 3


def test_a_node_without_a_pinned_key_is_never_contacted(lab: Lab, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    target = ssh.targets_for(lab.env)[lab.env.nodes[0].name]
    session = ssh.NodeSession(target, lab.settings().login, known, ssh.Journal(None))
    with pytest.raises(UserError, match=r"no pinned host key .* refusing to trust it on first use"):
        session.run("true")
    assert lab.journal() == []
