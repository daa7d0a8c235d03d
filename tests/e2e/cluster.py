"""A real etcd + kube-apiserver on loopback for end-to-end tests: no kubelet, scheduler or controllers.

Pods are stored and stay Pending, which is all admission tests need. Everything the cluster writes
(certificates, token file, kubeconfig, etcd data, logs) lives in one temp dir that `stop()` removes, and
both servers run in their own process groups so `stop()` can end them and anything they spawned.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from kubernetes import client as k8s

from tests.e2e.binaries import Binaries, binary_versions
from tests.e2e.certs import CertificateAuthority, service_account_signing_key

ADMIN_USER = "wkw-e2e-admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
TEMP_PREFIX = "wkw-e2e-"
START_DEADLINE_SECONDS = 120.0
STOP_GRACE_SECONDS = 15.0
LOG_TAIL_LINES = 40
PORT_RACE_ATTEMPTS = 3

_PR_SET_PDEATHSIG = 1
_live_clusters: dict[int, Cluster] = {}


class ClusterStartError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message carries the tail of their logs."""


def free_port() -> int:
    """A loopback TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: own process group, and SIGKILL when the test process dies (Linux)."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs() -> list[Path]:
    """Remove temp dirs of earlier runs whose owning process is gone (e.g. the runner was SIGKILLed)."""
    removed = []
    for candidate in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        owner = candidate.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not _pid_alive(int(owner)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that it is missing."""
    if not path.exists():
        return f"({path.name} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LoggedProcess:
    """A server the harness started: its process (own group, killed with the tests) and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


def spawn_logged(
    name: str, command: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None
) -> LoggedProcess:
    """Start `command` with stdout and stderr in `log_path`, no stdin, dying with the test process."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            preexec_fn=_die_with_parent,
        )
    return LoggedProcess(name, process, log_path)


