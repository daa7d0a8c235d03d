"""Start the webhook or the floor app as a real `python -m tests.support.serve_app` process over TLS on loopback.

Both servers get the same gunicorn server and worker, TLS context (dev certificates from webhook.certificates) and
workers; only the WSGI app differs. The process handling (own process group, dies with the benchmark,
SIGTERM then SIGKILL of that group) is tests.support.servers', shared with the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import children_of
from tests.support.servers import DevCerts, RunningServer, make_dev_certs, stop_server
from tests.support.servers import start_server as start_process

READY_TIMEOUT_S = 120.0
OURS_APP = "webhook.server.app:create_app"
FLOOR_APP = "benchmarks.floor_app:app"
#: The server's own settings: no cluster, so the namespace cache is static and opt-in is by pod label.
OURS_ENV = {"WANDB_KFP_WEBHOOK_WATCH_NAMESPACES": "false"}


Certs = DevCerts
make_certs = make_dev_certs


@dataclass
class Server:
    """A started server (tests.support.servers does the process work) plus what the benchmarks read."""

    name: str
    running: RunningServer
    certs: DevCerts
    workers: int
    metrics_dir: Path

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def url(self) -> str:
        return self.running.base_url

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.running.process

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, _, payload = self.running.request(method, path, body, headers)
        return status, payload

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def stop(self) -> None:
        stop_server(self.running)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def start_server(
    name: str,
    app_spec: str,
    certs: DevCerts,
    log_dir: Path,
    *,
    workers: int = 2,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> Server:
    """Start `python -m tests.support.serve_app APP` with TLS and wait until every worker is up."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="wkw-bench-metrics-"))
    command = [
        "{python}", "-m", "tests.support.serve_app", "{app_spec}", "--host", "{host}", "--port", "{port}",
        "--cert-file", "{cert_file}", "--key-file", "{key_file}",
        "--workers", str(workers), *(extra_args or []),
    ]  # fmt: skip
    # As `wandb-kfp-webhook serve` does: every worker's metrics aggregated through mmap files.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **(extra_env or {})}
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[RunningServer] = []
    try:
        running = start_process(log_dir, app_spec, certs, env, command=command, on_start=started.append)
        server = Server(name, running, certs, workers, metrics_dir)
        deadline = time.monotonic() + READY_TIMEOUT_S  # one worker answered; wait for all of them
        while len(server.worker_pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
    except BaseException:
        for process in started:
            stop_server(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    return server


def start_ours(certs: Certs, log_dir: Path, **kwargs: object) -> Server:
    return start_server("ours", OURS_APP, certs, log_dir, extra_env=dict(OURS_ENV), **kwargs)  # type: ignore[arg-type]


def start_floor(certs: Certs, log_dir: Path, **kwargs: object) -> Server:
    return start_server("floor", FLOOR_APP, certs, log_dir, **kwargs)  # type: ignore[arg-type]
