"""Start and stop the real server process over TLS: for integration and end-to-end tests and benchmarks.

``start_server`` starts a real process (``python -m tests.support.serve_app`` by default, or any command),
waits until it answers over TLS; ``stop_server`` kills its whole process group, so no worker outlives
a test, even a failing one.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from webhook.certificates.generate import write_dev_certs

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 90.0  # the machine is shared; this only bounds a wait, it asserts nothing about speed
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DevCerts:
    """Paths of a CA and a serving pair for localhost / 127.0.0.1."""

    directory: Path
    ca_file: Path
    ca_key_file: Path
    cert_file: Path
    key_file: Path


@dataclass
class RunningServer:
    """A started server: where it listens, what CA to trust, and its combined stdout/stderr."""

    base_url: str
    host: str
    port: int
    ca_file: Path | None
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client_context(self) -> ssl.SSLContext:
        return client_context(self.ca_file)

    def connection(self, timeout_s: float = 30.0) -> http.client.HTTPConnection:
        if self.ca_file is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s, context=self.client_context())

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection: (status, headers, body)."""
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def client_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """A strict client: verifies the chain against our CA and the host name/IP against the SANs."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def find_free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def make_dev_certs(directory: Path) -> DevCerts:
    paths = write_dev_certs(directory, dns=["localhost"], ips=[LOOPBACK])
    return DevCerts(directory, paths.ca_cert, paths.ca_key, paths.cert, paths.key)


def _die_with_parent() -> None:
    """Runs in the child before exec: if pytest itself is killed, the server gets SIGTERM."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def stop_server(server: RunningServer) -> None:
    """SIGTERM the group (gunicorn's graceful stop), then SIGKILL whatever is left of the group."""
    if server.stopped:
        return
    server.stopped = True
    _signal_group(server.process, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(server.process, signal.SIGKILL)
    if server.process.poll() is None:
        server.process.wait(timeout=STOP_TIMEOUT_S)


def wait_until_ready(server: RunningServer, ready_path: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last_problem = "no attempt"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.logs()}")
        try:
            status, _, _ = server.request("GET", ready_path)
            if status == 200:
                return
            last_problem = f"status {status}"
        except (OSError, http.client.HTTPException) as problem:
            last_problem = repr(problem)
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout_s}s ({last_problem}):\n{server.logs()}")


StartServer = Callable[..., RunningServer]

#: `wandb-kfp-webhook serve` as start_server's `command` (its placeholders filled in per server).
SERVE_COMMAND = [
    sys.executable, "-m", "webhook.cli", "serve", "--host", "{host}", "--port", "{port}",
    "--tls-cert", "{cert_file}", "--tls-key", "{key_file}",
]  # fmt: skip
#: Settings of a served webhook without cluster access (pipeline pattern opt-in for the v2 fixtures).
NO_CLUSTER_ENV = {"WANDB_KFP_WEBHOOK_WATCH_NAMESPACES": "false", "WANDB_KFP_WEBHOOK_PIPELINES": "v2-*"}


def start_server(
    log_dir: Path,
    app_spec: str,
    certs: DevCerts | None,
    extra_env: Mapping[str, str] | None = None,
    *,
    workers: int = 2,
    reload_interval_s: float = 0.2,
    ready_path: str = "/healthz",
    command: Sequence[str] | None = None,
    host: str = LOOPBACK,
    port: int | None = None,
    on_start: Callable[[RunningServer], None] | None = None,
) -> RunningServer:
    """Start the real process (``python -m tests.support.serve_app`` unless ``command`` is given; its items are
    formatted with {host}, {port}, {cert_file}, {key_file}, {ca_file}, {app_spec}, {python}) and wait
    until it answers ``ready_path``; ``on_start`` sees the server before the wait, to stop it on failure."""
    chosen_port = port or find_free_port(host)
    placeholders = {
        "host": host,
        "port": str(chosen_port),
        "cert_file": str(certs.cert_file) if certs else "",
        "key_file": str(certs.key_file) if certs else "",
        "ca_file": str(certs.ca_file) if certs else "",
        "app_spec": app_spec,
        "python": sys.executable,
    }
    if command is not None:
        argv = [item.format(**placeholders) for item in command]
    else:
        argv = [
            sys.executable,
            "-m",
            "tests.support.serve_app",
            app_spec,
            "--host",
            host,
            "--port",
            str(chosen_port),
        ]
        argv += ["--workers", str(workers)]
        argv += ["--reload-interval", str(reload_interval_s)]
        if certs:
            argv += ["--cert-file", str(certs.cert_file), "--key-file", str(certs.key_file)]
        else:
            argv += ["--plain-http"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log_path = log_dir / f"server-{chosen_port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    scheme = "https" if certs else "http"
    server = RunningServer(
        base_url=f"{scheme}://{host}:{chosen_port}",
        host=host,
        port=chosen_port,
        ca_file=certs.ca_file if certs else None,
        process=process,
        log_path=log_path,
    )
    if on_start is not None:
        on_start(server)
    wait_until_ready(server, ready_path)
    return server


def peer_serial(connection: http.client.HTTPConnection) -> int:
    sock = connection.sock
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


class SecretVolume:
    """A directory laid out like kubelet's Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<gen>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True)

    @property
    def cert_file(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.root / "tls.key"

    def swap_symlink(self, cert_pem: bytes, key_pem: bytes) -> None:
        """What kubelet does: write a new timestamped directory, then rename one symlink over ..data."""
        self.generation += 1
        data_dir = self.root / f"..gen_{self.generation:03d}"
        data_dir.mkdir()
        (data_dir / "tls.crt").write_bytes(cert_pem)
        (data_dir / "tls.key").write_bytes(key_pem)
        os.chmod(data_dir / "tls.key", 0o600)
        staging = self.root / "..data_tmp"
        staging.symlink_to(data_dir.name)
        os.replace(staging, self.root / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")

    def rewrite_in_place(self, cert_pem: bytes, key_pem: bytes, pause_s: float) -> None:
        """The worst case a careless writer produces: the certificate truncated and written in two
        halves, then the key, with pauses so the server surely reads each torn state."""
        half = len(cert_pem) // 2
        with self.cert_file.open("wb") as cert_stream:
            cert_stream.write(cert_pem[:half])
            cert_stream.flush()
            time.sleep(pause_s)
            cert_stream.write(cert_pem[half:])
        time.sleep(pause_s)
        with self.key_file.open("wb") as key_stream:
            key_stream.write(key_pem)
