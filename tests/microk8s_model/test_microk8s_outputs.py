"""Contract: the MicroK8s model prints what real MicroK8s prints, state for state.

Every block of shared/reference/microk8s-outputs.md is matched by a scenario that drives the
model (over real sshd, as the suite uses it) into that state; addresses, tokens and the dots of
the join progress line are normalised. A new block without a scenario fails, so the model
cannot drift from the reference, nor the reference grow past the model, without a red test.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.microk8s.rig import BIN, Rig
from tests.support.shared import shared_dir
from tests.support.sshd import SshdCluster, SshdFactory, sshd_factory

__all__ = ["sshd_factory"]

pytestmark = pytest.mark.slow

NAMES = ("c1", "c2", "c3", "c4", "c5", "c6")


def reference_blocks() -> dict[str, list[str]]:
    """`## title` -> the code blocks under it (as lists of lines)."""
    text = (shared_dir() / "reference" / "microk8s-outputs.md").read_text()
    blocks: dict[str, list[str]] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        blocks[title.strip()] = re.findall(r"^```\n(.*?)^```", body, flags=re.M | re.S)
    return blocks


def reference_quotes(title_prefix: str) -> list[str]:
    """The `...` quotes of a bullet section (join failures, enable/disable)."""
    text = (shared_dir() / "reference" / "microk8s-outputs.md").read_text()
    section = next(s for s in re.split(r"^## ", text, flags=re.M) if s.startswith(title_prefix))
    return re.findall(r"`([^`]+)`", section)


def normalise(text: str) -> list[str]:
    text = re.sub(r"\b[0-9a-f]{32}\b", "TOKEN", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "CHECK", text)
    text = text.replace("redacted:", "IP:").replace("/redacted/redacted", "/TOKEN/CHECK")
    text = re.sub(r"\b\d{1,3}(\.\d{1,3}){3}\b", "IP", text)
    text = re.sub(r"<ip>", "IP", text)
    text = re.sub(r"cluster\.( \.+)+", "cluster. …", text)
    return [line.rstrip() for line in text.splitlines()]


def is_subsequence(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


@dataclass
class Run:
    code: int
    out: str
    err: str = ""


@dataclass
class Nodes:
    rig: Rig
    cluster: SshdCluster
    known_hosts: Path

    def run(self, name: str, command: str) -> Run:
        argv = [*self.cluster.ssh_argv(name, self.known_hosts), command]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return Run(res.returncode, res.stdout, res.stderr)

    def ip(self, name: str) -> str:
        return self.cluster.nodes[name].host

    def join_url(self, via: str) -> str:
        token = yaml.safe_load(self.run(via, "microk8s add-node --format json").out)["token"]
        return f"{self.ip(via)}:25000/{token}"


@pytest.fixture
def nodes(sshd_factory: SshdFactory, tmp_path: Path) -> Iterator[Callable[..., Nodes]]:
    def make(count: int, version: str = "1.33", addons: list[str] | None = None) -> Nodes:
        rig = Rig(tmp_path / "model")
        cluster = sshd_factory(NAMES[:count], path_dirs=[BIN], env=rig.session_env())
        rig.configure(version=version)
        rig.seed({n: cluster.nodes[n].host for n in NAMES[:count]})
        if addons is not None:
            with_addons: dict[str, list[str]] = {a: [] for a in addons}
            rig.form(list(NAMES[:count]), with_addons)
            rig.set_addons(with_addons)  # only these: drop what install enabled
        known = tmp_path / "known_hosts"
        known.write_text(cluster.known_hosts())
        return Nodes(rig, cluster, known)

    yield make


def header(lines: list[str]) -> list[str]:
    return lines[: lines.index("addons:")] if "addons:" in lines else lines


def assert_status_matches(reference: str, got: str) -> None:
    want, have = normalise(reference), normalise(got)
    assert header(want) == header(have), f"model printed:\n{got}"
    assert is_subsequence(want, have), f"reference lines missing or out of order:\n{got}"


STATUS_TITLES = {
    "status — single node, 1.29.2": (1, "1.29", ["dns", "ha-cluster", "helm", "helm3"]),
    "status — HA, 3 voters, 1.32.3": (3, "1.33", ["dns", "ha-cluster", "helm", "helm3", "metallb"]),
    "status — HA with 3 standbys, 1.28.3/1.29.0": (6, "1.29", ["dns", "ha-cluster"]),
    "status — 2 nodes, not HA (one voter, one spare), 1.28 (canonical/microk8s#4649)": (
        2,
        "1.28",
        ["dns", "ha-cluster"],
    ),
}


def title(prefix: str) -> str:
    return next(t for t in reference_blocks() if t.startswith(prefix))


@pytest.mark.parametrize("prefix", list(STATUS_TITLES))
def test_pretty_status(nodes: Callable[..., Nodes], prefix: str) -> None:
    count, version, addons = STATUS_TITLES[prefix]
    lab = nodes(count, version, addons)
    got = lab.run("c1", "microk8s status")
    assert got.code == 0
    assert_status_matches(reference_blocks()[title(prefix)][0], got.out)


def test_yaml_status_with_every_role(nodes: Callable[..., Nodes]) -> None:
    """3 voters, a stand-by and a spare not yet promoted (GD roles: the 5th member is a spare
    until the next adjustment)."""
    lab = nodes(5, "1.33", ["dns", "ha-cluster"])
    ref_running, _ = reference_blocks()[title("status --format yaml")]
    lab.rig.configure(promote_delay_s=3600)
    lab.rig.set_roles("c1", ["voter", "voter", "voter", "standby", "spare"])
    got = lab.run("c1", "microk8s status --format yaml")
    want = yaml.safe_load("\n".join(normalise(ref_running)))
    have = yaml.safe_load("\n".join(normalise(got.out)))
    assert have["microk8s"] == want["microk8s"]
    assert have["high-availability"] == want["high-availability"], got.out
    by_name = {a["name"]: a for a in have["addons"]}
    for addon in want["addons"]:
        mine = {k: v for k, v in by_name[addon["name"]].items() if k != "version"}
        assert mine == {k: v for k, v in addon.items() if k != "version"}


def test_yaml_status_not_running(nodes: Callable[..., Nodes]) -> None:
    lab = nodes(1)
    lab.rig.set_node("c1", running=False)
    got = lab.run("c1", "microk8s status --format yaml")
    assert got.code == 1  # MK status.py: exit 1 when not ready
    assert normalise(got.out) == normalise(reference_blocks()[title("status --format yaml")][1])


def test_add_node_pretty(nodes: Callable[..., Nodes]) -> None:
    lab = nodes(1)
    got = lab.run("c1", "microk8s add-node")
    ref = reference_blocks()[title("add-node — pretty")][0]
    assert normalise(got.out) == normalise(ref)


def test_add_node_short_prints_the_default_line_twice_before_1_30(
    nodes: Callable[..., Nodes],
) -> None:
    lab = nodes(1, "1.28")
    got = lab.run("c1", "microk8s add-node --format=short")
    assert normalise(got.out) == normalise(reference_blocks()[title("add-node --format=short")][0])
    lab.rig.configure(version="1.33")
    assert len(normalise(lab.run("c1", "microk8s add-node --format=short").out)) == 1


def test_add_node_json_one_url_per_address(nodes: Callable[..., Nodes]) -> None:
    lab = nodes(1)
    lab.rig.set_node("c1", other_ips=["172.17.0.1"])
    got = lab.run("c1", "microk8s add-node --format json")
    assert normalise(got.out) == normalise(reference_blocks()[title("add-node --format json")][0])


def test_join_success_by_version(nodes: Callable[..., Nodes]) -> None:
    modern, legacy = reference_blocks()[title("join — success")]
    for version, ref in (("1.33", modern), ("1.28", legacy)):
        lab = nodes(2, version)
        got = lab.run("c2", f"microk8s join {lab.join_url('c1')}")
        assert got.code == 0, got.out
        assert normalise(got.out) == normalise(ref)


def join_failure(lab: Nodes, quote: str) -> Run:
    """Drive the model into the state behind one quoted failure and join."""
    if "Invalid token" in quote:
        return lab.run("c2", f"microk8s join {lab.ip('c1')}:25000/{'0' * 32}")
    if "does not resolve" in quote:
        lab.rig.set_node("c2", hostname="node02")
        lab.rig.fault("c1", hostname_unresolvable=True)
    elif "already known" in quote:
        lab.rig.configure(version="1.28" if "(504)" in quote else "1.33")
        assert lab.run("c2", f"microk8s join {lab.join_url('c1')}").code == 0
        lab.rig.rebuild("c2")
    elif "bind address" in quote:
        lab.rig.fault("c1", bind_address_missing=True)
    elif quote == "Connection failed. (500).":
        lab.rig.fault("c1", empty_error=True)
    elif "not an HA" in quote:
        lab.rig.fault("c1", not_ha=True)
    elif "same IP" in quote:
        return lab.run("c1", f"microk8s join {lab.join_url('c1')}")
    elif "Could not verify" in quote:
        url = lab.join_url("c1")
        lab.run("c1", "microk8s refresh-certs --cert server.crt")
        return lab.run("c2", f"microk8s join {url}")
    elif "Invalid master IP" in quote:
        return lab.run("c2", f"microk8s join c1:25000/{'0' * 32}")
    elif "token size" in quote:
        return lab.run("c2", f"microk8s join {lab.ip('c1')}:25000/abc")
    else:
        pytest.fail(f"no scenario for the reference's join failure: {quote}")
    return lab.run("c2", f"microk8s join {lab.join_url('c1')}")


JOIN_EXIT = {"Joining cluster failed": 4, "Invalid connection": 1}


def test_every_join_failure(nodes: Callable[..., Nodes]) -> None:
    quotes = [q for q in reference_quotes("join — failures") if q[:1].isupper() and len(q) > 20]
    assert len(quotes) >= 10, quotes
    for quote in quotes:
        lab = nodes(2)
        got = join_failure(lab, quote)
        expected = next((c for p, c in JOIN_EXIT.items() if quote.startswith(p)), 6)
        assert got.code == expected, (quote, got.out)
        last = [ln for ln in normalise(got.out + got.err) if ln][-1]
        assert last == normalise(quote)[0] or last.startswith(
            normalise(quote)[0].split("...")[0].rstrip(".")
        ), (quote, got.out)


def test_enable_and_disable_texts(nodes: Callable[..., Nodes]) -> None:
    lab = nodes(1, "1.33", ["dns", "ha-cluster"])
    quotes = reference_quotes("enable / disable")
    assert "Addon core/dns is already enabled" in quotes
    assert lab.run("c1", "microk8s enable dns").out.splitlines()[-1] == quotes[0]
    assert lab.run("c1", "microk8s disable metallb").out.splitlines()[-1] == quotes[1]
    metallb = lab.run("c1", "microk8s enable metallb:10.0.0.50-10.0.0.69").out.splitlines()
    assert (metallb[0], metallb[-1]) == ("Enabling MetalLB", "MetalLB is enabled")
    ingress = lab.run("c1", "microk8s enable ingress").out.splitlines()
    assert (ingress[0], ingress[-1]) == ("Enabling Ingress", "Ingress is enabled")


def test_every_reference_block_has_a_scenario() -> None:
    covered = [*STATUS_TITLES, "status --format yaml", "add-node — pretty",
               "add-node --format=short", "add-node --format json", "join — success",
               "join — failures", "enable / disable"]  # fmt: skip
    for t in reference_blocks():
        assert any(t.startswith(c) for c in covered), f"no contract scenario for: {t}"