@dataclass
class Cluster:
    """One etcd + kube-apiserver pair; use `start()`/`stop()` or a `with` block."""

    binaries: Binaries
    extra_apiserver_args: tuple[str, ...] = ()
    url: str = ""
    ca_file: Path = field(default_factory=Path)
    token: str = field(default="", repr=False)
    kubeconfig: Path = field(default_factory=Path)
    temp_dir: Path = field(default_factory=Path)
    versions: dict[str, str] = field(default_factory=dict)
    ca: CertificateAuthority | None = field(default=None, repr=False)
    _servers: list[LoggedProcess] = field(default_factory=list, repr=False)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start etcd, then kube-apiserver; return once /readyz is ok and `default` exists.

        Free ports are picked before the servers bind them, so another process can win the race; that
        one failure is retried with new ports.
        """
        remove_stale_temp_dirs()
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            try:
                return self._start_once()
            except ClusterStartError as error:
                if "address already in use" not in str(error) or attempt == PORT_RACE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> Cluster:
        self.temp_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        _live_clusters[id(self)] = self
        try:
            self._write_credentials()
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._wait_until_ready()
            self._write_kubeconfig(self.kubeconfig, self.token, ADMIN_USER)
            self.versions = {**binary_versions(self.binaries), "server": self.server_version()}
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate both servers' process groups (then kill), and remove the temp dir."""
        for server in reversed(self._servers):
            _stop_process_group(server.process)
        self._servers.clear()
        if self.temp_dir != Path() and self.temp_dir.exists():
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        _live_clusters.pop(id(self), None)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running servers (etcd first)."""
        return [server.process.pid for server in self._servers]

    # -- start-up --------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        pki = self.temp_dir / "pki"
        pki.mkdir(mode=0o700)
        self.ca = CertificateAuthority()
        self.ca_file = pki / "ca.crt"
        self.ca_file.write_bytes(self.ca.cert_pem)
        serving = self.ca.issue(
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1", "10.0.0.1"),
        )
        serving.write(pki, "apiserver")
        sa_private, sa_public = service_account_signing_key()
        (pki / "sa.key").touch(mode=0o600)
        (pki / "sa.key").write_bytes(sa_private)
        (pki / "sa.pub").write_bytes(sa_public)
        self.token = secrets.token_urlsafe(32)
        token_file = pki / "tokens.csv"
        token_file.touch(mode=0o600)
        token_file.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        self.kubeconfig = self.temp_dir / "kubeconfig"

    def _spawn(self, name: str, command: list[str]) -> LoggedProcess:
        server = spawn_logged(name, command, self.temp_dir / f"{name}.log", self.temp_dir)
        self._servers.append(server)
        return server

    def _start_etcd(self) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        command = [
            str(self.binaries.etcd),
            "--name=wkw-e2e",
            f"--data-dir={self.temp_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=wkw-e2e={peer_url}",
            "--log-level=warn",
        ]
        if _supports_flag(self.binaries.etcd, "--unsafe-no-fsync"):
            command.append("--unsafe-no-fsync")
        server = self._spawn("etcd", command)
        self._poll(
            server,
            lambda: requests.get(f"{client_url}/health", timeout=2).json().get("health") == "true",
            "etcd /health",
        )
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        port = free_port()
        pki = self.temp_dir / "pki"
        self.url = f"https://127.0.0.1:{port}"
        command = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--v=1",
            *self.extra_apiserver_args,
        ]
        self._spawn("kube-apiserver", command)

    def _wait_until_ready(self) -> None:
        apiserver = self._servers[-1]
        self._poll(
            apiserver,
            lambda: requests.get(f"{self.url}/readyz", verify=str(self.ca_file), timeout=5).text == "ok",
            "kube-apiserver /readyz",
        )
        self._poll(
            apiserver,
            lambda: (
                requests.get(
                    f"{self.url}/api/v1/namespaces/default",
                    headers={"Authorization": f"Bearer {self.token}"},
                    verify=str(self.ca_file),
                    timeout=5,
                ).status_code
                == 200
            ),
            "namespace default",
        )

    def _poll(self, server: LoggedProcess, ready: Callable[[], bool], what: str) -> None:
        """Wait for `ready()`; fail with every server's log tail if the server exits or never gets there."""
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                self._fail(f"{server.name} exited with {server.process.returncode} before {what}")
            with contextlib.suppress(requests.RequestException, ValueError):
                if ready():
                    return
            time.sleep(0.2)
        self._fail(f"{what} not ready after {START_DEADLINE_SECONDS:.0f}s")

    def _fail(self, reason: str) -> None:
        tails = "\n".join(
            f"----- {server.name} log tail ({server.log_path}) -----\n{log_tail(server.log_path)}"
            for server in self._servers
        )
        message = f"{reason}\n{tails}"
        print(message, file=sys.stderr)
        raise ClusterStartError(message)

    # -- clients ---------------------------------------------------------------------------------

    def _write_kubeconfig(self, path: Path, token: str, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "wkw-e2e",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_file.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "wkw-e2e", "user": user}}],
            "current-context": user,
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(config, indent=2))

    def kubeconfig_for_token(self, token: str, user: str) -> Path:
        """A kubeconfig that authenticates as another identity (e.g. a ServiceAccount token)."""
        path = self.temp_dir / f"kubeconfig-{user.replace(':', '-')}"
        self._write_kubeconfig(path, token, user)
        return path

    def api_client(self, token: str | None = None) -> k8s.ApiClient:
        """A `kubernetes` python client for this cluster, as the admin unless another token is given."""
        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": token or self.token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return k8s.ApiClient(configuration)

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; raise with its output when `check` and it fails."""
        command = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(command, input=input_text, capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def server_version(self) -> str:
        """The gitVersion the apiserver reports on /version."""
        response = requests.get(f"{self.url}/version", verify=str(self.ca_file), timeout=10)
        response.raise_for_status()
        return str(response.json()["gitVersion"])

    # -- objects a controller-manager would create -----------------------------------------------

    def create_namespace(
        self, name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> None:
        """Create a namespace plus what kube-controller-manager would add: the `default` ServiceAccount
        (pods cannot be admitted without it) and the `kube-root-ca.crt` ConfigMap."""
        with self.api_client() as api_client:
            core = k8s.CoreV1Api(api_client)
            core.create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=labels, annotations=annotations))
            )
            core.create_namespaced_service_account(
                name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default"))
            )
            core.create_namespaced_config_map(
                name,
                k8s.V1ConfigMap(
                    metadata=k8s.V1ObjectMeta(name="kube-root-ca.crt"),
                    data={"ca.crt": self.ca_file.read_text()},
                ),
            )

    def service_account_token(self, namespace: str, name: str = "default") -> str:
        """A real bound token for a ServiceAccount, from the TokenRequest API (as kubelet would get it)."""
        with self.api_client() as api_client:
            response = k8s.CoreV1Api(api_client).create_namespaced_service_account_token(
                name,
                namespace,
                k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(expiration_seconds=3600)),
            )
        assert response.status is not None
        return str(response.status.token)


def as_dict(obj: object) -> dict[str, Any]:
    """A client model (V1Pod, ...) as the camelCase dict the API returned, for plain indexing in tests."""
    serialised: dict[str, Any] = k8s.ApiClient().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return serialised


def _supports_flag(binary: Path, flag: str) -> bool:
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False, timeout=60)
    return flag in result.stdout + result.stderr


def _stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # The leader is gone; kill any straggler still in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@atexit.register
def _stop_all_clusters() -> None:
    """Backstop for interpreter exit after Ctrl-C or a crash in a fixture's teardown."""
    for cluster in list(_live_clusters.values()):
        cluster.stop()


def processes_in_group(group_id: int) -> list[int]:
    """Live processes whose process group is `group_id` (a server and anything it spawned)."""
    members = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == group_id and state != "Z":
            members.append(int(stat_path.parent.name))
    return members


def process_exists(pid: int) -> bool:
    """True while `pid` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
