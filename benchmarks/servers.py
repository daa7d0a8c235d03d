"""Start the webhook or the floor app as a real `python -m webhook.serving` process over TLS on loopback.

Both servers get the same gunicorn server, TLS context (dev certificates from webhook.certs), workers and
threads; only the WSGI app differs. Each server runs in its own session (process group) and dies with
the benchmark (PR_SET_PDEATHSIG), and `stop()` SIGTERMs then SIGKILLs that group only.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPO_ROOT, children_of
from webhook.certs import write_dev_certs

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
OURS_APP = "webhook.app:create_app"
FLOOR_APP = "benchmarks.floor_app:app"
#: The server's own settings: no cluster, so the namespace cache is static and opt-in is by pod label.
OURS_ENV = {"WANDB_KFP_WEBHOOK_WATCH_NAMESPACES": "false"}


@dataclass(frozen=True)
class Certs:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certs(directory: Path) -> Certs:
    written = write_dev_certs(directory, dns=["localhost"], ips=[LOOPBACK])
    return Certs(Path(written.ca_cert), Path(written.cert), Path(written.key))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Server:
    name: str
    app_spec: str
    port: int
    certs: Certs
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: int
    threads: int
    temp_dirs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certs.ca_file))

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(LOOPBACK, self.port, timeout=30, context=self.client_context())
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        problem = "no attempt"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200 and len(self.worker_pids()) >= self.workers:
                    return
                problem = f"status {status}"
            except (OSError, http.client.HTTPException) as error:
                problem = repr(error)
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_S}s ({problem}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        for directory in self.temp_dirs:
            for path in sorted(directory.rglob("*"), reverse=True):
                with contextlib.suppress(OSError):
                    path.unlink() if path.is_file() else path.rmdir()
            with contextlib.suppress(OSError):
                directory.rmdir()


def start_server(
    name: str,
    app_spec: str,
    certs: Certs,
    log_dir: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> Server:
    """Start `python -m webhook.serving APP` with TLS and wait until every worker is up."""
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="wkw-bench-metrics-"))
    argv = [
        sys.executable,
        "-m",
        "webhook.serving",
        app_spec,
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--cert-file",
        str(certs.cert_file),
        "--key-file",
        str(certs.key_file),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        *(extra_args or []),
    ]
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("WANDB_KFP_WEBHOOK_")},
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        # As `wandb-kfp-webhook serve` does: every worker's metrics aggregated through mmap files.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **(extra_env or {}),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
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
    server = Server(name, app_spec, port, certs, process, log_path, workers, threads, [metrics_dir])
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_ours(certs: Certs, log_dir: Path, **kwargs: object) -> Server:
    return start_server("ours", OURS_APP, certs, log_dir, extra_env=dict(OURS_ENV), **kwargs)  # type: ignore[arg-type]


def start_ours_quiet(certs: Certs, log_dir: Path, **kwargs: object) -> Server:
    """The webhook with `--log-level warning`: no per-injection INFO line (what that line costs)."""
    return start_server(
        "ours-quiet",
        OURS_APP,
        certs,
        log_dir,
        extra_env=dict(OURS_ENV),
        extra_args=["--log-level", "warning"],
        **kwargs,
    )  # type: ignore[arg-type]


def start_floor(certs: Certs, log_dir: Path, **kwargs: object) -> Server:
    return start_server("floor", FLOOR_APP, certs, log_dir, **kwargs)  # type: ignore[arg-type]
