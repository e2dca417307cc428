"""A real Kubernetes API server for tests, in the style of controller-runtime's envtest.

`etcd` (Debian `etcd-server`) and `kube-apiserver` (built from the k8s.io/kubernetes Go module
by `scripts/deps.d/40-envtest.sh`, Kubernetes 1.33 like MicroK8s 1.33) run on a 127.0.0.x
address with self-signed serving certificates (trustme), a static admin token in
`system:masters`, and the RBAC authorizer on (`--authorization-mode=RBAC`), so
SubjectAccessReviews are answered by the real authorizer.

There is no controller-manager, scheduler or kubelet: tests create objects and set the statuses a
controller would (node conditions, LoadBalancer ingress, PVC phase, CRD conditions). Namespaces
are therefore never finalised after deletion, and pods need no ServiceAccount object
(the ServiceAccount admission plugin is off, as in envtest, because no controller creates
`default` service accounts).

Usage as a pytest plugin (`pytest_plugins = ["tests.support.envtest"]`):

    def test_x(kube_apiserver: KubeApiServer) -> None:
        core = kubernetes.client.CoreV1Api(kube_apiserver.api_client())
        ...
        subprocess.run(["kubectl", "--kubeconfig", str(kube_apiserver.kubeconfig), ...])

`kube_apiserver` is session-scoped: start once (a few seconds), share across tests; tests keep
apart by using their own namespaces (`kube_apiserver.create_namespace(...)`).

Binaries: `$MK8S_KUBE_APISERVER` or `$MK8S_CACHE/bin/kube-apiserver`; `$MK8S_ETCD` or `etcd` on
PATH. A missing binary fails the test with the command that installs it (CI installs them).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

START_TIMEOUT_S = 90.0
ADMIN_USER = "envtest-admin"
DEPS_HINT = "run scripts/deps.d/40-envtest.sh (and scripts/deps.d/00-apt.sh for etcd-server)"


class EnvtestError(RuntimeError):
    """etcd or kube-apiserver is missing or did not become ready."""


def cache_dir() -> Path:
    return Path(os.environ.get("MK8S_CACHE") or Path.home() / ".cache" / "mk8s")


def kube_apiserver_binary() -> Path:
    explicit = os.environ.get("MK8S_KUBE_APISERVER")
    path = Path(explicit) if explicit else cache_dir() / "bin" / "kube-apiserver"
    if not os.access(path, os.X_OK):
        raise EnvtestError(f"kube-apiserver not found at {path}; {DEPS_HINT}")
    return path


def etcd_binary() -> Path:
    explicit = os.environ.get("MK8S_ETCD")
    found = explicit or shutil.which("etcd")
    if not found or not os.access(found, os.X_OK):
        raise EnvtestError(f"etcd not found ({explicit or 'PATH'}); {DEPS_HINT}")
    return Path(found)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_loopback_host() -> str:
    """A 127.0.0.x address of its own, so parallel helpers and runs do not collide on ports."""
    return f"127.0.0.{secrets.randbelow(150) + 100}"


@dataclass
class KubeApiServer:
    """A running etcd + kube-apiserver; `kubeconfig` holds the admin credentials."""

    host: str
    port: int
    workdir: Path
    kubeconfig: Path
    ca_file: Path
    admin_token: str
    version: str = ""
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _logs: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def configuration(self) -> Any:
        """A `kubernetes.client.Configuration` for the admin user."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        config.ssl_ca_cert = str(self.ca_file)
        config.api_key = {"authorization": f"Bearer {self.admin_token}"}
        return config

    def api_client(self, impersonate: str | None = None, group: str | None = None) -> Any:
        """An ApiClient as the admin, or impersonating user `impersonate` (in `group`).

        One group only: the client keeps one value per default header.
        """
        from kubernetes import client

        api = client.ApiClient(self.configuration())
        if impersonate:
            api.set_default_header("Impersonate-User", impersonate)
            if group:
                api.set_default_header("Impersonate-Group", group)
        return api

    def create_namespace(self, name: str) -> str:
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def log(self, name: str) -> str:
        """The tail of `etcd.log` or `kube-apiserver.log`, for failure messages."""
        path = self.workdir / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


