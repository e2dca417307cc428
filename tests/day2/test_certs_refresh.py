"""`invoke certs --refresh` over real sshd nodes holding trustme certificates at MicroK8s' paths,
whose `microk8s refresh-certs` is tests/day2/fake_refresh_certs.py (modelled on the wrapper).

Health (Ready + voters) is injected: the status reader it uses in production is tested in
tests/day2/test_status*.py; here it is scripted to come back late or never."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import trustme
import yaml
from rich.console import Console

from mk8s.day2 import certs_refresh
from mk8s.day2.certs import Level
from mk8s.day2.certs_flow import check
from mk8s.day2.evidence import parse_record
from mk8s.day2.operation import Options
from mk8s.day2.wait import FakeClock
from mk8s.errors import OperationFailedError, UserError
from mk8s.inventory.load import parse_inventory
from mk8s.inventory.model import Environment
from tests.day2.certmaker import NOW, write_node
from tests.day2.test_certs_ssh import NAMES, NODEFS, ROOT, SERVICE_IP, inventory
from tests.support.sshd import SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

REFRESHFS = Path(__file__).resolve().parent / "refreshfs"
N1, N2, N3 = NAMES


BAD = ["nodes-ready: lab-k8s-1: not Ready"]


class Health:
    """Scripted cluster health: one answer per probe from `script`, then `rest`."""

    def __init__(self) -> None:
        self.script: list[list[str]] = []
        self.rest: list[str] = []

    def __call__(self) -> list[str]:
        return self.script.pop(0) if self.script else list(self.rest)


class Lab:
    def __init__(self, factory: SshdFactory, root: Path) -> None:
        self.fs = root / "nodefs"
        env = {"NODE_FS": str(self.fs), "MK8S_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
        self.cluster = factory(NAMES, path_dirs=[REFRESHFS, NODEFS], env=env)
        self.ca = trustme.CA(organization_name="microk8s lab")
        self.ips = [self.cluster.nodes[n].host for n in NAMES]
        data = inventory(self.cluster)
        self.env: Environment = parse_inventory(yaml.safe_dump(data), source="lab")
        self.work = root / "work"
        self.build = self.work / "build" / "lab"
        self.build.mkdir(parents=True)
        (self.build / "known_hosts").write_text(self.cluster.known_hosts())
        self.inventory = self.work / "lab.yaml"
        self.inventory.write_text(yaml.safe_dump(data))
        self.health = Health()
        self.clock = FakeClock(NOW.timestamp())
        for name in NAMES:
            node = self.fs / name
            write_node(node, self.ca, self.cluster.nodes[name].host, [*self.ips, SERVICE_IP])
            self.ca.private_key_pem.write_to_path(str(self.snap(name) / "certs/ca.key"))
            (node / "csr-ips").write_text(" ".join(["127.0.0.1", SERVICE_IP, *self.ips]))
            (node / "faults").mkdir()

    def snap(self, node: str) -> Path:
        return self.fs / node / "var/snap/microk8s/current"

    def pem(self, node: str, cert: str) -> str:
        return (self.snap(node) / "certs" / cert).read_text()

    def commands(self, node: str) -> list[str]:
        log = self.fs / node / "commands.log"
        return log.read_text().splitlines() if log.exists() else []

    def fault(self, node: str, name: str, text: str = "") -> None:
        (self.fs / node / "faults" / name).write_text(text)

    def refresh(self, **kw: object) -> tuple[Path | None, str]:
        buf = io.StringIO()
        out = Console(file=buf, width=200, highlight=False)
        options = kw.pop("options", Options())
        try:
            path = certs_refresh.refresh(
                self.env, self.build, options, out=out, health=self.health,  # type: ignore[arg-type]
                clock=self.clock, root=self.work, inventory=str(self.inventory), **kw,  # type: ignore[arg-type]
            )  # fmt: skip
        finally:
            self.output = buf.getvalue()
        return path, self.output

    def evidence(self) -> dict[str, object]:
        [path] = (self.work / "reports" / "lab").glob("*/day2.json")
        record = parse_record(path.read_bytes())
        assert not isinstance(record, str), record
        return record.model_dump()


@pytest.fixture
def lab(sshd_factory: SshdFactory, tmp_path: Path) -> Lab:
    return Lab(sshd_factory, tmp_path)


def renew_commands(cert: str) -> str:
    return f"microk8s refresh-certs --cert {cert}"


@pytest.mark.slow
def test_dry_run_shows_the_plan_and_touches_nothing(lab: Lab) -> None:
    before = {n: lab.pem(n, "server.crt") for n in NAMES}
    path, out = lab.refresh(options=Options(dry_run=True))
    assert path is None
    assert "lab: certs-refresh: 21 steps" in out
    assert all(lab.commands(n) == [] for n in NAMES)
    assert {n: lab.pem(n, "server.crt") for n in NAMES} == before
    assert not (lab.build / "day2").exists()


def test_the_plan_renews_server_then_front_proxy_node_by_node() -> None:
    env = parse_inventory((ROOT / "inventory" / "dev.yaml").read_text(), source="dev")
    keys = [s.key for s in certs_refresh.plan_refresh(env).steps]
    first = env.nodes[0].name
    assert keys[:8] == ["preflight", "backup", f"{first}:server.crt",
                        f"{first}:verify-server.crt", f"{first}:wait-server.crt",
                        f"{first}:front-proxy-client.crt", f"{first}:verify-front-proxy-client.crt",
                        f"{first}:wait-front-proxy-client.crt"]  # fmt: skip
    assert keys[-1] == "finish" and len(keys) == 2 + 6 * len(env.nodes) + 1
    body = json.loads(certs_refresh.plan_refresh(env).to_json())
    assert body["task"] == "certs-refresh"


def test_ca_rotation_is_refused_with_the_path() -> None:
    env = parse_inventory((ROOT / "inventory" / "dev.yaml").read_text(), source="dev")
    with pytest.raises(UserError, match=r"CA rotation is refused: .* rebuild each node"):
        certs_refresh.plan_refresh(env, ["ca.crt"])
    with pytest.raises(UserError, match=r"--cert kubelet.crt: must be one of server.crt"):
        certs_refresh.plan_refresh(env, ["kubelet.crt"])


@pytest.mark.slow
def test_refresh_renews_every_node_in_order_keeps_the_old_certs_and_records_green(
    lab: Lab,
) -> None:
    old = {n: {c: lab.pem(n, c) for c in certs_refresh.RENEWED} for n in NAMES}
    lab.health.script = [[], BAD, BAD]  # after its refresh lab-k8s-1 is back on the third probe
    path, out = lab.refresh()
    assert "step 3/21: renew server.crt" in out
    assert lab.clock.t == NOW.timestamp() + 10  # the wait polled twice, 5 s apart
    for n in NAMES:
        assert lab.commands(n) == [renew_commands(c) for c in certs_refresh.RENEWED]
        for c in certs_refresh.RENEWED:
            assert lab.pem(n, c) != old[n][c]
    record = lab.evidence()
    assert path is not None and path.name == "day2.json"
    assert record["outcome"] == "green" and record["task"] == "certs-refresh"
    assert record["channel"] == "1.33/stable"
    run = str(record["run_id"])
    for n in NAMES:
        saved = lab.build / "day2" / "certs-backup" / run / n
        assert sorted(p.name for p in saved.iterdir()) == [
            "ca.crt", "front-proxy-client.crt", "kubelet.crt", "server.crt"]  # fmt: skip
        assert (saved / "server.crt").read_text() == old[n]["server.crt"]
        assert not any("PRIVATE KEY" in p.read_text() for p in saved.iterdir())
    gates = record["gates"]
    assert isinstance(gates, list) and all(g["passed"] for g in gates)
    assert [g["step"] for g in gates if g["name"] == "reissued-and-sans"] == [
        f"{n}:verify-{c}" for n in NAMES for c in certs_refresh.RENEWED]  # fmt: skip
    assert check(lab.env, lab.build, NOW).level is Level.OK  # SANs and dates hold after it


@pytest.mark.slow
def test_a_san_lost_in_the_refresh_stops_before_the_next_node(lab: Lab) -> None:
    lab.fault(N1, "drop-san", lab.ips[2])
    with pytest.raises(OperationFailedError, match=rf"lacks IP SAN\(s\) {lab.ips[2]}"):
        lab.refresh()
    assert lab.commands(N1) == [renew_commands("server.crt")]  # front-proxy not touched
    assert lab.commands(N2) == [] and lab.commands(N3) == []
    record = lab.evidence()
    assert record["outcome"] == "failed" and record["failed_step"] == f"{N1}:verify-server.crt"
    assert "stopping before any other node" in str(record["message"])


@pytest.mark.slow
def test_refresh_failing_on_node_2_leaves_node_3_untouched_and_a_rerun_resumes(lab: Lab) -> None:
    lab.fault(N2, "refresh-fail")
    n3_before = lab.pem(N3, "server.crt")
    with pytest.raises(OperationFailedError) as failed:
        lab.refresh()
    assert str(failed.value) == (
        f"{N2}: `microk8s refresh-certs --cert server.crt` failed (exit 20): Failed to produce "
        "new certificates. Reverting.; no other node was touched"
    )
    assert lab.commands(N3) == [] and lab.pem(N3, "server.crt") == n3_before
    assert len(lab.commands(N1)) == 2
    record = lab.evidence()
    assert record["outcome"] == "failed" and record["failed_step"] == f"{N2}:server.crt"
    (lab.fs / N2 / "faults" / "refresh-fail").unlink()
    lab.refresh()
    assert len(lab.commands(N1)) == 2  # node 1 is not renewed twice
    assert lab.commands(N3) == [renew_commands(c) for c in certs_refresh.RENEWED]
    assert lab.evidence()["outcome"] == "green"  # the same run, converged


@pytest.mark.slow
def test_a_cluster_that_does_not_come_back_times_out_naming_what_it_saw(lab: Lab) -> None:
    lab.health.rest = BAD
    with pytest.raises(OperationFailedError) as failed:
        lab.refresh()
    # the preflight already sees it: nothing is renewed on an unhealthy cluster
    assert "preflight: nodes-ready: lab-k8s-1: not Ready" in str(failed.value)
    assert all(lab.commands(n) == [] for n in NAMES)


@pytest.mark.slow
def test_a_node_that_stays_unready_after_its_refresh_times_out(lab: Lab) -> None:
    lab.health.script, lab.health.rest = [[]], BAD  # healthy for the preflight only
    with pytest.raises(OperationFailedError) as failed:
        lab.refresh()
    text = str(failed.value)
    assert text.startswith(
        f"timed out waiting for the cluster Ready with its voters after {N1}'s server.crt refresh"
    )
    assert text.endswith("last seen: nodes-ready: lab-k8s-1: not Ready")
    assert lab.commands(N1) == [renew_commands("server.crt")] and lab.commands(N2) == []
    assert lab.evidence()["failed_step"] == f"{N1}:wait-server.crt"


def test_verify_names_a_certificate_not_reissued_or_not_extended() -> None:
    ca = trustme.CA()
    ips = ["127.0.0.1", "10.0.0.1"]

    def pem(days: int) -> str:
        cert = ca.issue_cert(*ips, not_after=NOW + timedelta(days=days))
        return cert.cert_chain_pems[0].bytes().decode()

    old = pem(10)
    assert certs_refresh.verify_problems("n1", "front-proxy-client.crt", old, old, ips) == [
        "n1: front-proxy-client.crt was not reissued (same certificate as before)"
    ]
    assert certs_refresh.verify_problems("n1", "front-proxy-client.crt", old, pem(5), ips) == [
        "n1: front-proxy-client.crt expires no later than the old one"
    ]
    assert certs_refresh.verify_problems("n1", "server.crt", old, None, ips) == [
        "n1: server.crt cannot be read after the refresh"
    ]
    renewed = pem(365)
    assert certs_refresh.verify_problems("n1", "server.crt", old, renewed, ips) == []
    assert certs_refresh.verify_problems("n1", "server.crt", old, renewed, [*ips, "10.0.0.2"]) == [
        "n1: server.crt lacks IP SAN(s) 10.0.0.2 (has 127.0.0.1, 10.0.0.1); clients using "
        "them fail TLS"
    ]


# --- on the MicroK8s model (tests/support/microk8s): its own refresh-certs, SANs and restarts --


class ModelLab:
    """Three nodes on the MicroK8s model over sshd, formed, each seeded with or without the
    launch configuration mk8s renders (its extraSANs are what server.crt must keep naming)."""

    def __init__(self, factory: SshdFactory, tmp: Path, *, launch_config: bool) -> None:
        from mk8s.render.launchconfig import launch_config as render
        from tests.support.microk8s.rig import BIN, FS, Rig

        self.rig = Rig(tmp / "model")
        cluster = factory(NAMES, path_dirs=[FS, BIN], env=self.rig.session_env())
        data = inventory(cluster)
        self.env = parse_inventory(yaml.safe_dump(data), "lab")
        configs = {n.name: yaml.safe_dump(render(self.env, n)) for n in self.env.nodes}
        self.rig.seed({n: cluster.nodes[n].host for n in NAMES}, configs if launch_config else None)
        self.rig.form(list(NAMES))
        self.work = tmp / "work"
        self.build = self.work / "build" / "lab"
        self.build.mkdir(parents=True)
        (self.build / "known_hosts").write_text(cluster.known_hosts())
        (self.work / "lab.yaml").write_text(yaml.safe_dump(data))
        self.before = {n: self.rig.check(n) for n in NAMES}

    def health(self) -> list[str]:
        """A small check on the model: kubelite not restarting, three voters agreed by all."""
        import time

        out = [f"{n}: kubelite restarting" for n in NAMES
               if float(self.rig.node(n).get("restart_until") or 0) > time.time()]  # fmt: skip
        views = {n: sorted(h for h, role in self.rig.members(n) if role == "voter") for n in NAMES}
        if any(len(v) != 3 or v != views[NAMES[0]] for v in views.values()):
            out.append(f"voters disagree: {views}")
        return out

    def refresh(self) -> Path | None:
        return certs_refresh.refresh(
            self.env, self.build, Options(), out=Console(file=io.StringIO()), health=self.health,
            root=self.work, inventory=str(self.work / "lab.yaml"),
        )  # fmt: skip

    def reissued(self) -> list[tuple[str, str]]:
        return [(e["node"], e["cert"]) for e in self.rig.events() if e["event"] == "reissued"]


@pytest.mark.slow
def test_on_the_model_a_cluster_installed_with_the_launch_config_refreshes_green(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    lab = ModelLab(sshd_factory, tmp_path, launch_config=True)
    assert lab.refresh() is not None
    assert all(lab.rig.check(n) != lab.before[n] for n in NAMES)  # the join fingerprint moved
    assert lab.reissued() == [(n, c) for n in NAMES for c in certs_refresh.RENEWED]
    assert check(lab.env, lab.build, NOW).level is Level.OK


@pytest.mark.slow
def test_on_the_model_a_cluster_without_extra_sans_stops_at_the_first_node(
    sshd_factory: SshdFactory, tmp_path: Path
) -> None:
    # Installed without mk8s' launch configuration: csr.conf names only the node's own IP, so
    # the reissued server.crt lacks the other nodes' addresses.
    lab = ModelLab(sshd_factory, tmp_path, launch_config=False)
    with pytest.raises(OperationFailedError, match=r"lab-k8s-1:verify-server.crt: .* lacks IP"):
        lab.refresh()
    assert lab.reissued() == [(N1, "server.crt")]


# --- the task -----------------------------------------------------------------------------


def invoke(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dev = str(ROOT / "inventory" / "dev.yaml")
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "certs", "--env", dev, *args],
        cwd=tmp, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_the_task_shows_the_plan_as_json_and_refuses_bad_combinations(tmp_path: Path) -> None:
    done = invoke(tmp_path, "--refresh", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["task"] == "certs-refresh" and body["steps"][2]["key"] == "dev-k8s-1:server.crt"
    assert not (tmp_path / "build").exists()  # a dry run locks and journals nothing
    ca = invoke(tmp_path, "--refresh", "--cert", "ca.crt", "--dry-run")
    assert ca.returncode == 2 and "Traceback" not in ca.stderr
    assert ca.stderr.startswith("error: --cert ca.crt: CA rotation is refused")
    alone = invoke(tmp_path, "--cert", "server.crt")
    assert alone.returncode == 2
    assert alone.stderr.strip() == (
        "error: --cert, --dry-run, --json and --break-lock go with --refresh"
    )
