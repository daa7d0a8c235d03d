"""Production HTTP(S) server: gunicorn embedded, running our asyncio worker (webhook.http_worker), with
certificates reloaded at handshake.

Gunicorn loads its certificate once per worker, so a rotated Secret would need a restart. Here the
SSLContext is ours: a :class:`CertificateReloader` re-reads the certificate and key files (content hash,
checked at most every ``reload_interval_s``; mounted Secrets raise no file events), builds a new context
only from a pair whose key matches its certificate, and every TLS handshake switches to the newest
context from its SNI callback (which OpenSSL calls even when the client sends no SNI). A half-written
or mismatched pair is never served: the previous context stays and the problem is logged once.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from gunicorn.app.base import BaseApplication

from webhook import logs
from webhook.certs import pair_problem
from webhook.http_worker import Limits

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("webhook.serving")

DEFAULT_RELOAD_INTERVAL_S = 1.0
DEFAULT_KEEPALIVE_S = 15
DEFAULT_WORKER_TIMEOUT_S = 30
DEFAULT_GRACEFUL_TIMEOUT_S = 15


class CertificateLoadError(RuntimeError):
    """The certificate files cannot be served (unreadable, unparsable, or key and certificate differ)."""


@dataclass(frozen=True)
class CertificateFiles:
    """The bytes of one read of the pair, and a digest that says whether anything changed."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.cert_pem + b"\0" + self.key_pem).digest()


def read_certificate_files(cert_file: str, key_file: str) -> CertificateFiles:
    with open(cert_file, "rb") as cert_stream, open(key_file, "rb") as key_stream:
        return CertificateFiles(cert_stream.read(), key_stream.read())


