"""Networked tasks against a Proxmox that refuses, rejects the token, fails with 5xx or never
answers: one line naming the endpoint, the documented exit 1, bounded in time (issue 12).

The HTTPS endpoint is a local server with a trustme certificate for 127.0.0.1 (the inventory's
ca_bundle names the CA), so the client gets as far as a real PVE client would.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.contracts.support import ROOT, closed_port, inventory, run_task, write_inventory

# The tasks that talk to Proxmox first, with what gets them past argument checks and confirmation.
PVE_TASKS: dict[str, list[str]] = {
    "provision": [],
    "destroy": ["--yes"],
    "snapshot": ["--name", "s1"],
    "rollback": ["--name", "s1", "--yes"],
    "power": ["--action", "stop", "--yes"],
    "bootstrap": [],
}
BOUND_S = 30


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 503
    hang = False

    def _reply(self) -> None:
        if self.hang:
            threading.Event().wait(120)
            return
        body = b'{"data":null,"message":"proxy loop detected"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _reply  # noqa: N815 (http.server names)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _serve(ca: trustme.CA, status: int, hang: bool = False) -> tuple[http.server.HTTPServer, int]:
    handler = type("Handler", (_Answer,), {"status": status, "hang": hang})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _lab(root: Path, ca: trustme.CA, port: int) -> None:
    data = inventory("lab", proxmox_endpoint=f"https://127.0.0.1:{port}")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    data["proxmox"]["ca_bundle"] = str(root / "ca.pem")
    write_inventory(root, data)


@pytest.fixture(params=[401, 503], ids=["401", "503"])
def answering(
    request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path
) -> Iterator[tuple[Path, int, int]]:
    server, port = _serve(ca, request.param)
    _lab(tmp_path, ca, port)
    yield tmp_path, port, request.param
    server.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(PVE_TASKS))
def test_connection_refused(task: str, ca: trustme.CA, tmp_path: Path) -> None:
    port = closed_port()
    _lab(tmp_path, ca, port)
    outcome = run_task(task, "--env", "lab", *PVE_TASKS[task], cwd=tmp_path, timeout=BOUND_S + 30)
    outcome.assert_one_line(1, f"127.0.0.1:{port}", "refused", within_s=BOUND_S)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(PVE_TASKS))
def test_token_rejected_or_server_error(task: str, answering: tuple[Path, int, int]) -> None:
    root, port, status = answering
    outcome = run_task(task, "--env", "lab", *PVE_TASKS[task], cwd=root, timeout=BOUND_S + 30)
    outcome.assert_one_line(1, f"127.0.0.1:{port}", str(status), within_s=BOUND_S)


@pytest.mark.slow
def test_endpoint_that_never_answers(ca: trustme.CA, tmp_path: Path) -> None:
    server, port = _serve(ca, 200, hang=True)
    _lab(tmp_path, ca, port)
    try:
        outcome = run_task(
            "power", "--env", "lab", "--action", "stop", "--yes", cwd=tmp_path, timeout=90
        )
    finally:
        server.shutdown()
    outcome.assert_one_line(1, f"127.0.0.1:{port}", "no answer", within_s=BOUND_S + 5)


@pytest.mark.slow
def test_loadtest_against_a_dead_target(tmp_path: Path) -> None:
    port = closed_port()
    write_inventory(tmp_path, inventory("lab"))
    url = f"http://127.0.0.1:{port}"
    outcome = run_task(
        "loadtest", "--env", "lab", "--host", url, "--duration", "2", cwd=tmp_path, timeout=90
    )
    assert "Traceback" not in outcome.stderr
    assert outcome.code == 1, outcome.stderr
    assert f"connection refused to {url}" in outcome.stdout + outcome.stderr, (
        outcome.stdout + outcome.stderr
    )
    assert "p95 None" not in outcome.stdout


def _kubeconfig(root: Path, port: int) -> Path:
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    kubeconfig.chmod(0o600)
    return kubeconfig


@pytest.mark.slow
def test_deploy_against_an_api_server_that_never_answers(tmp_path: Path) -> None:
    """Accepts the connection, then silence: bounded by mk8s' own timeouts."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshakes; nobody ever reads or writes
    port = int(silent.getsockname()[1])
    write_inventory(tmp_path, inventory("lab"))
    (tmp_path / "manifests").symlink_to(ROOT / "manifests")
    kubeconfig = _kubeconfig(tmp_path, port)
    try:
        outcome = run_task(
            "deploy", "--env", "lab", "--kubeconfig", str(kubeconfig), cwd=tmp_path, timeout=120
        )
    finally:
        silent.close()
    outcome.assert_one_line(1, f"127.0.0.1:{port}", within_s=BOUND_S + 15)


@pytest.mark.slow
def test_deploy_against_a_dead_api_server(tmp_path: Path) -> None:
    port = closed_port()
    write_inventory(tmp_path, inventory("lab"))
    (tmp_path / "manifests").symlink_to(ROOT / "manifests")  # the overlays kustomize builds
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    kubeconfig.chmod(0o600)
    outcome = run_task(
        "deploy", "--env", "lab", "--kubeconfig", str(kubeconfig), cwd=tmp_path, timeout=90
    )
    outcome.assert_one_line(1, f"127.0.0.1:{port}", within_s=BOUND_S)