def _write_pki(workdir: Path, host: str) -> tuple[Path, Path, Path, Path, Path]:
    ca = trustme.CA(organization_name="mk8s envtest")
    serving = ca.issue_cert(host, "localhost", "kubernetes", "kubernetes.default.svc")
    ca_file = workdir / "ca.crt"
    cert_file = workdir / "apiserver.crt"
    key_file = workdir / "apiserver.key"
    ca.cert_pem.write_to_path(str(ca_file))
    serving.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in serving.cert_chain_pems))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_priv = workdir / "sa.key"
    sa_pub = workdir / "sa.pub"
    sa_priv.write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ca_file, cert_file, key_file, sa_priv, sa_pub


def _write_kubeconfig(path: Path, url: str, ca_file: Path, token: str) -> None:
    import base64

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {
                    "server": url,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": ADMIN_USER}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _spawn(server: KubeApiServer, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = (server.workdir / f"{name}.log").open("wb")
    server._logs.append(log)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server._procs.append(proc)
    return proc


def _wait_ready(server: KubeApiServer, deadline: float) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    request = urllib.request.Request(
        f"{server.url}/readyz", headers={"Authorization": f"Bearer {server.admin_token}"}
    )
    last = "no answer"
    while time.monotonic() < deadline:
        for proc in server._procs:
            if proc.poll() is not None:
                name = "etcd.log" if proc is server._procs[0] else "kube-apiserver.log"
                raise EnvtestError(
                    f"{Path(str(proc.args[0])).name} exited with {proc.returncode}:\n"
                    + server.log(name)
                )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise EnvtestError(
        f"kube-apiserver not ready at {server.url}/readyz after {START_TIMEOUT_S:.0f}s "
        f"(last: {last}):\n{server.log('kube-apiserver.log')}"
    )


def _version(server: KubeApiServer) -> str:
    from kubernetes import client

    info = client.VersionApi(server.api_client()).get_code()
    return str(info.git_version)


def start(workdir: Path, host: str | None = None) -> KubeApiServer:
    """Start etcd and kube-apiserver under `workdir`; the caller must `stop()` the result."""
    apiserver_bin, etcd_bin = kube_apiserver_binary(), etcd_binary()
    host = host or pick_loopback_host()
    workdir.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file, sa_priv, sa_pub = _write_pki(workdir, host)
    token = secrets.token_urlsafe(32)
    tokens = workdir / "tokens.csv"
    tokens.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    tokens.chmod(0o600)
    server = KubeApiServer(
        host=host,
        port=free_port(host),
        workdir=workdir,
        kubeconfig=workdir / "kubeconfig",
        ca_file=ca_file,
        admin_token=token,
    )
    etcd_client = f"http://{host}:{free_port(host)}"
    etcd_peer = f"http://{host}:{free_port(host)}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        _spawn(
            server,
            "etcd",
            [
                str(etcd_bin),
                "--name=envtest",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_client}",
                f"--advertise-client-urls={etcd_client}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=envtest={etcd_peer}",
                "--log-level=warn",
            ],
        )
        _spawn(
            server,
            "kube-apiserver",
            [
                str(apiserver_bin),
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={server.port}",
                f"--etcd-servers={etcd_client}",
                f"--cert-dir={workdir / 'certs'}",
                f"--tls-cert-file={cert_file}",
                f"--tls-private-key-file={key_file}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_priv}",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        _wait_ready(server, deadline)
        _write_kubeconfig(server.kubeconfig, server.url, ca_file, token)
        server.version = _version(server)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running(workdir: Path | None = None, host: str | None = None) -> Iterator[KubeApiServer]:
    """Context manager around `start`/`stop`; a temporary workdir when none is given."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="envtest-")))
        server = start(workdir, host)
        stack.callback(server.stop)
        yield server


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """One real kube-apiserver (+ etcd) for the whole test session."""
    try:
        with running(tmp_path_factory.mktemp("envtest")) as server:
            yield server
    except EnvtestError as exc:
        pytest.fail(str(exc), pytrace=False)
