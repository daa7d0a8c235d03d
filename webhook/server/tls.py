"""The server's TLS: certificates reloaded at handshake, so a rotated Secret needs no restart.

Gunicorn loads its certificate once per worker. Here the SSLContext is ours: a :class:`CertificateReloader`
re-reads the certificate and key files (content hash, checked at most every ``reload_interval_s``;
mounted Secrets raise no file events), builds a new context only from a pair whose key matches its
certificate, and every TLS handshake switches to the newest context from its SNI callback (which OpenSSL
calls even when the client sends no SNI). A half-written or mismatched pair is never served: the
previous context stays and the problem is logged once.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from webhook.certificates.checks import describe, pair_problem

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL_S = 1.0


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
        log.info("serving certificate reloaded: %s", describe(loaded_files.cert_pem))
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
