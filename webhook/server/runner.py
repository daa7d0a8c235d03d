"""Run the server: gunicorn embedded as the process manager, our asyncio worker inside every process.

gunicorn forks the workers, restarts a dead one, stops them gracefully and gives each the listening
sockets and the TLS context (from `tls.CertificateReloader`); `worker.AsyncioWorker` serves HTTP in each.
The app comes as a factory each worker calls after the fork (``functools.partial(create_app, settings)``),
so per-process state (the namespace watch thread, clients) is never shared across a fork.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from webhook import logs
from webhook.certificates.checks import describe
from webhook.server.connection import Limits
from webhook.server.tls import DEFAULT_RELOAD_INTERVAL_S, CertificateReloader

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

DEFAULT_KEEPALIVE_S = 15
DEFAULT_WORKER_TIMEOUT_S = 30
DEFAULT_GRACEFUL_TIMEOUT_S = 15


class _EmbeddedGunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """Gunicorn driven from code: options come only from here (GUNICORN_CMD_ARGS is ignored).

    Workers are forked from the master with this object, so `http_limits` reaches them as an object.
    """

    def __init__(
        self, load_app: Callable[[], WSGIApplication], options: dict[str, object], http_limits: Limits
    ) -> None:
        self._load_app = load_app
        self._options = options
        self.http_limits = http_limits
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> WSGIApplication:
        return self._load_app()


def _default_worker_tmp_dir() -> str | None:
    """Heartbeat files on tmpfs: works with a read-only root filesystem and never blocks on disk."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None  # noqa: S108


def _forget_worker_metrics(server: object, worker: Any) -> None:
    """Prometheus multiprocess mode: drop a dead worker's live gauges (its counters stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def format_bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_gunicorn_options(
    *,
    host: str,
    port: int,
    workers: int,
    keepalive_s: int,
    timeout_s: int,
    graceful_timeout_s: int,
    log_level: str,
    access_log: bool,
    reloader: CertificateReloader | None,
) -> dict[str, object]:
    """The complete gunicorn configuration; TLS settings only when a reloader is given."""
    options: dict[str, object] = {
        "bind": [format_bind(host, port)],
        "workers": workers,
        "worker_class": "webhook.server.worker.AsyncioWorker",
        "keepalive": keepalive_s,
        "timeout": timeout_s,
        "graceful_timeout": graceful_timeout_s,
        "loglevel": log_level,
        "errorlog": "-",
        "accesslog": "-" if access_log else None,
        "logconfig_dict": logs.dict_config(log_level),
        "proc_name": "wandb-kfp-webhook",
        "worker_tmp_dir": _default_worker_tmp_dir(),
        "preload_app": False,
        "child_exit": _forget_worker_metrics,
    }
    if reloader is not None:

        def ssl_context(config: object, default_ssl_context_factory: object) -> ssl.SSLContext:
            return reloader.current()

        options.update(certfile=reloader.cert_file, keyfile=reloader.key_file, ssl_context=ssl_context)
    return options


def serve(
    app_factory: Callable[[], WSGIApplication],
    *,
    host: str = "0.0.0.0",  # noqa: S104 - a pod must listen on its pod IP
    port: int = 8443,
    cert_file: str | None = None,
    key_file: str | None = None,
    workers: int = 2,
    plain_http: bool = False,
    reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
    keepalive_s: int = DEFAULT_KEEPALIVE_S,
    request_timeout_s: float = Limits.request_timeout_s,
    max_connections: int = Limits.max_connections,
    timeout_s: int = DEFAULT_WORKER_TIMEOUT_S,
    graceful_timeout_s: int = DEFAULT_GRACEFUL_TIMEOUT_S,
    drain_s: float = 0.0,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the app `app_factory` builds in every worker until SIGTERM/SIGINT; exits when gunicorn stops.

    TLS needs ``cert_file`` and ``key_file``; ``plain_http=True`` is for tests and benchmarks only.
    After SIGTERM each worker keeps serving for ``drain_s`` seconds (answers closing their connections)
    before it stops listening; gunicorn's graceful timeout grows by as much.
    """
    if plain_http:
        if cert_file or key_file:
            raise ValueError("plain_http and cert_file/key_file are mutually exclusive")
        reloader = None
    else:
        if not cert_file or not key_file:
            raise ValueError("TLS needs cert_file and key_file (or plain_http=True)")
        logs.configure(log_level)
        reloader = CertificateReloader(cert_file, key_file, reload_interval_s=reload_interval_s)
        log.info("serving certificate loaded: %s", describe(reloader.served_cert_pem))
    options = build_gunicorn_options(
        host=host,
        port=port,
        workers=workers,
        keepalive_s=keepalive_s,
        timeout_s=timeout_s,
        graceful_timeout_s=graceful_timeout_s + math.ceil(drain_s),
        log_level=log_level,
        access_log=access_log,
        reloader=reloader,
    )
    limits = Limits(
        request_timeout_s=request_timeout_s, keepalive_s=keepalive_s, max_connections=max_connections, drain_s=drain_s
    )
    _EmbeddedGunicorn(app_factory, options, limits).run()