def describe_certificate(cert_pem: bytes) -> str:
    """Public facts for a log line: serial, expiry, SHA-256 fingerprint of the certificate only."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "unparsable certificate"
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()[:16]
    return f"serial={cert.serial_number:x} not_after={cert.not_valid_after_utc.isoformat()} sha256={fingerprint}"


def build_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS >= 1.2 server context, no client certificates; OpenSSL checks that the key fits the cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return context


class CertificateReloader:
    """Owns the SSLContext for a certificate/key file pair and replaces it when the files change."""

    def __init__(
        self,
        cert_file: str,
        key_file: str,
        *,
        reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.reload_interval_s = reload_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_check_at = 0.0
        self._digest = b""
        self._suspect_digest = b""
        self._reported_digest = b""
        self.reload_count = 0
        self._install(*self._load_settled())

    @property
    def context(self) -> ssl.SSLContext:
        """The context currently served, without checking the files."""
        return self._context

    def current(self) -> ssl.SSLContext:
        """The newest good context, checking the files first when the interval has passed."""
        if self._clock() >= self._next_check_at and self._lock.acquire(blocking=False):
            try:
                if self._clock() >= self._next_check_at:
                    self._check_files()
            finally:
                self._lock.release()
        return self._context

    def check_now(self) -> bool:
        """Check the files regardless of the interval; True when a new certificate was installed."""
        with self._lock:
            return self._check_files()

    def _check_files(self) -> bool:
        self._next_check_at = self._clock() + self.reload_interval_s
        try:
            files = read_certificate_files(self.cert_file, self.key_file)
        except OSError as error:
            self._report_problem(b"unreadable", f"cannot read certificate files ({error.strerror})")
            return False
        if files.digest == self._digest:
            return False
        try:
            context, loaded_files = self._load_verified(expected=files)
        except CertificateLoadError as error:
            self._report_problem(files.digest, str(error))
            return False
        if loaded_files.digest != files.digest:
            return False  # the files moved while loading: the next check sees them settled
        self._install(context, loaded_files)
        self.reload_count += 1
        log.info("serving certificate reloaded: %s", describe_certificate(loaded_files.cert_pem))
        return True

    def _load_settled(self, attempts: int = 5) -> tuple[ssl.SSLContext, CertificateFiles]:
        """First load: insist on a context built from exactly the bytes we hashed."""
        for _ in range(attempts):
            try:
                files = read_certificate_files(self.cert_file, self.key_file)
            except OSError as error:
                raise CertificateLoadError(f"cannot read certificate files ({error.strerror})") from None
            context, loaded_files = self._load_verified(expected=files)
            if loaded_files.digest == files.digest:
                return context, files
            time.sleep(0.05)
        raise CertificateLoadError("certificate files kept changing while being loaded")

    def _report_problem(self, digest: bytes, reason: str) -> None:
        """Warn once per bad content, and only when it is seen twice in a row: a pair caught in the
        middle of being rewritten is expected and fixes itself at the next check."""
        if digest != self._suspect_digest:
            self._suspect_digest = digest
            log.debug("certificate files not usable yet, keeping the current certificate: %s", reason)
            return
        if digest != self._reported_digest:
            self._reported_digest = digest
            log.warning("certificate files not usable, keeping the current certificate: %s", reason)

    def _load_verified(self, expected: CertificateFiles) -> tuple[ssl.SSLContext, CertificateFiles]:
        """Build a context from the files once ``expected`` (their bytes) proved consistent, and
        return the bytes read right after, so the caller can tell that the files moved under it."""
        try:
            problem = pair_problem(expected.cert_pem, expected.key_pem)
            if problem:
                raise CertificateLoadError(problem)
            context = build_server_context(self.cert_file, self.key_file)
            loaded_files = read_certificate_files(self.cert_file, self.key_file)
        except ssl.SSLError as error:
            raise CertificateLoadError(f"TLS library rejected the pair ({error.reason})") from None
        except OSError as error:
            raise CertificateLoadError(f"cannot read certificate files ({error.strerror})") from None
        context.sni_callback = self._switch_on_handshake
        return context, loaded_files

    def _install(self, context: ssl.SSLContext, files: CertificateFiles) -> None:
        self._context = context
        self.served_cert_pem = files.cert_pem
        self._digest = files.digest
        self._suspect_digest = b""

    def _switch_on_handshake(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        """SNI callback: move this handshake onto the newest context; never fail the handshake."""
        try:
            newest = self.current()
            if ssl_object.context is not newest:
                ssl_object.context = newest
        except Exception:  # a failed switch must still serve the old certificate
            log.debug("certificate switch at handshake failed", exc_info=True)


def _required_parameter_count(candidate: Callable[..., object]) -> int:
    try:
        parameters = inspect.signature(candidate).parameters.values()
    except (TypeError, ValueError):
        return -1
    return sum(
        1
        for parameter in parameters
        if parameter.default is inspect.Parameter.empty
        and parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def resolve_app_spec(app_spec: str) -> Callable[..., object]:
    """Import ``module:attribute`` (attribute may be dotted, and may end in ``()``) without calling it."""
    module_name, separator, attribute_path = app_spec.partition(":")
    if not separator or not module_name or not attribute_path:
        raise ValueError(f"app spec must look like 'module:callable', got {app_spec!r}")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.removesuffix("()").split("."):
        target = getattr(target, attribute)
    if not callable(target):
        raise TypeError(f"{app_spec!r} is not callable")
    return cast("Callable[..., object]", target)


def materialize_app(target: Callable[..., object], *, call: bool = False) -> WSGIApplication:
    """Turn a factory into its app: a callable with no required argument is a factory, a WSGI app
    takes (environ, start_response)."""
    if call or _required_parameter_count(target) == 0:
        app = target()
        if not callable(app):
            raise TypeError("the app factory did not return a WSGI callable")
        return cast("WSGIApplication", app)
    return cast("WSGIApplication", target)


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
        "worker_class": "webhook.http_worker.AsyncioWorker",
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
    app_spec: str | Callable[..., object],
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
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve a WSGI app until SIGTERM/SIGINT; exits the process when gunicorn stops.

    ``app_spec`` is ``"module:callable"`` or a callable: a WSGI app, or a factory taking no required
    argument (e.g. ``functools.partial(create_app, settings)``) that each worker calls after the fork,
    so per-process state (threads, clients) is never shared across a fork. The module is imported
    once in the master so workers start without re-importing. TLS needs ``cert_file`` and
    ``key_file``; ``plain_http=True`` is for tests and benchmarks only.
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
        log.info("serving certificate loaded: %s", describe_certificate(reloader.served_cert_pem))
    if isinstance(app_spec, str):
        target = resolve_app_spec(app_spec)
        call_target = app_spec.endswith("()")
    else:
        target, call_target = app_spec, False
    options = build_gunicorn_options(
        host=host,
        port=port,
        workers=workers,
        keepalive_s=keepalive_s,
        timeout_s=timeout_s,
        graceful_timeout_s=graceful_timeout_s,
        log_level=log_level,
        access_log=access_log,
        reloader=reloader,
    )
    limits = Limits(request_timeout_s=request_timeout_s, keepalive_s=keepalive_s, max_connections=max_connections)
    _EmbeddedGunicorn(lambda: materialize_app(target, call=call_target), options, limits).run()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m webhook.serving module:app ...``: the server alone, for tests and benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m webhook.serving", description=main.__doc__)
    parser.add_argument("app_spec")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--request-timeout", type=float, default=Limits.request_timeout_s)
    parser.add_argument("--max-connections", type=int, default=Limits.max_connections)
    parser.add_argument("--plain-http", action="store_true")
    parser.add_argument("--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL_S)
    parser.add_argument("--keepalive", type=int, default=DEFAULT_KEEPALIVE_S)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    serve(
        args.app_spec,
        host=args.host,
        port=args.port,
        cert_file=args.cert_file,
        key_file=args.key_file,
        workers=args.workers,
        request_timeout_s=args.request_timeout,
        max_connections=args.max_connections,
        plain_http=args.plain_http,
        reload_interval_s=args.reload_interval,
        keepalive_s=args.keepalive,
        log_level=args.log_level,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
